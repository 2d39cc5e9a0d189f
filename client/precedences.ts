import type { Precedence } from '../shared/protocol/schemas.js';
import type { ClientStorage } from './storage/client-storage.js';

/**
 * Rank of a precedence: lower goes first (PROTOCOL.md "Delivery order"). The client handles
 * incoming frames and transmits its outbox in this order, as the relay delivers.
 */
export const RANK: Record<Precedence, number> = { FLASH: 0, IMMEDIATE: 1, PRIORITY: 2, ROUTINE: 3 };

/** Precedences remembered per message id, to rank receipts and the outbox (the oldest dropped first). */
const MAX_PRECEDENCES = 20_000;

/** Precedence per message id (sent, received, queued), to rank receipts and outbox items. */
export class PrecedenceMemory {
  readonly #of = new Map<string, Precedence>();
  #loaded = false;

  get(id: string): Precedence | undefined {
    return this.#of.get(id);
  }

  /** Remember a message's precedence for ranking; bounded, the oldest forgotten first. */
  remember(id: string, precedence: Precedence): void {
    this.#of.delete(id);
    this.#of.set(id, precedence);
    if (this.#of.size > MAX_PRECEDENCES) this.#of.delete(this.#of.keys().next().value!);
  }

  /** Once per client (later calls do nothing): the precedences of the messages the stored state knows. */
  async load(storage: ClientStorage, key: string): Promise<void> {
    if (this.#loaded) return;
    this.#loaded = true;
    const state = await storage.read(key);
    for (const [id, rec] of Object.entries(state.inbox)) this.remember(id, rec.header.precedence);
    for (const [id, rec] of Object.entries(state.sent)) this.remember(id, rec.header.precedence);
    for (const item of Object.values(state.outbox)) {
      if (item.kind === 'refusal') this.remember(item.messageId, item.precedence);
      else if (item.kind !== 'receipt') this.remember(item.id, item.draft.precedence);
    }
  }
}
