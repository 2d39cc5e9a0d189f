import { HotlineError } from '../errors.js';
import { sha256 } from '../crypto/hash.js';
import { ed25519Sign, ed25519Verify, signingPublicKeyFromSeed } from '../crypto/ed25519.js';
import { concatBytes, fromBase64, fromUtf8, toBase64, utf8 } from '../encoding/base64.js';
import { HASH_SIZE } from './merkle.js';

/**
 * Checkpoints of the audit log in the C2SP formats, so that off-the-shelf transparency tooling
 * (Go's sumdb/note, transparency-dev, witnesses) can read them:
 *
 * - a **signed note** (c2sp.org/signed-note): text, a blank line, then one line per signature,
 *   `— <key name> <base64(4-byte key ID ‖ signature)>`;
 * - a **checkpoint** (c2sp.org/tlog-checkpoint) is a note whose text is `origin\nsize\nbase64(root)\n`
 *   plus optional extension lines;
 * - the log signs with an Ed25519 note signature (type 0x01) over the text;
 * - each party **cosigns** with a timestamped Ed25519 cosignature (c2sp.org/tlog-cosignature,
 *   type 0x04), which signs `cosignature/v1\ntime <seconds>\n` ‖ text. We use 0x04 rather than a
 *   second plain 0x01 signature because it is what witnesses produce, it records *when* the party
 *   vouched for the tree head, and its domain-separation header means a party's cosignature can
 *   never be replayed as a log signature over the same bytes.
 *
 * Signing and verifying are async because Ed25519 is (WebCrypto). Parsing is synchronous.
 *
 * @example
 * const body = formatCheckpointBody({ origin: 'hotline.example/log', size: log.size, rootHash: log.root() });
 * let note = await signNote(body, { name: 'hotline.example/log', secretKey: logSeed });
 * note = await cosignCheckpoint(note, { name: 'mfa-a', secretKey: partySeed }, nowSeconds);
 * const { checkpoint, verified } = await verifyCheckpoint(note, [logVerifier, partyVerifier]);
 */

/** Signature algorithms Hotline speaks, with their signed-note type bytes. */
export const NOTE_SIGNATURE_TYPES = {
  /** Plain Ed25519 over the note text (signed-note §Ed25519 signatures). */
  ed25519: 0x01,
  /** Timestamped Ed25519 cosignature over `cosignature/v1\ntime T\n` ‖ text (tlog-cosignature). */
  'cosignature/v1': 0x04,
} as const;

/** A signature algorithm by name. */
export type NoteSignatureType = keyof typeof NOTE_SIGNATURE_TYPES;

/** The tree head a checkpoint commits to. */
export interface Checkpoint {
  /** Unique identifier of the log, e.g. `hotline.example/audit`. */
  origin: string;
  /** Number of leaves. */
  size: number;
  /** RFC 9162 root hash (32 bytes). */
  rootHash: Uint8Array;
  /** Optional extension lines (non-empty, without newlines). Not recommended by the spec. */
  extensions?: readonly string[];
}

/** A key that signs notes: a key name and a 32-byte Ed25519 seed. */
export interface NoteSigner {
  name: string;
  secretKey: Uint8Array;
}

/** A trusted key: the note signatures it checks are those whose name *and* key ID match it. */
export interface NoteVerifier {
  name: string;
  /** 32-byte Ed25519 public key. */
  publicKey: Uint8Array;
  /** Defaults to `'ed25519'` (type 0x01). */
  type?: NoteSignatureType;
}

/** One parsed signature line. */
export interface NoteSignature {
  name: string;
  /** The 4-byte key ID as an unsigned 32-bit integer. */
  keyId: number;
  /** The signature bytes after the key ID. */
  signature: Uint8Array;
}

/** A parsed, unverified note. */
export interface Note {
  /** The signed text, ending in a newline, without the blank separator line. */
  text: string;
  signatures: NoteSignature[];
}

/** A signature that verified against a known key. */
export interface VerifiedSignature {
  name: string;
  keyId: number;
  type: NoteSignatureType;
  /** For cosignatures: the POSIX time (seconds) the cosigner signed at. */
  timestamp?: number;
}

/** The result of {@link verifyNote}. */
export interface VerifiedNote {
  text: string;
  /** One entry per known key that signed (duplicate lines of one key are listed once). */
  verified: VerifiedSignature[];
  /** Signatures by keys the caller does not know, ignored as the signed-note spec requires. */
  unverified: NoteSignature[];
}

