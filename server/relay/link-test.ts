import type { LinkEvent } from '../../shared/protocol/frames.js';
import type { LinkPairRecord, LinkStatus, LinkTestResult, PendingTest } from './records.js';

/**
 * The link test as a pure state machine (docs/design.md "Link test"). A party's test agent (a device:
 * the server holds no device key and cannot fake a test) sends a signed envelope with
 * `header.linkTest: true`; the other party's connected operator device answers with its automatic
 * `delivered` receipt. The server watches the round trip:
 *
 * - test accepted and a device of the addressee party is online → wait up to `timeoutMs` for a
 *   `delivered` (or higher) receipt from the addressee party;
 * - no device of the addressee party online at acceptance, or no answer in time → the test failed;
 * - each result is a `link.test` event (ok, round trip or reason) to both parties; a change of the
 *   pair's status is a `link.up` / `link.down` alarm, once per transition, so repeated failures
 *   raise one alarm, not one per test. The first good test of an unknown pair is `link.up`.
 * - an answer that arrives after the test already failed changes nothing: only a good round trip
 *   within the timeout brings the link up.
 *
 * Pairs are ordered (`from>to`): jp→cn working says nothing about cn→jp.
 */

export interface LinkTestState {
  pairs: ReadonlyMap<string, LinkPairRecord>;
  pending: ReadonlyMap<string, PendingTest>;
}

export interface LinkTestPolicy {
  timeoutMs: number;
  /**
   * The agreement's test interval. With it, the watchdog is on: a pair that has been tested and
   * is not already down goes down when no test of it has been accepted within `intervalMs +
   * timeoutMs` (its test agent stopped, or the sender's side lost its way to the relay), so a
   * silent agent raises `link.down` like a failed test instead of leaving the last "up" standing.
   */
  intervalMs?: number;
}

export type LinkTestInput =
  | { type: 'test-accepted'; messageId: string; from: string; to: string; at: number; addresseeOnline: boolean }
  | { type: 'receipt'; messageId: string; byParty: string; at: number }
  | { type: 'tick'; now: number };

export type LinkTestEffect =
  /** Store the pair's status and last result. */
  | { type: 'persist-pair'; record: LinkPairRecord }
  /** Store (or, when `done`, close) a test in flight so a restart still judges it. */
  | { type: 'persist-pending'; test: PendingTest; done: boolean }
  | { type: 'emit'; event: LinkEvent };

export function pairKey(from: string, to: string): string {
  return `${from}>${to}`;
}

export function initialLinkTests(pairs: Iterable<LinkPairRecord> = [], pending: Iterable<PendingTest> = []): LinkTestState {
  return {
    pairs: new Map([...pairs].map((p) => [pairKey(p.from, p.to), p])),
    pending: new Map([...pending].map((t) => [t.messageId, t])),
  };
}

export function nextLinkDue(state: LinkTestState, policy?: LinkTestPolicy): number | undefined {
  let at: number | undefined;
  for (const t of state.pending.values()) if (at === undefined || t.dueAt < at) at = t.dueAt;
  for (const due of watchdogDue(policy, state).values()) if (at === undefined || due < at) at = due;
  return at;
}

/**
 * When the watchdog raises each watched pair (pair key → time): a pair that has a result and is
 * not down, `intervalMs + timeoutMs` after its newest test (a result's or one still in flight).
 * Link tests are few (one per pair per interval), so this walk is small.
 */
function watchdogDue(policy: LinkTestPolicy | undefined, state: LinkTestState): Map<string, number> {
  const due = new Map<string, number>();
  if (policy?.intervalMs === undefined) return due;
  const newest = new Map<string, number>();
  for (const t of state.pending.values()) {
    const key = pairKey(t.from, t.to);
    newest.set(key, Math.max(newest.get(key) ?? 0, t.sentAt));
  }
  for (const [key, p] of state.pairs) {
    if (p.status === 'down' || !p.last) continue;
    due.set(key, Math.max(p.last.sentAt, newest.get(key) ?? 0) + policy.intervalMs + policy.timeoutMs);
  }
  return due;
}

