import { HotlineError } from '../errors.js';
import { sha256 } from '../crypto/hash.js';
import { bytesEqual } from '../encoding/base64.js';

/**
 * The audit log's Merkle tree, exactly RFC 9162 §2.1 (the same tree as RFC 6962 Certificate
 * Transparency): SHA-256, leaf hash `H(0x00 ‖ entry)`, node hash `H(0x01 ‖ left ‖ right)`, the
 * empty tree hashes to `H("")`. The 0x00/0x01 prefixes separate leaves from interior nodes, so an
 * interior node can never be passed off as a leaf (second-preimage resistance).
 *
 * Pure and isomorphic: runs in Node and in the browser.
 *
 * @example
 * const log = new MerkleLog();
 * for (const e of entries) log.append(leafHash(e));
 * const proof = log.inclusionProof(3);
 * verifyInclusion(leafHash(entries[3]), 3, log.size, proof, log.root()); // throws if wrong
 */

/** Length in bytes of every hash in the tree. */
export const HASH_SIZE = 32;

// Proofs are at most ~2·log2(2^53) elements long; anything longer is refused before hashing so that
// an attacker cannot make a verifier hash a huge array.
const MAX_PROOF_LENGTH = 128;

const LEAF_PREFIX = new Uint8Array([0x00]);
const NODE_PREFIX = new Uint8Array([0x01]);
const EMPTY_ROOT = sha256(new Uint8Array(0));

/** `SHA-256(0x00 ‖ entry)`: the hash of one log entry (RFC 9162 §2.1.1). */
export function leafHash(entry: Uint8Array): Uint8Array {
  return sha256(LEAF_PREFIX, entry);
}

/** `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node (RFC 9162 §2.1.1). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return sha256(NODE_PREFIX, left, right);
}

/** The root of the empty tree, `SHA-256("")` (e3b0c442…). Returns a fresh copy. */
export function emptyRoot(): Uint8Array {
  return EMPTY_ROOT.slice();
}

/**
 * MTH(D[n]) of raw entries (RFC 9162 §2.1.1): hashes every entry as a leaf first.
 *
 * @example
 * toHex(merkleTreeHash([])) // 'e3b0c442…'
 */
export function merkleTreeHash(entries: readonly Uint8Array[]): Uint8Array {
  return rootFromLeafHashes(entries.map(leafHash));
}

/**
 * The tree root over already computed leaf hashes (what the server stores), without rehashing any
 * entry. O(n) node hashes; for repeated roots and proofs over a growing log use {@link MerkleLog}.
 */
export function rootFromLeafHashes(leafHashes: readonly Uint8Array[]): Uint8Array {
  leafHashes.forEach((h, i) => assertStoredHash(h, i));
  if (leafHashes.length === 0) return emptyRoot();
  return subtreeFromArray(leafHashes, 0, leafHashes.length).slice();
}

/**
 * PATH(index, D[size]) of RFC 9162 §2.1.3.1 over the first `size` leaf hashes: the sibling hashes
 * from the leaf up to the root. Reference implementation, O(size) hashing per proof.
 */
export function inclusionProof(leafHashes: readonly Uint8Array[], index: number, size: number = leafHashes.length): Uint8Array[] {
  checkRange(size, leafHashes.length, 'size');
  if (!isSize(index) || index >= size) {
    throw new HotlineError('HL_ERR_AUDIT_RANGE', `leaf index ${String(index)} is not below tree size ${size}`);
  }
  for (let i = 0; i < size; i++) assertStoredHash(leafHashes[i], i);
  return buildInclusionProof(index, size, (lo, hi) => subtreeFromArray(leafHashes, lo, hi).slice());
}

/**
 * PROOF(size1, D[size2]) of RFC 9162 §2.1.4.1 (the SUBPROOF algorithm): the nodes that prove the
 * tree of `size1` leaves is a prefix of the tree of `size2` leaves. Empty when size1 is 0 or equals
 * size2. Reference implementation, O(size2) hashing per proof.
 */
export function consistencyProof(leafHashes: readonly Uint8Array[], size1: number, size2: number = leafHashes.length): Uint8Array[] {
  checkRange(size2, leafHashes.length, 'size2');
  checkRange(size1, size2, 'size1');
  for (let i = 0; i < size2; i++) assertStoredHash(leafHashes[i], i);
  return buildConsistencyProof(size1, size2, (lo, hi) => subtreeFromArray(leafHashes, lo, hi).slice());
}