/** The result of {@link verifyCheckpoint}. */
export interface VerifiedCheckpoint extends VerifiedNote {
  checkpoint: Checkpoint;
}

// Go's sumdb/note refuses more than 100; the spec requires accepting at least 16.
const MAX_SIGNATURES = 100;
const SIG_PREFIX = '\u2014 ';
const COSIGNATURE_HEADER = 'cosignature/v1\n';
const MAX_TIMESTAMP = Number.MAX_SAFE_INTEGER;

/**
 * The note text of a checkpoint: `origin\nsize\nbase64(root)\n` then any extension lines.
 *
 * @example
 * formatCheckpointBody({ origin: 'example.com/log', size: 8, rootHash }) // 'example.com/log\n8\nXcnaeacG…=\n'
 */
export function formatCheckpointBody(checkpoint: Checkpoint): string {
  const { origin, size, rootHash, extensions = [] } = checkpoint;
  if (!isLine(origin)) throw malformed('origin must be a non-empty line');
  if (!Number.isSafeInteger(size) || size < 0) throw malformed('size must be a non-negative safe integer');
  if (!(rootHash instanceof Uint8Array) || rootHash.length !== HASH_SIZE) throw malformed('root hash must be 32 bytes');
  for (const ext of extensions) if (!isLine(ext)) throw malformed('extension lines must be non-empty lines');
  const body = [origin, String(size), toBase64(rootHash), ...extensions].join('\n') + '\n';
  checkText(body);
  return body;
}

/**
 * Parse a checkpoint body strictly (attacker-controlled): at least three non-empty lines, a
 * decimal size without leading zeros, a canonical base64 32-byte root, non-empty extension lines.
 * Throws `HL_ERR_AUDIT_CHECKPOINT_MALFORMED`.
 */
export function parseCheckpointBody(text: string): Checkpoint {
  if (typeof text !== 'string') throw malformed('checkpoint body must be a string');
  checkText(text);
  if (!text.endsWith('\n')) throw malformed('checkpoint body must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) throw malformed('checkpoint body needs origin, size and root hash lines');
  if (lines.some((l) => l === '')) throw malformed('checkpoint lines must be non-empty');
  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]];
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText)) throw malformed('tree size must be decimal without leading zeros');
  const size = Number(sizeText);
  if (!Number.isSafeInteger(size)) throw malformed('tree size is too large');
  let rootHash: Uint8Array;
  try {
    rootHash = fromBase64(rootText, HASH_SIZE);
  } catch (cause) {
    throw malformed('root hash must be the base64 of 32 bytes', cause);
  }
  return extensions.length > 0 ? { origin, size, rootHash, extensions } : { origin, size, rootHash };
}

/**
 * The signed-note key ID: the first 4 bytes (big-endian) of
 * `SHA-256(name ‖ 0x0A ‖ type byte ‖ 32-byte public key)`.
 *
 * @example
 * noteKeyId('PeterNeumann', publicKey) // 0xc74f20a3
 */
export function noteKeyId(name: string, publicKey: Uint8Array, type: NoteSignatureType = 'ed25519'): number {
  checkKey(name, publicKey);
  const h = sha256(utf8(name), new Uint8Array([0x0a, NOTE_SIGNATURE_TYPES[type]]), publicKey);
  return readUint32(h, 0);
}

/**
 * Parse a signed note strictly (attacker-controlled), without verifying anything. Throws
 * `HL_ERR_AUDIT_CHECKPOINT_MALFORMED` for: invalid UTF-8 or lone surrogates, control characters
 * other than newline, no blank line before the signatures, no final newline, a line not starting
 * with `— `, an invalid key name, bad or short base64, or more than 100 signatures.
 */
