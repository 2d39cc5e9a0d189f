import { describe, it, expect } from 'vitest';
import noteVectors from '../../vectors/signed-note.json' with { type: 'json' };
import merkleVectors from '../../vectors/rfc9162.json' with { type: 'json' };
import {
  addSignature,
  cosignCheckpoint,
  formatCheckpointBody,
  formatNote,
  formatVerifierKey,
  noteKeyId,
  parseCheckpoint,
  parseCheckpointBody,
  parseNote,
  parseVerifierKey,
  signNote,
  verifyCheckpoint,
  verifyNote,
  type NoteVerifier,
} from '../../../shared/audit/index.js';
import { HotlineError, type HotlineErrorCode } from '../../../shared/errors.js';
import { signingPublicKeyFromSeed } from '../../../shared/crypto/ed25519.js';
import { fromBase64, fromHex, toBase64, toHex, utf8 } from '../../../shared/encoding/base64.js';

async function codeOf(fn: () => unknown): Promise<HotlineErrorCode | 'no error' | 'not a HotlineError'> {
  try {
    await fn();
    return 'no error';
  } catch (err) {
    return err instanceof HotlineError ? err.code : 'not a HotlineError';
  }
}

// Fixed seeds so that every run (and the worked example in PROTOCOL.md) produces the same bytes.
const seed = (byte: number): Uint8Array => new Uint8Array(32).fill(byte);
const LOG = { name: 'hotline.example/audit', secretKey: seed(1) };
const PARTY_A = { name: 'mfa-a', secretKey: seed(2) };
const PARTY_B = { name: 'mfa-b', secretKey: seed(3) };
const logVerifier: NoteVerifier = { name: LOG.name, publicKey: signingPublicKeyFromSeed(LOG.secretKey) };
const cosignerA: NoteVerifier = { name: PARTY_A.name, publicKey: signingPublicKeyFromSeed(PARTY_A.secretKey), type: 'cosignature/v1' };
const cosignerB: NoteVerifier = { name: PARTY_B.name, publicKey: signingPublicKeyFromSeed(PARTY_B.secretKey), type: 'cosignature/v1' };

const ROOT8 = fromHex(merkleVectors.roots[7]!);
const BODY = formatCheckpointBody({ origin: LOG.name, size: 8, rootHash: ROOT8 });
const COSIGN_TIME = 1_767_225_600; // 2026-01-01T00:00:00Z, POSIX seconds

// Replace the n-th line (0-based) of a note.
function replaceLine(note: string, n: number, line: string): string {
  const lines = note.split('\n');
  lines[n] = line;
  return lines.join('\n');
}

