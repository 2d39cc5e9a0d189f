import { describe, expect, it } from 'vitest';
import { DeadlineTable } from '../../server/relay/deadline-table.js';
import { initialDeadlines } from '../../server/relay/deadlines.js';
import type { DeadlineRecord } from '../../server/relay/records.js';

const T0 = Date.UTC(2026, 0, 1, 9, 0, 0);
const rec = (id: string, rung: DeadlineRecord['rung'], nextAt: number, extra: Partial<DeadlineRecord> = {}): DeadlineRecord => ({
  messageId: id,
  from: 'jp-mod',
  to: 'cn-mnd',
  precedence: 'ROUTINE',
  rung,
  acceptedAt: T0,
  dueAt: nextAt,
  level: 0,
  nextAt,
  ...extra,
});
const drain = (t: DeadlineTable) => {
  const out: string[] = [];
  for (let r = t.popDue(); r !== undefined; r = t.popDue()) out.push(`${r.messageId}/${r.rung}@${r.nextAt - T0}`);
  return out;
};

describe('DeadlineTable (the open deadlines in columns)', () => {
  it('keeps opening order as a Map would: a re-armed deadline keeps its place, one closed and opened again goes last', () => {
    const t = new DeadlineTable();
    t.put(rec('a', 'delivered', T0 + 3));
    t.put(rec('a', 'acknowledged', T0 + 9));
    t.put(rec('b', 'delivered', T0 + 1));
    t.put(rec('a', 'delivered', T0 + 7, { level: 1 })); // re-armed
    t.remove('a', 'acknowledged');
    t.put(rec('a', 'acknowledged', T0 + 2, { precedence: 'FLASH', from: 'cn-mnd', to: 'jp-mod' })); // opened again
    expect([...t.values()].map((r) => `${r.messageId}/${r.rung}`)).toEqual(['a/delivered', 'b/delivered', 'a/acknowledged']);
    expect(t.get('a', 'delivered')).toEqual(rec('a', 'delivered', T0 + 7, { level: 1 }));
    expect(t.get('a', 'acknowledged')).toEqual(rec('a', 'acknowledged', T0 + 2, { precedence: 'FLASH', from: 'cn-mnd', to: 'jp-mod' }));
    expect(t.size).toBe(3);
    // Firing order: nextAt, then message id, then rung.
    expect(drain(t)).toEqual(['b/delivered@1', 'a/acknowledged@2', 'a/delivered@7']);
    // Taken off the heap, still open until closed or re-armed.
    expect(t.size).toBe(3);
    expect(t.peekNextAt()).toBeUndefined();
    t.put(rec('b', 'delivered', T0 + 5, { level: 1 }));
    expect(t.peekNextAt()).toBe(T0 + 5);
  });

  it('frees what is closed: slots and message entries are reused, and nothing closed is seen again', () => {
    const t = new DeadlineTable();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 200; i++) {
        t.put(rec(`m${round}-${i}`, 'delivered', T0 + ((i * 37) % 101)));
        t.put(rec(`m${round}-${i}`, 'acknowledged', T0 + 500 + i));
      }
      for (let i = 0; i < 200; i++) {
        t.remove(`m${round}-${i}`, 'delivered');
        t.remove(`m${round}-${i}`, 'acknowledged');
      }
      expect(t.size).toBe(0);
      expect([...t.values()]).toEqual([]);
      expect(t.has(`m${round}-0`, 'delivered')).toBe(false);
      expect(t.peekNextAt()).toBeUndefined();
    }
    t.put(rec('x', 'complied', T0 + 4));
    t.remove('x', 'delivered'); // not open: nothing happens
    expect(drain(t)).toEqual(['x/complied@4']);
  });

  it('a state loaded at start (heap built in one pass) fires in the same order as one built step by step, and skips closed rows', () => {
    const rows: DeadlineRecord[] = [];
    for (let i = 0; i < 500; i++) rows.push(rec(`id${(i * 7919) % 500}`, i % 2 === 0 ? 'delivered' : 'acknowledged', T0 + ((i * 104729) % 997)));
    rows.push(rec('closed', 'delivered', T0, { closedAt: T0 + 1, late: false }));
    const loaded = initialDeadlines(rows);
    const stepwise = new DeadlineTable();
    for (const r of rows) if (r.closedAt === undefined) stepwise.put(r);
    expect(loaded.open.has('closed/delivered')).toBe(false);
    expect(loaded.open.size).toBe(stepwise.size);
    expect(loaded.takeDue(T0 + 10_000).map((r) => `${r.messageId}/${r.rung}@${r.nextAt - T0}`)).toEqual(drain(stepwise));
  });
});