export function parseNote(note: string | Uint8Array): Note {
  let text: string;
  if (note instanceof Uint8Array) {
    try {
      text = fromUtf8(note);
    } catch (cause) {
      throw malformed('note is not valid UTF-8', cause);
    }
  } else if (typeof note === 'string') {
    text = note;
  } else {
    throw malformed('note must be a string or bytes');
  }
  checkText(text);
  // The text ends at the *last* blank line; the text itself may contain blank lines.
  const split = text.lastIndexOf('\n\n');
  if (split < 0) throw malformed('note has no blank line before its signatures');
  const body = text.slice(0, split + 1);
  const block = text.slice(split + 2);
  if (block === '' || !block.endsWith('\n')) throw malformed('signature block must be non-empty and end with a newline');
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) throw malformed(`note has more than ${MAX_SIGNATURES} signatures`);
  const signatures = lines.map((line): NoteSignature => {
    if (!line.startsWith(SIG_PREFIX)) throw malformed('signature line must start with an em dash and a space');
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.indexOf(' ');
    if (space < 0) throw malformed('signature line needs a key name and a signature');
    const name = rest.slice(0, space);
    const b64 = rest.slice(space + 1);
    if (!isKeyName(name)) throw malformed('invalid key name in signature line');
    let raw: Uint8Array;
    try {
      raw = fromBase64(b64);
    } catch (cause) {
      throw malformed('signature is not valid base64', cause);
    }
    if (raw.length < 5) throw malformed('signature is shorter than a key ID and one byte');
    return { name, keyId: readUint32(raw, 0), signature: raw.slice(4) };
  });
  return { text: body, signatures };
}

/** Serialise a note: text, a blank line, then the signature lines in order. */
export function formatNote(note: Note): string {
  checkNoteText(note.text);
  let out = note.text + '\n';
  for (const sig of note.signatures) out += signatureLine(sig);
  return out;
}

/**
 * Sign `text` as a new note with an Ed25519 note signature (type 0x01).
 *
 * @example
 * await signNote('hello\n', { name: 'example.com/k', secretKey: seed }) // 'hello\n\n— example.com/k …=\n'
 */
export async function signNote(text: string, signer: NoteSigner): Promise<string> {
  checkNoteText(text);
  return formatNote({ text, signatures: [await ed25519NoteSignature(text, signer)] });
}

/**
 * Add an Ed25519 note signature (type 0x01) by another key to an existing note, over the same
 * text. A signature already present from the same key (name and key ID) is replaced. Does not
 * verify the existing signatures: verify before you countersign.
 */
export async function addSignature(noteText: string, signer: NoteSigner): Promise<string> {
  const note = parseNote(noteText);
  const sig = await ed25519NoteSignature(note.text, signer);
  return formatNote(withSignature(note, sig));
}

/**
 * Add a timestamped cosignature (c2sp.org/tlog-cosignature, type 0x04) to a checkpoint note. The
 * cosigner signs `cosignature/v1\ntime <timestampSeconds>\n` ‖ checkpoint body; the signature is
 * `8-byte big-endian timestamp ‖ 64-byte Ed25519 signature`. The time comes in as an argument
 * (POSIX seconds, not milliseconds): shared/ reads no clock.
 *
 * A party must cosign only after verifying the log's signature and a consistency proof from the
 * last checkpoint it cosigned: that is what the cosignature asserts.
 */
export async function cosignCheckpoint(noteText: string, cosigner: NoteSigner, timestampSeconds: number): Promise<string> {
  if (!Number.isSafeInteger(timestampSeconds) || timestampSeconds < 0) {
    throw new HotlineError('HL_ERR_USAGE', 'cosignature timestamp must be non-negative integer seconds');
  }
  const note = parseNote(noteText);
  parseCheckpointBody(note.text);
  const publicKey = signingPublicKeyFromSeed(cosigner.secretKey);
  const keyId = noteKeyId(cosigner.name, publicKey, 'cosignature/v1');
  const sig = await ed25519Sign(cosigner.secretKey, cosignedMessage(note.text, timestampSeconds));
  const stamp = new Uint8Array(8);
  new DataView(stamp.buffer).setBigUint64(0, BigInt(timestampSeconds));
  return formatNote(withSignature(note, { name: cosigner.name, keyId, signature: concatBytes(stamp, sig) }));
}

/**
 * Verify a signed note against known keys (c2sp.org/signed-note §Signatures): a signature counts
 * for a verifier only when both its key name and key ID match; signatures by unknown keys are
 * ignored and returned as `unverified`. Every signature by a known key must verify, else the whole
 * note is refused with `HL_ERR_AUDIT_CHECKPOINT_SIGNATURE` (detail: name, keyId); so is a note that
 * no known key signed. Malformed notes fail with `HL_ERR_AUDIT_CHECKPOINT_MALFORMED`.
 */
