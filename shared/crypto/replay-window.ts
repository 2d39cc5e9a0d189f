import { HotlineError } from '../errors.js';
import { fromBase64, toBase64 } from '../encoding/base64.js';

/**
 * How far below the highest `seq` seen from a device an envelope may still arrive (PROTOCOL.md
 * "Replay window"). Higher precedence overtakes lower at the relay and in the outbox, so a
 * device's envelopes are accepted and received out of `seq` order; within this many seqs of the
 * highest, each seq is accepted once.
 */
export const REPLAY_WINDOW = 4096;

const BYTES = REPLAY_WINDOW / 8;

/** What {@link seqVerdict} says of a seq. */
export type SeqVerdict = 'new' | 'reused' | 'below-window';

/**
 * The replay rule on its own, for a store that answers "was this seq used?" from an index (the
 * server) as well as for {@link ReplayWindow}: a seq at or below `highest − REPLAY_WINDOW` is
 * refused without looking further; above it, a used seq is refused.
 */
export function seqVerdict(seq: number, highest: number, used: (seq: number) => boolean): SeqVerdict {
  if (seq <= highest - REPLAY_WINDOW) return 'below-window';
  return used(seq) ? 'reused' : 'new';
}

/** The stored form of a {@link ReplayWindow}: about 710 bytes of JSON whatever the history. */
export interface ReplayWindowState {
  highest: number;
  /** base64 of the 512-byte bitset, bit `seq mod REPLAY_WINDOW` set when that seq was seen. */
  seen: string;
}

/**
 * One sender device's seqs as a recipient remembers them: the highest seen and a bitset of the
 * last {@link REPLAY_WINDOW} seqs. Constant size; `check` and `record` cost O(1) except when the
 * highest jumps, which clears at most the whole window once.
 *
 * @example
 * const w = new ReplayWindow();
 * w.check(7); w.record(7);   // accepted
 * w.check(5); w.record(5);   // out of order, inside the window: accepted
 * w.check(7);                // throws HL_ERR_ENVELOPE_REPLAY
 */
export class ReplayWindow {
  #highest: number;
  // Bytes, not words: the stored form is the same on every platform's byte order.
  readonly #bits: Uint8Array;

  constructor(state?: ReplayWindowState) {
    this.#bits = new Uint8Array(BYTES);
    this.#highest = 0;
    if (state === undefined) return;
    if (!Number.isSafeInteger(state.highest) || state.highest < 0) {
      throw new HotlineError('HL_ERR_INPUT_SCHEMA', 'replay window: highest must be a non-negative integer');
    }
    this.#bits.set(fromBase64(state.seen, BYTES));
    this.#highest = state.highest;
  }

  /** A window that has seen `highest` only: what a recipient that kept only the highest seq knew. */
  static fromHighest(highest: number): ReplayWindow {
    const w = new ReplayWindow();
    if (highest > 0) w.record(highest);
    return w;
  }

  /** Highest seq recorded, 0 if none. */
  get highest(): number {
    return this.#highest;
  }

  /** What {@link check} would decide, without throwing. */
  verdict(seq: number): SeqVerdict {
    return seqVerdict(seq, this.#highest, (s) => s <= this.#highest && this.#has(s));
  }

  /** Throw HL_ERR_ENVELOPE_REPLAY unless `seq` may be accepted. Records nothing. */
  check(seq: number): void {
    const v = this.verdict(seq);
    if (v === 'reused') throw new HotlineError('HL_ERR_ENVELOPE_REPLAY', `seq ${seq} was already used`);
    if (v === 'below-window') {
      throw new HotlineError('HL_ERR_ENVELOPE_REPLAY', `seq ${seq} is ${REPLAY_WINDOW} or more below the highest seen (${this.#highest})`);
    }
  }

  /** Remember `seq` as used (after the envelope was accepted). A seq below the window is ignored. */
  record(seq: number): void {
    if (seq <= this.#highest - REPLAY_WINDOW) return;
    if (seq > this.#highest) {
      // The seqs skipped over enter the window unseen: clear their (reused) bits.
      if (seq - this.#highest >= REPLAY_WINDOW) this.#bits.fill(0);
      else for (let s = this.#highest + 1; s < seq; s++) this.#set(s, false);
      this.#highest = seq;
    }
    this.#set(seq, true);
  }

  toState(): ReplayWindowState {
    return { highest: this.#highest, seen: toBase64(this.#bits) };
  }

  #has(seq: number): boolean {
    const i = seq % REPLAY_WINDOW;
    return ((this.#bits[i >>> 3]! >>> (i & 7)) & 1) === 1;
  }

  #set(seq: number, on: boolean): void {
    const i = seq % REPLAY_WINDOW;
    const w = i >>> 3;
    const mask = 1 << (i & 7);
    this.#bits[w] = on ? this.#bits[w]! | mask : this.#bits[w]! & ~mask;
  }
}
