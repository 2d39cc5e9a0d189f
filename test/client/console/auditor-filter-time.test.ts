import { describe, expect, it } from 'vitest';
import { parseFilterTime } from '../../../client/console/auditor/filter-time.js';

describe('parseFilterTime', () => {
  it('reads YYYY-MM-DD with an optional hh:mm[:ss] as local time; empty is no bound', () => {
    expect(parseFilterTime('2026-12-04 09:30')).toBe(new Date(2026, 11, 4, 9, 30, 0).getTime());
    expect(parseFilterTime(' 2026-12-04T09:30:15 ')).toBe(new Date(2026, 11, 4, 9, 30, 15).getTime());
    expect(parseFilterTime('2026-12-04')).toBe(new Date(2026, 11, 4).getTime());
    expect(parseFilterTime('')).toBeUndefined();
  });

  it('refuses other forms and dates that do not exist instead of rolling them over', () => {
    for (const text of ['yesterday', '04/12/2026', '2026-02-30', '2026-12-04 24:00', '2026-12-04 09:60']) expect(parseFilterTime(text), text).toBeNull();
  });
});
