import { HotlineError } from '../errors.js';

/**
 * How far below the highest `seq` seen from a device an envelope may still arrive. Precedence
 * overtakes: a FLASH sealed after 200 ROUTINE is accepted and delivered before them, so a device's
 * envelopes arrive out of `seq` order. Within the window each `seq` is accepted once; below it,
 * never (so a recipient's memory per sender stays bounded). PROTOCOL.md "Replay".
 */
export const REPLAY_WINDOW = 4096;

/**
 * What a recipient remembers of one sending device: the highest `seq` seen and the `seq`s below it,
 * inside the window, not seen yet, as sorted, disjoint, inclusive ranges. In-order traffic keeps
 * `missing` empty; one overtaking FLASH adds one range. Plain JSON, so client storage keeps it.
 */
export interface SeqWindow {
  high: number;
  missing: [number, number][];
}

/** A window from what older client state kept: only the highest seq (everything below counts as seen). */
export function seqWindowFrom(value: SeqWindow | number | undefined): SeqWindow {
  if (value === undefined) return { high: 0, missing: [] };
  if (typeof value === 'number') return { high: value, missing: [] };
  return value;
}

/** What {@link seqVerdict} says of a seq. */
export type SeqVerdict = 'new' | 'reused' | 'below-window';

/**
 * The replay rule on its own, for a store that answers "was this seq used?" from an index (the
 * server) as well as for a recipient's {@link SeqWindow}: a seq at or below `highest − REPLAY_WINDOW`
 * is refused without looking further; above it, a used seq is refused.
 */
export function seqVerdict(seq: number, highest: number, used: (seq: number) => boolean): SeqVerdict {
  if (seq <= highest - REPLAY_WINDOW) return 'below-window';
  return used(seq) ? 'reused' : 'new';
}

/** Whether `seq` from a device with this window is new (not seen, not below the window). */
export function isNewSeq(window: SeqWindow | number | undefined, seq: number): boolean {
  const w = seqWindowFrom(window);
  return seqVerdict(seq, w.high, (s) => s <= w.high && !w.missing.some(([a, b]) => a <= s && s <= b)) === 'new';
}

/**
 * Record `seq` as seen and return the new window (the argument is not changed); throws
 * `HL_ERR_ENVELOPE_REPLAY` when it was seen already or lies below the window.
 *
 * @example
 * let w = acceptSeq(undefined, 5);   // { high: 5, missing: [[1, 4]] }
 * w = acceptSeq(w, 2);               // { high: 5, missing: [[1, 1], [3, 4]] }
 * acceptSeq(w, 2);                   // throws HL_ERR_ENVELOPE_REPLAY
 */
export function acceptSeq(window: SeqWindow | number | undefined, seq: number, sender = 'the sender'): SeqWindow {
  const w = seqWindowFrom(window);
  if (!isNewSeq(w, seq)) {
    throw new HotlineError('HL_ERR_ENVELOPE_REPLAY', `seq ${seq} of ${sender} was already used or is older than the replay window`);
  }
  const floor = Math.max(seq, w.high) - REPLAY_WINDOW; // seqs ≤ floor are outside the window
  const missing: [number, number][] = [];
  const keep = (a: number, b: number) => {
    const from = Math.max(a, floor + 1);
    if (from <= b) missing.push([from, b]);
  };
  if (seq > w.high) {
    for (const [a, b] of w.missing) keep(a, b);
    keep(w.high + 1, seq - 1);
    return { high: seq, missing };
  }
  for (const [a, b] of w.missing) {
    if (seq < a || seq > b) keep(a, b);
    else {
      keep(a, seq - 1);
      keep(seq + 1, b);
    }
  }
  return { high: w.high, missing };
}
