import { afterEach, describe, expect, it } from 'vitest';
import { formatTime } from '../../../client/console/common/dom.js';

// Node reads TZ afresh when it changes, so one process can stand in Tokyo, Beijing and at UTC.
const original = process.env.TZ;
afterEach(() => {
  if (original === undefined) delete process.env.TZ;
  else process.env.TZ = original;
});

describe('formatTime', () => {
  const instant = Date.UTC(2026, 11, 4, 14, 5, 9);

  it('shows every time with its zone, so one instant reads the same everywhere', () => {
    process.env.TZ = 'Asia/Tokyo';
    expect(formatTime(instant)).toBe('2026-12-04 23:05:09 UTC+09:00');
    process.env.TZ = 'Asia/Shanghai';
    expect(formatTime(instant)).toBe('2026-12-04 22:05:09 UTC+08:00');
    process.env.TZ = 'UTC';
    expect(formatTime(instant)).toBe('2026-12-04 14:05:09 UTC');
    process.env.TZ = 'America/St_Johns';
    expect(formatTime(instant)).toBe('2026-12-04 10:35:09 UTC-03:30');
  });
});
