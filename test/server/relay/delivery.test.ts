import { describe, expect, it } from 'vitest';
import { initialDelivery, stepDelivery, type DeliveryEffect, type DeliveryState } from '../../../server/relay/delivery.js';
import type { MailboxItem } from '../../../server/relay/records.js';

const ROUTINE = 3;
const FLASH = 0;
/** An item; `from` (a sender) is carried in the JSON so per-sender order can be checked. */
const item = (cursor: number, rank: number, from = 'a'): MailboxItem => ({ cursor, rank, kind: 'envelope', json: JSON.stringify({ from }), acceptedAt: 0 });

/**
 * A fake mailbox behind the state machine: it answers `read` effects with keyset pages, as the
 * store does, and collects what is sent.
 */
class Harness {
  readonly state: DeliveryState = initialDelivery();
  readonly sent: MailboxItem[] = [];
  private reads: { after: { rank: number; cursor: number } | undefined; upTo: number }[] = [];

  constructor(
    private readonly mailbox: MailboxItem[],
    private readonly page = 4,
  ) {}

  step(event: Parameters<typeof stepDelivery>[1]): void {
    this.apply(stepDelivery(this.state, event));
  }

  private apply(effects: DeliveryEffect[]): void {
    for (const e of effects) {
      if (e.type === 'send') this.sent.push(e.item);
      else this.reads.push({ after: e.after, upTo: e.upTo });
    }
  }

  /** Answer the pending read, if any. */
  answerRead(): boolean {
    const r = this.reads.shift();
    if (!r) return false;
    const after = r.after ?? { rank: -1, cursor: 0 };
    const items = this.mailbox
      .filter((i) => i.cursor <= r.upTo && (i.rank > after.rank || (i.rank === after.rank && i.cursor > after.cursor)))
      .sort((a, b) => a.rank - b.rank || a.cursor - b.cursor)
      .slice(0, this.page);
    this.step({ type: 'page', items, done: items.length < this.page });
    return true;
  }

  /** Let the socket take everything, answering reads as they come, up to a bound of steps. */
  drain(max = 10_000): void {
    for (let i = 0; i < max; i++) {
      const before = this.sent.length;
      this.step({ type: 'writable', max: 3 });
      if (this.sent.length === before && !this.answerRead()) return;
    }
    throw new Error('did not settle');
  }
}

const cursors = (items: MailboxItem[]) => items.map((i) => i.cursor);

describe('stepDelivery', () => {
  it('sends the backlog by rank, then cursor, whatever the arrival order', () => {
    const mailbox = [item(1, ROUTINE), item(2, 2), item(3, ROUTINE), item(4, FLASH), item(5, 1), item(6, FLASH), item(7, ROUTINE)];
    const h = new Harness(mailbox, 2);
    h.step({ type: 'start', snapshot: 7 });
    h.drain();
    expect(cursors(h.sent)).toEqual([4, 6, 5, 2, 1, 3, 7]);
  });

  it('sends nothing before the first page says what comes first', () => {
    const h = new Harness([item(1, ROUTINE)]);
    h.step({ type: 'start', snapshot: 1 });
    h.step({ type: 'live', item: item(2, ROUTINE) });
    h.step({ type: 'writable', max: 10 });
    expect(h.sent).toEqual([]);
    h.drain();
    expect(cursors(h.sent)).toEqual([1, 2]);
  });

  it('a FLASH arriving live while a ROUTINE backlog drains goes out next', () => {
    const mailbox = Array.from({ length: 300 }, (_, i) => item(i + 1, ROUTINE));
    const h = new Harness(mailbox, 16);
    h.step({ type: 'start', snapshot: 300 });
    for (let i = 0; i < 20; i++) {
      h.step({ type: 'writable', max: 3 });
      h.answerRead();
    }
    const before = h.sent.length;
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThan(300);
    h.step({ type: 'live', item: item(301, FLASH) });
    h.step({ type: 'writable', max: 1 });
    expect(h.sent[before]!.cursor).toBe(301);
    h.drain();
    expect(h.sent).toHaveLength(301);
  });

  it('sends every item exactly once across backlog and live, even when a live item came before the start', () => {
    const mailbox = Array.from({ length: 50 }, (_, i) => item(i + 1, (i * 7) % 4));
    const h = new Harness(mailbox, 8);
    // Committed before the snapshot and pushed live too: it must come from the backlog only.
    h.step({ type: 'live', item: mailbox[49]! });
    h.step({ type: 'start', snapshot: 50 });
    h.step({ type: 'live', item: mailbox[10]! });
    h.step({ type: 'writable', max: 5 });
    h.answerRead();
    const live = [item(51, ROUTINE), item(52, FLASH), item(53, 2)];
    for (const l of live) {
      mailbox.push(l);
      h.step({ type: 'live', item: l });
    }
    h.drain();
    const got = cursors(h.sent);
    expect(new Set(got).size).toBe(got.length);
    expect([...got].sort((a, b) => a - b)).toEqual(Array.from({ length: 53 }, (_, i) => i + 1));
  });

  it('keeps each sender’s acceptance order within a rank, while a higher rank overtakes', () => {
    const senders = ['a', 'b', 'c'];
    const mailbox: MailboxItem[] = [];
    for (let c = 1; c <= 60; c++) mailbox.push(item(c, c % 5 === 0 ? 1 : ROUTINE, senders[c % 3]));
    const h = new Harness(mailbox, 7);
    h.step({ type: 'start', snapshot: 40 });
    h.step({ type: 'writable', max: 2 });
    h.answerRead();
    for (const l of mailbox.slice(40)) h.step({ type: 'live', item: l });
    h.drain();
    expect(h.sent).toHaveLength(60);
    for (const rank of [1, ROUTINE]) {
      for (const s of senders) {
        const seq = h.sent.filter((i) => i.rank === rank && JSON.parse(i.json).from === s).map((i) => i.cursor);
        expect(seq).toEqual([...seq].sort((x, y) => x - y));
      }
    }
    // Every IMMEDIATE in the backlog went before every backlog ROUTINE.
    const firstRoutine = h.sent.findIndex((i) => i.rank === ROUTINE);
    expect(h.sent.slice(firstRoutine).some((i) => i.rank === 1 && i.cursor <= 40)).toBe(false);
  });

  it('counts the bytes of live items waiting, for the slow-consumer check', () => {
    const h = new Harness([]);
    h.step({ type: 'start', snapshot: 0 });
    h.answerRead();
    const l = item(1, ROUTINE);
    h.step({ type: 'live', item: l });
    expect(h.state.liveBytes).toBe(l.json.length);
    h.step({ type: 'writable', max: 1 });
    expect(h.state.liveBytes).toBe(0);
    expect(cursors(h.sent)).toEqual([1]);
  });
});
