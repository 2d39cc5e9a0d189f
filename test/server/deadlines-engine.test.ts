import { describe, expect, it } from 'vitest';
import { DEFAULT_DEADLINES } from '../../shared/crypto/keys.js';
import { PRECEDENCES, type Precedence } from '../../shared/protocol/schemas.js';
import {
  deadlineKey,
  initialDeadlines,
  metEvent,
  missedEvent,
  nextDue,
  nextGridPoint,
  rungsReached,
  RUNGS,
  stepDeadlines,
  type DeadlineEffect,
  type DeadlineInput,
  type DeadlinePolicy,
  type DeadlineState,
} from '../../server/relay/deadlines.js';
import type { DeadlineRecord } from '../../server/relay/records.js';
import { rungDeadlineMs } from '../../shared/protocol/deadlines.js';

const MIN = 60_000;
const policy: DeadlinePolicy = { deadlines: DEFAULT_DEADLINES, reminderIntervalMs: 5 * MIN };
const T0 = Date.UTC(2026, 0, 1, 9, 0, 0);
const ID = 'a'.repeat(32);

/** Feed inputs one by one to `state` (changed in place), collecting every effect. */
function run(inputs: DeadlineInput[], state: DeadlineState = initialDeadlines()) {
  const effects: DeadlineEffect[] = [];
  for (const input of inputs) effects.push(...stepDeadlines(policy, state, input));
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
        const early = run([{ type: 'tick', now: T0 + ms - 1 }], state.clone());
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
    expect(nextDue(state)).toBeUndefined();
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
    expect(events.map((e) => [e.type, e.type === 'deadline.missed' ? e.level : e.type === 'deadline.met' ? e.late : e.reason])).toEqual([
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

/**
 * The engine before issue 9, kept as the reference: the open set as a plain map, `nextDue` by a scan
 * of every open deadline, a tick by filtering and sorting all of them. Obviously right, O(n) per step.
 */
class ReferenceEngine {
  readonly open = new Map<string, DeadlineRecord>();
  // The scan's result, kept until a deadline closes or fires (only to keep the test quick).
  #min: { at: number | undefined } | undefined;

  nextDue(): number | undefined {
    if (!this.#min) {
      let at: number | undefined;
      for (const r of this.open.values()) if (at === undefined || r.nextAt < at) at = r.nextAt;
      this.#min = { at };
    }
    return this.#min.at;
  }

  step(input: DeadlineInput): DeadlineEffect[] {
    const effects: DeadlineEffect[] = [];
    if (input.type === 'accepted' && !input.linkTest) {
      const row = policy.deadlines[input.precedence];
      for (const rung of RUNGS) {
        const key = deadlineKey(input.messageId, rung);
        if (this.open.has(key)) continue;
        const ms = rungDeadlineMs(row, rung);
        if (ms === undefined) continue;
        const dueAt = input.acceptedAt + ms;
        const record: DeadlineRecord = { messageId: input.messageId, from: input.from, to: input.to, precedence: input.precedence, rung, acceptedAt: input.acceptedAt, dueAt, level: 0, nextAt: dueAt };
        this.open.set(key, record);
        if (this.#min && (this.#min.at === undefined || dueAt < this.#min.at)) this.#min = { at: dueAt };
        effects.push({ type: 'persist', record });
      }
    } else if (input.type === 'receipt') {
      for (const rung of rungsReached(input.kind)) {
        const key = deadlineKey(input.messageId, rung);
        const r = this.open.get(key);
        if (!r || r.to !== input.byParty) continue;
        this.open.delete(key);
        if (this.#min?.at === r.nextAt) this.#min = undefined;
        const met = metEvent(r, input.at);
        effects.push({ type: 'persist', record: { ...r, closedAt: input.at, late: met.late } });
        if (met.late) effects.push({ type: 'emit', event: met });
      }
    } else if (input.type === 'tick') {
      const due = [...this.open.values()]
        .filter((r) => r.nextAt <= input.now)
        .sort((a, b) => a.nextAt - b.nextAt || (a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : RUNGS.indexOf(a.rung) - RUNGS.indexOf(b.rung)));
      for (const r of due) {
        const level = r.level + 1;
        const fired: DeadlineRecord = { ...r, level, nextAt: nextGridPoint(r.dueAt, policy.reminderIntervalMs, input.now) };
        this.open.set(deadlineKey(r.messageId, r.rung), fired);
        this.#min = undefined;
        effects.push({ type: 'persist', record: fired });
        effects.push({ type: 'emit', event: missedEvent(r, input.now, level) });
      }
    }
    return effects;
  }
}

/** mulberry32: a small seeded PRNG, so that a failure can be replayed. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('stepDeadlines: the complete ladder (answered and complied deadlines)', () => {
  const ladder: DeadlinePolicy = {
    deadlines: { ...DEFAULT_DEADLINES, FLASH: { deliveredMs: 30_000, acknowledgedMs: 10 * MIN, answeredMs: 30 * MIN, compliedMs: 120 * MIN } },
    reminderIntervalMs: 5 * MIN,
  };
  const step = (state: DeadlineState, input: DeadlineInput) => stepDeadlines(ladder, state, input);
  const rungsOpen = (state: DeadlineState) => [...state.open.values()].map((r) => r.rung);

  it('opens the answered and complied rungs only where the agreement sets them', () => {
    const state = initialDeadlines();
    const persisted = step(state, accepted('FLASH')).flatMap((e) => (e.type === 'persist' ? [[e.record.rung, e.record.dueAt - T0]] : []));
    expect(persisted).toEqual([['delivered', 30_000], ['acknowledged', 10 * MIN], ['answered', 30 * MIN], ['complied', 120 * MIN]]);
    const routine = initialDeadlines();
    step(routine, accepted('ROUTINE'));
    expect(rungsOpen(routine)).toEqual(['delivered', 'acknowledged']);
  });

  it('will-comply closes the answered rung (and those below) but not complied; have-complied closes it', () => {
    const state = initialDeadlines();
    step(state, accepted('FLASH'));
    expect(step(state, { type: 'receipt', messageId: ID, kind: 'will-comply', byParty: 'cn-mnd', at: T0 + 20_000 })).toEqual(
      ['delivered', 'acknowledged', 'answered'].map((rung) => expect.objectContaining({ type: 'persist', record: expect.objectContaining({ rung, closedAt: T0 + 20_000, late: false }) })),
    );
    expect(rungsOpen(state)).toEqual(['complied']);
    // Missed, then reached: late, with deadline.met.
    const missed = emitted(step(state, { type: 'tick', now: T0 + 120 * MIN }));
    expect(missed).toEqual([expect.objectContaining({ type: 'deadline.missed', rung: 'complied', level: 1 })]);
    const met = emitted(step(state, { type: 'receipt', messageId: ID, kind: 'have-complied', byParty: 'cn-mnd', at: T0 + 121 * MIN }));
    expect(met).toEqual([expect.objectContaining({ type: 'deadline.met', rung: 'complied', late: true, lateMs: MIN })]);
    expect(state.open.size).toBe(0);
  });

  it('cannot-comply answers, and closes the complied rung with deadline.closed (nobody will comply)', () => {
    const state = initialDeadlines();
    step(state, accepted('FLASH'));
    const effects = step(state, { type: 'receipt', messageId: ID, kind: 'cannot-comply', byParty: 'cn-mnd', at: T0 + 2 * MIN });
    // Delivery was due at 30 s: reached late, so deadline.met for it first.
    expect(emitted(effects)).toEqual([
      expect.objectContaining({ type: 'deadline.met', rung: 'delivered', late: true }),
      { type: 'deadline.closed', messageId: ID, from: 'jp-mod', to: 'cn-mnd', precedence: 'FLASH', rung: 'complied', dueAt: T0 + 120 * MIN, at: T0 + 2 * MIN, reason: 'cannot-comply', detail: 'cn-mnd answered cannot-comply' },
    ]);
    expect(state.open.size).toBe(0);
    expect(effects.filter((e) => e.type === 'persist').map((e) => (e.type === 'persist' ? e.record.rung : ''))).toEqual(['delivered', 'acknowledged', 'answered', 'complied']);
  });

  it("the sender's own cannot-comply closes nothing", () => {
    const state = initialDeadlines();
    step(state, accepted('FLASH'));
    expect(step(state, { type: 'receipt', messageId: ID, kind: 'cannot-comply', byParty: 'jp-mod', at: T0 + MIN })).toEqual([]);
    expect(state.open.size).toBe(4);
  });
});

describe('DeadlineState at scale', () => {
  it('20,000 open deadlines: a seeded mix of accepts, receipts and ticks gives exactly the reference effects and open set', () => {
    const rand = seeded(9);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const state = initialDeadlines();
    const ref = new ReferenceEngine();
    const ids: string[] = [];
    let now = T0;
    let fired = 0;
    let met = 0;
    let peak = 0;
    const check = (input: DeadlineInput) => {
      const got = stepDeadlines(policy, state, input);
      const want = ref.step(input);
      // Compared as JSON first: a deep equality per step would dominate the test's time.
      if (JSON.stringify(got) !== JSON.stringify(want)) expect(got).toEqual(want);
      // When to wake next, after every step (the scheduler's one timer is armed for it).
      if (state.nextDue() !== ref.nextDue()) expect(state.nextDue()).toBe(ref.nextDue());
      fired += got.filter((e) => e.type === 'emit' && e.event.type === 'deadline.missed').length;
      met += got.filter((e) => e.type === 'persist' && e.record.closedAt !== undefined).length;
      peak = Math.max(peak, state.open.size);
    };
    const accept = () => {
      const id = (ids.length + 1).toString(16).padStart(32, '0');
      ids.push(id);
      const [from, to] = rand() < 0.5 ? ['jp-mod', 'cn-mnd'] : ['cn-mnd', 'jp-mod'];
      check({ type: 'accepted', messageId: id, from, to, precedence: pick(PRECEDENCES), acceptedAt: now, ...(rand() < 0.02 ? { linkTest: true } : {}) });
    };
    const receipt = () => {
      const id = pick(ids);
      const r = ref.open.get(deadlineKey(id, 'delivered')) ?? ref.open.get(deadlineKey(id, 'acknowledged'));
      // Mostly the addressee; sometimes the sender (which must not count) or an unknown message.
      const byParty = r && rand() < 0.9 ? r.to : 'jp-mod';
      check({ type: 'receipt', messageId: rand() < 0.05 ? 'f'.repeat(32) : id, kind: pick(['delivered', 'acknowledged', 'will-comply'] as const), byParty, at: now });
    };
    // Open 20,000 deadlines (10,000 messages, a few resent), ticking now and then.
    for (let i = 0; i < 10_200 && state.open.size < 20_000; i++) {
      now += Math.floor(rand() * 40);
      if (rand() < 0.01 && ids.length > 0) check({ type: 'accepted', messageId: pick(ids), from: 'jp-mod', to: 'cn-mnd', precedence: 'FLASH', acceptedAt: now });
      else accept();
      if (i % 500 === 499) check({ type: 'tick', now });
    }
    expect(state.open.size).toBeGreaterThanOrEqual(19_000);
    // Then a shuffled mix at that size, time running on through several reminder intervals.
    for (let i = 0; i < 3000; i++) {
      now += Math.floor(rand() * 400);
      const x = rand();
      if (x < 0.45) receipt();
      else if (x < 0.9) accept();
      else check({ type: 'tick', now });
    }
    check({ type: 'tick', now: now + 7 * 60 * MIN });
    expect([...state.open.values()]).toEqual([...ref.open.values()]);
    expect(state.nextDue()).toBe(ref.nextDue());
    expect(peak).toBeGreaterThanOrEqual(20_000);
    // The mix exercised every path.
    expect(fired).toBeGreaterThan(1000);
    expect(met).toBeGreaterThan(1000);
  });
});