describe('formatCheckpointBody / parseCheckpointBody', () => {
  it('formats origin, size and base64 root, one per line', () => {
    expect(BODY).toBe(`hotline.example/audit\n8\n${toBase64(ROOT8)}\n`);
    expect(BODY).toBe('hotline.example/audit\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n');
    const cp = parseCheckpointBody(BODY);
    expect(cp.origin).toBe(LOG.name);
    expect(cp.size).toBe(8);
    expect(toHex(cp.rootHash)).toBe(merkleVectors.roots[7]);
    expect(cp.extensions).toBeUndefined();
  });

  it('round-trips extension lines and the empty tree', () => {
    const withExt = formatCheckpointBody({ origin: 'o', size: 0, rootHash: fromHex(merkleVectors.emptyRoot), extensions: ['ext one', 'two'] });
    expect(withExt).toBe('o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\ntwo\n');
    expect(parseCheckpointBody(withExt).extensions).toEqual(['ext one', 'two']);
  });

  it('refuses malformed bodies with HL_ERR_AUDIT_CHECKPOINT_MALFORMED', async () => {
    const root = toBase64(ROOT8);
    const bad = [
      `o\n8\n${root}`, // no final newline
      `o\n8\n`, // missing root
      `\n8\n${root}\n`, // empty origin
      `o\n08\n${root}\n`, // leading zero
      `o\n-1\n${root}\n`,
      `o\n8.0\n${root}\n`,
      `o\n 8\n${root}\n`,
      `o\n99999999999999999999\n${root}\n`, // beyond 2^53
      `o\n8\n${root.slice(0, -1)}\n`, // bad base64
      `o\n8\n${toBase64(ROOT8.subarray(1))}\n`, // 31 bytes
      `o\n8\n${root}\n\n`, // empty extension line
      `o\n8\n${root}\r\n`, // control character
      `o\t\n8\n${root}\n`,
    ];
    for (const body of bad) expect(await codeOf(() => parseCheckpointBody(body)), JSON.stringify(body)).toBe('HL_ERR_AUDIT_CHECKPOINT_MALFORMED');
    expect(await codeOf(() => formatCheckpointBody({ origin: 'a\nb', size: 1, rootHash: ROOT8 }))).toBe('HL_ERR_AUDIT_CHECKPOINT_MALFORMED');
    expect(await codeOf(() => formatCheckpointBody({ origin: 'o', size: -1, rootHash: ROOT8 }))).toBe('HL_ERR_AUDIT_CHECKPOINT_MALFORMED');
    expect(await codeOf(() => formatCheckpointBody({ origin: 'o', size: 1, rootHash: ROOT8.subarray(2) }))).toBe('HL_ERR_AUDIT_CHECKPOINT_MALFORMED');
  });
});

describe('Go sumdb/note interoperability (golang.org/x/mod/sumdb/note vectors)', () => {
  const { text, peter, enoch } = noteVectors;
  // The Go signer key is base64(0x01 ‖ seed) after the fourth '+'.
  const peterSeed = fromBase64(peter.skey.split('+').slice(4).join('+')).slice(1);
  const enochSeed = fromHex(enoch.seedHex);

  it('computes the published key IDs and verifier keys', () => {
    const peterKey = parseVerifierKey(peter.vkey);
    expect(peterKey.name).toBe('PeterNeumann');
    expect(toHex(peterKey.publicKey)).toBe(toHex(signingPublicKeyFromSeed(peterSeed)));
    expect(noteKeyId(peter.name, peterKey.publicKey).toString(16)).toBe(peter.keyId);
    expect(formatVerifierKey({ name: peter.name, publicKey: signingPublicKeyFromSeed(peterSeed) })).toBe(peter.vkey);
    expect(formatVerifierKey({ name: enoch.name, publicKey: signingPublicKeyFromSeed(enochSeed) })).toBe(enoch.vkey);
  });

  it('signs byte for byte as Go does, and adds a second signature as Go does', async () => {
    const signed = await signNote(text, { name: peter.name, secretKey: peterSeed });
    expect(signed).toBe(`${text}\n${peter.line}`);
    const doubly = await addSignature(signed, { name: enoch.name, secretKey: enochSeed });
    expect(doubly).toBe(`${text}\n${peter.line}${enoch.line}`);
  });

  it("verifies Go's note, ignoring the signer it does not know", async () => {
    const note = `${text}\n${peter.line}${enoch.line}`;
    const onlyPeter = await verifyNote(note, [parseVerifierKey(peter.vkey)]);
    expect(onlyPeter.text).toBe(text);
    expect(onlyPeter.verified).toEqual([{ name: 'PeterNeumann', keyId: 0xc74f20a3, type: 'ed25519' }]);
    expect(onlyPeter.unverified.map((s) => [s.name, s.keyId])).toEqual([['EnochRoot', 0xaf0cfe78]]);
    const both = await verifyNote(note, [parseVerifierKey(peter.vkey), parseVerifierKey(enoch.vkey)]);
    expect(both.verified.map((s) => s.name)).toEqual(['PeterNeumann', 'EnochRoot']);
    expect(await codeOf(() => verifyNote(note.replace('cryptography', 'cryptographY'), [parseVerifierKey(peter.vkey)]))).toBe(
      'HL_ERR_AUDIT_CHECKPOINT_SIGNATURE',
    );
  });

  it('refuses a vkey whose key ID does not match', async () => {
    expect(await codeOf(() => parseVerifierKey(peter.vkey.replace('c74f20a3', 'c74f20a4')))).toBe('HL_ERR_KEY_INVALID');
    expect(await codeOf(() => parseVerifierKey('PeterNeumann+c74f20a3'))).toBe('HL_ERR_KEY_INVALID');
    expect(await codeOf(() => parseVerifierKey('PeterNeumann+c74f20a3+AwEB'))).toBe('HL_ERR_KEY_INVALID');
  });
});

