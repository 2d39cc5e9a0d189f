import type { Precedence } from '../../shared/protocol/schemas.js';
import type { HotlineEvent } from '../../shared/protocol/frames.js';
import type { MailboxItem, MailboxPosition } from './records.js';

/** Delivery rank of a precedence (PROTOCOL.md "Delivery order"): lower goes first. */
export const PRECEDENCE_RANK: Readonly<Record<Precedence, number>> = { FLASH: 0, IMMEDIATE: 1, PRIORITY: 2, ROUTINE: 3 };

/** Rank of an event: a deadline event takes its message's precedence; every other event goes first. */
export function eventRank(event: HotlineEvent): number {
  return 'precedence' in event ? PRECEDENCE_RANK[event.precedence] : 0;
}

/** (rank, cursor) order: the order in which a device is handed its mailbox. */
export function compareItems(a: MailboxPosition, b: MailboxPosition): number {
  return a.rank - b.rank || a.cursor - b.cursor;
}

/** Backlog items kept queued before the next page is read: enough to keep the socket busy meanwhile. */
const REFILL_BELOW = 64;

/**
 * What one connection still has to send, as a state machine: the shell (server/plugins/link.ts)
 * feeds it events and carries out its effects (read a mailbox page, send an item).
 *
 * The backlog is the device's un-acknowledged items with cursor ≤ `snapshot` (the highest cursor
 * when the connection started); it is read page by page in (rank, cursor) order. Items that arrive
 * live have cursor > snapshot, so nothing is both read and pushed: each item is sent exactly once.
 * Backlog and live items wait in one priority queue and leave it in (rank, cursor) order; a queued
 * item goes out only when no backlog item still unread could precede it, so a FLASH that arrives
 * while a ROUTINE backlog drains is sent next, and within a rank items keep cursor (acceptance)
 * order, which keeps each sender's order.
 *
 * The state is updated in place: it belongs to one connection, and copying a queue of thousands of
 * items at each step would make every send cost as much as the backlog.
 */
export interface DeliveryState {
  /** Backlog snapshot, undefined until the connection's start. */
  snapshot: number | undefined;
  /** Live items that came before the snapshot was known. */
  early: MailboxItem[];
  /** Min-heap by (rank, cursor). */
  queue: MailboxItem[];
  /** The last backlog item read: every unread backlog item comes after it. */
  readUpTo: MailboxPosition | undefined;
  backlogDone: boolean;
  reading: boolean;
  /** Backlog items in `queue` (live ones are the rest). */
  queuedBacklog: number;
  /** Bytes of live items waiting in `queue`: what a reader that does not read costs the server. */
  liveBytes: number;
}

export type DeliveryEvent =
  /** The connection starts: the backlog is everything up to `snapshot`. */
  | { type: 'start'; snapshot: number }
  /** A backlog page read after the position asked for; `done` when it is the last. */
  | { type: 'page'; items: readonly MailboxItem[]; done: boolean }
  | { type: 'live'; item: MailboxItem }
  /** The socket can take up to `max` more items. */
  | { type: 'writable'; max: number };

export type DeliveryEffect =
  | { type: 'send'; item: MailboxItem }
  | { type: 'read'; after: MailboxPosition | undefined; upTo: number };

export function initialDelivery(): DeliveryState {
  return { snapshot: undefined, early: [], queue: [], readUpTo: undefined, backlogDone: false, reading: false, queuedBacklog: 0, liveBytes: 0 };
}

export function stepDelivery(state: DeliveryState, event: DeliveryEvent): DeliveryEffect[] {
  const effects: DeliveryEffect[] = [];
  switch (event.type) {
    case 'start': {
      state.snapshot = event.snapshot;
      for (const item of state.early) enqueueLive(state, item);
      state.early = [];
      break;
    }
    case 'page': {
      state.reading = false;
      for (const item of event.items) {
        push(state.queue, item);
        state.queuedBacklog++;
        state.readUpTo = item;
      }
      if (event.done) state.backlogDone = true;
      break;
    }
    case 'live': {
      if (state.snapshot === undefined) state.early.push(event.item);
      else enqueueLive(state, event.item);
      break;
    }
    case 'writable': {
      for (let n = 0; n < event.max && sendable(state); n++) {
        const item = pop(state.queue)!;
        if (item.cursor <= state.snapshot!) state.queuedBacklog--;
        else state.liveBytes -= item.json.length;
        effects.push({ type: 'send', item });
      }
      break;
    }
  }
  if (state.snapshot !== undefined && !state.backlogDone && !state.reading && state.queuedBacklog < REFILL_BELOW) {
    state.reading = true;
    effects.push({ type: 'read', after: state.readUpTo, upTo: state.snapshot });
  }
  return effects;
}

/** Whether an item is waiting that may go out now. */
export function hasSendable(state: DeliveryState): boolean {
  return sendable(state);
}

function sendable(state: DeliveryState): boolean {
  const head = state.queue[0];
  if (head === undefined) return false;
  // An unread backlog item comes after readUpTo; until the backlog is through, only what precedes
  // it may go (with nothing read yet, nothing may).
  return state.backlogDone || (state.readUpTo !== undefined && compareItems(head, state.readUpTo) <= 0);
}

function enqueueLive(state: DeliveryState, item: MailboxItem): void {
  // At or below the snapshot it is part of the backlog and is read from there.
  if (item.cursor <= state.snapshot!) return;
  push(state.queue, item);
  state.liveBytes += item.json.length;
}

function push(heap: MailboxItem[], item: MailboxItem): void {
  heap.push(item);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (compareItems(heap[parent]!, item) <= 0) break;
    heap[i] = heap[parent]!;
    i = parent;
  }
  heap[i] = item;
}

function pop(heap: MailboxItem[]): MailboxItem | undefined {
  const top = heap[0];
  const last = heap.pop();
  if (top === undefined || last === undefined || heap.length === 0) return top;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= heap.length) break;
    const r = l + 1;
    const child = r < heap.length && compareItems(heap[r]!, heap[l]!) < 0 ? r : l;
    if (compareItems(heap[child]!, last) >= 0) break;
    heap[i] = heap[child]!;
    i = child;
  }
  heap[i] = last;
  return top;
}