export async function verifyNote(noteText: string | Uint8Array, verifiers: readonly NoteVerifier[]): Promise<VerifiedNote> {
  const known = new Map<string, { verifier: NoteVerifier; type: NoteSignatureType }>();
  for (const v of verifiers) {
    const type = v.type ?? 'ed25519';
    if (!Object.hasOwn(NOTE_SIGNATURE_TYPES, type)) throw new HotlineError('HL_ERR_KEY_INVALID', 'unknown verifier type');
    const id = verifierId(v.name, noteKeyId(v.name, v.publicKey, type));
    if (known.has(id)) throw new HotlineError('HL_ERR_KEY_INVALID', `two verifiers share name and key ID: ${v.name}`);
    known.set(id, { verifier: v, type });
  }
  const note = parseNote(noteText);
  const message = utf8(note.text);
  const verified: VerifiedSignature[] = [];
  const unverified: NoteSignature[] = [];
  const seen = new Set<string>();
  for (const sig of note.signatures) {
    const id = verifierId(sig.name, sig.keyId);
    const entry = known.get(id);
    if (!entry) {
      unverified.push(sig);
      continue;
    }
    const ok = await verifyOne(entry.verifier, entry.type, note.text, message, sig);
    if (ok === false) {
      throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE', `signature by known key ${sig.name} does not verify`, {
        detail: { name: sig.name, keyId: keyIdHex(sig.keyId) },
      });
    }
    if (seen.has(id)) continue;
    seen.add(id);
    verified.push(ok.timestamp === undefined ? { name: sig.name, keyId: sig.keyId, type: entry.type } : { name: sig.name, keyId: sig.keyId, type: entry.type, timestamp: ok.timestamp });
  }
  if (verified.length === 0) throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE', 'note has no signature by a known key', { detail: { reason: 'no-known-signature' } });
  return { text: note.text, verified, unverified };
}

/**
 * Parse a checkpoint note's body without verifying any signature (for display and for picking
 * verifiers). Use {@link verifyCheckpoint} before trusting it.
 */
export function parseCheckpoint(noteText: string | Uint8Array): Checkpoint {
  return parseCheckpointBody(parseNote(noteText).text);
}

/**
 * Verify a checkpoint note (see {@link verifyNote}), then decode its body. The caller still checks
 * which keys are in `verified` (the log's key; enough cosigners) and the origin it expects.
 */
export async function verifyCheckpoint(noteText: string | Uint8Array, verifiers: readonly NoteVerifier[]): Promise<VerifiedCheckpoint> {
  const result = await verifyNote(noteText, verifiers);
  return { ...result, checkpoint: parseCheckpointBody(result.text) };
}

/**
 * A verifier key in the Go/C2SP vkey text form `<name>+<8 hex key ID>+base64(type ‖ public key)`.
 *
 * @example
 * formatVerifierKey({ name: 'PeterNeumann', publicKey }) // 'PeterNeumann+c74f20a3+ARpc2QcU…'
 */
export function formatVerifierKey(verifier: NoteVerifier): string {
  const type = verifier.type ?? 'ed25519';
  const id = noteKeyId(verifier.name, verifier.publicKey, type);
  return `${verifier.name}+${keyIdHex(id)}+${toBase64(concatBytes(new Uint8Array([NOTE_SIGNATURE_TYPES[type]]), verifier.publicKey))}`;
}

/**
 * Parse a vkey (attacker-controlled if it came over the wire); checks that the key ID in it is the
 * one computed from name, type and key. Throws `HL_ERR_KEY_INVALID`.
 */
export function parseVerifierKey(vkey: string): NoteVerifier {
  if (typeof vkey !== 'string') throw new HotlineError('HL_ERR_KEY_INVALID', 'verifier key must be a string');
  // The name has no '+', the base64 may: split at the first two only.
  const first = vkey.indexOf('+');
  const second = first < 0 ? -1 : vkey.indexOf('+', first + 1);
  if (second < 0) throw new HotlineError('HL_ERR_KEY_INVALID', 'verifier key must be name+keyid+key');
  const name = vkey.slice(0, first);
  const idText = vkey.slice(first + 1, second);
  let raw: Uint8Array;
  try {
    raw = fromBase64(vkey.slice(second + 1));
  } catch (cause) {
    throw new HotlineError('HL_ERR_KEY_INVALID', 'verifier key is not valid base64', { cause });
  }
  const type = (Object.keys(NOTE_SIGNATURE_TYPES) as NoteSignatureType[]).find((t) => NOTE_SIGNATURE_TYPES[t] === raw[0]);
  if (!type || raw.length !== 33) throw new HotlineError('HL_ERR_KEY_INVALID', 'verifier key is not an Ed25519 (0x01) or cosignature (0x04) key');
  const publicKey = raw.slice(1);
  if (!/^[0-9a-f]{8}$/.test(idText) || noteKeyId(name, publicKey, type) !== parseInt(idText, 16)) {
    throw new HotlineError('HL_ERR_KEY_INVALID', 'verifier key ID does not match its name and key');
  }
  return { name, publicKey, type };
}

