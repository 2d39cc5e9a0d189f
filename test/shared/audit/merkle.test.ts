import { describe, it, expect } from 'vitest';
import vectors from '../../vectors/rfc9162.json' with { type: 'json' };
import {
  MerkleLog,
  consistencyProof,
  consistencyProofLength,
  emptyRoot,
  inclusionProof,
  inclusionProofLength,
  isValidConsistency,
  isValidInclusion,
  leafHash,
  merkleTreeHash,
  nodeHash,
  rootFromInclusionProof,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
} from '../../../shared/audit/index.js';
import { HotlineError, type HotlineErrorCode } from '../../../shared/errors.js';
import { concatBytes, fromHex, toHex, utf8 } from '../../../shared/encoding/base64.js';

const leaves = vectors.leaves.map((h) => fromHex(h));
const leafHashes = leaves.map(leafHash);
const roots = vectors.roots.map((h) => fromHex(h)); // roots[n - 1] is the root of n leaves
const hexes = (list: Uint8Array[]): string[] => list.map(toHex);
const unhex = (list: string[]): Uint8Array[] => list.map((h) => fromHex(h));

function codeOf(fn: () => unknown): HotlineErrorCode | 'no error' | 'not a HotlineError' {
  try {
    fn();
    return 'no error';
  } catch (err) {
    return err instanceof HotlineError ? err.code : 'not a HotlineError';
  }
}

function flip(bytes: Uint8Array, at = 0): Uint8Array {
  const copy = bytes.slice();
  copy[at] = copy[at]! ^ 0x01;
  return copy;
}

// Entries of a bigger pseudo-random tree for the property tests.
function entries(n: number): Uint8Array[] {
  return Array.from({ length: n }, (_, i) => utf8(`entry ${i} ${'x'.repeat(i % 7)}`));
}

describe('leafHash and nodeHash', () => {
  it('prefix 0x00 for leaves and 0x01 for nodes (RFC 9162 §2.1.1)', () => {
    expect(toHex(leafHash(new Uint8Array(0)))).toBe(vectors.nodes[0]![0]);
    expect(toHex(nodeHash(leafHashes[0]!, leafHashes[1]!))).toBe(vectors.nodes[1]![0]);
    expect(hexes(leafHashes)).toEqual(vectors.nodes[0]);
  });
});

describe('merkleTreeHash', () => {
  it('hashes the empty tree to SHA-256 of the empty string', () => {
    expect(toHex(merkleTreeHash([]))).toBe(vectors.emptyRoot);
    expect(toHex(emptyRoot())).toBe(vectors.emptyRoot);
    expect(toHex(rootFromLeafHashes([]))).toBe(vectors.emptyRoot);
  });

  it('matches the reference roots for sizes 1..8', () => {
    for (let n = 1; n <= 8; n++) {
      expect(toHex(merkleTreeHash(leaves.slice(0, n))), `size ${n}`).toBe(vectors.roots[n - 1]);
      expect(toHex(rootFromLeafHashes(leafHashes.slice(0, n))), `size ${n}`).toBe(vectors.roots[n - 1]);
    }
  });

  it('matches the reference complete-subtree hashes at every level', () => {
    vectors.nodes.forEach((level, h) => {
      level.forEach((hex, i) => {
        const width = 2 ** h;
        expect(toHex(merkleTreeHash(leaves.slice(i * width, (i + 1) * width)))).toBe(hex);
      });
    });
  });

  it('refuses a stored leaf hash that is not 32 bytes, naming its index', () => {
    const bad = [...leafHashes.slice(0, 3), new Uint8Array(31)];
    expect(codeOf(() => rootFromLeafHashes(bad))).toBe('HL_ERR_AUDIT_LEAF_MISMATCH');
  });
});

describe('inclusionProof', () => {
  it('produces the reference proofs', () => {
    for (const v of vectors.inclusion) {
      expect(hexes(inclusionProof(leafHashes, v.index, v.size)), `${v.index}/${v.size}`).toEqual(v.proof);
    }
  });

  it('refuses an index outside the tree and a size beyond the data', () => {
    expect(codeOf(() => inclusionProof(leafHashes, 8, 8))).toBe('HL_ERR_AUDIT_RANGE');
    expect(codeOf(() => inclusionProof(leafHashes, 0, 9))).toBe('HL_ERR_AUDIT_RANGE');
    expect(codeOf(() => inclusionProof(leafHashes, -1, 8))).toBe('HL_ERR_AUDIT_RANGE');
    expect(codeOf(() => inclusionProof(leafHashes, 0.5, 8))).toBe('HL_ERR_AUDIT_RANGE');
  });
});

