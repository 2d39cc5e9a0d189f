import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytesEqual, fromBase64, fromHex, fromUtf8, toBase64, toHex, useNativeBase64 } from '../../../shared/encoding/base64.js';
import { nodeBase64 } from '../../../server/node-crypto.js';

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

// Both ways: the JavaScript codec (browsers) and Node's native one with its strictness check.
describe.each([
  ['JavaScript', undefined],
  ['native (Node)', nodeBase64],
])('toBase64 / fromBase64, %s', (_name, impl) => {
  beforeAll(() => useNativeBase64(impl));
  afterAll(() => useNativeBase64(undefined));

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
    ['a space', 'Zm 9'],
    ['a line break', 'Zm9\nZm8='],
    ['one URL-alphabet character', 'Zm9-'],
    ['padding at the start', '=Zm9'],
    ['three padding characters', 'Z==='],
  ])('refuses %s with HL_ERR_INPUT_BASE64', (_name, text) => {
    expect(() => fromBase64(text)).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_BASE64' }));
  });

  it('checks the expected length', () => {
    expect(() => fromBase64('Zm9v', 4)).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_BASE64' }));
  });

  it('gives each decoding an array of its own', () => {
    const a = fromBase64('Zm9vYmFy');
    const b = fromBase64('Zm9v');
    expect([a.byteOffset, a.buffer.byteLength, b.byteOffset, b.buffer.byteLength]).toEqual([0, 6, 0, 3]);
  });
});

describe('the native decoding (Node)', () => {
  afterAll(() => useNativeBase64(undefined));

  it('accepts and refuses exactly what the JavaScript decoding does', () => {
    // Valid encodings with one character changed or inserted, and random strings, from the base64
    // alphabet and what a lenient decoder would skip or take: the two must agree on every one.
    const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n!é';
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const inputs: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const valid = Buffer.from(Array.from({ length: rand(40) }, () => rand(256))).toString('base64');
      const at = rand(valid.length + 1);
      const c = chars[rand(chars.length)]!;
      inputs.push(valid, valid.slice(0, at) + c + valid.slice(at + 1), (valid.slice(0, at) + c + valid.slice(at)).slice(0, valid.length));
      inputs.push(Array.from({ length: 4 * (1 + rand(6)) }, () => chars[rand(chars.length)]).join(''));
    }
    const outcome = (text: string, impl: typeof nodeBase64 | undefined) => {
      useNativeBase64(impl);
      try {
        return Buffer.from(fromBase64(text)).toString('hex');
      } catch (e) {
        return (e as { code?: string }).code;
      }
    };
    let refused = 0;
    for (const text of inputs) {
      const js = outcome(text, undefined);
      expect(outcome(text, nodeBase64), JSON.stringify(text)).toBe(js);
      if (js === 'HL_ERR_INPUT_BASE64') refused++;
    }
    // Both kinds are well represented.
    expect(refused).toBeGreaterThan(3000);
    expect(inputs.length - refused).toBeGreaterThan(3000);
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
