import type { Clock } from '../shared/clock.js';

export type { Clock, TimerHandle } from '../shared/clock.js';

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
