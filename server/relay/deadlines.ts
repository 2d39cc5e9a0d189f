import type { DeadlineClosedEvent, DeadlineClosedReason, DeadlineMetEvent, DeadlineMissedEvent, Rung } from '../../shared/protocol/frames.js';
import type { Agreement, Precedence, ReceiptKind } from '../../shared/protocol/schemas.js';
import { dueAt, rungsReached } from '../../shared/protocol/deadlines.js';
import { DeadlineTable, RUNGS } from './deadline-table.js';
import type { DeadlineRecord } from './records.js';

/**
 * Acknowledgement deadlines as a state machine (docs/design.md "Deadlines", PROTOCOL.md "Deadlines"):
 * `stepDeadlines(policy, state, event) -> effects`, with no I/O; `state` is changed in place (see
 * {@link DeadlineState}). The shell (server/deadline-scheduler.ts) carries out the effects: it
 * persists rows, sends events to both parties' mailboxes and appends them to the audit log; it
 * asks {@link nextDue} (with the link tests' `nextLinkDue`) when to wake next, and keeps one timer
 * armed for that time.
 *
 * Rules:
 * - Every accepted message, except a link test, gets deadlines counted from the server's
 *   `acceptedAt`: `delivered` and `acknowledged`, and `answered` and `complied` where
 *   `agreement.deadlines[precedence]` sets them. A link test gets none: its answer is watched by the
 *   link-test logic (server/relay/link-test.ts), and it must never need a human.
 * - Only a receipt signed by the addressee party counts. Each kind closes its rung and the rungs
 *   below it (`rungsReached`): `delivered` the delivered rung; `acknowledged` both; `will-comply`
 *   and `cannot-comply` (the answer) the answered rung too; `have-complied` all four. A
 *   `cannot-comply` closes `complied` with `deadline.closed` (`reason: "cannot-comply"`): nobody
 *   will comply, so no alarm may wait for it. The receipt's time is the server's acceptance time,
 *   never the signer's clock.
 * - A deadline whose rung is not reached by `dueAt` fires `deadline.missed` level 1 at exactly
 *   `dueAt` (not a millisecond before), then a reminder every `reminderIntervalMs` with the level
 *   raised by one, until the rung is reached. Reminders sit on the grid `dueAt + k·interval`.
 * - A rung reached after a miss closes the deadline with `deadline.met` `late: true`. A rung reached
 *   in time closes it quietly: the row is stored closed, no event is emitted (the receipt itself has
 *   already reached both parties and the audit log, and proves the time).
 * - After downtime (`tick` with `now` far past `nextAt`), a deadline fires once, not once per missed
 *   reminder: its level rises by one and the next reminder goes to the next grid point after `now`.
 * - A message that can no longer be answered (`undeliverable`: every addressee operator it was
 *   sealed to has been revoked) has its open deadlines closed with `deadline.closed` and the
 *   reason, at once: never an alarm nobody can end.
 */

export interface DeadlinePolicy {
  deadlines: Agreement['deadlines'];
  reminderIntervalMs: number;
}

