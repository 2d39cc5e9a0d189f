import { describe, expect, it } from 'vitest';
import { DEFAULT_DEADLINES } from '../../shared/crypto/keys.js';
import { PRECEDENCES, type Precedence } from '../../shared/protocol/schemas.js';
import {
  initialDeadlines,
  nextDue,
  stepDeadlines,
  type DeadlineEffect,
  type DeadlineInput,
  type DeadlinePolicy,
  type DeadlineRecord,
  type DeadlineState,
} from '../../server/relay/deadlines.js';

const MIN = 60_000;
const policy: DeadlinePolicy = { deadlines: DEFAULT_DEADLINES, reminderIntervalMs: 5 * MIN };
const T0 = Date.UTC(2026, 0, 1, 9, 0, 0);
const ID = 'a'.repeat(32);

/** Feed inputs one by one, collecting every effect. */
function run(inputs: DeadlineInput[], state: DeadlineState = initialDeadlines()) {
  const effects: DeadlineEffect[] = [];
  for (const input of inputs) {
    const step = stepDeadlines(policy, state, input);
    state = step.state;
    effects.push(...step.effects);
  }
  return { state, effects };
}

const accepted = (precedence: Precedence, extra: Partial<Extract<DeadlineInput, { type: 'accepted' }>> = {}): DeadlineInput => ({
  type: 'accepted',
  messageId: ID,
  from: 'jp-mod',
  to: 'cn-mnd',
  precedence,
  acceptedAt: T0,
  ...extra,
});
const emitted = (effects: DeadlineEffect[]) => effects.flatMap((e) => (e.type === 'emit' ? [e.event] : []));

