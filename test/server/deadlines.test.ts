import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { signReceipt } from '../../shared/crypto/receipt.js';
import { revokeDevice } from '../../shared/crypto/keys.js';
import { PRECEDENCES, type Envelope, type Precedence, type ReceiptKind } from '../../shared/protocol/schemas.js';
import type { HotlineEvent } from '../../shared/protocol/frames.js';
import { createLogger, DATABASE_FILE, startServer, type RunningServer } from '../../server/main.js';
import { CN, JP, createDeployment, tempDir, type Deployment } from '../helpers/deployment.js';
import { LogSink } from '../helpers/log-sink.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { onCleanup, startTestServer, type TestServer } from '../helpers/test-server.js';
import { call, enrol, fetchDirectory, LinkClient, login, seal } from '../helpers/ws-client.js';
import type { StatusResponse } from '../../server/plugins/status.js';

const SEC = 1000;
const MIN = 60 * SEC;
/** Heartbeats run on the same manual clock: keep them out of the way of hour-long jumps. */
const QUIET = { heartbeatIntervalMs: 365 * 24 * 60 * MIN };

type Events = HotlineEvent[];
const eventsOf = (c: LinkClient): Events => c.ofType('event').map((f) => f.event);
const missed = (c: LinkClient, rung?: string) =>
  eventsOf(c).filter((e): e is Extract<HotlineEvent, { type: 'deadline.missed' }> => e.type === 'deadline.missed' && (rung === undefined || e.rung === rung));

async function waitEvent(c: LinkClient, pred: (e: HotlineEvent) => boolean, what: string): Promise<HotlineEvent> {
  const f = await c.waitFor((fr) => fr.t === 'event' && pred(fr.event), what);
  return (f as Extract<typeof f, { t: 'event' }>).event;
}

async function status(base: string, dep: Deployment, key: string): Promise<StatusResponse> {
  const r = await call(base, 'GET', '/v1/status', undefined, await login(base, dep.devices[key]!, dep.agreement));
  expect(r.status).toBe(200);
  return r.body as StatusResponse;
}

/** Send a message jp-mod/op1 → cn-mnd and wait until cn-mnd/op1 has it. */
async function sendMessage(s: { url: string; dep: Deployment; now(): number }, jp: LinkClient, cn: LinkClient, seq: number, precedence: Precedence): Promise<{ env: Envelope; acceptedAt: number }> {
  const dir = await fetchDirectory(s.url, await login(s.url, s.dep.devices[`${JP}/op1`]!, s.dep.agreement));
  // Sealed by a device whose clock agrees with the server's (manual) one.
  const env = await seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq, directory: dir, precedence, plaintext: { body: `test ${precedence}`, lang: 'en' }, sentAt: s.now() });
  jp.send({ t: 'envelope', envelope: env });
  const accepted = await jp.waitForType('accepted', (f) => f.id === env.header.id);
  await cn.waitForType('deliver', (f) => f.envelope.header.id === env.header.id);
  return { env, acceptedAt: accepted.at };
}

async function answer(s: { dep: Deployment }, cn: LinkClient, env: Envelope, kind: ReceiptKind, at: number): Promise<void> {
  cn.send({ t: 'receipt', receipt: await signReceipt(s.dep.devices[`${CN}/op1`]!, env.header, kind, at) });
  await cn.waitForType('receipt-accepted', (f) => f.messageId === env.header.id && f.kind === kind);
}

async function auditTypes(store: RunningServer['store'], messageId?: string): Promise<string[]> {
  const entries = await store.auditEntries(0, await store.auditSize());
  return entries
    .map((e) => JSON.parse(e.entry) as { type: string; messageId?: string })
    .filter((e) => e.type.startsWith('deadline.') || e.type.startsWith('link.'))
    .filter((e) => messageId === undefined || e.messageId === messageId)
    .map((e) => e.type);
}

async function setup(): Promise<{ s: TestServer; clock: ManualClock; jp: LinkClient; jpAudit: LinkClient; cn: LinkClient; cnArchive: LinkClient }> {
  const clock = new ManualClock();
  const s = await startTestServer({ clock, app: QUIET });
  const jp = await s.connect(`${JP}/op1`);
  const jpAudit = await s.connect(`${JP}/audit1`);
  const cn = await s.connect(`${CN}/op1`);
  const cnArchive = await s.connect(`${CN}/archive1`);
  return { s, clock, jp, jpAudit, cn, cnArchive };
}

