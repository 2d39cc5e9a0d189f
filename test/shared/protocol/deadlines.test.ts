import { describe, expect, it } from 'vitest';
import { dueAt } from '../../../shared/protocol/deadlines.js';
import { DEFAULT_DEADLINES } from '../../../shared/crypto/keys.js';
import type { DeadlineTable } from '../../../shared/protocol/schemas.js';

describe('dueAt', () => {
  const start = Date.UTC(2026, 11, 4, 12, 0, 0);

  it('counts each rung of each precedence from the start time, by the default deadlines (docs/design.md "Deadlines")', () => {
    expect(dueAt(DEFAULT_DEADLINES, 'FLASH', 'delivered', start)).toBe(start + 30_000);
    expect(dueAt(DEFAULT_DEADLINES, 'FLASH', 'acknowledged', start)).toBe(start + 10 * 60_000);
    expect(dueAt(DEFAULT_DEADLINES, 'IMMEDIATE', 'delivered', start)).toBe(start + 2 * 60_000);
    expect(dueAt(DEFAULT_DEADLINES, 'ROUTINE', 'acknowledged', start)).toBe(start + 6 * 3600_000);
  });

  it('uses the agreement’s own table, not the defaults', () => {
    const table: DeadlineTable = { ...DEFAULT_DEADLINES, PRIORITY: { deliveredMs: 7, acknowledgedMs: 11 } };
    expect(dueAt(table, 'PRIORITY', 'delivered', 100)).toBe(107);
    expect(dueAt(table, 'PRIORITY', 'acknowledged', 100)).toBe(111);
    expect(dueAt(table, 'FLASH', 'delivered', 100)).toBe(100 + DEFAULT_DEADLINES.FLASH.deliveredMs);
  });
});