describe('signNote / verifyCheckpoint', () => {
  it('round-trips a signed checkpoint', async () => {
    const note = await signNote(BODY, LOG);
    expect(note.startsWith(`${BODY}\n\u2014 ${LOG.name} `)).toBe(true);
    expect(note.endsWith('\n')).toBe(true);
    const { checkpoint, verified, unverified } = await verifyCheckpoint(note, [logVerifier]);
    expect(checkpoint).toEqual({ origin: LOG.name, size: 8, rootHash: ROOT8 });
    expect(verified).toEqual([{ name: LOG.name, keyId: noteKeyId(LOG.name, logVerifier.publicKey), type: 'ed25519' }]);
    expect(unverified).toEqual([]);
    expect(parseCheckpoint(note)).toEqual(checkpoint);
    expect(formatNote(parseNote(note))).toBe(note);
    // Bytes are accepted as well as strings.
    expect((await verifyCheckpoint(utf8(note), [logVerifier])).checkpoint.size).toBe(8);
  });

  it('refuses a tampered origin, size or root', async () => {
    const note = await signNote(BODY, LOG);
    const tampered = [
      replaceLine(note, 0, 'hotline.example/audit2'),
      replaceLine(note, 1, '9'),
      replaceLine(note, 1, '7'),
      replaceLine(note, 2, toBase64(fromHex(merkleVectors.roots[6]!))),
      note.replace(BODY, BODY + 'extension\n'),
    ];
    for (const t of tampered) expect(await codeOf(() => verifyCheckpoint(t, [logVerifier]))).toBe('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE');
  });

  it('refuses a note that no known key signed', async () => {
    const note = await signNote(BODY, LOG);
    expect(await codeOf(() => verifyNote(note, []))).toBe('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE');
    expect(await codeOf(() => verifyNote(note, [cosignerA]))).toBe('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE');
  });

  it('ignores a signature that shares only the name, or only the key ID, with a known key', async () => {
    const note = await signNote(BODY, LOG);
    // Same name, different key: the key ID differs, so the signature is not this verifier's.
    const impostor = await signNote(BODY, { name: LOG.name, secretKey: seed(9) });
    const mixed = note + impostor.slice(impostor.lastIndexOf('\u2014'));
    const result = await verifyNote(mixed, [logVerifier]);
    expect(result.verified).toHaveLength(1);
    expect(result.unverified).toHaveLength(1);
    // Same key ID under another name: also unknown.
    const parsed = parseNote(note);
    const renamed = formatNote({ text: parsed.text, signatures: [...parsed.signatures, { ...parsed.signatures[0]!, name: 'other.example' }] });
    expect((await verifyNote(renamed, [logVerifier])).unverified.map((s) => s.name)).toEqual(['other.example']);
  });

  it('refuses a known key whose signature is bad, even next to a good one', async () => {
    const note = await signNote(BODY, LOG);
    const parsed = parseNote(note);
    const sig = parsed.signatures[0]!;
    const broken = sig.signature.slice();
    broken[10] = broken[10]! ^ 1;
    const withBad = formatNote({ text: parsed.text, signatures: [sig, { ...sig, signature: broken }] });
    expect(await codeOf(() => verifyNote(withBad, [logVerifier]))).toBe('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE');
    const short = formatNote({ text: parsed.text, signatures: [{ ...sig, signature: sig.signature.subarray(0, 63) }] });
    expect(await codeOf(() => verifyNote(short, [logVerifier]))).toBe('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE');
  });

  it('lists a key that signed twice only once', async () => {
    const note = await signNote(BODY, LOG);
    const twice = note + note.slice(note.lastIndexOf('\u2014'));
    expect((await verifyNote(twice, [logVerifier])).verified).toHaveLength(1);
  });

  it('refuses misconfigured verifiers with HL_ERR_KEY_INVALID', async () => {
    const note = await signNote(BODY, LOG);
    expect(await codeOf(() => verifyNote(note, [logVerifier, logVerifier]))).toBe('HL_ERR_KEY_INVALID');
    expect(await codeOf(() => verifyNote(note, [{ name: 'a b', publicKey: logVerifier.publicKey }]))).toBe('HL_ERR_KEY_INVALID');
    expect(await codeOf(() => verifyNote(note, [{ name: 'a', publicKey: new Uint8Array(31) }]))).toBe('HL_ERR_KEY_INVALID');
  });
});

