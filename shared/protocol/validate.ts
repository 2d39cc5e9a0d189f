import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { Static, TSchema } from '@sinclair/typebox';
import { HotlineError, type HotlineErrorCode } from '../errors.js';

const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>();

function checker<T extends TSchema>(schema: T): TypeCheck<T> {
  let c = compiled.get(schema);
  if (!c) {
    c = TypeCompiler.Compile(schema);
    compiled.set(schema, c);
  }
  return c as TypeCheck<T>;
}

/**
 * Check attacker-controlled data against a schema; throw a HotlineError with `code` naming the
 * first failing path. Returns the value typed.
 *
 * @example
 * const env = assertSchema(Envelope, JSON.parse(text), 'HL_ERR_ENVELOPE_MALFORMED');
 */
export function assertSchema<T extends TSchema>(schema: T, value: unknown, code: HotlineErrorCode = 'HL_ERR_INPUT_SCHEMA'): Static<T> {
  const c = checker(schema);
  if (c.Check(value)) return value;
  const first = c.Errors(value).First();
  const where = first ? `${first.path || '/'}: ${first.message}` : 'does not match the schema';
  throw new HotlineError(code, `invalid: ${where}`, { detail: { path: first?.path ?? '' } });
}

/** Boolean form of {@link assertSchema}. */
export function matchesSchema<T extends TSchema>(schema: T, value: unknown): value is Static<T> {
  return checker(schema).Check(value);
}

/** Parse JSON text from a peer, with a clear error for malformed input. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new HotlineError('HL_ERR_INPUT_MALFORMED_JSON', 'malformed JSON', { cause });
  }
}
