import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { signReceipt } from '../../shared/crypto/receipt.js';
import type { HotlineEvent, LinkEvent } from '../../shared/protocol/frames.js';
import type { StatusResponse } from '../../server/plugins/status.js';
import { CN, JP } from '../helpers/deployment.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { onCleanup, startTestServer, type TestServer } from '../helpers/test-server.js';
import { call, type LinkClient } from '../helpers/ws-client.js';
import { next } from '../helpers/events.js';

const QUIET = { heartbeatIntervalMs: 365 * 24 * 3_600_000 };

function agent(s: TestServer, key: string, options: { testAgent?: boolean; clock?: ManualClock } = {}): HotlineClient {
  const c = new HotlineClient({
    serverUrl: s.url,
    agreement: s.dep.agreement,
    device: s.dep.devices[key]!,
    storage: new MemoryStorage(),
    WebSocket,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.testAgent ? { testAgent: true } : {}),
  });
  onCleanup(() => c.stop());
  return c;
}


/** Every `link` event a client sees, from now on. */
function record(c: HotlineClient): LinkEvent[] {
  const seen: LinkEvent[] = [];
  c.on('link', (e) => seen.push(e));
  return seen;
}

async function waitEvent(c: LinkClient, pred: (e: HotlineEvent) => boolean, what: string): Promise<HotlineEvent> {
  const f = await c.waitFor((fr) => fr.t === 'event' && pred(fr.event), what);
  return (f as Extract<typeof f, { t: 'event' }>).event;
}

async function status(s: TestServer, key: string): Promise<StatusResponse> {
  const r = await call(s.url, 'GET', '/v1/status', undefined, await s.token(key));
  expect(r.status).toBe(200);
  return r.body as StatusResponse;
}

async function linkAudit(s: TestServer): Promise<{ type: string; ok?: boolean }[]> {
  const entries = await s.store.auditEntries(0, await s.store.auditSize());
  return entries.map((e) => JSON.parse(e.entry) as { type: string; ok?: boolean }).filter((e) => e.type.startsWith('link.') || e.type.startsWith('deadline.'));
}

