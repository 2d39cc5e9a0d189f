import { describe, expect, it } from 'vitest';
import type { HotlineEvent } from '../../../shared/protocol/frames.js';
import { ESCALATION_CURSOR_KEY } from '../../../server/store/store.js';
import { CN, JP } from '../../helpers/deployment.js';
import { STORE_ADAPTERS } from '../../helpers/stores.js';

const alarm = (reason: string, at: number): HotlineEvent => ({ type: 'audit.alarm', party: JP, reason, at });
const down = (at: number): HotlineEvent => ({ type: 'link.down', from: JP, to: CN, ok: false, reason: 'no link test', at });

/**
 * The escalation queue's part of the store contract (server/store/store.ts, docs/escalation.md
 * "Durability and several nodes"): events read in id order after a cursor that moves by
 * compare-and-set, notifications claimed with a lease, settled, kept across a reopen.
 */
describe.each(STORE_ADAPTERS)('escalation queue: $name', (adapter) => {
  it('reads committed events after a cursor; the cursor moves only from where it was read', async () => {
    const { store } = await adapter.open();
    expect(await store.lastEventId()).toBe(0);
    await store.commit([{ kind: 'events', acceptedAt: 10, events: [alarm('a', 10), down(11), alarm('b', 12)].map((event) => ({ event, rank: 0, mailboxes: [] })) }]);
    const events = await store.eventsAfter(0, 10);
    expect(events.map((e) => (JSON.parse(e.event) as HotlineEvent).type)).toEqual(['audit.alarm', 'link.down', 'audit.alarm']);
    expect(await store.lastEventId()).toBe(events[2]!.id);
    expect((await store.eventsAfter(events[0]!.id, 1)).map((e) => e.id)).toEqual([events[1]!.id]);

    // First intake: the cursor is set; a second node that also read "no cursor" writes nothing.
    const row = (hook: string, i: number) => ({ hook, eventId: events[i]!.id, event: events[i]!.event, createdAt: 100, nextAt: 100 });
    expect(await store.queueEscalations(undefined, events[0]!.id, [row('h', 0)])).toBe(true);
    expect(await store.queueEscalations(undefined, events[0]!.id, [row('other', 0)])).toBe(false);
    expect(await store.getMeta(ESCALATION_CURSOR_KEY)).toBe(String(events[0]!.id));
    // From a stale cursor: refused, nothing queued.
    expect(await store.queueEscalations(events[0]!.id - 1, events[2]!.id, [row('stale', 2)])).toBe(false);
    expect(await store.queueEscalations(events[0]!.id, events[2]!.id, [row('h', 1), row('h', 2)])).toBe(true);
    expect(await store.getMeta(ESCALATION_CURSOR_KEY)).toBe(String(events[2]!.id));
    const claimed = await store.claimEscalations(100, 1_000, 10);
    expect(claimed.map((c) => [c.hook, c.eventId, c.attempts]).sort((x, y) => (x[1] as number) - (y[1] as number))).toEqual([0, 1, 2].map((i) => ['h', events[i]!.id, 1]));
  });

  it('claims what is due with a lease (no second claim meanwhile), settles it, and keeps it across a reopen', async () => {
    const { store, reopen } = await adapter.open();
    await store.commit([{ kind: 'events', acceptedAt: 10, events: [{ event: alarm('a', 10), rank: 0, mailboxes: [] }, { event: down(11), rank: 0, mailboxes: [] }] }]);
    const [a, b] = await store.eventsAfter(0, 10);
    await store.queueEscalations(undefined, b!.id, [
      { hook: 'h', eventId: a!.id, event: a!.event, createdAt: 100, nextAt: 100 },
      { hook: 'h', eventId: b!.id, event: b!.event, createdAt: 100, nextAt: 500 },
    ]);
    expect(await store.nextEscalationAt()).toBe(100);
    const first = await store.claimEscalations(100, 40_100, 10);
    expect(first).toEqual([{ hook: 'h', eventId: a!.id, event: a!.event, createdAt: 100, attempts: 1 }]);
    // Leased: another node (or this one) finds nothing due until the lease ends.
    expect(await store.claimEscalations(200, 40_200, 10)).toEqual([]);
    await store.settleEscalation('h', a!.id, { nextAt: 5_100, outcome: 'HTTP 500' });
    expect(await store.nextEscalationAt()).toBe(500);

    const again = await reopen();
    // (The order of a claim is not part of the contract: its rows are sent concurrently.)
    expect((await again.claimEscalations(5_100, 45_100, 10)).map((c) => [c.eventId, c.attempts]).sort((x, y) => x[0]! - y[0]!)).toEqual([
      [a!.id, 2],
      [b!.id, 1],
    ]);
    await again.settleEscalation('h', a!.id, { doneAt: 5_200, outcome: 'HTTP 200' });
    await again.settleEscalation('h', b!.id, { doneAt: 5_200, outcome: 'given up: HTTP 500' });
    expect(await again.nextEscalationAt()).toBeUndefined();
    expect(await again.claimEscalations(1e12, 1e12, 10)).toEqual([]);
  });
});