describe('cosignCheckpoint', () => {
  it('adds timestamped cosignatures (type 0x04) that verify against the body', async () => {
    let note = await signNote(BODY, LOG);
    note = await cosignCheckpoint(note, PARTY_A, COSIGN_TIME);
    note = await cosignCheckpoint(note, PARTY_B, COSIGN_TIME + 60);
    const lines = note.split('\n');
    expect(lines.slice(0, 4)).toEqual([...BODY.split('\n').slice(0, 3), '']);
    expect(lines[5]!.startsWith('\u2014 mfa-a ')).toBe(true);
    // 4-byte key ID ‖ 8-byte timestamp ‖ 64-byte signature.
    const raw = fromBase64(lines[5]!.split(' ')[2]!);
    expect(raw.length).toBe(76);
    expect(new DataView(raw.buffer).getUint32(0)).toBe(noteKeyId('mfa-a', cosignerA.publicKey, 'cosignature/v1'));
    expect(Number(new DataView(raw.buffer).getBigUint64(4))).toBe(COSIGN_TIME);

    const result = await verifyCheckpoint(note, [logVerifier, cosignerA, cosignerB]);
    expect(result.verified).toEqual([
      { name: LOG.name, keyId: noteKeyId(LOG.name, logVerifier.publicKey), type: 'ed25519' },
      { name: 'mfa-a', keyId: noteKeyId('mfa-a', cosignerA.publicKey, 'cosignature/v1'), type: 'cosignature/v1', timestamp: COSIGN_TIME },
      { name: 'mfa-b', keyId: noteKeyId('mfa-b', cosignerB.publicKey, 'cosignature/v1'), type: 'cosignature/v1', timestamp: COSIGN_TIME + 60 },
    ]);
  });

  it('is a different key ID from a plain Ed25519 signature by the same key, so the two never mix', async () => {
    expect(noteKeyId('mfa-a', cosignerA.publicKey, 'cosignature/v1')).not.toBe(noteKeyId('mfa-a', cosignerA.publicKey, 'ed25519'));
    const note = await cosignCheckpoint(await signNote(BODY, LOG), PARTY_A, COSIGN_TIME);
    const plainA: NoteVerifier = { name: 'mfa-a', publicKey: cosignerA.publicKey };
    const r = await verifyNote(note, [logVerifier, plainA]);
    expect(r.verified.map((s) => s.name)).toEqual([LOG.name]);
    expect(r.unverified.map((s) => s.name)).toEqual(['mfa-a']);
  });

  it('ignores an unknown cosigner', async () => {
    const note = await cosignCheckpoint(await signNote(BODY, LOG), { name: 'stranger.example', secretKey: seed(7) }, COSIGN_TIME);
    const r = await verifyCheckpoint(note, [logVerifier, cosignerA]);
    expect(r.verified.map((s) => s.name)).toEqual([LOG.name]);
    expect(r.unverified.map((s) => s.name)).toEqual(['stranger.example']);
  });

  it('refuses a known cosigner whose signature or timestamp was altered', async () => {
    const note = await cosignCheckpoint(await signNote(BODY, LOG), PARTY_A, COSIGN_TIME);
    const parsed = parseNote(note);
    const [logSig, coSig] = parsed.signatures as [typeof parsed.signatures[0], typeof parsed.signatures[0]];
    const alter = (at: number): string => {
      const s = coSig.signature.slice();
      s[at] = s[at]! ^ 1;
      return formatNote({ text: parsed.text, signatures: [logSig, { ...coSig, signature: s }] });
    };
    expect(await codeOf(() => verifyNote(alter(7), [logVerifier, cosignerA]))).toBe('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE'); // timestamp
    expect(await codeOf(() => verifyNote(alter(40), [logVerifier, cosignerA]))).toBe('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE'); // signature
    // A cosignature carried over to another checkpoint does not verify.
    const otherBody = formatCheckpointBody({ origin: LOG.name, size: 7, rootHash: fromHex(merkleVectors.roots[6]!) });
    const moved = formatNote({ text: otherBody, signatures: [await signNote(otherBody, LOG).then((n) => parseNote(n).signatures[0]!), coSig] });
    expect(await codeOf(() => verifyNote(moved, [logVerifier, cosignerA]))).toBe('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE');
    // The log alone still verifies a note whose cosigner it does not know.
    expect((await verifyNote(alter(40), [logVerifier])).verified).toHaveLength(1);
  });

  it('refuses to cosign something that is not a checkpoint, or with a bad time', async () => {
    const plain = await signNote('just text\n', LOG);
    expect(await codeOf(() => cosignCheckpoint(plain, PARTY_A, COSIGN_TIME))).toBe('HL_ERR_AUDIT_CHECKPOINT_MALFORMED');
    const note = await signNote(BODY, LOG);
    expect(await codeOf(() => cosignCheckpoint(note, PARTY_A, 1.5))).toBe('HL_ERR_USAGE');
    expect(await codeOf(() => cosignCheckpoint(note, PARTY_A, -1))).toBe('HL_ERR_USAGE');
  });
});