describe('link test', () => {
  it('a good round trip: the test agent sends, the other side answers by itself, both parties see link.up', async () => {
    const s = await startTestServer();
    const jpAudit = await s.connect(`${JP}/audit1`);
    const cn = agent(s, `${CN}/op1`);
    const cnMessage = next(cn, 'message', (m) => m.header.linkTest === true);
    const cnUp = next(cn, 'link', (e) => e.type === 'link.up');
    await cn.start();
    const jp = agent(s, `${JP}/op1`, { testAgent: true });
    const sent = next(jp, 'link-test-sent');
    const jpTest = next(jp, 'link', (e) => e.type === 'link.test');
    const jpUp = next(jp, 'link', (e) => e.type === 'link.up');
    await jp.start();

    const { id } = await sent;
    const m = await cnMessage;
    expect(m.header).toMatchObject({ id, linkTest: true, precedence: 'ROUTINE', to: CN });
    expect(m.plaintext.body).toBe('link test');
    const test = await jpTest;
    expect(test).toMatchObject({ type: 'link.test', from: JP, to: CN, messageId: id, ok: true });
    expect(test.roundTripMs).toBeGreaterThanOrEqual(0);
    expect(test.roundTripMs).toBeLessThan(s.dep.agreement.linkTest.timeoutMs);
    expect(await jpUp).toMatchObject({ type: 'link.up', ok: true, messageId: id });
    expect(await cnUp).toMatchObject({ type: 'link.up', ok: true, messageId: id });
    expect(await waitEvent(jpAudit, (e) => e.type === 'link.up', 'auditor link.up')).toMatchObject({ from: JP, to: CN });

    const st = await status(s, `${CN}/op1`);
    expect(st.links).toEqual([expect.objectContaining({ from: JP, to: CN, status: 'up', last: expect.objectContaining({ ok: true, messageId: id, roundTripMs: test.roundTripMs }) })]);
    // A link test needs no human: it opens no deadline.
    expect(st.waiting).toEqual([]);
    expect((await status(s, `${JP}/op1`)).sent).toEqual([]);
    expect(await linkAudit(s)).toEqual([
      expect.objectContaining({ type: 'link.test', ok: true }),
      expect.objectContaining({ type: 'link.up', ok: true }),
    ]);
  });

  it('missed (the other side offline, then silent), one alarm only, and recovery at the next good test', async () => {
    const clock = new ManualClock();
    const s = await startTestServer({ clock, app: QUIET });
    const { intervalMs, timeoutMs } = s.dep.agreement.linkTest;
    const jpAudit = await s.connect(`${JP}/audit1`);
    const jp = agent(s, `${JP}/op1`, { testAgent: true, clock });
    const seen = record(jp);

    // 1. Nobody of cn-mnd online: the test fails at once.
    const down = next(jp, 'link', (e) => e.type === 'link.down');
    await jp.start();
    expect(await down).toMatchObject({ from: JP, to: CN, ok: false, reason: `no device of ${CN} online`, at: clock.now() });
    expect(await waitEvent(jpAudit, (e) => e.type === 'link.down', 'auditor link.down')).toMatchObject({ ok: false });

    // 2. cn-mnd's console comes up (and finds the alarm in its mailbox) but does not answer.
    const cn = await s.connect(`${CN}/op1`);
    expect(await waitEvent(cn, (e) => e.type === 'link.down', 'cn link.down')).toMatchObject({ from: JP, to: CN });
    const sent2 = next(jp, 'link-test-sent');
    clock.advance(intervalMs);
    const t2 = await sent2;
    await cn.waitForType('deliver', (f) => f.envelope.header.id === t2.id && f.envelope.header.linkTest === true);
    const failed2 = next(jp, 'link', (e) => e.type === 'link.test' && e.messageId === t2.id);
    clock.advance(timeoutMs - 1);
    await jpAudit.sync();
    expect(jpAudit.ofType('event').filter((f) => 'messageId' in f.event && f.event.messageId === t2.id)).toEqual([]);
    clock.advance(1);
    expect(await failed2).toMatchObject({ ok: false, reason: `no answer from ${CN} within ${timeoutMs} ms` });

    // 3. The next test is answered 250 ms later: link.up, at both parties.
    const sent3 = next(jp, 'link-test-sent');
    clock.advance(intervalMs - timeoutMs);
    const t3 = await sent3;
    const deliver = await cn.waitForType('deliver', (f) => f.envelope.header.id === t3.id);
    const up = next(jp, 'link', (e) => e.type === 'link.up');
    clock.advance(250);
    cn.send({ t: 'receipt', receipt: await signReceipt(s.dep.devices[`${CN}/op1`]!, deliver.envelope.header, 'delivered', clock.now()) });
    expect(await up).toMatchObject({ messageId: t3.id, ok: true, roundTripMs: 250 });
    expect(await waitEvent(cn, (e) => e.type === 'link.up', 'cn link.up')).toMatchObject({ roundTripMs: 250 });

    // One alarm for two failures; every result recorded; no deadline for the unanswered test.
    expect(seen.map((e) => `${e.type}:${e.ok}`)).toEqual(['link.test:false', 'link.down:false', 'link.test:false', 'link.test:true', 'link.up:true']);
    expect((await linkAudit(s)).map((e) => `${e.type}:${e.ok}`)).toEqual(['link.test:false', 'link.down:false', 'link.test:false', 'link.test:true', 'link.up:true']);
    const st = await status(s, `${JP}/audit1`);
    expect(st.links).toEqual([expect.objectContaining({ from: JP, to: CN, status: 'up', since: clock.now(), last: expect.objectContaining({ messageId: t3.id, roundTripMs: 250 }) })]);
  });

  it('the watchdog: the test agent stops, and link.down reaches both parties one interval plus timeout after its last test', async () => {
    const clock = new ManualClock();
    const s = await startTestServer({ clock, app: QUIET });
    const { intervalMs, timeoutMs } = s.dep.agreement.linkTest;
    const jpAudit = await s.connect(`${JP}/audit1`);
    const cn = agent(s, `${CN}/op1`, { clock });
    await cn.start();
    const jp = agent(s, `${JP}/op1`, { testAgent: true, clock });
    const up = next(cn, 'link', (e) => e.type === 'link.up');
    await jp.start();
    const first = await up;
    // The agent stops (its machine is switched off): no test, no answer, nothing failed.
    jp.stop();
    const down = next(cn, 'link', (e) => e.type === 'link.down');
    clock.advance(intervalMs + timeoutMs - (clock.now() - first.at) - 1);
    await jpAudit.sync();
    expect(jpAudit.ofType('event').filter((f) => f.event.type === 'link.down')).toEqual([]);
    clock.advance(1);
    const alarm = await down;
    expect(alarm).toMatchObject({ type: 'link.down', from: JP, to: CN, ok: false, at: clock.now() });
    expect(alarm.messageId).toBeUndefined();
    expect(alarm.reason).toContain(`is ${JP}'s test agent running?`);
    expect(await waitEvent(jpAudit, (e) => e.type === 'link.down', 'auditor link.down')).toMatchObject({ from: JP, to: CN, ok: false });
    expect((await linkAudit(s)).map((e) => `${e.type}:${e.ok}`)).toEqual(['link.test:true', 'link.up:true', 'link.down:false']);
    expect((await status(s, `${CN}/op1`)).links).toEqual([expect.objectContaining({ from: JP, to: CN, status: 'down', since: clock.now() })]);
  });
});