export function deadlinePolicy(agreement: Agreement): DeadlinePolicy {
  return { deadlines: agreement.deadlines, reminderIntervalMs: agreement.reminderIntervalMs };
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
  | { type: 'tick'; now: number }
  | { type: 'undeliverable'; messageId: string; reason: DeadlineClosedReason; detail: string; at: number };

export type DeadlineEffect =
  /** Insert or update the row (a closed row has `closedAt`). */
  | { type: 'persist'; record: DeadlineRecord }
  | { type: 'emit'; event: DeadlineMissedEvent | DeadlineMetEvent | DeadlineClosedEvent };

/** Every deadline rung, in ladder order (`answered` and `complied` only where the agreement sets them). */
export { RUNGS };

export function deadlineKey(messageId: string, rung: Rung): string {
  return `${messageId}/${rung}`;
}

export { rungsReached };

/** The first reminder grid point `dueAt + k·interval` strictly after `now`. */
export function nextGridPoint(dueAt: number, interval: number, now: number): number {
  const k = Math.floor((now - dueAt) / interval) + 1;
  return dueAt + k * interval;
}

/** The `deadline.missed` event of `r` firing at `now` with `level`. */
export function missedEvent(r: DeadlineRecord, now: number, level: number): DeadlineMissedEvent {
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

/** The `deadline.met` event of `r` reached at `at`. */
export function metEvent(r: DeadlineRecord, at: number): DeadlineMetEvent {
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

/**
 * The open deadlines (server/relay/deadline-table.ts: in columns, in opening order, with a min-heap
 * of their `nextAt`). It is mutable and changed in place by {@link stepDeadlines}, so that a step
 * costs O(log n) in the number of open deadlines instead of a copy and a scan of all of them
 * (issue 9: with 20,000 open deadlines the copies were ~78 % of the server's time). Closed
 * deadlines leave it (they live on in the store).
 */
export class DeadlineState {
  readonly #table = new DeadlineTable();
  /** The open deadlines by `deadlineKey`, in opening order (a view: records are built when read). */
  readonly open: ReadonlyMap<string, DeadlineRecord> = new OpenView(this.#table);

  constructor(open: Iterable<DeadlineRecord> = []) {
    for (const r of open) if (r.closedAt === undefined) this.#table.put(r, false);
    this.#table.rebuildHeap();
  }

  /** Earliest `nextAt` of an open deadline, or undefined when nothing is open. */
  nextDue(): number | undefined {
    return this.#table.peekNextAt();
  }

  /** An independent copy (O(n)): for tests and callers that explore "what if". */
  clone(): DeadlineState {
    return new DeadlineState(this.#table.values());
  }

  /** The open deadline of `messageId` at `rung`, or undefined. */
  get(messageId: string, rung: Rung): DeadlineRecord | undefined {
    return this.#table.get(messageId, rung);
  }

  has(messageId: string, rung: Rung): boolean {
    return this.#table.has(messageId, rung);
  }

  /** Open or re-arm a deadline (engine internal: callers step with {@link stepDeadlines}). */
  put(record: DeadlineRecord): void {
    this.#table.put(record);
  }

  /** Close a deadline (engine internal). */
  remove(messageId: string, rung: Rung): void {
    this.#table.remove(messageId, rung);
  }

  /** Take every open deadline with `nextAt <= now` off the heap, in firing order (engine internal). */
  takeDue(now: number): DeadlineRecord[] {
    const due: DeadlineRecord[] = [];
    for (let at = this.#table.peekNextAt(); at !== undefined && at <= now; at = this.#table.peekNextAt()) due.push(this.#table.popDue()!);
    return due;
  }
}

function splitKey(key: string): [string, Rung] {
  const i = key.lastIndexOf('/');
  return [key.slice(0, i), key.slice(i + 1) as Rung];
}

/** The table seen as a map by `deadlineKey` (what the scheduler, the status page and tests read). */
class OpenView implements ReadonlyMap<string, DeadlineRecord> {
  constructor(private readonly table: DeadlineTable) {}

  get size(): number {
    return this.table.size;
  }

  get(key: string): DeadlineRecord | undefined {
    const [messageId, rung] = splitKey(key);
    return RUNGS.includes(rung) ? this.table.get(messageId, rung) : undefined;
  }

  has(key: string): boolean {
    const [messageId, rung] = splitKey(key);
    return RUNGS.includes(rung) && this.table.has(messageId, rung);
  }

  values(): MapIterator<DeadlineRecord> {
    return this.table.values();
  }

  *keys(): MapIterator<string> {
    for (const r of this.table.values()) yield deadlineKey(r.messageId, r.rung);
  }

  *entries(): MapIterator<[string, DeadlineRecord]> {
    for (const r of this.table.values()) yield [deadlineKey(r.messageId, r.rung), r];
  }

  [Symbol.iterator](): MapIterator<[string, DeadlineRecord]> {
    return this.entries();
  }

  forEach(fn: (value: DeadlineRecord, key: string, map: ReadonlyMap<string, DeadlineRecord>) => void, thisArg?: unknown): void {
    for (const [k, r] of this.entries()) fn.call(thisArg, r, k, this);
  }
}

export function initialDeadlines(open: Iterable<DeadlineRecord> = []): DeadlineState {
  return new DeadlineState(open);
}

/** Earliest time anything is due, or undefined when nothing is open. */
export function nextDue(state: DeadlineState): number | undefined {
  return state.nextDue();
}

/** The deadlines an `accepted` input opens (none for a link test or one already open). */
function opened(policy: DeadlinePolicy, state: DeadlineState, input: Extract<DeadlineInput, { type: 'accepted' }>): DeadlineRecord[] {
  if (input.linkTest) return [];
  const records: DeadlineRecord[] = [];
  for (const rung of RUNGS) {
    // Idempotent: a re-sent identical envelope is accepted again but opens nothing new.
    if (state.has(input.messageId, rung)) continue;
    const due = dueAt(policy.deadlines, input.precedence, rung, input.acceptedAt);
    if (due === undefined) continue; // the agreement sets no deadline for this rung
    records.push({ messageId: input.messageId, from: input.from, to: input.to, precedence: input.precedence, rung, acceptedAt: input.acceptedAt, dueAt: due, level: 0, nextAt: due });
  }
  return records;
}

/**
 * The effects `stepDeadlines` would give for an accepted message, without changing `state`: the
 * scheduler writes the rows with the envelope and adopts them only once that write is committed.
 */
export function planAccepted(policy: DeadlinePolicy, state: DeadlineState, input: Extract<DeadlineInput, { type: 'accepted' }>): DeadlineEffect[] {
  return opened(policy, state, input).map((record) => ({ type: 'persist', record }));
}

/** Apply one input to `state` (in place) and return what the shell must do. */
export function stepDeadlines(policy: DeadlinePolicy, state: DeadlineState, input: DeadlineInput): DeadlineEffect[] {
  const effects: DeadlineEffect[] = [];
  switch (input.type) {
    case 'accepted': {
      for (const record of opened(policy, state, input)) {
        state.put(record);
        effects.push({ type: 'persist', record });
      }
      break;
    }
    case 'receipt': {
      for (const rung of rungsReached(input.kind)) {
        const r = state.get(input.messageId, rung);
        if (!r || r.to !== input.byParty) continue;
        state.remove(input.messageId, rung);
        const met = metEvent(r, input.at);
        const closed: DeadlineRecord = { ...r, closedAt: input.at, late: met.late };
        effects.push({ type: 'persist', record: closed });
        if (met.late) effects.push({ type: 'emit', event: met });
      }
      if (input.kind === 'cannot-comply') {
        const r = state.get(input.messageId, 'complied');
        if (r && r.to === input.byParty) {
          state.remove(input.messageId, 'complied');
          effects.push({ type: 'persist', record: { ...r, closedAt: input.at, late: r.level > 0 || input.at > r.dueAt } });
          effects.push({
            type: 'emit',
            event: {
              type: 'deadline.closed',
              messageId: r.messageId,
              from: r.from,
              to: r.to,
              precedence: r.precedence,
              rung: 'complied',
              dueAt: r.dueAt,
              at: input.at,
              reason: 'cannot-comply',
              detail: `${input.byParty} answered cannot-comply`,
            },
          });
        }
      }
      break;
    }
    case 'undeliverable': {
      for (const rung of RUNGS) {
        const r = state.get(input.messageId, rung);
        if (!r) continue;
        state.remove(input.messageId, rung);
        const closed: DeadlineRecord = { ...r, closedAt: input.at, late: r.level > 0 || input.at > r.dueAt };
        effects.push({ type: 'persist', record: closed });
        effects.push({
          type: 'emit',
          event: { type: 'deadline.closed', messageId: r.messageId, from: r.from, to: r.to, precedence: r.precedence, rung, dueAt: r.dueAt, at: input.at, reason: input.reason, detail: input.detail },
        });
      }
      break;
    }
    case 'tick': {
      for (const r of state.takeDue(input.now)) {
        const level = r.level + 1;
        const fired: DeadlineRecord = { ...r, level, nextAt: nextGridPoint(r.dueAt, policy.reminderIntervalMs, input.now) };
        state.put(fired);
        effects.push({ type: 'persist', record: fired });
        effects.push({ type: 'emit', event: missedEvent(r, input.now, level) });
      }
      break;
    }
  }
  return effects;
}
