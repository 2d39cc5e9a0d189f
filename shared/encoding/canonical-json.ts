import { HotlineError } from '../errors.js';

/**
 * JSON Canonicalization Scheme (RFC 8785): object members sorted by the UTF-16 code units of their
 * names, no white space, strings and numbers serialised as ECMAScript's JSON.stringify does (which
 * is what RFC 8785 §3.2.2 specifies).
 *
 * @example
 * canonicalize({ b: 1, a: [true, null] }) // '{"a":[true,null],"b":1}'
 */
export function canonicalize(value: unknown): string {
  return serialize(value, false);
}

/**
 * RFC 8785, restricted for signed data: every number must be a safe integer. No floats in signed
 * data, so that no two implementations can disagree on a number's form (docs/design.md "Envelopes
 * and recipients").
 */
export function canonicalizeSigned(value: unknown): string {
  return serialize(value, true);
}

const encoder = new TextEncoder();

/** UTF-8 bytes of {@link canonicalizeSigned}. */
export function canonicalBytes(value: unknown): Uint8Array {
  return encoder.encode(canonicalizeSigned(value));
}

/** `"key":` by key: the few names signed data uses, bounded so that hostile input cannot grow it. */
const quotedKeys = new Map<string, string>();
const MAX_QUOTED_KEYS = 1024;

function quotedKey(k: string): string {
  let q = quotedKeys.get(k);
  if (q === undefined) {
    assertWellFormed(k);
    q = `${JSON.stringify(k)}:`;
    if (quotedKeys.size < MAX_QUOTED_KEYS) quotedKeys.set(k, q);
  }
  return q;
}

// What JSON.stringify would escape (", \, control characters) or where a lone surrogate may hide.
// eslint-disable-next-line no-control-regex -- the control characters are what it looks for
const SPECIAL = /["\\\u0000-\u001f\ud800-\udfff]/;

function quoted(s: string): string {
  if (!SPECIAL.test(s)) return `"${s}"`;
  assertWellFormed(s);
  return JSON.stringify(s);
}

function checkNumber(value: number, integersOnly: boolean): void {
  if (!Number.isFinite(value)) {
    throw new HotlineError('HL_ERR_INPUT_NOT_CANONICAL', 'non-finite number');
  }
  if (integersOnly && !Number.isSafeInteger(value)) {
    throw new HotlineError('HL_ERR_INPUT_NOT_CANONICAL', 'signed data may hold only safe integers');
  }
}

/**
 * The canonical text, built as one string with the members in canonical order: about twice as
 * fast as copying the value with its members sorted and handing the copy to JSON.stringify, as this
 * did before, for about as much garbage (a header 6.3 → 3.0 µs, an audit entry 11.2 → 7.3 µs:
 * bench/codec-micro.ts; docs/performance.md, nineteenth session). Keys' quoted forms are kept (an
 * envelope's dozen names recur in every message); a string with nothing to escape and no surrogate
 * is quoted as it is, without a copy or a check character by character. Every key is sorted here,
 * so array-index keys ("0", "17"), which JavaScript lists first, need nothing special.
 */
function serialize(value: unknown, integersOnly: boolean): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return quoted(value);
    case 'number':
      checkNumber(value, integersOnly);
      // JSON.stringify yields the ECMAScript Number-to-String form RFC 8785 §3.2.2.3 requires
      // (and -0 becomes 0).
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + serialize(value[i], integersOnly);
        return `${out}]`;
      }
      const obj = value as Record<string, unknown>;
      // Sorted here, all of them: JavaScript's own order lists array-index keys ("0", "17") first.
      const keys = sortKeys(Object.keys(obj));
      let out = '{';
      let first = true;
      for (const k of keys) {
        const v = obj[k];
        if (v === undefined) continue;
        out += (first ? '' : ',') + quotedKey(k) + serialize(v, integersOnly);
        first = false;
      }
      return `${out}}`;
    }
    default:
      throw new HotlineError('HL_ERR_INPUT_NOT_CANONICAL', `cannot canonicalize a ${typeof value}`);
  }
}

/**
 * In place. A few keys (an envelope header's dozen) by insertion sort, which allocates nothing;
 * Array.prototype.sort allocated a work array per object, a tenth of a message's garbage (issue 9).
 */
function sortKeys(keys: string[]): string[] {
  if (keys.length > 24) return keys.sort(compareUtf16);
  for (let i = 1; i < keys.length; i++) {
    const k = keys[i]!;
    let j = i - 1;
    for (; j >= 0 && compareUtf16(keys[j]!, k) > 0; j--) keys[j + 1] = keys[j]!;
    keys[j + 1] = k;
  }
  return keys;
}

// Array.prototype.sort's default compares UTF-16 code units, which is RFC 8785 §3.2.3's order;
// spelled out so that nobody "fixes" it to localeCompare.
function compareUtf16(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// A lone surrogate has no UTF-8 form, so two parties could hash it differently (RFC 8785 §3.2.2.2).
function assertWellFormed(s: string): void {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      throw new HotlineError('HL_ERR_INPUT_NOT_CANONICAL', 'lone surrogate in string');
    }
    if (c >= 0xdc00 && c <= 0xdfff) {
      throw new HotlineError('HL_ERR_INPUT_NOT_CANONICAL', 'lone surrogate in string');
    }
  }
}