describe('consistencyProof', () => {
  it('produces the reference proofs', () => {
    for (const v of vectors.consistency) {
      expect(hexes(consistencyProof(leafHashes, v.size1, v.size2)), `${v.size1}->${v.size2}`).toEqual(v.proof);
    }
  });

  it('is empty from size 0 and between equal sizes; refuses size1 > size2', () => {
    expect(consistencyProof(leafHashes, 0, 8)).toEqual([]);
    expect(consistencyProof(leafHashes, 5, 5)).toEqual([]);
    expect(codeOf(() => consistencyProof(leafHashes, 6, 5))).toBe('HL_ERR_AUDIT_RANGE');
    expect(codeOf(() => consistencyProof(leafHashes, 1, 9))).toBe('HL_ERR_AUDIT_RANGE');
  });
});

describe('verifyInclusion', () => {
  it('accepts every reference proof', () => {
    for (const v of vectors.inclusion) {
      const root = roots[v.size - 1]!;
      expect(() => verifyInclusion(leafHashes[v.index]!, v.index, v.size, unhex(v.proof), root)).not.toThrow();
      expect(toHex(rootFromInclusionProof(leafHashes[v.index]!, v.index, v.size, unhex(v.proof)))).toBe(toHex(root));
    }
  });

  // Every corruption of every non-trivial reference proof must be refused with the proof code.
  for (const v of vectors.inclusion.filter((x) => x.proof.length > 0)) {
    describe(`leaf ${v.index} of ${v.size}`, () => {
      const proof = unhex(v.proof);
      const leaf = leafHashes[v.index]!;
      const root = roots[v.size - 1]!;
      const refuse = (l: Uint8Array, i: number, n: number, p: Uint8Array[], r: Uint8Array): void => {
        expect(codeOf(() => verifyInclusion(l, i, n, p, r))).toBe('HL_ERR_AUDIT_PROOF_INVALID');
        expect(isValidInclusion(l, i, n, p, r)).toBe(false);
      };

      it('refuses a flipped byte in any proof element, the root or the leaf', () => {
        proof.forEach((_, k) => {
          for (const at of [0, 17, 31]) refuse(leaf, v.index, v.size, proof.map((p, j) => (j === k ? flip(p, at) : p)), root);
        });
        refuse(leaf, v.index, v.size, proof, flip(root, 31));
        refuse(flip(leaf, 5), v.index, v.size, proof, root);
        refuse(leafHash(utf8('some other entry')), v.index, v.size, proof, root);
      });

      it('refuses swapped siblings', () => {
        if (proof.length < 2) return;
        refuse(leaf, v.index, v.size, [proof[1]!, proof[0]!, ...proof.slice(2)], root);
        refuse(leaf, v.index, v.size, [...proof].reverse(), root);
      });

      it('refuses a proof one element short or one long', () => {
        refuse(leaf, v.index, v.size, proof.slice(0, -1), root);
        refuse(leaf, v.index, v.size, [...proof, root], root);
        refuse(leaf, v.index, v.size, [root, ...proof], root);
        refuse(leaf, v.index, v.size, [], root);
      });

      // A size that keeps the proof's shape (8 → 7 for leaf 0) can still verify: the tree size is
      // authenticated by the signed checkpoint, not by the proof. Sizes that change the shape fail.
      it('refuses a wrong index or a size that changes the tree shape', () => {
        for (const i of [v.index - 1, v.index + 1, v.index ^ 2, v.size, v.size + 3]) {
          if (i >= 0) refuse(leaf, i, v.size, proof, root);
        }
        for (const n of [v.size * 2, Math.floor(v.size / 2)]) refuse(leaf, v.index, n, proof, root);
      });

      it('refuses a wrong root: the empty root, and the root of a different size', () => {
        refuse(leaf, v.index, v.size, proof, emptyRoot());
        refuse(leaf, v.index, v.size, proof, roots[v.size - 2] ?? roots[v.size]!);
      });
    });
  }

  it('refuses malformed input with the proof code, never a TypeError (attacker-controlled)', () => {
    const proof = unhex(vectors.inclusion[1]!.proof);
    const root = roots[7]!;
    const leaf = leafHashes[0]!;
    const bad: Array<() => void> = [
      () => verifyInclusion(leaf, 0, 0, [], emptyRoot()),
      () => verifyInclusion(leaf, 1, 1, [], leaf),
      () => verifyInclusion(leaf, -1, 8, proof, root),
      () => verifyInclusion(leaf, 0, 2 ** 53, proof, root),
      () => verifyInclusion(leaf, 0, Number.NaN, proof, root),
      () => verifyInclusion(leaf, 0, 8, [...proof.slice(0, 2), new Uint8Array(31)], root),
      () => verifyInclusion(leaf, 0, 8, [...proof.slice(0, 2), 'abc' as unknown as Uint8Array], root),
      () => verifyInclusion(leaf, 0, 8, null as unknown as Uint8Array[], root),
      () => verifyInclusion(leaf, 0, 8, proof, new Uint8Array(0)),
      () => verifyInclusion(new Uint8Array(0), 0, 8, proof, root),
      () => verifyInclusion(leaf, 0, 8, Array.from({ length: 1000 }, () => root), root),
      () => verifyInclusion('leaf' as unknown as Uint8Array, 0, 8, proof, root),
    ];
    for (const fn of bad) expect(codeOf(fn)).toBe('HL_ERR_AUDIT_PROOF_INVALID');
  });

  it('accepts a single-leaf tree with an empty proof, where the root is the leaf hash', () => {
    const h = leafHash(utf8('data'));
    expect(() => verifyInclusion(h, 0, 1, [], h)).not.toThrow();
    expect(isValidInclusion(h, 0, 1, [], flip(h))).toBe(false);
  });

  it('refuses an interior node presented as a leaf (second preimage)', () => {
    // Tree of 4 leaves: root = H(1 ‖ n01 ‖ n23). An attacker claims the 2-leaf tree (n01, n23) has
    // the same root, presenting the bytes under n01 as an entry. The 0x00 leaf prefix defeats it.
    const n01 = nodeHash(leafHashes[0]!, leafHashes[1]!);
    const n23 = nodeHash(leafHashes[2]!, leafHashes[3]!);
    const root4 = roots[3]!;
    expect(toHex(nodeHash(n01, n23))).toBe(toHex(root4));
    for (const forged of [concatBytes(leafHashes[0]!, leafHashes[1]!), concatBytes(new Uint8Array([1]), leafHashes[0]!, leafHashes[1]!)]) {
      expect(isValidInclusion(leafHash(forged), 0, 2, [n23], root4)).toBe(false);
      expect(toHex(merkleTreeHash([forged, concatBytes(leafHashes[2]!, leafHashes[3]!)]))).not.toBe(toHex(root4));
    }
  });
});

