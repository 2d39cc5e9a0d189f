import { describe, expect, it } from 'vitest';
import {
  initialLinkTests,
  nextLinkDue,
  stepLinkTests,
  type LinkTestEffect,
  type LinkTestInput,
  type LinkTestState,
} from '../../server/relay/link-test.js';

const policy = { timeoutMs: 120_000 };
const T0 = Date.UTC(2026, 0, 1, 9, 0, 0);
const id = (n: number) => n.toString(16).padStart(32, '0');

function run(inputs: LinkTestInput[], state: LinkTestState = initialLinkTests()) {
  const effects: LinkTestEffect[] = [];
  for (const input of inputs) {
    const step = stepLinkTests(policy, state, input);
    state = step.state;
    effects.push(...step.effects);
  }
  return { state, effects };
}
const events = (effects: LinkTestEffect[]) => effects.flatMap((e) => (e.type === 'emit' ? [[e.event.type, e.event.ok] as const] : []));
const sent = (n: number, at: number, addresseeOnline = true): LinkTestInput => ({ type: 'test-accepted', messageId: id(n), from: 'jp-mod', to: 'cn-mnd', at, addresseeOnline });

describe('stepLinkTests', () => {
  it('a good round trip: link.test ok with its round trip, and link.up once', () => {
    const { state, effects } = run([sent(1, T0), { type: 'receipt', messageId: id(1), byParty: 'cn-mnd', at: T0 + 42 }]);
    expect(events(effects)).toEqual([
      ['link.test', true],
      ['link.up', true],
    ]);
    const emittedTest = effects.find((e) => e.type === 'emit' && e.event.type === 'link.test');
    expect(emittedTest).toMatchObject({ event: { roundTripMs: 42, from: 'jp-mod', to: 'cn-mnd', messageId: id(1), at: T0 + 42 } });
    expect(state.pairs.get('jp-mod>cn-mnd')).toMatchObject({ status: 'up', since: T0 + 42, last: { ok: true, roundTripMs: 42 } });
    expect(state.pending.size).toBe(0);
    // A second good test: no new link.up.
    const again = run([sent(2, T0 + 3_600_000), { type: 'receipt', messageId: id(2), byParty: 'cn-mnd', at: T0 + 3_600_010 }], state);
    expect(events(again.effects)).toEqual([['link.test', true]]);
  });

  it('only the addressee party answers a test', () => {
    const { state, effects } = run([sent(1, T0), { type: 'receipt', messageId: id(1), byParty: 'jp-mod', at: T0 + 42 }]);
    expect(events(effects)).toEqual([]);
    expect(state.pending.size).toBe(1);
  });

  it('no answer: fails exactly at the timeout, not 1 ms before', () => {
    const { state } = run([sent(1, T0)]);
    // The scheduler's timer is armed for the timeout.
    expect(nextLinkDue(state)).toBe(T0 + 120_000);
    expect(events(run([{ type: 'tick', now: T0 + 119_999 }], state).effects)).toEqual([]);
    const { effects, state: after } = run([{ type: 'tick', now: T0 + 120_000 }], state);
    expect(nextLinkDue(after)).toBeUndefined();
    expect(events(effects)).toEqual([
      ['link.test', false],
      ['link.down', false],
    ]);
    expect(after.pairs.get('jp-mod>cn-mnd')?.status).toBe('down');
    // A late answer does not bring the link up.
    expect(events(run([{ type: 'receipt', messageId: id(1), byParty: 'cn-mnd', at: T0 + 130_000 }], after).effects)).toEqual([]);
  });

  it('the other side offline: fails at once; repeated failures raise one alarm; recovery is link.up', () => {
    const { effects, state } = run([
      sent(1, T0, false),
      sent(2, T0 + 3_600_000, false),
      sent(3, T0 + 7_200_000, true),
      { type: 'receipt', messageId: id(3), byParty: 'cn-mnd', at: T0 + 7_200_100 },
    ]);
    expect(events(effects)).toEqual([
      ['link.test', false],
      ['link.down', false],
      ['link.test', false],
      ['link.test', true],
      ['link.up', true],
    ]);
    const down = effects.find((e) => e.type === 'emit' && e.event.type === 'link.down');
    expect(down).toMatchObject({ event: { reason: 'no device of cn-mnd online' } });
    expect(state.pairs.get('jp-mod>cn-mnd')).toMatchObject({ status: 'up', since: T0 + 7_200_100, last: { roundTripMs: 100 } });
  });

  it('pairs are ordered: jp→cn says nothing about cn→jp', () => {
    const { state } = run([sent(1, T0), { type: 'receipt', messageId: id(1), byParty: 'cn-mnd', at: T0 + 5 }]);
    expect(state.pairs.get('cn-mnd>jp-mod')).toBeUndefined();
  });

  it('a restart re-judges a test that was in flight', () => {
    const state = initialLinkTests([], [{ messageId: id(1), from: 'jp-mod', to: 'cn-mnd', sentAt: T0, dueAt: T0 + 120_000 }]);
    const { effects } = run([{ type: 'tick', now: T0 + 600_000 }], state);
    expect(events(effects)).toEqual([
      ['link.test', false],
      ['link.down', false],
    ]);
  });
});