export function stepLinkTests(
  policy: LinkTestPolicy,
  state: LinkTestState,
  input: LinkTestInput,
): { state: LinkTestState; effects: LinkTestEffect[] } {
  const pairs = new Map(state.pairs);
  const pending = new Map(state.pending);
  const effects: LinkTestEffect[] = [];

  const conclude = (test: { messageId: string; from: string; to: string; sentAt: number }, result: LinkTestResult) => {
    const key = pairKey(test.from, test.to);
    const prev = pairs.get(key) ?? { from: test.from, to: test.to, status: 'unknown' as const };
    // A result older than the one already recorded (two tests in flight, answered out of order)
    // still counts as a test, but does not overwrite the newer result.
    const newer = !prev.last || prev.last.sentAt <= result.sentAt;
    const status: LinkStatus = result.ok ? 'up' : 'down';
    const changed = newer && prev.status !== status;
    const record: LinkPairRecord = {
      from: test.from,
      to: test.to,
      status: newer ? status : prev.status,
      ...(changed ? { since: result.at } : prev.since !== undefined ? { since: prev.since } : {}),
      ...(newer ? { last: result } : prev.last ? { last: prev.last } : {}),
    };
    pairs.set(key, record);
    effects.push({ type: 'persist-pair', record });
    const base = { from: test.from, to: test.to, messageId: test.messageId, ok: result.ok, at: result.at };
    const detail = {
      ...(result.roundTripMs !== undefined ? { roundTripMs: result.roundTripMs } : {}),
      ...(result.reason !== undefined ? { reason: result.reason } : {}),
    };
    effects.push({ type: 'emit', event: { type: 'link.test', ...base, ...detail } });
    if (changed) effects.push({ type: 'emit', event: { type: result.ok ? 'link.up' : 'link.down', ...base, ...detail } });
  };

  switch (input.type) {
    case 'test-accepted': {
      if (pending.has(input.messageId)) break; // a re-sent identical test
      const test: PendingTest = { messageId: input.messageId, from: input.from, to: input.to, sentAt: input.at, dueAt: input.at + policy.timeoutMs };
      if (!input.addresseeOnline) {
        conclude(test, { messageId: test.messageId, sentAt: test.sentAt, ok: false, reason: `no device of ${input.to} online`, at: input.at });
        break;
      }
      pending.set(test.messageId, test);
      effects.push({ type: 'persist-pending', test, done: false });
      break;
    }
    case 'receipt': {
      const test = pending.get(input.messageId);
      if (!test || test.to !== input.byParty) break;
      pending.delete(test.messageId);
      effects.push({ type: 'persist-pending', test, done: true });
      conclude(test, {
        messageId: test.messageId,
        sentAt: test.sentAt,
        ok: true,
        answeredAt: input.at,
        roundTripMs: input.at - test.sentAt,
        at: input.at,
      });
      break;
    }
    case 'tick': {
      const due = [...pending.values()].filter((t) => t.dueAt <= input.now).sort((a, b) => a.dueAt - b.dueAt);
      for (const test of due) {
        pending.delete(test.messageId);
        effects.push({ type: 'persist-pending', test, done: true });
        conclude(test, {
          messageId: test.messageId,
          sentAt: test.sentAt,
          ok: false,
          reason: `no answer from ${test.to} within ${policy.timeoutMs} ms`,
          at: input.now,
        });
      }
      // The watchdog: no test at all for too long. No test result (there was no test): the pair
      // goes down with a link.down that names no message, once, until a good test brings it up.
      for (const [key, at] of watchdogDue(policy, { pairs, pending })) {
        if (at > input.now) continue;
        const prev = pairs.get(key)!;
        const silentMs = policy.intervalMs! + policy.timeoutMs;
        const reason = `no link test from ${prev.from} to ${prev.to} for ${Math.round(silentMs / 1000)} s: is ${prev.from}'s test agent running?`;
        const record: LinkPairRecord = { ...prev, status: 'down', since: input.now };
        pairs.set(key, record);
        effects.push({ type: 'persist-pair', record });
        effects.push({ type: 'emit', event: { type: 'link.down', from: prev.from, to: prev.to, ok: false, reason, at: input.now } });
      }
      break;
    }
  }

  return { state: { pairs, pending }, effects };
}