async function ed25519NoteSignature(text: string, signer: NoteSigner): Promise<NoteSignature> {
  checkNoteText(text);
  const publicKey = signingPublicKeyFromSeed(signer.secretKey);
  const keyId = noteKeyId(signer.name, publicKey, 'ed25519');
  return { name: signer.name, keyId, signature: await ed25519Sign(signer.secretKey, utf8(text)) };
}

async function verifyOne(
  verifier: NoteVerifier,
  type: NoteSignatureType,
  text: string,
  message: Uint8Array,
  sig: NoteSignature,
): Promise<false | { timestamp?: number }> {
  if (type === 'ed25519') {
    return (await ed25519Verify(verifier.publicKey, message, sig.signature)) ? {} : false;
  }
  if (sig.signature.length !== 8 + 64) return false;
  const timestamp = new DataView(sig.signature.buffer, sig.signature.byteOffset, 8).getBigUint64(0);
  // tlog-cosignature caps timestamps at 2^63 − 1; we refuse anything a JS number cannot hold exactly
  // (beyond the year 285,000,000), rather than verify a time we cannot report faithfully.
  if (timestamp > BigInt(MAX_TIMESTAMP)) return false;
  const ok = await ed25519Verify(verifier.publicKey, cosignedMessage(text, Number(timestamp)), sig.signature.subarray(8));
  return ok ? { timestamp: Number(timestamp) } : false;
}

function cosignedMessage(text: string, timestampSeconds: number): Uint8Array {
  return utf8(`${COSIGNATURE_HEADER}time ${timestampSeconds}\n${text}`);
}

function withSignature(note: Note, sig: NoteSignature): Note {
  const others = note.signatures.filter((s) => !(s.name === sig.name && s.keyId === sig.keyId));
  return { text: note.text, signatures: [...others, sig] };
}

function signatureLine(sig: NoteSignature): string {
  if (!isKeyName(sig.name)) throw malformed('invalid key name');
  const raw = new Uint8Array(4 + sig.signature.length);
  new DataView(raw.buffer).setUint32(0, sig.keyId >>> 0);
  raw.set(sig.signature, 4);
  return `${SIG_PREFIX}${sig.name} ${toBase64(raw)}\n`;
}

function checkNoteText(text: string): void {
  if (typeof text !== 'string' || !text.endsWith('\n')) throw malformed('note text must end with a newline');
  checkText(text);
}

// Signed notes are valid UTF-8 without ASCII control characters other than newline. A JS string
// is UTF-8-encodable unless it holds a lone surrogate.
function checkText(text: string): void {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0009\u000b-\u001f]/.test(text)) throw malformed('note contains a control character');
  if (/\p{Surrogate}/u.test(text)) throw malformed('note is not valid Unicode');
}

// Key names: non-empty, no Unicode space (as Go's unicode.IsSpace, which adds U+0085), no '+'.
function isKeyName(name: string): boolean {
  return name !== '' && !/[\s\u0085+]/u.test(name) && !/\p{Surrogate}/u.test(name);
}

function isLine(s: unknown): s is string {
  return typeof s === 'string' && s !== '' && !s.includes('\n');
}

function checkKey(name: string, publicKey: Uint8Array): void {
  if (typeof name !== 'string' || !isKeyName(name)) throw new HotlineError('HL_ERR_KEY_INVALID', 'invalid key name');
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) {
    throw new HotlineError('HL_ERR_KEY_INVALID', 'Ed25519 public key must be 32 bytes');
  }
}

function readUint32(bytes: Uint8Array, offset: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset + offset, 4).getUint32(0);
}

function verifierId(name: string, keyId: number): string {
  return `${name}\u0000${keyId}`;
}

function keyIdHex(keyId: number): string {
  return keyId.toString(16).padStart(8, '0');
}

function malformed(message: string, cause?: unknown): HotlineError {
  return new HotlineError('HL_ERR_AUDIT_CHECKPOINT_MALFORMED', message, cause === undefined ? undefined : { cause });
}
