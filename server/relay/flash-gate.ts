import type { Clock, TimerHandle } from '../../shared/clock.js';

/**
 * Precedence first in time, not only in order (issue 9). A FLASH overtakes every queued ROUTINE
 * frame and write already (PROTOCOL.md "Delivery order"), but under a ROUTINE stream each of its
 * hops through the relay still found the event loop inside a turn of ROUTINE work (a batch of
 * frames, a group commit) and waited for it to end: its `delivered` receipt waited 4.3 ms at the
 * median to be read (docs/performance.md, tenth session). So, while a FLASH is on its way through
 * the relay (from its envelope's arrival until a receipt for it is accepted: `delivered`, or a
 * later rung, which says as much), the gate is held and the relay's lower-rank work waits for it:
 * frames of the inbound lane are not handled and writes without a FLASH are not committed. FLASH
 * frames and commits, sending to the devices, and timers keep running.
 *
 * Bounded, so that nothing waits long and a stream of FLASH messages cannot starve the rest: a
 * FLASH holds the gate for at most `holdMs` (an addressee offline or slow to answer costs the
 * ROUTINE stream that much once); and a gate held without a break for `maxHeldMs` opens for
 * `openMs` whatever is pending.
 */
/** The gate's bounds (milliseconds); each may be set per app (AppOptions.flashGate). */
export interface FlashGateBounds {
  /** Longest one FLASH holds the gate. */
  holdMs: number;
  /** Longest the gate stays held without a break... */
  maxHeldMs: number;
  /** ...before it opens for this long, whatever is held. */
  openMs: number;
}

export const FLASH_GATE_DEFAULTS: Readonly<FlashGateBounds> = { holdMs: 25, maxHeldMs: 100, openMs: 25 };

export class FlashGate {
  /** Message id → when its hold ends (clock ms). */
  readonly #holds = new Map<string, number>();
  /** When the gate was last closed (undefined: open). */
  #heldSince: number | undefined;
  /** The gate stays open until then, whatever is held (the break after maxHeldMs). */
  #openUntil = 0;
  #timer: TimerHandle | undefined;
  readonly #waiters = new Set<() => void>();
  /** Holds ended by a receipt, holds that ran out (holdMs), forced breaks (maxHeldMs): for /metrics. */
  readonly counts = { released: 0, expired: 0, breaks: 0 };
  /** Milliseconds held, in the periods that have ended. */
  #heldMs = 0;

  readonly #bounds: FlashGateBounds;

  constructor(
    private readonly clock: Pick<Clock, 'now' | 'setTimeout' | 'clearTimeout'>,
    bounds: Partial<FlashGateBounds> = {},
  ) {
    this.#bounds = { ...FLASH_GATE_DEFAULTS, ...bounds };
  }

  /** A FLASH entered the relay: lower-rank work waits until `release(id)` or `holdMs`. */
  hold(id: string): void {
    const now = this.clock.now();
    this.#holds.set(id, now + this.#bounds.holdMs);
    this.#update(now);
  }

  /** A receipt for the FLASH was accepted (or the FLASH was refused): its hold ends. */
  release(id: string): void {
    if (!this.#holds.delete(id)) return;
    this.counts.released++;
    this.#update(this.clock.now());
  }

  /** Seconds lower-rank work has waited for the gate so far (the current period included). */
  heldSeconds(): number {
    const current = this.#heldSince === undefined ? 0 : this.clock.now() - this.#heldSince;
    return (this.#heldMs + current) / 1000;
  }

  /** Whether lower-rank work should wait now. */
  get held(): boolean {
    return this.#heldSince !== undefined;
  }

  /** Resolves once the gate is open (at once if it is). `cancel` stops waiting early (a FLASH came on the waiter's own lane). */
  wait(): { done: Promise<void>; cancel: () => void } {
    if (!this.held) return { done: Promise.resolve(), cancel: () => {} };
    let wake!: () => void;
    const done = new Promise<void>((resolve) => (wake = resolve));
    const waiter = () => {
      this.#waiters.delete(waiter);
      wake();
    };
    this.#waiters.add(waiter);
    return { done, cancel: waiter };
  }

  /** Drop expired holds, decide open or held, wake the waiters if open, arm the next check. */
  #update(now: number): void {
    for (const [id, until] of this.#holds) {
      if (until > now) continue;
      this.#holds.delete(id);
      this.counts.expired++;
    }
    const since = this.#heldSince;
    if (since !== undefined && now - since >= this.#bounds.maxHeldMs) {
      this.#openUntil = now + this.#bounds.openMs;
      this.counts.breaks++;
    }
    const held = this.#holds.size > 0 && now >= this.#openUntil;
    if (held) this.#heldSince ??= now;
    else if (since !== undefined) {
      this.#heldMs += now - since;
      this.#heldSince = undefined;
    }
    if (this.#timer !== undefined) this.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!held) for (const w of [...this.#waiters]) w();
    if (this.#holds.size === 0) return;
    let next = held ? this.#heldSince! + this.#bounds.maxHeldMs : this.#openUntil;
    for (const until of this.#holds.values()) next = Math.min(next, until);
    this.#timer = this.clock.setTimeout(() => {
      this.#timer = undefined;
      this.#update(this.clock.now());
    }, Math.max(1, next - now));
  }
}
