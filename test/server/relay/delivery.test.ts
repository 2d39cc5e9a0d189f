import { describe, expect, it } from 'vitest';
import { initialDelivery, stepDelivery } from '../../../server/relay/delivery.js';
import type { MailboxItem } from '../../../server/store/store.js';

const item = (cursor: number) => ({ cursor, kind: 'receipt', acceptedAt: 0 }) as unknown as MailboxItem;
const sent = (effects: { item: MailboxItem }[]) => effects.map((e) => e.item.cursor);

describe('stepDelivery', () => {
  it('holds live items during the backlog and sends each cursor once, in order', () => {
    let s = initialDelivery(2);
    let r = stepDelivery(s, { type: 'live', item: item(6) });
    expect(sent(r.effects)).toEqual([]);
    s = r.state;
    r = stepDelivery(s, { type: 'backlog', items: [item(2), item(3), item(4)], done: false });
    expect(sent(r.effects)).toEqual([3, 4]);
    s = r.state;
    r = stepDelivery(s, { type: 'live', item: item(5) });
    s = r.state;
    r = stepDelivery(s, { type: 'backlog', items: [item(5), item(6)], done: true });
    expect(sent(r.effects)).toEqual([5, 6]);
    expect(r.state.phase).toBe('live');
    s = r.state;
    expect(sent(stepDelivery(s, { type: 'live', item: item(6) }).effects)).toEqual([]);
    expect(sent(stepDelivery(s, { type: 'live', item: item(7) }).effects)).toEqual([7]);
  });
});
