import { describe, expect, it } from 'vitest';
import { pageOf } from '../../../client/console/auditor/paging.js';

describe('pageOf', () => {
  const rows = Array.from({ length: 1234 }, (_, i) => i);

  it('reaches every row: the last page ends at the last row, whatever the page size', () => {
    for (const size of [50, 100, 250, 500]) {
      const seen: number[] = [];
      const pages = pageOf(rows, 1, size).pages;
      for (let p = 1; p <= pages; p++) seen.push(...pageOf(rows, p, size).rows);
      expect(seen).toEqual(rows);
    }
    expect(pageOf(rows, 3, 500)).toMatchObject({ page: 3, pages: 3, first: 1001, last: 1234, total: 1234 });
  });

  it('clamps a page out of range or not a number to the pages there are', () => {
    expect(pageOf(rows, 99, 100).page).toBe(13);
    expect(pageOf(rows, 0, 100).page).toBe(1);
    expect(pageOf(rows, Number.NaN, 100).page).toBe(1);
    expect(pageOf([], 5, 100)).toMatchObject({ rows: [], page: 1, pages: 1, first: 0, last: 0, total: 0 });
  });
});
