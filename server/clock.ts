/** An opaque timer handle from a {@link Clock}. */
export type TimerHandle = { readonly __timer: unique symbol } | object;

/**
 * The one source of time on the server (DESIGN.md: "All time comes from one injected clock"), so
 * tests move time instead of waiting. Times are integer milliseconds since the Unix epoch.
 */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** The real clock. Timers are unref'd: a pending timer never keeps the process alive on its own. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};