/**
 * An append-only Merkle log over leaf hashes that keeps the hash of every complete (perfect)
 * subtree, so that appending costs O(log n) hashes in the worst case (amortised: one), and the root
 * and proofs for *any* size up to the current one cost O(log² n) hash reads and at most O(log n)
 * node hashes — no entry or leaf is ever rehashed. Memory: about 2·n·32 bytes (6.4 MB for 100,000
 * entries), in one growable buffer per tree level.
 *
 * @example
 * const log = MerkleLog.fromLeafHashes(storedLeafHashes);
 * log.append(leafHash(entryBytes));
 * const cp = { origin, size: log.size, rootHash: log.root() };
 * const proof = log.consistencyProof(lastSize); // from lastSize to log.size
 */
export class MerkleLog {
  // #levels[h] holds, in order, the hash of every complete subtree of 2^h leaves: entry i covers
  // leaves [i·2^h, (i+1)·2^h).
  readonly #levels: HashList[] = [];
  #size = 0;

  /** Build a log from stored leaf hashes (for example at server start). */
  static fromLeafHashes(leafHashes: Iterable<Uint8Array>): MerkleLog {
    const log = new MerkleLog();
    for (const h of leafHashes) log.append(h);
    return log;
  }

  /** The number of leaves. */
  get size(): number {
    return this.#size;
  }

  /** Append a leaf hash (32 bytes, see {@link leafHash}); returns the new leaf's index. */
  append(hash: Uint8Array): number {
    assertStoredHash(hash, this.#size);
    const index = this.#size;
    this.#level(0).push(hash);
    // Each time the new leaf closes a complete subtree, store that subtree's hash one level up.
    let i = index;
    for (let h = 0; i % 2 === 1; h++) {
      const level = this.#levels[h]!;
      this.#level(h + 1).push(nodeHash(level.get(i - 1), level.get(i)));
      i = (i - 1) / 2;
    }
    this.#size = index + 1;
    return index;
  }

  /** Hash `entry` as a leaf and append it; returns the new leaf's index. */
  appendEntry(entry: Uint8Array): number {
    return this.append(leafHash(entry));
  }

  /** The stored hash of leaf `index` (a copy). */
  leafHash(index: number): Uint8Array {
    return this.#view().leafHash(index);
  }

  /** The root of the tree of the first `size` leaves (default: all of them). */
  root(size: number = this.#size): Uint8Array {
    return this.#view().root(size);
  }

  /** Inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 9162 PATH). */
  inclusionProof(index: number, size: number = this.#size): Uint8Array[] {
    return this.#view().inclusionProof(index, size);
  }

  /** Consistency proof from the tree of `size1` leaves to that of `size2` (RFC 9162 PROOF). */
  consistencyProof(size1: number, size2: number = this.#size): Uint8Array[] {
    return this.#view().consistencyProof(size1, size2);
  }

  #view(): NodeTree {
    return new NodeTree(this.#size, (level, index) => this.#levels[level]!.get(index));
  }

  #level(h: number): HashList {
    let level = this.#levels[h];
    if (!level) {
      level = new HashList();
      this.#levels[h] = level;
    }
    return level;
  }

}

/**
 * One complete (perfect) subtree of the log: the `2^level` leaves from `index·2^level` on. Level 0
 * is a leaf. A log that stores the hash of every complete subtree as it grows (the server does, so
 * that it never holds or rehashes all leaves) can answer any root or proof from O(log n) of them.
 */
export interface NodeRef {
  level: number;
  index: number;
}

/** Returns the stored hash of a complete subtree (see {@link NodeRef}). */
export type NodeLookup = (level: number, index: number) => Uint8Array;

/**
 * The complete subtrees that make up leaves [lo, hi), largest first, for a range of the RFC 9162
 * recursion (lo is a multiple of the largest power of two not above hi − lo): one per binary digit
 * of hi − lo. The range's hash is their right fold ({@link rangeFromNodes}).
 */
export function completeSubtrees(lo: number, hi: number): NodeRef[] {
  const parts: NodeRef[] = [];
  let pos = lo;
  let width = 1;
  let height = 0;
  while (width * 2 <= hi - lo) {
    width *= 2;
    height++;
  }
  for (; width >= 1; width /= 2, height--) {
    if (pos + width <= hi) {
      parts.push({ level: height, index: pos / width });
      pos += width;
    }
  }
  return parts;
}

/** MTH of leaves [lo, hi) from the hashes of its complete subtrees (not a copy when hi − lo is a power of two). */
export function rangeFromNodes(lo: number, hi: number, get: NodeLookup): Uint8Array {
  const parts = completeSubtrees(lo, hi).map((n) => get(n.level, n.index));
  let acc = parts[parts.length - 1]!;
  for (let i = parts.length - 2; i >= 0; i--) acc = nodeHash(parts[i]!, acc);
  return acc;
}

