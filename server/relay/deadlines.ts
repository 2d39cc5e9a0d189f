import type { DeadlineMetEvent, DeadlineMissedEvent, Rung } from '../../shared/protocol/frames.js';
import type { Agreement, Precedence, ReceiptKind } from '../../shared/protocol/schemas.js';

/**
 * Acknowledgement deadlines as a pure state machine (DESIGN.md "Precedence and deadlines"):
 * `stepDeadlines(policy, state, event) -> { state, effects }`. The shell (server/deadline-scheduler.ts)
 * carries out the effects: it persists rows, sends events to both parties' mailboxes, appends them
 * to the audit log and keeps one timer armed for the earliest `schedule` time.
 *
 * Rules:
 * - Every accepted message, except a link test, gets two deadlines counted from the server's
 *   `acceptedAt`: `delivered` and `acknowledged`, from `agreement.deadlines[precedence]`. A link test
 *   gets none: its answer is watched by the link-test logic (server/relay/link-test.ts), and it must
 *   never need a human.
 * - Only a receipt signed by the addressee party counts. `delivered` closes the delivered rung;
 *   `acknowledged` (and the later rungs `will-comply` / `cannot-comply`, which a human gives after
 *   reading) closes both. The receipt's time is the server's acceptance time, never the signer's
 *   clock.
 * - A deadline whose rung is not reached by `dueAt` fires `deadline.missed` level 1 at exactly
 *   `dueAt` (not a millisecond before), then a reminder every `reminderIntervalMs` with the level
 *   raised by one, until the rung is reached. Reminders sit on the grid `dueAt + k·interval`.
 * - A rung reached after a miss closes the deadline with `deadline.met` `late: true`. A rung reached
 *   in time closes it quietly: the row is stored closed, no event is emitted (the receipt itself has
 *   already reached both parties and the audit log, and proves the time).
 * - After downtime (`tick` with `now` far past `nextAt`), a deadline fires once, not once per missed
 *   reminder: its level rises by one and the next reminder goes to the next grid point after `now`.
 */

/** One stored deadline. `level` counts the missed events already fired (0: none). */
export interface DeadlineRecord {
  messageId: string;
  from: string;
  to: string;
  precedence: Precedence;
  rung: Rung;
  acceptedAt: number;
  dueAt: number;
  level: number;
  /** When the next `deadline.missed` fires; meaningless once closed. */
  nextAt: number;
  closedAt?: number;
  /** Set when closed: whether the rung was reached after `dueAt`. */
  late?: boolean;
}

export interface DeadlinePolicy {
  deadlines: Agreement['deadlines'];
  reminderIntervalMs: number;
}

export function deadlinePolicy(agreement: Agreement): DeadlinePolicy {
  return { deadlines: agreement.deadlines, reminderIntervalMs: agreement.reminderIntervalMs };
}

/** Open deadlines by `deadlineKey`. Closed ones leave the state (they live on in the store). */
export interface DeadlineState {
  open: ReadonlyMap<string, DeadlineRecord>;
}

export type DeadlineInput =
  | {
      type: 'accepted';
      messageId: string;
      from: string;
      to: string;
      precedence: Precedence;
      acceptedAt: number;
      linkTest?: boolean;
    }
  | { type: 'receipt'; messageId: string; kind: ReceiptKind; byParty: string; at: number }
  | { type: 'tick'; now: number };

export type DeadlineEffect =
  /** Insert or update the row (a closed row has `closedAt`). */
  | { type: 'persist'; record: DeadlineRecord }
  | { type: 'emit'; event: DeadlineMissedEvent | DeadlineMetEvent }
  /** Arm the one timer for `at` (the earliest open `nextAt`), or disarm it when `at` is undefined. */
  | { type: 'schedule'; at: number | undefined };

export const RUNGS: readonly Rung[] = ['delivered', 'acknowledged'];

export function deadlineKey(messageId: string, rung: Rung): string {
  return `${messageId}/${rung}`;
}

export function initialDeadlines(open: Iterable<DeadlineRecord> = []): DeadlineState {
  const map = new Map<string, DeadlineRecord>();
  for (const r of open) if (r.closedAt === undefined) map.set(deadlineKey(r.messageId, r.rung), r);
  return { open: map };
}