describe('verifyConsistency', () => {
  it('accepts every reference proof', () => {
    for (const v of vectors.consistency) {
      expect(() => verifyConsistency(v.size1, v.size2, unhex(v.proof), roots[v.size1 - 1]!, roots[v.size2 - 1]!)).not.toThrow();
    }
  });

  for (const v of vectors.consistency.filter((x) => x.proof.length > 0)) {
    describe(`${v.size1} -> ${v.size2}`, () => {
      const proof = unhex(v.proof);
      const r1 = roots[v.size1 - 1]!;
      const r2 = roots[v.size2 - 1]!;
      const refuse = (m: number, n: number, p: Uint8Array[], a: Uint8Array, b: Uint8Array): void => {
        expect(codeOf(() => verifyConsistency(m, n, p, a, b))).toBe('HL_ERR_AUDIT_PROOF_INVALID');
        expect(isValidConsistency(m, n, p, a, b)).toBe(false);
      };

      it('refuses a flipped byte in any proof element or either root', () => {
        proof.forEach((_, k) => refuse(v.size1, v.size2, proof.map((p, j) => (j === k ? flip(p, 9) : p)), r1, r2));
        refuse(v.size1, v.size2, proof, flip(r1), r2);
        refuse(v.size1, v.size2, proof, r1, flip(r2));
        refuse(v.size1, v.size2, proof, r2, r1);
      });

      it('refuses swapped elements, and a proof one short, one long, or empty', () => {
        if (proof.length >= 2) refuse(v.size1, v.size2, [proof[1]!, proof[0]!, ...proof.slice(2)], r1, r2);
        refuse(v.size1, v.size2, proof.slice(0, -1), r1, r2);
        refuse(v.size1, v.size2, [...proof, r2], r1, r2);
        refuse(v.size1, v.size2, [proof[0]!, ...proof], r1, r2);
        refuse(v.size1, v.size2, [], r1, r2);
      });

      it('refuses wrong sizes', () => {
        for (const m of [v.size1 - 1, v.size1 + 1, v.size1 ^ 2]) if (m !== v.size1 && m > 0) refuse(m, v.size2, proof, r1, r2);
        for (const n of [v.size2 * 2, Math.floor(v.size2 / 2)]) refuse(v.size1, n, proof, r1, r2);
      });
    });
  }

  it('handles the edge sizes: equal sizes, size1 = 0, size1 > size2', () => {
    const r = roots[4]!;
    expect(isValidConsistency(5, 5, [], r, r)).toBe(true);
    expect(isValidConsistency(5, 5, [], r, roots[3]!)).toBe(false);
    expect(isValidConsistency(5, 5, [r], r, r)).toBe(false);
    expect(isValidConsistency(0, 5, [], emptyRoot(), r)).toBe(true);
    expect(isValidConsistency(0, 0, [], emptyRoot(), emptyRoot())).toBe(true);
    expect(isValidConsistency(0, 5, [], r, r)).toBe(false);
    expect(isValidConsistency(0, 5, [r], emptyRoot(), r)).toBe(false);
    expect(isValidConsistency(6, 5, [], r, r)).toBe(false);
    expect(isValidConsistency(1, 2, [], roots[0]!, roots[1]!)).toBe(false);
  });

  it('refuses malformed input with the proof code, never a TypeError (attacker-controlled)', () => {
    const proof = unhex(vectors.consistency[2]!.proof);
    const r1 = roots[5]!;
    const r2 = roots[7]!;
    const bad: Array<() => void> = [
      () => verifyConsistency(-1, 8, proof, r1, r2),
      () => verifyConsistency(6, 2 ** 60, proof, r1, r2),
      () => verifyConsistency(6, 8, [new Uint8Array(32), new Uint8Array(33), new Uint8Array(32)], r1, r2),
      () => verifyConsistency(6, 8, undefined as unknown as Uint8Array[], r1, r2),
      () => verifyConsistency(6, 8, proof, r1.subarray(1), r2),
      () => verifyConsistency(6, 8, proof, r1, 'root' as unknown as Uint8Array),
    ];
    for (const fn of bad) expect(codeOf(fn)).toBe('HL_ERR_AUDIT_PROOF_INVALID');
  });
});

