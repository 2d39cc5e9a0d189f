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

/** UTF-8 bytes of {@link canonicalizeSigned}. */
export function canonicalBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalizeSigned(value));
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
      if (!Number.isFinite(value)) {
        throw new HotlineError('HL_ERR_INPUT_NOT_CANONICAL', 'non-finite number');
      }
      if (integersOnly && !Number.isSafeInteger(value)) {
        throw new HotlineError('HL_ERR_INPUT_NOT_CANONICAL', 'signed data may hold only safe integers');
      }
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