describe('worked example of shared/PROTOCOL.md', () => {
  // Ed25519 is deterministic, so these exact bytes are what the protocol document shows.
  const EXAMPLE =
    'hotline.example/audit\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n' +
    '\u2014 hotline.example/audit AvjqAdw3p3OomiV6qYd4fBTf/Sui8s4ICoJprRvuQLQAKhCddll3Ekt5mum2ib4vP6gU6wh/hiKv0FeLJhmRM23YCwE=\n' +
    '\u2014 mfa-a FggMAAAAAABpVbkAHiCGxUAwUBHK07K9fBGeJlNi5a43XO8fUxP05IUquy3hnpMZab//4dMTTZC4oE+CWiD2D/0/YhbzYRRKih31Aw==\n';

  it('reproduces the example keys, key IDs and note byte for byte', async () => {
    expect(toHex(logVerifier.publicKey)).toBe('8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c');
    expect(toHex(cosignerA.publicKey)).toBe('8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394');
    expect(formatVerifierKey(logVerifier)).toBe('hotline.example/audit+02f8ea01+AYqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c');
    expect(formatVerifierKey(cosignerA)).toBe('mfa-a+16080c00+BIE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU');
    const note = await cosignCheckpoint(await signNote(BODY, LOG), PARTY_A, COSIGN_TIME);
    expect(note).toBe(EXAMPLE);
    const r = await verifyCheckpoint(EXAMPLE, [parseVerifierKey(formatVerifierKey(logVerifier)), parseVerifierKey(formatVerifierKey(cosignerA))]);
    expect(r.verified.map((v) => [v.name, v.keyId.toString(16).padStart(8, '0'), v.timestamp])).toEqual([
      ['hotline.example/audit', '02f8ea01', undefined],
      ['mfa-a', '16080c00', 1_767_225_600],
    ]);
  });
});