describe('the watchdog (no link test at all)', () => {
  const watched = { timeoutMs: 120_000, intervalMs: 3_600_000 };
  const step = (state: LinkTestState, input: LinkTestInput) => stepLinkTests(watched, state, input);
  const up = () => {
    let state = initialLinkTests();
    state = step(state, sent(1, T0)).state;
    return step(state, { type: 'receipt', messageId: id(1), byParty: 'cn-mnd', at: T0 + 42 }).state;
  };

  it('raises link.down once when no test is accepted within interval + timeout, and a good test brings the pair up again', () => {
    const state = up();
    const silentAt = T0 + 3_600_000 + 120_000;
    expect(nextLinkDue(state, watched)).toBe(silentAt);
    expect(step(state, { type: 'tick', now: silentAt - 1 }).effects).toEqual([]);
    const { state: down, effects } = step(state, { type: 'tick', now: silentAt });
    const emitted = effects.flatMap((e) => (e.type === 'emit' ? [e.event] : []));
    expect(emitted).toHaveLength(1);
    expect(emitted[0]).toMatchObject({ type: 'link.down', from: 'jp-mod', to: 'cn-mnd', ok: false, at: silentAt });
    expect(emitted[0]).not.toHaveProperty('messageId');
    expect((emitted[0] as { reason: string }).reason).toContain("is jp-mod's test agent running?");
    expect(effects).toContainEqual({ type: 'persist-pair', record: expect.objectContaining({ status: 'down', since: silentAt }) });
    // Once: a down pair is not watched, so later ticks say nothing more and arm no timer.
    expect(nextLinkDue(down, watched)).toBeUndefined();
    expect(step(down, { type: 'tick', now: silentAt + 10 * 3_600_000 }).effects).toEqual([]);
    // The agent is back: a good round trip is link.up.
    const back = step(step(down, sent(2, silentAt + 5)).state, { type: 'receipt', messageId: id(2), byParty: 'cn-mnd', at: silentAt + 50 });
    expect(back.effects.flatMap((e) => (e.type === 'emit' ? [e.event.type] : []))).toEqual(['link.test', 'link.up']);
  });

  it('counts a test still in flight as a test: the silence is measured from the newest one', () => {
    const state = step(up(), sent(2, T0 + 3_600_000)).state;
    // The pending test fails at its own timeout (link.test + link.down), not the watchdog earlier.
    expect(nextLinkDue(state, watched)).toBe(T0 + 3_600_000 + 120_000);
    const fired = step(state, { type: 'tick', now: T0 + 3_600_000 + 120_000 });
    expect(fired.effects.flatMap((e) => (e.type === 'emit' ? [[e.event.type, 'messageId' in e.event]] : []))).toEqual([
      ['link.test', true],
      ['link.down', true],
    ]);
  });

  it('watches only pairs that have been tested, and nothing without the interval in the policy', () => {
    expect(nextLinkDue(initialLinkTests(), watched)).toBeUndefined();
    const state = up();
    expect(nextLinkDue(state)).toBeUndefined();
    expect(stepLinkTests(policy, state, { type: 'tick', now: T0 + 100 * 3_600_000 }).effects).toEqual([]);
  });
});
