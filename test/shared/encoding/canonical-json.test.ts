import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { canonicalize, canonicalizeSigned } from '../../../shared/encoding/canonical-json.js';

interface Vectors {
  cases: { name: string; input: string; output: string }[];
  numbers: { cases: [string, string][] };
}
const vectors = JSON.parse(readFileSync(new URL('../../vectors/rfc8785.json', import.meta.url), 'utf8')) as Vectors;

function fromIeeeHex(hex: string): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt(`0x${hex}`));
  return view.getFloat64(0);
}

describe('canonicalize', () => {
  for (const c of vectors.cases) {
    it(c.name, () => {
      expect(canonicalize(JSON.parse(c.input))).toBe(c.output);
    });
  }

  it('serialises the RFC 8785 Appendix B numbers', () => {
    for (const [hex, expected] of vectors.numbers.cases) {
      expect(canonicalize(fromIeeeHex(hex)), hex).toBe(expected);
    }
  });

  it('round-trips Japanese and Chinese text unescaped', () => {
    expect(canonicalize({ 本文: '至急、確認されたし', 正文: '紧急' })).toBe('{"本文":"至急、確認されたし","正文":"紧急"}');
  });

  it('refuses non-finite numbers and lone surrogates', () => {
    expect(() => canonicalize({ a: Number.NaN })).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_NOT_CANONICAL' }));
    expect(() => canonicalize({ a: Infinity })).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_NOT_CANONICAL' }));
    expect(() => canonicalize('\ud800')).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_NOT_CANONICAL' }));
    expect(() => canonicalize({ '\udc00x': 1 })).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_NOT_CANONICAL' }));
  });

  it('omits undefined members, as JSON.stringify does', () => {
    expect(canonicalize({ b: undefined, a: 1 })).toBe('{"a":1}');
  });
});

describe('canonicalizeSigned', () => {
  it('accepts safe integers and refuses floats in signed data', () => {
    expect(canonicalizeSigned({ seq: 9007199254740991 })).toBe('{"seq":9007199254740991}');
    expect(() => canonicalizeSigned({ at: 1.5 })).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_NOT_CANONICAL' }));
    expect(() => canonicalizeSigned({ at: 2 ** 53 })).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_NOT_CANONICAL' }));
  });
});
