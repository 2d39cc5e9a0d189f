import { describe, expect, it } from 'vitest';
import { EMPTY_QUERY, isFiltering, matches, sortKey, unreadCounts, type FindRow } from '../../../client/console/operator/find.js';

const row = (over: Partial<FindRow> = {}): FindRow => ({ precedence: 'ROUTINE', open: false, text: 'cn-mnd/op1 Radar outage details', ...over });

describe('find', () => {
  it('matches by precedence, state (open, overdue at the given time) and every word of the text, any case', () => {
    expect(matches(EMPTY_QUERY, row(), 0)).toBe(true);
    expect(matches({ ...EMPTY_QUERY, precedence: 'FLASH' }, row(), 0)).toBe(false);
    expect(matches({ ...EMPTY_QUERY, precedence: 'FLASH' }, row({ precedence: 'FLASH' }), 0)).toBe(true);
    expect(matches({ ...EMPTY_QUERY, state: 'open' }, row(), 0)).toBe(false);
    expect(matches({ ...EMPTY_QUERY, state: 'open' }, row({ open: true }), 0)).toBe(true);
    expect(matches({ ...EMPTY_QUERY, state: 'overdue' }, row({ dueAt: 100 }), 99)).toBe(false);
    expect(matches({ ...EMPTY_QUERY, state: 'overdue' }, row({ dueAt: 100 }), 101)).toBe(true);
    expect(matches({ ...EMPTY_QUERY, state: 'overdue' }, row(), 101)).toBe(false);
    expect(matches({ ...EMPTY_QUERY, text: '  radar   DETAILS ' }, row(), 0)).toBe(true);
    expect(matches({ ...EMPTY_QUERY, text: 'radar flash' }, row(), 0)).toBe(false);
    expect(isFiltering(EMPTY_QUERY)).toBe(false);
    expect(isFiltering({ ...EMPTY_QUERY, sort: 'oldest' })).toBe(false);
    expect(isFiltering({ ...EMPTY_QUERY, text: ' x ' })).toBe(true);
  });

  it('orders newest, oldest or most urgent first, messages of one instant by sequence number, oldest the exact reverse of newest', () => {
    const msgs = [
      { id: 'a', p: 'ROUTINE', at: 1_700_000_000_000, seq: 1 },
      { id: 'b', p: 'FLASH', at: 1_700_000_000_000, seq: 2 },
      { id: 'c', p: 'IMMEDIATE', at: 1_700_000_000_500, seq: 3 },
      { id: 'd', p: 'FLASH', at: 1_700_000_001_000, seq: 4 },
    ] as const;
    const order = (sort: 'newest' | 'oldest' | 'precedence') => [...msgs].sort((x, y) => sortKey(sort, y.p, y.at, y.seq) - sortKey(sort, x.p, x.at, x.seq)).map((m) => m.id);
    expect(order('newest')).toEqual(['d', 'c', 'b', 'a']);
    expect(order('oldest')).toEqual(['a', 'b', 'c', 'd']);
    expect(order('precedence')).toEqual(['d', 'b', 'c', 'a']);
    expect(Number.isSafeInteger(sortKey('precedence', 'FLASH', Date.UTC(2090, 0, 1), 255))).toBe(true);
  });

  it('counts what waits by precedence, most urgent first', () => {
    expect(unreadCounts([])).toEqual([]);
    expect(unreadCounts(['ROUTINE', 'FLASH', 'ROUTINE'])).toEqual([
      { precedence: 'FLASH', n: 1 },
      { precedence: 'ROUTINE', n: 2 },
    ]);
  });
});
