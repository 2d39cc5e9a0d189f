import type { DeadlineTable, Precedence } from './schemas.js';
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
export function dueAt(deadlines: DeadlineTable, precedence: Precedence, rung: Rung, start: number): number {
  const row = deadlines[precedence];
  return start + (rung === 'delivered' ? row.deliveredMs : row.acknowledgedMs);
}