describe('MerkleLog', () => {
  it('matches the reference roots and complete-subtree hashes as it grows', () => {
    const log = new MerkleLog();
    expect(toHex(log.root())).toBe(vectors.emptyRoot);
    leafHashes.forEach((h, i) => {
      expect(log.append(h)).toBe(i);
      expect(log.size).toBe(i + 1);
      expect(toHex(log.root())).toBe(vectors.roots[i]);
    });
    for (let n = 0; n <= 8; n++) expect(toHex(log.root(n))).toBe(n === 0 ? vectors.emptyRoot : vectors.roots[n - 1]);
  });

  it('produces the reference proofs at historical sizes', () => {
    const log = MerkleLog.fromLeafHashes(leafHashes);
    for (const v of vectors.inclusion) expect(hexes(log.inclusionProof(v.index, v.size))).toEqual(v.proof);
    for (const v of vectors.consistency) expect(hexes(log.consistencyProof(v.size1, v.size2))).toEqual(v.proof);
  });

  it('hands out copies: mutating a returned hash does not corrupt the log', () => {
    const log = MerkleLog.fromLeafHashes(leafHashes);
    log.root().fill(0);
    log.leafHash(3).fill(0);
    log.inclusionProof(0)[0]!.fill(0);
    const input = leafHash(utf8('mutable'));
    log.append(input);
    input.fill(0);
    expect(toHex(log.root(8))).toBe(vectors.roots[7]);
    expect(toHex(log.leafHash(3))).toBe(vectors.nodes[0]![3]);
    expect(hexes(log.inclusionProof(0, 8))).toEqual(vectors.inclusion[1]!.proof);
    expect(toHex(log.leafHash(8))).toBe(toHex(leafHash(utf8('mutable'))));
  });

  it('refuses out-of-range requests and malformed leaf hashes', () => {
    const log = MerkleLog.fromLeafHashes(leafHashes);
    expect(codeOf(() => log.root(9))).toBe('HL_ERR_AUDIT_RANGE');
    expect(codeOf(() => log.inclusionProof(8))).toBe('HL_ERR_AUDIT_RANGE');
    expect(codeOf(() => log.inclusionProof(3, 3))).toBe('HL_ERR_AUDIT_RANGE');
    expect(codeOf(() => log.consistencyProof(7, 6))).toBe('HL_ERR_AUDIT_RANGE');
    expect(codeOf(() => log.leafHash(8))).toBe('HL_ERR_AUDIT_RANGE');
    expect(codeOf(() => log.append(new Uint8Array(16)))).toBe('HL_ERR_AUDIT_LEAF_MISMATCH');
    expect(log.size).toBe(8);
  });
});

