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
  return stringify(value, false);
}

/**
 * RFC 8785, restricted for signed data: every number must be a safe integer. No floats in signed
 * data, so that no two implementations can disagree on a number's form (docs/design.md "Envelopes
 * and recipients").
 */
export function canonicalizeSigned(value: unknown): string {
  return stringify(value, true);
}

const encoder = new TextEncoder();

/** UTF-8 bytes of {@link canonicalizeSigned}. */
export function canonicalBytes(value: unknown): Uint8Array {
  return encoder.encode(canonicalizeSigned(value));
}

/**
 * The value checked and copied with every object's members in canonical order, then one
 * `JSON.stringify`: the same text as {@link serialize} with a fraction of its garbage (a string per
 * member and an array per object made this a fifth of all a message allocated, issue 9). An object
 * with an array-index key ("0", "17") falls back to {@link serialize}: JavaScript lists such keys
 * first, in numeric order, whatever order they were added in.
 */
function stringify(value: unknown, integersOnly: boolean): string {
  try {
    return JSON.stringify(ordered(value, integersOnly));
  } catch (error) {
    if (error === INDEX_KEY) return serialize(value, integersOnly);
    throw error;
  }
}

const INDEX_KEY = Symbol('array-index key');
const INDEX_LIKE = /^(?:0|[1-9][0-9]*)$/;

function ordered(value: unknown, integersOnly: boolean): unknown {
  if (value === null) return null;
  switch (typeof value) {
    case 'boolean':
      return value;
    case 'string':
      assertWellFormed(value);
      return value;
    case 'number':
      checkNumber(value, integersOnly);
      return value;
    case 'object': {
      if (Array.isArray(value)) {
        const out = new Array<unknown>(value.length);
        for (let i = 0; i < value.length; i++) out[i] = ordered(value[i], integersOnly);
        return out;
      }
      const obj = value as Record<string, unknown>;
      const keys = sortKeys(Object.keys(obj));
      // No prototype: a member named "__proto__" (JSON.parse makes it an own property) stays a member.
      const out = Object.create(null) as Record<string, unknown>;
      for (const k of keys) {
        const v = obj[k];
        if (v === undefined) continue;
        if (INDEX_LIKE.test(k)) throw INDEX_KEY;
        assertWellFormed(k);
        out[k] = ordered(v, integersOnly);
      }
      return out;
    }
    default:
      throw new HotlineError('HL_ERR_INPUT_NOT_CANONICAL', `cannot canonicalize a ${typeof value}`);
  }
}

function checkNumber(value: number, integersOnly: boolean): void {
  if (!Number.isFinite(value)) {
    throw new HotlineError('HL_ERR_INPUT_NOT_CANONICAL', 'non-finite number');
  }
  if (integersOnly && !Number.isSafeInteger(value)) {
    throw new HotlineError('HL_ERR_INPUT_NOT_CANONICAL', 'signed data may hold only safe integers');
  }
}

function serialize(value: unknown, integersOnly: boolean): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      assertWellFormed(value);
      return JSON.stringify(value);
    case 'number':
      checkNumber(value, integersOnly);
      // JSON.stringify yields the ECMAScript Number-to-String form RFC 8785 §3.2.2.3 requires
      // (and -0 becomes 0).
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) {
        return `[${value.map((v) => serialize(v, integersOnly)).join(',')}]`;
      }
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort(compareUtf16);
      const members = keys.map((k) => {
        assertWellFormed(k);
        return `${JSON.stringify(k)}:${serialize(obj[k], integersOnly)}`;
      });
      return `{${members.join(',')}}`;
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