describe('stepDeadlines', () => {
  it('opens a delivered and an acknowledged deadline from the agreement table', () => {
    const { state, effects } = run([accepted('FLASH')]);
    const rows = effects.flatMap((e) => (e.type === 'persist' ? [e.record] : []));
    expect(rows.map((r) => [r.rung, r.dueAt - T0, r.level])).toEqual([
      ['delivered', 30_000],
      ['acknowledged', 10 * MIN],
    ].map(([r, d]) => [r, d, 0]));
    expect(nextDue(state)).toBe(T0 + 30_000);
    expect(effects.at(-1)).toEqual({ type: 'schedule', at: T0 + 30_000 });
  });

  it('opens nothing for a link test (it must never need a human)', () => {
    const { state, effects } = run([accepted('ROUTINE', { linkTest: true })]);
    expect(state.open.size).toBe(0);
    expect(effects).toEqual([]);
  });

  it('is idempotent for a re-sent identical envelope', () => {
    const { state, effects } = run([accepted('FLASH'), accepted('FLASH', { acceptedAt: T0 + 5 })]);
    expect(state.open.size).toBe(2);
    expect(effects.filter((e) => e.type === 'persist')).toHaveLength(2);
  });

  for (const p of PRECEDENCES) {
    it(`${p}: fires each rung exactly at its due time, not 1 ms before`, () => {
      const row = DEFAULT_DEADLINES[p];
      let { state } = run([accepted(p)]);
      for (const [rung, ms] of [['delivered', row.deliveredMs], ['acknowledged', row.acknowledgedMs]] as const) {
        const early = run([{ type: 'tick', now: T0 + ms - 1 }], state);
        expect(emitted(early.effects).filter((e) => e.rung === rung)).toEqual([]);
        const onTime = run([{ type: 'tick', now: T0 + ms }], state);
        const missed = emitted(onTime.effects).filter((e) => e.rung === rung);
        expect(missed).toEqual([
          { type: 'deadline.missed', messageId: ID, from: 'jp-mod', to: 'cn-mnd', precedence: p, rung, dueAt: T0 + ms, at: T0 + ms, lateMs: 0, level: 1 },
        ]);
        state = onTime.state;
      }
    });
  }

  it('a rung reached in time fires nothing and closes quietly', () => {
    const { state, effects } = run([
      accepted('FLASH'),
      { type: 'receipt', messageId: ID, kind: 'delivered', byParty: 'cn-mnd', at: T0 + 29_999 },
      { type: 'receipt', messageId: ID, kind: 'acknowledged', byParty: 'cn-mnd', at: T0 + 10 * MIN - 1 },
      { type: 'tick', now: T0 + 24 * 60 * MIN },
    ]);
    expect(emitted(effects)).toEqual([]);
    expect(state.open.size).toBe(0);
    const closed = effects.flatMap((e) => (e.type === 'persist' && e.record.closedAt !== undefined ? [e.record] : []));
    expect(closed.map((r) => [r.rung, r.late])).toEqual([
      ['delivered', false],
      ['acknowledged', false],
    ]);
    expect(effects.at(-1)).toEqual({ type: 'schedule', at: undefined });
  });

  it('acknowledged also satisfies delivered', () => {
    const { state, effects } = run([accepted('IMMEDIATE'), { type: 'receipt', messageId: ID, kind: 'acknowledged', byParty: 'cn-mnd', at: T0 + 1000 }]);
    expect(state.open.size).toBe(0);
    expect(emitted(effects)).toEqual([]);
  });

  it('counts only receipts of the addressee party', () => {
    const { state } = run([accepted('FLASH'), { type: 'receipt', messageId: ID, kind: 'acknowledged', byParty: 'jp-mod', at: T0 + 1000 }]);
    expect(state.open.size).toBe(2);
  });

  it('reminders repeat at the interval and the level rises', () => {
    let { state } = run([accepted('FLASH')]);
    const levels: [number, number][] = [];
    // Walk the acknowledged rung: due at 10 min, reminders every 5 min.
    for (let t = T0; t <= T0 + 26 * MIN; t += 1000) {
      const step = run([{ type: 'tick', now: t }], state);
      state = step.state;
      for (const e of emitted(step.effects)) if (e.type === 'deadline.missed' && e.rung === 'acknowledged') levels.push([(t - T0) / MIN, e.level]);
    }
    expect(levels).toEqual([
      [10, 1],
      [15, 2],
      [20, 3],
      [25, 4],
    ]);
  });

  it('a late acknowledgement closes with deadline.met late, and no reminder follows', () => {
    const { state, effects } = run([
      accepted('FLASH'),
      { type: 'receipt', messageId: ID, kind: 'delivered', byParty: 'cn-mnd', at: T0 + 1000 },
      { type: 'tick', now: T0 + 10 * MIN },
      { type: 'tick', now: T0 + 15 * MIN },
      { type: 'receipt', messageId: ID, kind: 'acknowledged', byParty: 'cn-mnd', at: T0 + 17 * MIN },
      { type: 'tick', now: T0 + 60 * MIN },
    ]);
    const events = emitted(effects);
    expect(events.map((e) => [e.type, e.type === 'deadline.missed' ? e.level : e.late])).toEqual([
      ['deadline.missed', 1],
      ['deadline.missed', 2],
      ['deadline.met', true],
    ]);
    expect(events.at(-1)).toMatchObject({ rung: 'acknowledged', at: T0 + 17 * MIN, lateMs: 7 * MIN });
    expect(state.open.size).toBe(0);
  });

  it('restart: what fell due while down fires once, the rest is re-armed on its grid', () => {
    // Stored before the downtime: FLASH accepted at T0, delivered missed once (level 1 at +30 s).
    const rows: DeadlineRecord[] = [
      { messageId: ID, from: 'jp-mod', to: 'cn-mnd', precedence: 'FLASH', rung: 'delivered', acceptedAt: T0, dueAt: T0 + 30_000, level: 1, nextAt: T0 + 30_000 + 5 * MIN },
      { messageId: ID, from: 'jp-mod', to: 'cn-mnd', precedence: 'FLASH', rung: 'acknowledged', acceptedAt: T0, dueAt: T0 + 10 * MIN, level: 0, nextAt: T0 + 10 * MIN },
      { messageId: 'b'.repeat(32), from: 'cn-mnd', to: 'jp-mod', precedence: 'ROUTINE', rung: 'delivered', acceptedAt: T0, dueAt: T0 + 60 * MIN, level: 0, nextAt: T0 + 60 * MIN },
    ];
    const restartAt = T0 + 22 * MIN + 7; // down through several reminder slots
    const state = initialDeadlines(rows);
    expect(nextDue(state)).toBe(T0 + 30_000 + 5 * MIN);
    const { state: after, effects } = run([{ type: 'tick', now: restartAt }], state);
    const events = emitted(effects);
    expect(events.map((e) => [e.messageId[0], e.rung, e.type === 'deadline.missed' ? e.level : 0])).toEqual([
      ['a', 'delivered', 2],
      ['a', 'acknowledged', 1],
    ]);
    // Next reminders on the grid dueAt + k·interval after now; the ROUTINE one untouched.
    const open = [...after.open.values()].map((r) => [r.messageId[0], r.rung, r.nextAt - T0]);
    expect(open).toEqual([
      ['a', 'delivered', 30_000 + 25 * MIN],
      ['a', 'acknowledged', 25 * MIN],
      ['b', 'delivered', 60 * MIN],
    ]);
    // The same tick again fires nothing (the fired state is what gets persisted).
    expect(emitted(run([{ type: 'tick', now: restartAt }], after).effects)).toEqual([]);
  });

  it('closed rows are not reloaded', () => {
    const state = initialDeadlines([
      { messageId: ID, from: 'a1', to: 'b1', precedence: 'FLASH', rung: 'delivered', acceptedAt: T0, dueAt: T0 + 1, level: 0, nextAt: T0 + 1, closedAt: T0, late: false },
    ]);
    expect(state.open.size).toBe(0);
  });
});
