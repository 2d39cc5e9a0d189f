import { describe, expect, it } from 'vitest';
import { bytesEqual, fromBase64, fromHex, fromUtf8, toBase64, toHex } from '../../../shared/encoding/base64.js';

// RFC 4648 §10 test vectors.
const RFC4648: [string, string][] = [
  ['', ''],
  ['f', 'Zg=='],
  ['fo', 'Zm8='],
  ['foo', 'Zm9v'],
  ['foob', 'Zm9vYg=='],
  ['fooba', 'Zm9vYmE='],
  ['foobar', 'Zm9vYmFy'],
];

describe('toBase64 / fromBase64', () => {
  it('matches the RFC 4648 §10 vectors both ways', () => {
    for (const [plain, enc] of RFC4648) {
      const bytes = new TextEncoder().encode(plain);
      expect(toBase64(bytes)).toBe(enc);
      expect(fromBase64(enc)).toEqual(bytes);
    }
  });

  it('agrees with Buffer on random data of every length up to 64', () => {
    for (let n = 0; n <= 64; n++) {
      const bytes = new Uint8Array(n).map((_, i) => (i * 97 + n * 31) & 255);
      expect(toBase64(bytes)).toBe(Buffer.from(bytes).toString('base64'));
      expect(fromBase64(toBase64(bytes))).toEqual(bytes);
    }
  });

  it('agrees with Buffer across the encoder\'s chunk boundaries and on large inputs', () => {
    for (const n of [6143, 6144, 6145, 12_289, 100_001]) {
      const bytes = new Uint8Array(n).map((_, i) => (i * 131 + (i >> 8)) & 255);
      const text = toBase64(bytes);
      expect(text).toBe(Buffer.from(bytes).toString('base64'));
      expect(fromBase64(text, n)).toEqual(bytes);
      expect(toHex(bytes)).toBe(Buffer.from(bytes).toString('hex'));
    }
  });

  it.each([
    ['wrong length', 'Zm9'],
    ['url alphabet', 'Zm-_'],
    ['missing padding', 'Zg'],
    ['non-zero pad bits', 'Zh=='],
    ['padding in the middle', 'Zg==Zm9v'],
    ['non-ASCII', 'Zm9\u00e9'],
  ])('refuses %s with HL_ERR_INPUT_BASE64', (_name, text) => {
    expect(() => fromBase64(text)).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_BASE64' }));
  });

  it('checks the expected length', () => {
    expect(() => fromBase64('Zm9v', 4)).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_BASE64' }));
  });
});

describe('hex, utf8, bytesEqual', () => {
  it('round-trips hex and refuses uppercase or odd lengths', () => {
    expect(toHex(new Uint8Array([0, 15, 255]))).toBe('000fff');
    expect(fromHex('000fff')).toEqual(new Uint8Array([0, 15, 255]));
    expect(() => fromHex('0F')).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_SCHEMA' }));
    expect(() => fromHex('abc')).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_SCHEMA' }));
  });

  it('refuses invalid UTF-8 instead of replacing it', () => {
    expect(() => fromUtf8(new Uint8Array([0xe3, 0x81]))).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_SCHEMA' }));
    expect(fromUtf8(new TextEncoder().encode('紧急'))).toBe('紧急');
  });

  it('compares bytes', () => {
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).toBe(true);
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).toBe(false);
    expect(bytesEqual(new Uint8Array([1]), new Uint8Array([1, 2]))).toBe(false);
  });
});
