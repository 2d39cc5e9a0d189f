import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { Static, TSchema } from '@sinclair/typebox';
import { HotlineError, type HotlineErrorCode } from '../errors.js';

const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>();

/** The compiled checker of a schema, compiled once. */
export function checkerOf<T extends TSchema>(schema: T): TypeCheck<T> {
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
  const c = checkerOf(schema);
  if (c.Check(value)) return value;
  throw schemaError(c, value, code);
}

/** The HotlineError for a value `check` refused: `code`, naming the first failing path. */
export function schemaError(check: TypeCheck<TSchema>, value: unknown, code: HotlineErrorCode, detail: Record<string, unknown> = {}): HotlineError {
  const first = check.Errors(value).First();
  const where = first ? `${first.path || '/'}: ${first.message}` : 'does not match the schema';
  return new HotlineError(code, `invalid: ${where}`, { detail: { path: first?.path ?? '', ...detail } });
}

/** Boolean form of {@link assertSchema}. */
export function matchesSchema<T extends TSchema>(schema: T, value: unknown): value is Static<T> {
  return checkerOf(schema).Check(value);
}

/** Parse JSON text from a peer, with a clear error for malformed input. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new HotlineError('HL_ERR_INPUT_MALFORMED_JSON', 'malformed JSON', { cause });
  }
}