/**
 * Roots and proofs of a log of `size` leaves whose complete subtrees are read through `get`: what
 * {@link MerkleLog} does from memory and the server from its stored nodes. Each answer reads at most
 * O(log² n) nodes and hashes O(log n); sizes and indexes are range-checked (HL_ERR_AUDIT_RANGE).
 *
 * @example
 * const tree = new NodeTree(size, (level, index) => stored.get(`${level}/${index}`)!);
 * const proof = tree.consistencyProof(lastSize);
 */
export class NodeTree {
  constructor(
    readonly size: number,
    private readonly get: NodeLookup,
  ) {}

  /** The hash of leaf `index` (a copy). */
  leafHash(index: number): Uint8Array {
    if (!isSize(index) || index >= this.size) {
      throw new HotlineError('HL_ERR_AUDIT_RANGE', `leaf index ${String(index)} is not below log size ${this.size}`);
    }
    return this.get(0, index).slice();
  }

  /** The root of the tree of the first `size` leaves (default: all of them). */
  root(size: number = this.size): Uint8Array {
    checkRange(size, this.size, 'size');
    return size === 0 ? emptyRoot() : rangeFromNodes(0, size, this.get).slice();
  }

  /** Inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 9162 PATH). */
  inclusionProof(index: number, size: number = this.size): Uint8Array[] {
    checkRange(size, this.size, 'size');
    if (!isSize(index) || index >= size) {
      throw new HotlineError('HL_ERR_AUDIT_RANGE', `leaf index ${String(index)} is not below tree size ${size}`);
    }
    return buildInclusionProof(index, size, (lo, hi) => rangeFromNodes(lo, hi, this.get).slice());
  }

  /** Consistency proof from the tree of `size1` leaves to that of `size2` (RFC 9162 PROOF). */
  consistencyProof(size1: number, size2: number = this.size): Uint8Array[] {
    checkRange(size2, this.size, 'size2');
    checkRange(size1, size2, 'size1');
    return buildConsistencyProof(size1, size2, (lo, hi) => rangeFromNodes(lo, hi, this.get).slice());
  }
}

/**
 * The complete subtrees that `compute` reads, found by running it on placeholder hashes: a store
 * fetches exactly these (O(log² n) at most) and then runs `compute` on them for real. Range errors
 * are thrown here already.
 *
 * @example
 * const refs = nodesRead((get) => new NodeTree(size, get).inclusionProof(5));
 */
export function nodesRead(compute: (get: NodeLookup) => unknown): NodeRef[] {
  const refs = new Map<string, NodeRef>();
  compute((level, index) => {
    refs.set(`${level}/${index}`, { level, index });
    return PLACEHOLDER;
  });
  return [...refs.values()];
}

const PLACEHOLDER = new Uint8Array(HASH_SIZE);

/**
 * Verify an inclusion proof (RFC 9162 §2.1.3.2) that the leaf with hash `leafHash` is at `index`
 * in the tree of `size` leaves whose root is `root`. Every argument is attacker-controlled; any
 * problem, including a wrong length or a non-hash element, throws `HL_ERR_AUDIT_PROOF_INVALID`.
 *
 * @example
 * verifyInclusion(leafHash(entry), 5, 8, proof, root); // returns, or throws HotlineError
 */
export function verifyInclusion(leafHash: Uint8Array, index: number, size: number, proof: readonly Uint8Array[], root: Uint8Array): void {
  const computed = rootFromInclusionProof(leafHash, index, size, proof);
  if (!isHash(root) || !bytesEqual(computed, root)) {
    throw proofError('inclusion proof does not lead to the expected root', { index, size });
  }
}

/**
 * The root that an inclusion proof leads to (RFC 9162 §2.1.3.2 without the final comparison).
 * Throws `HL_ERR_AUDIT_PROOF_INVALID` for malformed input (attacker-controlled).
 */
