/**
 * Fixed-window rate limiting, keyed by a string (a peer's address, a claimed device). Pure: no
 * timers and no clock of its own; every call is given `now` (ms), so tests move time by hand.
 *
 * A key's window opens at its first attempt and lasts `windowMs`; up to `limit` attempts in it are
 * allowed, later ones are refused and counted. A window that refused something is reported once,
 * after it has closed (by the next `take` on that key, by `sweep`, or by `flush` at shutdown), so
 * the caller can record one summary instead of one line per refused attempt.
 */

export interface RateLimitOptions {
  /** Attempts allowed per key in one window (an integer ≥ 1). */
  limit: number;
  /** Window length in ms. */
  windowMs: number;
  /**
   * Keys tracked at once. Keys come from unauthenticated peers, so the table is bounded: when it is
   * full of open windows, attempts under new keys share the one window of {@link OVERFLOW_KEY}.
   * Default 100 000.
   */
  maxKeys?: number;
}

/** A closed window in which attempts were refused. */
export interface RefusedWindow {
  key: string;
  /** Attempts refused in the window. */
  refused: number;
  /** The window's start and end (ms). */
  since: number;
  until: number;
}

export interface RateDecision {
  allowed: boolean;
  /** When refused: ms until the window ends (0 when allowed). */
  retryAfterMs: number;
  /** The key the attempt was charged to (the given one, or {@link OVERFLOW_KEY}). */
  key: string;
  /** Windows that `take` just closed and that had refused attempts (usually none). */
  closed: RefusedWindow[];
}

/** The shared key of attempts made while the table was full. */
export const OVERFLOW_KEY = '*';

interface Window {
  start: number;
  count: number;
  refused: number;
}

export class RateLimiter {
  readonly limit: number;
  readonly windowMs: number;
  private readonly maxKeys: number;
  // Insertion order is window-start order: a key is re-inserted whenever its window restarts, so
  // the closed windows are always at the front (sweeping stops at the first open one).
  private readonly windows = new Map<string, Window>();

  constructor(options: RateLimitOptions) {
    if (!Number.isSafeInteger(options.limit) || options.limit < 1) throw new RangeError('limit must be an integer ≥ 1');
    if (!Number.isSafeInteger(options.windowMs) || options.windowMs < 1) throw new RangeError('windowMs must be an integer ≥ 1');
    const maxKeys = options.maxKeys ?? 100_000;
    if (!Number.isSafeInteger(maxKeys) || maxKeys < 1) throw new RangeError('maxKeys must be an integer ≥ 1');
    this.limit = options.limit;
    this.windowMs = options.windowMs;
    this.maxKeys = maxKeys;
  }

  /** Number of keys tracked now. */
  get size(): number {
    return this.windows.size;
  }

  /** Count one attempt under `key`: allowed while the key's window has room, refused (and counted) after. */
  take(key: string, now: number): RateDecision {
    let w = this.windows.get(key);
    const closed: RefusedWindow[] = [];
    if (w && now >= w.start + this.windowMs) {
      const r = this.report(key, w);
      if (r) closed.push(r);
      this.windows.delete(key);
      w = undefined;
    }
    if (!w) {
      if (this.windows.size >= this.maxKeys) this.forgetClosed(now);
      if (this.windows.size >= this.maxKeys && key !== OVERFLOW_KEY) {
        const overflow = this.take(OVERFLOW_KEY, now);
        return { ...overflow, closed: [...closed, ...overflow.closed] };
      }
      w = { start: now, count: 0, refused: 0 };
      this.windows.set(key, w);
    }
    const decision = this.decide(key, w, now);
    if (decision.allowed) w.count++;
    else w.refused++;
    return { ...decision, closed };
  }

  /**
   * Whether an attempt under `key` would be allowed now, without counting it. For checks made
   * before knowing whether the attempt counts at all (a link upgrade counts only when refused).
   */
  peek(key: string, now: number): RateDecision {
    const w = this.windows.get(key);
    if (!w || now >= w.start + this.windowMs) {
      if (this.windows.size < this.maxKeys || key === OVERFLOW_KEY) return { allowed: true, retryAfterMs: 0, key, closed: [] };
      // A new key with the table full is charged to the overflow window (unless room is freed first).
      return this.peek(OVERFLOW_KEY, now);
    }
    return this.decide(key, w, now);
  }

  /** Forget every window closed by `now`; returns those that refused attempts. */
  sweep(now: number): RefusedWindow[] {
    const out: RefusedWindow[] = [];
    for (const [key, w] of this.windows) {
      if (now < w.start + this.windowMs) break;
      this.windows.delete(key);
      const r = this.report(key, w);
      if (r) out.push(r);
    }
    return out;
  }

  /** Report every window (open or closed) that refused attempts, and reset their counts: at shutdown. */
  flush(now: number): RefusedWindow[] {
    const out: RefusedWindow[] = [];
    for (const [key, w] of this.windows) {
      const r = this.report(key, w, Math.min(now, w.start + this.windowMs));
      if (r) out.push(r);
      w.refused = 0;
    }
    return out;
  }

  private decide(key: string, w: Window, now: number): RateDecision {
    return w.count < this.limit ? { allowed: true, retryAfterMs: 0, key, closed: [] } : { allowed: false, retryAfterMs: w.start + this.windowMs - now, key, closed: [] };
  }

  private report(key: string, w: Window, until = w.start + this.windowMs): RefusedWindow | undefined {
    return w.refused > 0 ? { key, refused: w.refused, since: w.start, until } : undefined;
  }

  private forgetClosed(now: number): void {
    for (const [key, w] of this.windows) {
      if (now < w.start + this.windowMs) break;
      // Closed windows that refused something are kept until swept, so no summary is lost.
      if (w.refused > 0) continue;
      this.windows.delete(key);
    }
  }
}

/**
 * The key a peer's address is limited under: IPv4 as is (IPv4-mapped IPv6 unwrapped), IPv6 by its
 * /64 prefix (one host usually holds a whole /64, so single addresses would be free to rotate).
 */
export function addressKey(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown';
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!address.includes(':')) return address;
  const bare = address.split('%')[0]!.toLowerCase();
  const [head = '', tail] = bare.split('::');
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])));
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${all
    .slice(0, 4)
    .map((g) => (g.replace(/^0+/, '') || '0'))
    .join(':')}::/64`;
}