/** Which rungs a receipt of this kind reaches: a human acknowledgement implies delivery. */
export function rungsReached(kind: ReceiptKind): Rung[] {
  return kind === 'delivered' ? ['delivered'] : ['delivered', 'acknowledged'];
}

/** Earliest time anything is due, or undefined when nothing is open. */
export function nextDue(state: DeadlineState): number | undefined {
  let at: number | undefined;
  for (const r of state.open.values()) if (at === undefined || r.nextAt < at) at = r.nextAt;
  return at;
}

/** The first reminder grid point `dueAt + k·interval` strictly after `now`. */
function nextGridPoint(dueAt: number, interval: number, now: number): number {
  const k = Math.floor((now - dueAt) / interval) + 1;
  return dueAt + k * interval;
}

function missedEvent(r: DeadlineRecord, now: number, level: number): DeadlineMissedEvent {
  return {
    type: 'deadline.missed',
    messageId: r.messageId,
    from: r.from,
    to: r.to,
    precedence: r.precedence,
    rung: r.rung,
    dueAt: r.dueAt,
    at: now,
    lateMs: now - r.dueAt,
    level,
  };
}

function metEvent(r: DeadlineRecord, at: number): DeadlineMetEvent {
  const lateMs = Math.max(0, at - r.dueAt);
  return {
    type: 'deadline.met',
    messageId: r.messageId,
    from: r.from,
    to: r.to,
    precedence: r.precedence,
    rung: r.rung,
    dueAt: r.dueAt,
    at,
    late: r.level > 0 || lateMs > 0,
    lateMs,
  };
}

export function stepDeadlines(
  policy: DeadlinePolicy,
  state: DeadlineState,
  input: DeadlineInput,
): { state: DeadlineState; effects: DeadlineEffect[] } {
  const open = new Map(state.open);
  const effects: DeadlineEffect[] = [];
  const before = nextDue(state);

  switch (input.type) {
    case 'accepted': {
      if (input.linkTest) break;
      const row = policy.deadlines[input.precedence];
      for (const rung of RUNGS) {
        const key = deadlineKey(input.messageId, rung);
        // Idempotent: a re-sent identical envelope is accepted again but opens nothing new.
        if (open.has(key)) continue;
        const dueAt = input.acceptedAt + (rung === 'delivered' ? row.deliveredMs : row.acknowledgedMs);
        const record: DeadlineRecord = {
          messageId: input.messageId,
          from: input.from,
          to: input.to,
          precedence: input.precedence,
          rung,
          acceptedAt: input.acceptedAt,
          dueAt,
          level: 0,
          nextAt: dueAt,
        };
        open.set(key, record);
        effects.push({ type: 'persist', record });
      }
      break;
    }
    case 'receipt': {
      for (const rung of rungsReached(input.kind)) {
        const key = deadlineKey(input.messageId, rung);
        const r = open.get(key);
        if (!r || r.to !== input.byParty) continue;
        open.delete(key);
        const met = metEvent(r, input.at);
        const closed: DeadlineRecord = { ...r, closedAt: input.at, late: met.late };
        effects.push({ type: 'persist', record: closed });
        if (met.late) effects.push({ type: 'emit', event: met });
      }
      break;
    }
    case 'tick': {
      const due = [...open.values()].filter((r) => r.nextAt <= input.now).sort((a, b) => a.nextAt - b.nextAt || (a.messageId < b.messageId ? -1 : 1));
      for (const r of due) {
        const level = r.level + 1;
        const fired: DeadlineRecord = { ...r, level, nextAt: nextGridPoint(r.dueAt, policy.reminderIntervalMs, input.now) };
        open.set(deadlineKey(r.messageId, r.rung), fired);
        effects.push({ type: 'persist', record: fired });
        effects.push({ type: 'emit', event: missedEvent(r, input.now, level) });
      }
      break;
    }
  }

  const next: DeadlineState = { open };
  const after = nextDue(next);
  if (after !== before || input.type === 'tick') effects.push({ type: 'schedule', at: after });
  return { state: next, effects };
}