describe('property: sizes 1..64', () => {
  const data = entries(64);
  const hashes = data.map(leafHash);
  const log = new MerkleLog();
  const rootAt: Uint8Array[] = [emptyRoot()];
  for (const e of data) {
    log.appendEntry(e);
    rootAt.push(log.root());
  }

  it('the incremental MerkleLog root equals merkleTreeHash at every size', () => {
    for (let n = 1; n <= 64; n++) {
      const reference = toHex(merkleTreeHash(data.slice(0, n)));
      expect(toHex(rootAt[n]!), `size ${n}`).toBe(reference);
      expect(toHex(log.root(n)), `size ${n}`).toBe(reference);
    }
  });

  it('every inclusion proof verifies, has the predicted length, and MerkleLog agrees with the reference', () => {
    for (let n = 1; n <= 64; n++) {
      for (let i = 0; i < n; i++) {
        const proof = inclusionProof(hashes, i, n);
        expect(proof.length).toBe(inclusionProofLength(i, n));
        expect(hexes(log.inclusionProof(i, n))).toEqual(hexes(proof));
        expect(isValidInclusion(hashes[i]!, i, n, proof, rootAt[n]!), `${i}/${n}`).toBe(true);
        if (n > 1) expect(isValidInclusion(hashes[i]!, i, n, proof, rootAt[n - 1]!)).toBe(false);
      }
    }
  });

  it('every consistency proof verifies, has the predicted length, and MerkleLog agrees with the reference', () => {
    for (let n = 1; n <= 64; n++) {
      for (let m = 0; m <= n; m++) {
        const proof = consistencyProof(hashes, m, n);
        if (m > 0 && m < n) expect(proof.length).toBe(consistencyProofLength(m, n));
        expect(hexes(log.consistencyProof(m, n))).toEqual(hexes(proof));
        expect(isValidConsistency(m, n, proof, rootAt[m]!, rootAt[n]!), `${m}->${n}`).toBe(true);
        if (m > 0 && m < n) {
          expect(isValidConsistency(m, n, proof, rootAt[m - 1]!, rootAt[n]!)).toBe(false);
          expect(isValidConsistency(m, n, proof, rootAt[m]!, rootAt[n - 1]!)).toBe(false);
        }
      }
    }
  });
});

describe('scale', () => {
  it('appends 100,000 leaf hashes and serves proofs at large sizes', () => {
    const log = new MerkleLog();
    const h = new Uint8Array(32);
    for (let i = 0; i < 100_000; i++) {
      h[0] = i & 0xff;
      h[1] = (i >> 8) & 0xff;
      h[2] = (i >> 16) & 0xff;
      log.append(h);
    }
    const root = log.root();
    const mid = log.root(65_537);
    const proof = log.inclusionProof(77_777);
    expect(isValidInclusion(log.leafHash(77_777), 77_777, 100_000, proof, root)).toBe(true);
    expect(isValidConsistency(65_537, 100_000, log.consistencyProof(65_537), mid, root)).toBe(true);
  });

  it('verifies at sizes beyond 2^32 without 32-bit overflow', () => {
    // The leftmost leaf of a 2^33-leaf tree: its path is 33 left turns, all siblings on the right.
    const siblings = Array.from({ length: 33 }, (_, i) => leafHash(utf8(`sibling ${i}`)));
    const leaf = leafHash(utf8('leaf'));
    let root = leaf;
    for (const s of siblings) root = nodeHash(root, s);
    expect(inclusionProofLength(0, 2 ** 33)).toBe(33);
    expect(isValidInclusion(leaf, 0, 2 ** 33, siblings, root)).toBe(true);
    expect(isValidInclusion(leaf, 2 ** 32, 2 ** 33, siblings, root)).toBe(false);
  });
});