export function rootFromInclusionProof(leafHash: Uint8Array, index: number, size: number, proof: readonly Uint8Array[]): Uint8Array {
  if (!isSize(index) || !isSize(size)) throw proofError('index and size must be non-negative safe integers', { index, size });
  if (index >= size) throw proofError(`leaf index ${index} is not below tree size ${size}`, { index, size });
  if (!isHash(leafHash)) throw proofError('leaf hash must be 32 bytes', { index, size });
  checkProofElements(proof);
  const expected = inclusionProofLength(index, size);
  if (proof.length !== expected) {
    throw proofError(`inclusion proof has ${proof.length} hashes, expected ${expected}`, { index, size });
  }
  // Sizes can exceed 2^32, so halve with arithmetic, never with 32-bit bit operators.
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of proof) {
    if (sn === 0) throw proofError('inclusion proof is too long', { index, size });
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw proofError('inclusion proof is too short', { index, size });
  return r === leafHash ? leafHash.slice() : r;
}

/**
 * Verify a consistency proof (RFC 9162 §2.1.4.2): that the tree of `size1` leaves with root
 * `root1` is a prefix of the tree of `size2` leaves with root `root2`. All arguments are
 * attacker-controlled; any failure throws `HL_ERR_AUDIT_PROOF_INVALID`.
 *
 * Beyond the RFC's algorithm (which requires 0 < size1 < size2): equal sizes need an empty proof and
 * equal roots; size1 = 0 needs an empty proof and `root1` equal to the empty-tree hash.
 *
 * @example
 * verifyConsistency(lastSeen.size, cp.size, proof, lastSeen.rootHash, cp.rootHash);
 */
export function verifyConsistency(size1: number, size2: number, proof: readonly Uint8Array[], root1: Uint8Array, root2: Uint8Array): void {
  const at = { size1, size2 };
  if (!isSize(size1) || !isSize(size2)) throw proofError('sizes must be non-negative safe integers', at);
  if (size1 > size2) throw proofError(`size1 ${size1} is larger than size2 ${size2}`, at);
  if (!isHash(root1) || !isHash(root2)) throw proofError('roots must be 32 bytes', at);
  checkProofElements(proof);
  if (size1 === size2 || size1 === 0) {
    if (proof.length !== 0) throw proofError('consistency proof must be empty', at);
    if (size1 === size2 && !bytesEqual(root1, root2)) throw proofError('equal sizes with different roots', at);
    if (size1 === 0 && !bytesEqual(root1, EMPTY_ROOT)) throw proofError('root1 is not the empty-tree hash', at);
    return;
  }
  const expected = consistencyProofLength(size1, size2);
  if (proof.length !== expected) {
    throw proofError(`consistency proof has ${proof.length} hashes, expected ${expected}`, at);
  }
  // Step 2: when size1 is a power of two, its root is itself a node of the bigger tree.
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : proof;
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    if (sn === 0) throw proofError('consistency proof is too long', at);
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw proofError('consistency proof is too short', at);
  if (!bytesEqual(fr, root1)) throw proofError('consistency proof does not lead to root1', at);
  if (!bytesEqual(sr, root2)) throw proofError('consistency proof does not lead to root2', at);
}

/** {@link verifyInclusion} as a boolean; rethrows anything that is not a proof failure. */
export function isValidInclusion(leafHash: Uint8Array, index: number, size: number, proof: readonly Uint8Array[], root: Uint8Array): boolean {
  return asBoolean(() => verifyInclusion(leafHash, index, size, proof, root));
}

/** {@link verifyConsistency} as a boolean; rethrows anything that is not a proof failure. */
export function isValidConsistency(size1: number, size2: number, proof: readonly Uint8Array[], root1: Uint8Array, root2: Uint8Array): boolean {
  return asBoolean(() => verifyConsistency(size1, size2, proof, root1, root2));
}

