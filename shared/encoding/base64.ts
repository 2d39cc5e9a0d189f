import { HotlineError } from '../errors.js';

/**
 * A platform's native base64 (Node's Buffer), plugged in by a Node program at start
 * (server/node-crypto.ts `useNodeCrypto`), as shared/crypto/native.ts does for crypto. It must
 * encode exactly as {@link toBase64} does (standard alphabet, padded); its decoding may be lenient.
 * A 1,332-character ciphertext decodes in ~1.8 µs natively, the strictness checks included,
 * against 7.5–10 µs in the JavaScript below (bench/codec-micro.ts), and each envelope's is decoded
 * by the relay and twice by every recipient (docs/performance.md, nineteenth session).
 */
export interface NativeBase64 {
  encode(bytes: Uint8Array): string;
  /** Decode `text` into `out` (at most its length), leniently; the number of bytes written. */
  decodeInto(text: string, out: Uint8Array): number;
}

let native: NativeBase64 | undefined;

/** Plug in (or, with undefined, take out) the platform's native base64. */
export function useNativeBase64(impl: NativeBase64 | undefined): void {
  native = impl;
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const LOOKUP = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) LOOKUP[ALPHABET.charCodeAt(i)] = i;
const CODES = Uint8Array.from(ALPHABET, (c) => c.charCodeAt(0));

/**
 * Standard base64 (RFC 4648 §4) with padding: the one binary encoding on Hotline's wire, the same
 * as C2SP signed notes use.
 *
 * @example
 * toBase64(new Uint8Array([1, 2, 3])) // 'AQID'
 */
export function toBase64(bytes: Uint8Array): string {
  if (native !== undefined) return native.encode(bytes);
  // Into one byte array, decoded once (not four characters at a time: each `+=` of a short piece
  // made a rope node, tens of kilobytes of them per message for the young-generation GC, issue 9).
  const out = new Uint8Array(Math.ceil(bytes.length / 3) * 4);
  let o = 0;
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out[o++] = CODES[n >> 18]!;
    out[o++] = CODES[(n >> 12) & 63]!;
    out[o++] = CODES[(n >> 6) & 63]!;
    out[o++] = CODES[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest > 0) {
    const n = (bytes[i]! << 16) | (rest === 2 ? bytes[i + 1]! << 8 : 0);
    out[o++] = CODES[n >> 18]!;
    out[o++] = CODES[(n >> 12) & 63]!;
    out[o++] = rest === 2 ? CODES[(n >> 6) & 63]! : 61;
    out[o] = 61;
  }
  return ascii.decode(out);
}

/** Decodes the ASCII the encoders here produce (every byte < 0x80, so any decoding agrees). */
const ascii = new TextDecoder();

/**
 * Strict decoding of attacker-controlled base64: only the standard alphabet, correct padding, and
 * zero unused bits, so that every byte string has exactly one accepted encoding.
 * `expectedLength`, when given, is checked too.
 */
export function fromBase64(text: string, expectedLength?: number): Uint8Array {
  if (typeof text !== 'string' || text.length % 4 !== 0) {
    throw new HotlineError('HL_ERR_INPUT_BASE64', 'base64 length is not a multiple of 4');
  }
  let pad = 0;
  if (text.endsWith('==')) pad = 2;
  else if (text.endsWith('=')) pad = 1;
  const outLen = (text.length / 4) * 3 - pad;
  if (native !== undefined) {
    // The native decoder is lenient: it skips what is not base64 and takes the URL alphabet too.
    // Each skipped character leaves it short of `outLen` bytes; the URL alphabet and non-zero
    // padding bits are checked here. What fails goes the strict way below, which says why
    // (test/shared/encoding/base64.test.ts holds the two ways to the same answers).
    const out = new Uint8Array(outLen);
    const last = pad === 0 ? 0 : LOOKUP[text.charCodeAt(text.length - pad - 1) & 127]!;
    if (
      native.decodeInto(text, out) === outLen &&
      (pad === 0 || (last & (pad === 2 ? 15 : 3)) === 0) &&
      !text.includes('-') &&
      !text.includes('_')
    ) {
      if (expectedLength !== undefined && outLen !== expectedLength) {
        throw new HotlineError('HL_ERR_INPUT_BASE64', `expected ${expectedLength} bytes, got ${outLen}`);
      }
      return out;
    }
  }
  const out = new Uint8Array(outLen);
  let o = 0;
  // Four sextets in locals, not an array per quantum: decoding allocates only its output (issue 9).
  for (let i = 0; i < text.length; i += 4) {
    const last = i + 4 === text.length;
    const keep = last ? 4 - pad : 4;
    let n = 0;
    for (let j = 0; j < 4; j++) {
      const ch = text.charCodeAt(i + j);
      if (j >= keep) {
        if (ch !== 61) throw new HotlineError('HL_ERR_INPUT_BASE64', 'bad base64 padding');
        n <<= 6;
        continue;
      }
      const v = ch < 128 ? LOOKUP[ch]! : -1;
      if (v < 0) throw new HotlineError('HL_ERR_INPUT_BASE64', 'character outside the base64 alphabet');
      n = (n << 6) | v;
    }
    if (last && pad === 2 && (n & 0xffff) !== 0) throw new HotlineError('HL_ERR_INPUT_BASE64', 'non-zero padding bits');
    if (last && pad === 1 && (n & 0xff) !== 0) throw new HotlineError('HL_ERR_INPUT_BASE64', 'non-zero padding bits');
    out[o++] = n >> 16;
    if (o < outLen) out[o++] = (n >> 8) & 255;
    if (o < outLen) out[o++] = n & 255;
  }
  if (expectedLength !== undefined && out.length !== expectedLength) {
    throw new HotlineError('HL_ERR_INPUT_BASE64', `expected ${expectedLength} bytes, got ${out.length}`);
  }
  return out;
}

/** Lowercase hex, the encoding of hashes (message hashes, Merkle nodes) in JSON. */
export function toHex(bytes: Uint8Array): string {
  const out = new Uint8Array(bytes.length * 2);
  for (let i = 0; i < bytes.length; i++) {
    out[2 * i] = HEX[bytes[i]! >> 4]!;
    out[2 * i + 1] = HEX[bytes[i]! & 15]!;
  }
  return ascii.decode(out);
}

const HEX = Uint8Array.from('0123456789abcdef', (c) => c.charCodeAt(0));

/** The value of a lowercase hex digit already checked by fromHex's pattern. */
function hexValue(code: number): number {
  return code <= 57 ? code - 48 : code - 87;
}

/** Strict lowercase hex decoding. */
export function fromHex(text: string, expectedLength?: number): Uint8Array {
  if (typeof text !== 'string' || text.length % 2 !== 0 || !/^[0-9a-f]*$/.test(text)) {
    throw new HotlineError('HL_ERR_INPUT_SCHEMA', 'expected lowercase hex');
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = (hexValue(text.charCodeAt(2 * i)) << 4) | hexValue(text.charCodeAt(2 * i + 1));
  if (expectedLength !== undefined && out.length !== expectedLength) {
    throw new HotlineError('HL_ERR_INPUT_SCHEMA', `expected ${expectedLength} bytes, got ${out.length}`);
  }
  return out;
}

/** UTF-8 encode. */
export function utf8(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

const utf8Encoder = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Strict UTF-8 decode (invalid sequences throw rather than turning into U+FFFD). */
export function fromUtf8(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch (cause) {
    throw new HotlineError('HL_ERR_INPUT_SCHEMA', 'invalid UTF-8', { cause });
  }
}

/** Concatenate byte arrays. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Constant-time equality for equal-length secrets and hashes. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}