describe('parseNote', () => {
  it('separates text from signatures at the last blank line', () => {
    const sig = noteVectors.peter.line;
    const n = parseNote(`para one\n\npara two\n\n${sig}`);
    expect(n.text).toBe('para one\n\npara two\n');
    expect(n.signatures).toHaveLength(1);
    expect(n.signatures[0]!.name).toBe('PeterNeumann');
    expect(n.signatures[0]!.keyId).toBe(0xc74f20a3);
    expect(n.signatures[0]!.signature.length).toBe(64);
  });

  it('refuses malformed notes with HL_ERR_AUDIT_CHECKPOINT_MALFORMED', async () => {
    const note = await signNote(BODY, LOG);
    const sigLine = note.slice(note.lastIndexOf('\u2014'));
    const b64 = sigLine.split(' ')[2]!.trimEnd();
    const bad: Array<string | Uint8Array> = [
      note.replace(`\n\n\u2014`, `\n\u2014`), // missing blank line
      note.slice(0, -1), // no trailing newline
      note.replace(b64, b64.slice(0, -2)), // bad base64 length
      note.replace(b64, b64.replace(/.$/, '!')), // character outside the alphabet
      note.replace(b64, b64.replace(/=$/, '')), // missing padding
      note.replace(b64, 'AAAA'), // shorter than key ID + 1 byte
      note.replace('\u2014 ', '- '), // hyphen, not em dash
      note.replace('\u2014 ', '\u2014'), // no space after dash
      note.replace(`\u2014 ${LOG.name} `, `\u2014 ${LOG.name}`), // no space before signature
      note.replace(`\u2014 ${LOG.name} `, '\u2014  '), // empty name
      note.replace(`\u2014 ${LOG.name} `, '\u2014 a+b '), // '+' in name
      note.replace(`\u2014 ${LOG.name} `, '\u2014 a\u00a0b '), // Unicode space in name
      note + '\n', // blank line after the signatures
      note.replace('hotline', 'hot\u0007line'), // control character
      note.replace('hotline', 'hot\rline'),
      note.replace('hotline', 'hot\ud800line'), // lone surrogate
      new Uint8Array([...utf8(note).subarray(0, 3), 0xff, ...utf8(note).subarray(3)]), // invalid UTF-8
      `${BODY}\n`, // no signature lines
      BODY + '\n' + (sigLine).repeat(101), // too many signatures
    ];
    for (const b of bad) {
      expect(await codeOf(() => parseNote(b)), JSON.stringify(typeof b === 'string' ? b.slice(-60) : 'bytes')).toBe('HL_ERR_AUDIT_CHECKPOINT_MALFORMED');
      expect(await codeOf(() => verifyNote(b, [logVerifier]))).toBe('HL_ERR_AUDIT_CHECKPOINT_MALFORMED');
    }
    expect(await codeOf(() => parseNote(42 as unknown as string))).toBe('HL_ERR_AUDIT_CHECKPOINT_MALFORMED');
  });

  it('accepts up to 100 signatures', async () => {
    const note = await signNote(BODY, LOG);
    const sigLine = note.slice(note.lastIndexOf('\u2014'));
    expect(parseNote(BODY + '\n' + sigLine.repeat(100)).signatures).toHaveLength(100);
  });

  it('refuses to sign text that does not end in a newline', async () => {
    expect(await codeOf(() => signNote('no newline', LOG))).toBe('HL_ERR_AUDIT_CHECKPOINT_MALFORMED');
  });
});
