import type { MailboxItem } from '../store/store.js';

/**
 * Per-connection delivery order, as a pure state machine. On connect the backlog is read from the
 * mailbox page by page while new items may already arrive live; live items are held until the
 * backlog is through, and nothing is sent twice or out of cursor order on one connection.
 */
export interface DeliveryState {
  phase: 'backlog' | 'live';
  /** Highest cursor sent on this connection. */
  lastSent: number;
  held: MailboxItem[];
}

export type DeliveryEvent =
  | { type: 'backlog'; items: readonly MailboxItem[]; done: boolean }
  | { type: 'live'; item: MailboxItem };

export type DeliveryEffect = { type: 'send'; item: MailboxItem };

export function initialDelivery(lastAcked: number): DeliveryState {
  return { phase: 'backlog', lastSent: lastAcked, held: [] };
}

export function stepDelivery(state: DeliveryState, event: DeliveryEvent): { state: DeliveryState; effects: DeliveryEffect[] } {
  const effects: DeliveryEffect[] = [];
  let lastSent = state.lastSent;
  const send = (items: readonly MailboxItem[]) => {
    for (const item of [...items].sort((a, b) => a.cursor - b.cursor)) {
      if (item.cursor <= lastSent) continue;
      effects.push({ type: 'send', item });
      lastSent = item.cursor;
    }
  };
  if (event.type === 'live') {
    if (state.phase === 'backlog') return { state: { ...state, held: [...state.held, event.item] }, effects };
    send([event.item]);
    return { state: { ...state, lastSent }, effects };
  }
  send(event.items);
  if (!event.done) return { state: { ...state, lastSent }, effects };
  send(state.held);
  return { state: { phase: 'live', lastSent, held: [] }, effects };
}