describe('deadlines on the server', () => {
  for (const precedence of PRECEDENCES) {
    it(`${precedence}: each rung fires at its due time, not 1 ms before, at both parties, and is logged`, async () => {
      const { s, clock, jp, jpAudit, cn, cnArchive } = await setup();
      const row = s.dep.agreement.deadlines[precedence];
      const { env, acceptedAt } = await sendMessage(s, jp, cn, 1, precedence);
      const id = env.header.id;

      clock.advance(row.deliveredMs - 1);
      const before = await status(s.url, s.dep, `${CN}/op1`);
      expect(before.waiting.find((d) => d.rung === 'delivered')).toMatchObject({ messageId: id, level: 0, overdue: false, remainingMs: 1 });
      await jp.sync();
      expect(missed(jp)).toEqual([]);

      clock.advance(1);
      const expected = { type: 'deadline.missed', messageId: id, from: JP, to: CN, precedence, rung: 'delivered', dueAt: acceptedAt + row.deliveredMs, at: acceptedAt + row.deliveredMs, lateMs: 0, level: 1 };
      for (const c of [jp, jpAudit, cn]) expect(await waitEvent(c, (e) => e.type === 'deadline.missed', 'delivered missed')).toEqual(expected);

      // The delivered rung reached late; then the acknowledged rung, on its own time.
      await answer(s, cn, env, 'delivered', clock.now());
      for (const c of [jp, cn]) {
        expect(await waitEvent(c, (e) => e.type === 'deadline.met', 'delivered met')).toMatchObject({ rung: 'delivered', late: true, lateMs: 0 });
      }
      clock.advance(row.acknowledgedMs - row.deliveredMs - 1);
      await jp.sync();
      expect(missed(jp, 'acknowledged')).toEqual([]);
      clock.advance(1);
      for (const c of [jp, jpAudit, cn]) {
        expect(await waitEvent(c, (e) => e.type === 'deadline.missed' && e.rung === 'acknowledged', 'ack missed')).toMatchObject({
          rung: 'acknowledged',
          at: acceptedAt + row.acknowledgedMs,
          dueAt: acceptedAt + row.acknowledgedMs,
          level: 1,
        });
      }
      // Archive devices get no events.
      await cnArchive.sync();
      expect(cnArchive.ofType('event')).toEqual([]);
      expect(await auditTypes(s.store, id)).toEqual(['deadline.missed', 'deadline.met', 'deadline.missed']);
    });
  }

  it('a rung reached in time fires nothing and is closed quietly in the store', async () => {
    const { s, clock, jp, jpAudit, cn } = await setup();
    const { env } = await sendMessage(s, jp, cn, 1, 'FLASH');
    clock.advance(10 * SEC);
    await answer(s, cn, env, 'delivered', clock.now());
    clock.advance(5 * MIN);
    await answer(s, cn, env, 'acknowledged', clock.now());
    clock.advance(24 * 60 * MIN);
    for (const c of [jp, jpAudit, cn]) await c.sync();
    expect([...eventsOf(jp), ...eventsOf(jpAudit), ...eventsOf(cn)]).toEqual([]);
    expect(await auditTypes(s.store)).toEqual([]);
    expect((await status(s.url, s.dep, `${JP}/op1`)).sent).toEqual([]);
    const db = new Database(join(s.dataDir, DATABASE_FILE), { readonly: true });
    onCleanup(() => {
      db.close();
    });
    const rows = db.prepare('SELECT rung, closed_at, late, level FROM deadlines WHERE message_id = ? ORDER BY rung').all(env.header.id);
    expect(rows).toEqual([
      { rung: 'acknowledged', closed_at: Date.UTC(2026, 0, 1) + 10 * SEC + 5 * MIN, late: 0, level: 0 },
      { rung: 'delivered', closed_at: Date.UTC(2026, 0, 1) + 10 * SEC, late: 0, level: 0 },
    ]);
  });

  it('reminders repeat and escalate; a late acknowledgement closes it with deadline.met late; an offline device gets it all later', async () => {
    const { s, clock, jp, jpAudit, cn } = await setup();
    const interval = s.dep.agreement.reminderIntervalMs;
    const { env, acceptedAt } = await sendMessage(s, jp, cn, 1, 'FLASH');
    await answer(s, cn, env, 'delivered', clock.now());
    const ackDue = acceptedAt + s.dep.agreement.deadlines.FLASH.acknowledgedMs;
    clock.advance(ackDue - clock.now());
    for (let level = 1; level <= 3; level++) {
      for (const c of [jp, jpAudit, cn]) {
        const e = await waitEvent(c, (ev) => ev.type === 'deadline.missed' && ev.level === level, `level ${level}`);
        expect(e).toMatchObject({ rung: 'acknowledged', level, at: ackDue + (level - 1) * interval, lateMs: (level - 1) * interval });
      }
      if (level < 3) clock.advance(interval);
    }
    const st = await status(s.url, s.dep, `${CN}/op1`);
    expect(st.waiting).toEqual([expect.objectContaining({ messageId: env.header.id, rung: 'acknowledged', overdue: true, level: 3, remainingMs: -2 * interval })]);
    expect((await status(s.url, s.dep, `${JP}/audit1`)).sent).toHaveLength(1);

    clock.advance(2 * MIN);
    await answer(s, cn, env, 'acknowledged', clock.now());
    const met = { type: 'deadline.met', messageId: env.header.id, from: JP, to: CN, precedence: 'FLASH', rung: 'acknowledged', dueAt: ackDue, at: clock.now(), late: true, lateMs: 2 * interval + 2 * MIN };
    for (const c of [jp, jpAudit, cn]) expect(await waitEvent(c, (e) => e.type === 'deadline.met', 'met')).toEqual(met);

    clock.advance(60 * MIN);
    for (const c of [jp, cn]) await c.sync();
    expect(missed(jp).map((e) => e.level)).toEqual([1, 2, 3]);
    expect((await status(s.url, s.dep, `${CN}/op1`)).waiting).toEqual([]);
    expect(await auditTypes(s.store, env.header.id)).toEqual(['deadline.missed', 'deadline.missed', 'deadline.missed', 'deadline.met']);

    // A colleague's console that was off the whole time finds every event in its mailbox.
    const jp2 = await s.connect(`${JP}/op2`);
    await jp2.sync();
    expect(eventsOf(jp2).map((e) => e.type)).toEqual(['deadline.missed', 'deadline.missed', 'deadline.missed', 'deadline.met']);
  });

  it('restart: what fell due while the server was down fires once; the rest is re-armed', async () => {
    const clock = new ManualClock();
    const dep = await createDeployment(clock.now());
    const dir = tempDir();
    onCleanup(() => dir.remove());
    const start = async () => {
      const server = await startServer({ agreement: dep.agreement, dataDir: dir.path, port: 0, logger: createLogger('warn', new LogSink()), clock, app: QUIET });
      onCleanup(() => server.close());
      return server;
    };
    const connect = async (url: string, key: string) => {
      const c = await LinkClient.open(url, await login(url, dep.devices[key]!, dep.agreement));
      onCleanup(async () => void (await c.close()));
      await c.waitForType('hello');
      return c;
    };

    const a = await start();
    for (const d of Object.values(dep.devices)) await enrol(a.url, d.certificate);
    let jp = await connect(a.url, `${JP}/op1`);
    let cn = await connect(a.url, `${CN}/op1`);
    const flash = await sendMessage({ url: a.url, dep, now: () => clock.now() }, jp, cn, 1, 'FLASH');
    await answer({ dep }, cn, flash.env, 'delivered', clock.now());
    const routine = await sendMessage({ url: a.url, dep, now: () => clock.now() }, jp, cn, 2, 'ROUTINE');
    await jp.close();
    await cn.close();
    await a.close();

    // Down through the FLASH acknowledgement deadline (10 min) and three reminder slots.
    clock.advance(25 * MIN + 7 * SEC);
    const b = await start();
    jp = await connect(b.url, `${JP}/op1`);
    cn = await connect(b.url, `${CN}/op1`);
    const ackDue = flash.acceptedAt + 10 * MIN;
    for (const c of [jp, cn]) {
      expect(await waitEvent(c, (e) => e.type === 'deadline.missed', 'missed after restart')).toMatchObject({
        messageId: flash.env.header.id,
        rung: 'acknowledged',
        level: 1,
        dueAt: ackDue,
        at: clock.now(),
        lateMs: clock.now() - ackDue,
      });
    }
    await jp.sync();
    expect(missed(jp)).toHaveLength(1);

    // A second restart with no time passing fires nothing again.
    await jp.close();
    await cn.close();
    await b.close();
    const c2 = await start();
    jp = await connect(c2.url, `${JP}/op1`);
    await jp.sync();
    expect(missed(jp)).toHaveLength(1); // the backlog: the one event, not acknowledged by this raw client yet

    // The next reminder is on the grid (ackDue + 4·5 min), the ROUTINE delivered deadline at its own time.
    clock.advance(ackDue + 20 * MIN - 1 - clock.now());
    await jp.sync();
    expect(missed(jp)).toHaveLength(1);
    clock.advance(1);
    expect(await waitEvent(jp, (e) => e.type === 'deadline.missed' && e.level === 2, 'level 2')).toMatchObject({ at: ackDue + 20 * MIN });
    clock.advance(routine.acceptedAt + 60 * MIN - clock.now());
    expect(await waitEvent(jp, (e) => e.type === 'deadline.missed' && e.messageId === routine.env.header.id, 'routine')).toMatchObject({
      rung: 'delivered',
      level: 1,
      at: routine.acceptedAt + 60 * MIN,
    });
    // In the log: one firing after the downtime (level 1), then one per reminder slot up to +60 min.
    const levels = (await c2.store.auditEntries(0, await c2.store.auditSize()))
      .map((e) => JSON.parse(e.entry) as { type: string; messageId?: string; level?: number })
      .filter((e) => e.type === 'deadline.missed' && e.messageId === flash.env.header.id)
      .map((e) => e.level);
    expect(levels).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });
});

