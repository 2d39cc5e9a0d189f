import { Value } from '@sinclair/typebox/value';
import type { Static, TSchema } from '@sinclair/typebox';

/**
 * Browser stand-in for `@sinclair/typebox/compiler`, swapped in by the console bundler. The real
 * TypeCompiler builds its checkers with `new Function`, which the consoles' Content-Security-Policy
 * (no 'unsafe-eval') forbids; `Value.Check` interprets the same schema without eval, a little
 * slower, which a console does not notice.
 */
export interface TypeCheck<T extends TSchema> {
  Check(value: unknown): value is Static<T>;
  Errors(value: unknown): ReturnType<typeof Value.Errors>;
}

export const TypeCompiler = {
  Compile<T extends TSchema>(schema: T): TypeCheck<T> {
    return {
      Check: (value: unknown): value is Static<T> => Value.Check(schema, value),
      Errors: (value: unknown) => Value.Errors(schema, value),
    };
  },
};
