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

  it('sorts array-index keys as strings, keeps a "__proto__" member, and nests', () => {
    expect(canonicalize(JSON.parse('{"b":1,"10":2,"2":3,"a":{"1":[{"z":1,"y":2}],"0":null}}'))).toBe('{"10":2,"2":3,"a":{"0":null,"1":[{"y":2,"z":1}]},"b":1}');
    expect(canonicalize(JSON.parse('{"z":1,"__proto__":{"b":2,"a":1}}'))).toBe('{"__proto__":{"a":1,"b":2},"z":1}');
    expect(canonicalizeSigned({ list: [3, { k: 'v', b: true }], n: -0 })).toBe('{"list":[3,{"b":true,"k":"v"}],"n":0}');
    expect(() => canonicalize([1, undefined])).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_NOT_CANONICAL' }));
  });

  it('orders few and many members alike, by UTF-16 code units', () => {
    for (const n of [2, 5, 24, 25, 60]) {
      const keys = Array.from({ length: n }, (_, i) => `k${(i * 37) % 101}${String.fromCharCode(0x61 + ((i * 7) % 26))}`);
      const shuffled = Object.fromEntries([...keys].reverse().map((k, i) => [k, i]));
      const expected = `{${[...keys].sort().map((k) => `"${k}":${shuffled[k]}`).join(',')}}`;
      expect(canonicalize(shuffled), String(n)).toBe(expected);
    }
    expect(canonicalize({ b: 1, a: 2, ä: 3, Z: 4, '\ud83d\ude00': 5, '\uffff': 6 })).toBe('{"Z":4,"a":2,"b":1,"ä":3,"\ud83d\ude00":5,"\uffff":6}');
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

  it('escapes strings exactly as JSON.stringify does, in values and in keys', () => {
    // Every code unit below 0x80, U+2028/2029, and well-formed surrogate pairs: the quick path
    // (nothing to escape) and the escaping path must give JSON.stringify's text for each.
    const units = [...Array.from({ length: 0x80 }, (_, i) => String.fromCharCode(i)), '\u2028', '\u2029', '\ud83d\ude00', 'plain'];
    for (const u of units) {
      const s = `a${u}b`;
      expect(canonicalize({ [s]: s }), JSON.stringify(s)).toBe(`{${JSON.stringify(s)}:${JSON.stringify(s)}}`);
    }
  });

  it('stays right for objects with more distinct keys than it keeps quoted', () => {
    const many = Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`key-${i}-"q"`, i]));
    const expected = `{${Object.keys(many).sort().map((k) => `${JSON.stringify(k)}:${many[k]}`).join(',')}}`;
    expect(canonicalize(many)).toBe(expected);
    expect(canonicalize(many)).toBe(expected);
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