describe('a message nobody can answer any more', () => {
  it('its deadlines are closed with deadline.closed and the reason when every addressee operator it was sealed to is revoked; nothing fires later', async () => {
    const { s, clock, jp, jpAudit, cn } = await setup();
    const { env } = await sendMessage(s, jp, cn, 1, 'PRIORITY');
    const id = env.header.id;
    // cn-mnd's only operator is revoked before it could acknowledge: nobody there can open it now.
    const rev = await revokeDevice(s.dep.parties[CN]!, s.dep.devices[`${CN}/op1`]!.certificate.cert, { at: clock.now(), reason: 'lost' });
    expect((await call(s.url, 'POST', '/v1/directory/revocations', rev)).status).toBe(201);
    // Answered only once the deadlines are closed: the events are already on their way.
    for (const c of [jp, jpAudit]) {
      for (const rung of ['delivered', 'acknowledged'] as const) {
        const e = await waitEvent(c, (x) => x.type === 'deadline.closed' && x.messageId === id && x.rung === rung, `deadline.closed ${rung}`);
        expect(e).toMatchObject({ reason: 'recipients-revoked', from: JP, to: CN, precedence: 'PRIORITY', at: clock.now() });
        expect((e as { detail: string }).detail).toContain(`${CN}/op1`);
      }
    }
    expect((await status(s.url, s.dep, `${JP}/op1`)).sent.filter((w) => w.messageId === id)).toEqual([]);
    expect(await auditTypes(s.store, id)).toEqual(['deadline.closed', 'deadline.closed']);
    // Two days later nothing has fired on it: no alarm is left for a message nobody can see.
    clock.advance(48 * 60 * MIN);
    expect((await status(s.url, s.dep, `${JP}/op1`)).sent.filter((w) => w.messageId === id)).toEqual([]);
    expect(await auditTypes(s.store, id)).toEqual(['deadline.closed', 'deadline.closed']);
    expect(missed(jp).filter((e) => e.messageId === id)).toEqual([]);
  });

  it('a message whose addressee still has an operator that can open it keeps its deadlines', async () => {
    const { s, clock, jp, cn } = await setup();
    const { env } = await sendMessage(s, jp, cn, 1, 'PRIORITY');
    // Revoking the sender's colleague changes nothing for this message.
    const rev = await revokeDevice(s.dep.parties[JP]!, s.dep.devices[`${JP}/op2`]!.certificate.cert, { at: clock.now() });
    expect((await call(s.url, 'POST', '/v1/directory/revocations', rev)).status).toBe(201);
    expect((await status(s.url, s.dep, `${JP}/op1`)).sent.filter((w) => w.messageId === env.header.id).map((w) => w.rung).sort()).toEqual(['acknowledged', 'delivered']);
  });
});
