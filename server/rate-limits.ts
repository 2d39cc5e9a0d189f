import type { FastifyBaseLogger } from 'fastify';
import { HotlineError } from '../shared/errors.js';
import type { Clock, TimerHandle } from './clock.js';
import { RateLimiter, type RateDecision, type RefusedWindow } from './relay/rate-limit.js';
import type { AuditEntry } from './relay/records.js';

/** The limits are per minute: the unit operators configure and the audit summary's period. */
export const RATE_WINDOW_MS = 60_000;

/** Per-minute limits of what unauthenticated peers may ask for; each has a default. */
export interface RateLimitSettings {
  /** Challenge and login requests, and refused link upgrades, per peer address. Default 120. */
  loginPerMinute?: number;
  /** Refused logins per claimed `party/device`, from any address. Default 20. */
  deviceFailuresPerMinute?: number;
  /** Enrolment and revocation requests per peer address. Default 60. */
  directoryPerMinute?: number;
}

export const RATE_LIMIT_DEFAULTS: Required<RateLimitSettings> = { loginPerMinute: 120, deviceFailuresPerMinute: 20, directoryPerMinute: 60 };

/**
 * - `login`: per address; challenge, login and refused link upgrades.
 * - `device`: per claimed `party/device`; refused logins only, so flooding a device's name never
 *   locks the real device out (its valid login still goes through).
 * - `directory`: per address; enrolments and revocations.
 */
export type RateScope = 'login' | 'device' | 'directory';

export interface RateLimitsDeps {
  settings?: RateLimitSettings;
  clock: Clock;
  log: FastifyBaseLogger;
  /** Appends an audit entry (the summary of refused attempts). */
  audit: (entry: AuditEntry) => Promise<unknown>;
}

/**
 * The server's abuse limits: a {@link RateLimiter} per scope, a 429 `HL_ERR_INPUT_RATE_LIMITED`
 * with `retryAfterSeconds` past a limit, and one `login.refused.suppressed` audit entry per key
 * and window in which login attempts were refused (instead of one `login.refused` entry each).
 */
export class RateLimits {
  private readonly limiters: Record<RateScope, RateLimiter>;
  private timer: TimerHandle | undefined;

  constructor(private readonly deps: RateLimitsDeps) {
    const s = { ...RATE_LIMIT_DEFAULTS, ...deps.settings };
    this.limiters = {
      login: new RateLimiter({ limit: s.loginPerMinute, windowMs: RATE_WINDOW_MS }),
      device: new RateLimiter({ limit: s.deviceFailuresPerMinute, windowMs: RATE_WINDOW_MS }),
      directory: new RateLimiter({ limit: s.directoryPerMinute, windowMs: RATE_WINDOW_MS }),
    };
  }

  /** Count one attempt; past the limit, the error to answer with (the attempt is then a suppressed one). */
  take(scope: RateScope, key: string): HotlineError | undefined {
    const d = this.limiters[scope].take(key, this.deps.clock.now());
    this.summarise(scope, d.closed);
    return d.allowed ? undefined : this.refusal(scope, d);
  }

  /** Like `take`, but an attempt under the limit is not counted (it counts later only if it fails). */
  check(scope: RateScope, key: string): HotlineError | undefined {
    const d = this.limiters[scope].peek(key, this.deps.clock.now());
    return d.allowed ? undefined : this.take(scope, key);
  }

  /** Sweep closed windows every window length, so a flood that stopped is still summarised. */
  start(): void {
    const tick = () => {
      const now = this.deps.clock.now();
      for (const scope of Object.keys(this.limiters) as RateScope[]) this.summarise(scope, this.limiters[scope].sweep(now));
      this.timer = this.deps.clock.setTimeout(tick, RATE_WINDOW_MS);
    };
    this.timer = this.deps.clock.setTimeout(tick, RATE_WINDOW_MS);
  }

  stop(): void {
    if (this.timer !== undefined) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Record the windows still open that refused attempts (at shutdown, before `server.stop`). */
  async flush(): Promise<void> {
    const now = this.deps.clock.now();
    await Promise.all((Object.keys(this.limiters) as RateScope[]).map((scope) => this.summarise(scope, this.limiters[scope].flush(now))));
  }

  private refusal(scope: RateScope, d: RateDecision): HotlineError {
    const retryAfterSeconds = Math.max(1, Math.ceil(d.retryAfterMs / 1000));
    const what = scope === 'directory' ? 'directory requests' : scope === 'device' ? 'refused logins for this device' : 'login attempts';
    return new HotlineError('HL_ERR_INPUT_RATE_LIMITED', `too many ${what}; retry in ${retryAfterSeconds} s`, { detail: { retryAfterSeconds } });
  }

  private summarise(scope: RateScope, windows: readonly RefusedWindow[]): Promise<unknown> {
    const writes: Promise<unknown>[] = [];
    for (const w of windows) {
      // The server's own log names the address; the audit log, shared by both parties and kept
      // for good, does not (addresses there would map the parties' networks).
      this.deps.log.warn({ scope, key: w.key, refused: w.refused, since: w.since, until: w.until }, 'rate limited');
      if (scope === 'directory') continue; // refused enrolments are not audit entries: nothing was suppressed
      const by = scope === 'device' ? { by: 'device', party: w.key.split('/')[0], device: w.key.split('/')[1] } : { by: 'address' };
      const entry: AuditEntry = { type: 'login.refused.suppressed', at: this.deps.clock.now(), ...by, count: w.refused, since: w.since, until: w.until };
      writes.push(
        this.deps.audit(entry).catch((err: unknown) => this.deps.log.error({ err: { message: (err as Error).message } }, 'audit of suppressed logins failed')),
      );
    }
    return Promise.all(writes);
  }
}