/** The number of hashes in the inclusion proof of leaf `index` in a tree of `size` leaves. */
export function inclusionProofLength(index: number, size: number): number {
  // Walks the verification loop of RFC 9162 §2.1.3.2 without hashing: one proof hash per step.
  let fn = index;
  let sn = size - 1;
  let n = 0;
  while (sn !== 0) {
    if (fn % 2 === 0 && fn === sn) {
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
    n++;
  }
  return n;
}

/** The number of hashes in the consistency proof from `size1` to `size2` leaves (0 < size1 < size2). */
export function consistencyProofLength(size1: number, size2: number): number {
  // Walks the verification loop of RFC 9162 §2.1.4.2 without hashing.
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let n = 1;
  while (sn !== 0) {
    if (fn % 2 === 0 && fn === sn) {
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
    n++;
  }
  // A power-of-two size1 contributes its root, which the verifier already has.
  return isPowerOfTwo(size1) ? n - 1 : n;
}

type RangeHash = (lo: number, hi: number) => Uint8Array;

// RFC 9162 §2.1.3.1 PATH, unrolled: the recursion appends each sibling after the inner path, so
// siblings are collected top-down and reversed.
function buildInclusionProof(index: number, size: number, range: RangeHash): Uint8Array[] {
  const proof: Uint8Array[] = [];
  let lo = 0;
  let hi = size;
  let m = index;
  while (hi - lo > 1) {
    const k = largestPowerOfTwoBelow(hi - lo);
    if (m < k) {
      proof.push(range(lo + k, hi));
      hi = lo + k;
    } else {
      proof.push(range(lo, lo + k));
      lo += k;
      m -= k;
    }
  }
  return proof.reverse();
}

// RFC 9162 §2.1.4.1 SUBPROOF(m, D[lo:hi], b), unrolled the same way.
function buildConsistencyProof(size1: number, size2: number, range: RangeHash): Uint8Array[] {
  if (size1 === 0 || size1 === size2) return [];
  const proof: Uint8Array[] = [];
  let lo = 0;
  let hi = size2;
  let m = size1;
  let complete = true; // the RFC's b: the subtree is still a complete prefix of the old tree
  for (;;) {
    const n = hi - lo;
    if (m === n) {
      if (!complete) proof.push(range(lo, hi));
      break;
    }
    const k = largestPowerOfTwoBelow(n);
    if (m <= k) {
      proof.push(range(lo + k, hi));
      hi = lo + k;
    } else {
      proof.push(range(lo, lo + k));
      lo += k;
      m -= k;
      complete = false;
    }
  }
  return proof.reverse();
}

// MTH(D[lo:hi]) by the definition's recursion (returns a stored array element when hi − lo = 1).
function subtreeFromArray(hashes: readonly Uint8Array[], lo: number, hi: number): Uint8Array {
  if (hi - lo === 1) return hashes[lo]!;
  const k = largestPowerOfTwoBelow(hi - lo);
  return nodeHash(subtreeFromArray(hashes, lo, lo + k), subtreeFromArray(hashes, lo + k, hi));
}

/** The largest power of two strictly below n, for n ≥ 2 (RFC 9162's k). */
function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isPowerOfTwo(n: number): boolean {
  let k = 1;
  while (k < n) k *= 2;
  return k === n;
}

function isSize(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function isHash(h: unknown): h is Uint8Array {
  return h instanceof Uint8Array && h.length === HASH_SIZE;
}

function checkProofElements(proof: unknown): asserts proof is readonly Uint8Array[] {
  if (!Array.isArray(proof)) throw proofError('proof must be an array of hashes');
  if (proof.length > MAX_PROOF_LENGTH) throw proofError(`proof has more than ${MAX_PROOF_LENGTH} hashes`);
  proof.forEach((p: unknown, i) => {
    if (!isHash(p)) throw proofError(`proof element ${i} is not a 32-byte hash`);
  });
}

function checkRange(n: number, max: number, what: string): void {
  if (!isSize(n) || n > max) {
    throw new HotlineError('HL_ERR_AUDIT_RANGE', `${what} ${String(n)} is outside 0..${max}`);
  }
}

// Stored leaf hashes come from our own store, but a corrupt row must fail as a HotlineError naming
// the index, not as a TypeError deep inside hashing.
function assertStoredHash(h: unknown, index: number): asserts h is Uint8Array {
  if (!isHash(h)) {
    throw new HotlineError('HL_ERR_AUDIT_LEAF_MISMATCH', `leaf hash ${index} is not 32 bytes`, { detail: { index } });
  }
}

function proofError(message: string, detail?: Record<string, unknown>): HotlineError {
  return new HotlineError('HL_ERR_AUDIT_PROOF_INVALID', message, detail ? { detail } : undefined);
}

function asBoolean(check: () => void): boolean {
  try {
    check();
    return true;
  } catch (err) {
    if (err instanceof HotlineError && err.code === 'HL_ERR_AUDIT_PROOF_INVALID') return false;
    throw err;
  }
}

// A growable array of 32-byte hashes in one buffer: 100,000 separate Uint8Arrays would cost more
// in object headers than in hash bytes.
class HashList {
  #buf = new Uint8Array(HASH_SIZE * 64);
  #length = 0;

  push(hash: Uint8Array): void {
    if ((this.#length + 1) * HASH_SIZE > this.#buf.length) {
      const bigger = new Uint8Array(this.#buf.length * 2);
      bigger.set(this.#buf);
      this.#buf = bigger;
    }
    this.#buf.set(hash, this.#length * HASH_SIZE);
    this.#length++;
  }

  /** A view into the buffer: callers that hand it out must copy it. */
  get(i: number): Uint8Array {
    return this.#buf.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE);
  }
}
