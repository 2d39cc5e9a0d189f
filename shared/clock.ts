/**
 * An opaque timer handle from a {@link Clock}: Node's Timeout object, a browser's number, a test
 * clock's own token. Only the clock that made it looks inside.
 */
export type TimerHandle = object | number;

/**
 * The one source of time (docs/design.md "Time"), a port: the server
 * and the client library take one, so tests move time instead of waiting. shared/ itself never
 * reads the clock (time comes in as an argument); it defines the type so that both sides and the
 * tests' manual clock implement the same one. Times are integer milliseconds since the Unix epoch.
 *
 * @example
 * const clock: Clock = { now: () => Date.now(), setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as number) };
 */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}
