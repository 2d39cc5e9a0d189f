import type { DeadlineRow, DeadlineTable, Precedence, ReceiptKind } from './schemas.js';
import type { Rung } from './frames.js';

/**
 * When a message's `rung` is due: its precedence's deadline in the agreement, counted from `start`
 * (shared/PROTOCOL.md "Deadlines and link test"). The server counts from its own `acceptedAt`; a
 * console that has not yet heard `accepted` counts from the best time it has, to show a countdown.
 * One function, so that the relay and the consoles cannot disagree about a due time.
 *
 * @example
 * dueAt(agreement.deadlines, 'FLASH', 'acknowledged', acceptedAt); // acceptedAt + 10 minutes by default
 */
export function dueAt(deadlines: DeadlineTable, precedence: Precedence, rung: 'delivered' | 'acknowledged', start: number): number;
export function dueAt(deadlines: DeadlineTable, precedence: Precedence, rung: Rung, start: number): number | undefined;
export function dueAt(deadlines: DeadlineTable, precedence: Precedence, rung: Rung, start: number): number | undefined {
  const ms = rungDeadlineMs(deadlines[precedence], rung);
  return ms === undefined ? undefined : start + ms;
}

/**
 * A rung's deadline in one precedence's row, or undefined when the agreement sets none (`answered`
 * and `complied` are optional: PROTOCOL.md "Deadlines").
 *
 * @example
 * rungDeadlineMs({ deliveredMs: 30_000, acknowledgedMs: 600_000 }, 'complied'); // undefined
 */
export function rungDeadlineMs(row: DeadlineRow, rung: Rung): number | undefined {
  switch (rung) {
    case 'delivered':
      return row.deliveredMs;
    case 'acknowledged':
      return row.acknowledgedMs;
    case 'answered':
      return row.answeredMs;
    case 'complied':
      return row.compliedMs;
  }
}

/**
 * The deadline rungs a receipt of `kind` reaches (PROTOCOL.md "Deadlines"): each rung implies the
 * ones below it; `cannot-comply` answers but never complies (it closes `complied` instead).
 *
 * @example
 * rungsReached('will-comply'); // ['delivered', 'acknowledged', 'answered']
 */
export function rungsReached(kind: ReceiptKind): Rung[] {
  switch (kind) {
    case 'delivered':
      return ['delivered'];
    case 'acknowledged':
      return ['delivered', 'acknowledged'];
    case 'will-comply':
    case 'cannot-comply':
      return ['delivered', 'acknowledged', 'answered'];
    case 'have-complied':
      return ['delivered', 'acknowledged', 'answered', 'complied'];
  }
}
