import { createHmac, randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SMTPServer } from 'smtp-server';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { loadConfig } from '../../server/config.js';
import { loadEscalationConfig, type EscalationConfig } from '../../server/escalation/config.js';
import { retryDelay } from '../../server/escalation/escalation.js';
import { signWebhook, type EscalationPayload } from '../../server/escalation/deliver.js';
import { CN, JP, tempDir } from '../helpers/deployment.js';
import { next } from '../helpers/events.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { onCleanup, startTestServer, type TestServer } from '../helpers/test-server.js';
import { call, fetchDirectory, login, seal, type LinkClient } from '../helpers/ws-client.js';
import { sqliteAdapter, testDatabaseUrl, testSchema } from '../helpers/stores.js';
import { createLogger, startOptionsFromConfig } from '../../server/main.js';
import { LogSink } from '../helpers/log-sink.js';
import { Escalation } from '../../server/escalation/escalation.js';
import type { FastifyBaseLogger } from 'fastify';
import { createDeployment } from '../helpers/deployment.js';
import { PgStore } from '../../server/store/pg-store.js';

/** Heartbeats run on the same manual clock: keep them out of the way. */
const QUIET = { heartbeatIntervalMs: 365 * 24 * 3_600_000 };
const RETRY = { minMs: 5_000, maxMs: 60_000 };

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

/** A webhook receiver on 127.0.0.1:0 answering `statuses` in turn (then 200; 0: no answer at all), recording each request. */
async function receiver(statuses: number[] = []): Promise<{ url: string; requests: Received[]; nth(n: number): Promise<Received> }> {
  const requests: Received[] = [];
  const waiters: { n: number; resolve: (r: Received) => void }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      const status = statuses.shift() ?? 200;
      if (status !== 0) {
        res.statusCode = status;
        res.end('ok');
      }
      for (const w of waiters.filter((x) => x.n <= requests.length)) w.resolve(requests[w.n - 1]!);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hotline`,
    requests,
    nth: (n) =>
      requests.length >= n
        ? Promise.resolve(requests[n - 1]!)
        : new Promise((resolve, reject) => {
            waiters.push({ n, resolve });
            setTimeout(() => reject(new Error(`the receiver did not get request ${n} within 20 s`)), 20_000).unref();
          }),
  };
}

/** A webhooks file in a temporary directory, its secret file beside it (mode 0600); the loaded config. */
function webhooks(hooks: object[], secret = randomBytes(32).toString('hex')): { path: string; dir: string; secret: string; config: EscalationConfig } {
  const dir = tempDir();
  onCleanup(() => dir.remove());
  writeFileSync(join(dir.path, 'hook.secret'), secret + '\n', { mode: 0o600 });
  const path = join(dir.path, 'webhooks.json');
  writeFileSync(path, JSON.stringify({ hooks, retry: RETRY }));
  return { path, dir: dir.path, secret, config: loadEscalationConfig(path) };
}

/** What a receiver does (docs/escalation.md "Verifying a webhook"), with node:crypto alone. */
function verify(secret: string, r: Received): { t: number; payload: EscalationPayload } {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(r.headers['x-hotline-signature']));
  expect(m).not.toBeNull();
  const expected = createHmac('sha256', secret).update(`${m![1]}.${r.body}`).digest('hex');
  expect(m![2]).toBe(expected);
  return { t: Number(m![1]), payload: JSON.parse(r.body) as EscalationPayload };
}

const escalationLines = (s: TestServer) => s.logs.records().filter((r) => r['module'] === 'escalation' && typeof r['attempt'] === 'number');

describe('escalation: webhooks', () => {
  it('a missed FLASH deadline fires a signed webhook; a 500 is retried after the backoff, each attempt logged without secrets', async () => {
    const clock = new ManualClock();
    const rx = await receiver([500]);
    const w = webhooks([{ name: 'duty-officer', kind: 'webhook', url: rx.url, secretFile: 'hook.secret', precedences: ['FLASH'] }]);
    const s = await startTestServer({ clock, app: { ...QUIET, escalation: w.config } });
    const jp = await s.connect(`${JP}/op1`);
    const cn = await s.connect(`${CN}/op1`);
    const id = await sendFlash(s, jp, cn);

    // Nobody answers: the delivered deadline (30 s for FLASH) is missed.
    clock.advance(s.dep.agreement.deadlines.FLASH.deliveredMs);
    const first = await rx.nth(1);
    const one = verify(w.secret, first);
    expect(one.t).toBe(Math.floor(clock.now() / 1000));
    expect(one.payload).toMatchObject({ hook: 'duty-officer', event: { type: 'deadline.missed', messageId: id, from: JP, to: CN, precedence: 'FLASH', rung: 'delivered', level: 1 } });
    expect(one.payload.id).toBe(`duty-officer:${one.payload.eventId}`);
    expect(first.headers).toMatchObject({ 'x-hotline-delivery': one.payload.id, 'x-hotline-event': 'deadline.missed', 'x-hotline-attempt': '1', 'content-type': 'application/json' });
    await s.logs.waitFor((r) => r['msg'] === 'escalation attempt failed; will try again' && r['attempt'] === 1);
    expect(rx.requests).toHaveLength(1);

    // The backoff: nothing one millisecond early, the second attempt at minMs.
    clock.advance(RETRY.minMs - 1);
    await jp.sync();
    expect(rx.requests).toHaveLength(1);
    clock.advance(1);
    const second = await rx.nth(2);
    const two = verify(w.secret, second);
    expect(two.t).toBe(Math.floor(clock.now() / 1000));
    // The same body (and delivery id) on every attempt: a receiver can drop a repeat.
    expect(second.body).toBe(first.body);
    expect(second.headers['x-hotline-attempt']).toBe('2');
    await s.logs.waitFor((r) => r['msg'] === 'escalation delivered');

    const lines = escalationLines(s);
    expect(lines.map((l) => [l['hook'], l['event'], l['attempt'], l['status']])).toEqual([
      ['duty-officer', 'deadline.missed', 1, 'HTTP 500'],
      ['duty-officer', 'deadline.missed', 2, 'HTTP 200'],
    ]);
    expect(lines[0]!['nextTryAt']).toBe(new Date(clock.now()).toISOString());
    // Never the secret, never the message's text (neither in the log nor in what was sent).
    expect(s.logs.text()).not.toContain(w.secret);
    expect(first.body).not.toContain('FLASH test text');
    expect(rx.requests).toHaveLength(2);
  });

  it('the watchdog: the test agent stops, link.down is raised and reaches the webhook', async () => {
    const clock = new ManualClock();
    const rx = await receiver();
    const w = webhooks([{ name: 'jp-links', kind: 'webhook', url: rx.url, secretFile: 'hook.secret', events: ['link.down'], party: JP }]);
    const s = await startTestServer({ clock, app: { ...QUIET, escalation: w.config } });
    const { intervalMs, timeoutMs } = s.dep.agreement.linkTest;
    const cn = agent(s, `${CN}/op1`, clock);
    await cn.start();
    const jp = agent(s, `${JP}/op1`, clock, true);
    const up = next(cn, 'link', (e) => e.type === 'link.up');
    await jp.start();
    const first = await up;
    jp.stop();
    clock.advance(intervalMs + timeoutMs - (clock.now() - first.at));
    const got = verify(w.secret, await rx.nth(1));
    expect(got.payload.event).toMatchObject({ type: 'link.down', from: JP, to: CN, ok: false, at: clock.now() });
    expect((got.payload.event as { reason?: string }).reason).toContain(`is ${JP}'s test agent running?`);
    expect((got.payload.event as { messageId?: string }).messageId).toBeUndefined();
    await s.logs.waitFor((r) => r['msg'] === 'escalation delivered' && r['event'] === 'link.down');
    // link.test and link.up are not what this hook asked for.
    expect(rx.requests).toHaveLength(1);
  });

  it('a notification not yet answered survives a restart of the relay', async () => {
    const clock = new ManualClock();
    const rx = await receiver([503]);
    const w = webhooks([{ name: 'duty', kind: 'webhook', url: rx.url, secretFile: 'hook.secret' }]);
    const dataDir = tempDir();
    onCleanup(() => dataDir.remove());
    const a = await startTestServer({ clock, dataDir: dataDir.path, app: { ...QUIET, escalation: w.config } });
    const auditor = await a.token(`${JP}/audit1`);
    expect((await call(a.url, 'POST', '/v1/audit/alarms', { code: 'HL_ERR_AUDIT_EQUIVOCATION', reason: 'two roots for one size' }, auditor)).status).toBe(201);
    const first = verify(w.secret, await rx.nth(1));
    expect(first.payload.event).toMatchObject({ type: 'audit.alarm', party: JP });
    await a.logs.waitFor((r) => r['msg'] === 'escalation attempt failed; will try again');
    await a.close();

    const b = await startTestServer({ clock, dep: a.dep, dataDir: dataDir.path, enrolAll: false, app: { ...QUIET, escalation: w.config } });
    // Once b has read its queue (the notification is there, due in minMs), its timer is armed.
    await b.logs.waitFor((r) => r['msg'] === 'escalation queue read' && r['nextTryAt'] === new Date(clock.now() + RETRY.minMs).toISOString());
    clock.advance(RETRY.minMs);
    const second = verify(w.secret, await rx.nth(2));
    expect(second.payload).toEqual(first.payload);
    expect(rx.requests[1]!.headers['x-hotline-attempt']).toBe('2');
    await b.logs.waitFor((r) => r['msg'] === 'escalation delivered');
  });
  it('a relay starts and serves while a receiver it owes a notification never answers', async () => {
    const clock = new ManualClock();
    // 503 first, then no answer at all (the hook's time limit is two minutes).
    const rx = await receiver([503, 0]);
    const w = webhooks([{ name: 'duty', kind: 'webhook', url: rx.url, secretFile: 'hook.secret', timeoutMs: 120_000 }]);
    const dataDir = tempDir();
    onCleanup(() => dataDir.remove());
    const a = await startTestServer({ clock, dataDir: dataDir.path, app: { ...QUIET, escalation: w.config } });
    const auditor = await a.token(`${JP}/audit1`);
    expect((await call(a.url, 'POST', '/v1/audit/alarms', { code: 'HL_ERR_AUDIT_EQUIVOCATION', reason: 'two roots for one size' }, auditor)).status).toBe(201);
    await rx.nth(1);
    await a.logs.waitFor((r) => r['msg'] === 'escalation attempt failed; will try again');
    await a.close();
    // The retry is due when b starts: b sends it at once, and the receiver holds it unanswered.
    clock.advance(RETRY.minMs);
    const b = await startTestServer({ clock, dep: a.dep, dataDir: dataDir.path, enrolAll: false, app: { ...QUIET, escalation: w.config } });
    await rx.nth(2);
    // Started (startTestServer returned) and serving while that attempt is still open.
    expect((await fetch(`${b.url}/readyz`)).status).toBe(200);
    expect(b.logs.records().some((r) => r['msg'] === 'escalation delivered' || r['msg'] === 'escalation attempt failed; will try again')).toBe(false);
  });
});

describe('Escalation', () => {
  it('does not queue events older than the give-up time (a relay that ran without its hooks for a while)', async () => {
    const rx = await receiver();
    const w = webhooks([{ name: 'duty', kind: 'webhook', url: rx.url, secretFile: 'hook.secret' }]);
    const { store } = await sqliteAdapter.open();
    await store.queueEscalations(undefined, 0, []);
    const clock = new ManualClock();
    const now = clock.now();
    const old = now - w.config.retry.giveUpAfterMs - 1;
    await store.commit([
      { kind: 'events', acceptedAt: old, events: [{ event: { type: 'audit.alarm', party: JP, reason: 'old', at: old }, rank: 0, mailboxes: [] }] },
      { kind: 'events', acceptedAt: now, events: [{ event: { type: 'audit.alarm', party: JP, reason: 'new', at: now }, rank: 0, mailboxes: [] }] },
    ]);
    const logs = new LogSink();
    const escalation = new Escalation({ config: w.config, store, clock, log: createLogger('info', logs) as FastifyBaseLogger });
    onCleanup(() => escalation.stop());
    escalation.start();
    expect(verify(w.secret, await rx.nth(1)).payload.event).toMatchObject({ reason: 'new' });
    await logs.waitFor((r) => r['msg'] === 'escalation delivered');
    expect(await store.nextEscalationAt()).toBeUndefined();
    expect(rx.requests).toHaveLength(1);
  });
});

describe('escalation: stopping', () => {
  it('a receiver that never answers does not hold up a stop: the attempt is ended and kept to be tried again', async () => {
    const rx = await receiver([0]);
    const w = webhooks([{ name: 'slow', kind: 'webhook', url: rx.url, secretFile: 'hook.secret', timeoutMs: 120_000 }]);
    const s = await startTestServer({ app: { escalation: w.config } });
    const r = await call(s.url, 'POST', '/v1/audit/alarms', { code: 'HL_ERR_AUDIT_EQUIVOCATION', reason: 'two roots for one size' }, await s.token(`${JP}/audit1`));
    expect(r.status).toBe(201);
    await rx.nth(1);
    // Without the stop ending it, this would wait for the hook's 120 s timeout (past the test's limit).
    await s.close();
    const failed = s.logs.records().find((l) => l['msg'] === 'escalation attempt failed; will try again');
    expect(failed).toMatchObject({ hook: 'slow', event: 'audit.alarm', attempt: 1 });
    expect(String(failed!['status'])).toContain('stopping');
  });
});

describe('escalation: several PostgreSQL nodes', () => {
  it('two nodes on one database, both reading the events: each alarm is sent once, by one of them', async () => {
    const rx = await receiver();
    const w = webhooks([{ name: 'duty', kind: 'webhook', url: rx.url, secretFile: 'hook.secret' }]);
    const database = { url: testDatabaseUrl(), schema: testSchema() };
    const dep = await createDeployment();
    // Both poll often, so that both race for every event and every notification.
    const app = { escalation: w.config, escalationPollMs: 20 };
    const a = await startTestServer({ dep, database, app });
    const b = await startTestServer({ dep, database, app, enrolAll: false });
    const ALARMS = 6;
    for (let i = 0; i < ALARMS; i++) {
      const node = i % 2 === 0 ? a : b;
      const r = await call(node.url, 'POST', '/v1/audit/alarms', { code: 'HL_ERR_AUDIT_EQUIVOCATION', reason: `alarm ${i}` }, await node.token(`${JP}/audit1`));
      expect(r.status).toBe(201);
    }
    await rx.nth(ALARMS);
    // Each node logs a delivery once it has settled it: all of them logged, nothing is left to send
    // (a second send of a settled notification could only follow the end of a lease, 40 s on).
    const delivered = () => [a, b].flatMap((s) => s.logs.records().filter((r) => r['msg'] === 'escalation delivered'));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${delivered().length} of ${ALARMS} deliveries logged`)), 20_000);
      const check = () => {
        if (delivered().length < ALARMS) return;
        clearTimeout(timer);
        resolve();
      };
      for (const s of [a, b]) s.logs.on('line', check);
      check();
    });
    const direct = await PgStore.open(database.url, { schema: database.schema, maxConnections: 1 });
    onCleanup(() => direct.close());
    expect(await direct.nextEscalationAt()).toBeUndefined();
    const ids = rx.requests.map((r) => verify(w.secret, r).payload.id);
    expect(ids).toHaveLength(ALARMS);
    expect(new Set(ids).size).toBe(ALARMS);
    expect(rx.requests.map((r) => (JSON.parse(r.body) as EscalationPayload).event)).toEqual(
      Array.from({ length: ALARMS }, (_, i) => expect.objectContaining({ type: 'audit.alarm', reason: `${JP}/audit1: HL_ERR_AUDIT_EQUIVOCATION: alarm ${i}` })),
    );
    expect(delivered()).toHaveLength(ALARMS);
  });
});

describe('escalation: e-mail through SMTP', () => {
  it('an audit alarm is mailed through the SMTP server, with SMTP AUTH from the auth file', async () => {
    const mails: { from: string; to: string[]; data: string; user: string | undefined }[] = [];
    let got: () => void = () => {};
    const arrived = new Promise<void>((resolve) => (got = resolve));
    const smtp = new SMTPServer({
      disabledCommands: ['STARTTLS'],
      allowInsecureAuth: true,
      logger: false,
      onAuth(auth, _session, cb) {
        if (auth.username === 'hotline' && auth.password === 'mail-password-123') cb(null, { user: auth.username });
        else cb(new Error('bad credentials'));
      },
      onData(stream, session, cb) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          mails.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            data: Buffer.concat(chunks).toString('utf8'),
            user: session.user as string | undefined,
          });
          cb();
          got();
        });
      },
    });
    await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
    onCleanup(() => new Promise<void>((resolve) => smtp.close(() => resolve())));
    const port = (smtp.server.address() as AddressInfo).port;
    const dir = tempDir();
    onCleanup(() => dir.remove());
    writeFileSync(join(dir.path, 'smtp.json'), JSON.stringify({ user: 'hotline', pass: 'mail-password-123' }), { mode: 0o600 });
    const path = join(dir.path, 'webhooks.json');
    writeFileSync(path, JSON.stringify({ hooks: [{ name: 'mail', kind: 'smtp', host: '127.0.0.1', port, secure: false, authFile: 'smtp.json', from: 'relay@jp.example', to: ['duty@jp.example'], events: ['audit.alarm'] }] }));
    const s = await startTestServer({ app: { escalation: loadEscalationConfig(path) } });
    const auditor = await s.token(`${JP}/audit1`);
    expect((await call(s.url, 'POST', '/v1/audit/alarms', { code: 'HL_ERR_AUDIT_EQUIVOCATION', reason: 'two roots for one size' }, auditor)).status).toBe(201);
    await arrived;
    expect(mails).toHaveLength(1);
    expect(mails[0]).toMatchObject({ from: 'relay@jp.example', to: ['duty@jp.example'], user: 'hotline' });
    // Long header lines are folded (RFC 5322): unfold them before reading.
    const headers = mails[0]!.data.split(/\r?\n\r?\n/)[0]!.replace(/\r?\n[ \t]+/g, ' ');
    expect(headers).toMatch(/^Subject: \[Hotline\] audit alarm \(jp-mod\): jp-mod\/audit1: HL_ERR_AUDIT_EQUIVOCATION: two roots for one size$/m);
    expect(headers).toMatch(/^X-Hotline-Delivery: mail:\d+$/m);
    await s.logs.waitFor((r) => r['msg'] === 'escalation delivered' && r['kind'] === 'smtp');
    expect(s.logs.text()).not.toContain('mail-password-123');
  });
});

describe('loadEscalationConfig', () => {
  function file(content: string | object, extra: Record<string, { text: string; mode: number }> = {}): string {
    const dir = tempDir();
    onCleanup(() => dir.remove());
    for (const [name, f] of Object.entries(extra)) writeFileSync(join(dir.path, name), f.text, { mode: f.mode });
    const path = join(dir.path, 'webhooks.json');
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  }
  const SECRET = { 's.key': { text: 'a'.repeat(40), mode: 0o600 } };
  const hook = { name: 'h', kind: 'webhook', url: 'https://hooks.example/x', secretFile: 's.key' };
  const code = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return (e as { code?: string }).code;
    }
    return 'no error';
  };

  it('reads hooks with their secrets and the defaults (the alarms, 5 s doubling to 15 min, given up after a day)', () => {
    const c = loadEscalationConfig(file({ hooks: [hook] }, SECRET));
    expect(c.hooks[0]).toMatchObject({ name: 'h', kind: 'webhook', events: ['deadline.missed', 'link.down', 'audit.alarm'], timeoutMs: 10_000 });
    expect(c.retry).toEqual({ minMs: 5_000, maxMs: 900_000, giveUpAfterMs: 86_400_000 });
    expect([1, 2, 3, 4, 8, 9, 50].map((n) => retryDelay(c.retry, n))).toEqual([5_000, 10_000, 20_000, 40_000, 640_000, 900_000, 900_000]);
  });

  it('refuses a missing file or one that is not JSON (HL_ERR_ESCALATION_CONFIG_UNREADABLE)', () => {
    expect(code(() => loadEscalationConfig('/nonexistent/webhooks.json'))).toBe('HL_ERR_ESCALATION_CONFIG_UNREADABLE');
    expect(code(() => loadEscalationConfig(file('{ hooks: [')))).toBe('HL_ERR_ESCALATION_CONFIG_UNREADABLE');
  });

  it('refuses a file outside the schema, two hooks of one name, a retry min above its max (HL_ERR_ESCALATION_CONFIG_INVALID)', () => {
    for (const bad of [
      { hooks: [] },
      { hooks: [{ ...hook, url: 'ftp://x' }] },
      { hooks: [{ ...hook, events: ['message.sent'] }] },
      { hooks: [{ ...hook, secret: 'inline' }] },
      { hooks: [{ name: 'm', kind: 'smtp', host: 'mail', from: 'a@b.c', to: ['d@e.f'] }] },
      { hooks: [hook, hook] },
      { hooks: [hook], retry: { minMs: 60_000, maxMs: 1_000 } },
    ]) {
      expect(code(() => loadEscalationConfig(file(bad, SECRET))), JSON.stringify(bad)).toBe('HL_ERR_ESCALATION_CONFIG_INVALID');
    }
  });

  it('refuses a secret file that is missing, readable by others or too short, and SMTP credentials without user and pass (HL_ERR_ESCALATION_SECRET)', () => {
    expect(code(() => loadEscalationConfig(file({ hooks: [hook] })))).toBe('HL_ERR_ESCALATION_SECRET');
    const open = file({ hooks: [hook] }, { 's.key': { text: 'a'.repeat(40), mode: 0o600 } });
    chmodSync(join(open, '..', 's.key'), 0o644);
    expect(code(() => loadEscalationConfig(open))).toBe('HL_ERR_ESCALATION_SECRET');
    expect(code(() => loadEscalationConfig(file({ hooks: [hook] }, { 's.key': { text: 'short', mode: 0o600 } })))).toBe('HL_ERR_ESCALATION_SECRET');
    const smtp = { name: 'm', kind: 'smtp', host: 'mail', port: 587, authFile: 'auth.json', from: 'a@b.c', to: ['d@e.f'] };
    expect(code(() => loadEscalationConfig(file({ hooks: [smtp] }, { 'auth.json': { text: '{"user":"u"}', mode: 0o600 } })))).toBe('HL_ERR_ESCALATION_SECRET');
  });

  it('is named by --webhooks or HOTLINE_WEBHOOKS', () => {
    const base = { HOTLINE_AGREEMENT: 'a.json', HOTLINE_DATA_DIR: '/tmp/x' };
    expect(loadConfig(base, ['--webhooks', '/etc/hotline/webhooks.json']).webhooksPath).toBe('/etc/hotline/webhooks.json');
    expect(loadConfig({ ...base, HOTLINE_WEBHOOKS: '/w.json' }).webhooksPath).toBe('/w.json');
    expect(loadConfig(base).webhooksPath).toBeUndefined();
    // Both start paths (node server/main.ts and hotline server) load the file into the app's options.
    const path = file({ hooks: [hook] }, SECRET);
    expect(startOptionsFromConfig(loadConfig({ ...base, HOTLINE_WEBHOOKS: path })).app?.escalation?.hooks.map((h) => h.name)).toEqual(['h']);
    expect(code(() => startOptionsFromConfig(loadConfig(base, ['--webhooks', '/nonexistent.json'])))).toBe('HL_ERR_ESCALATION_CONFIG_UNREADABLE');
  });
});

describe('docs/escalation.md', () => {
  it("the worked example's signature is what the relay makes and what node:crypto checks", () => {
    const doc = readFileSync(fileURLToPath(new URL('../../docs/escalation.md', import.meta.url)), 'utf8');
    const value = (name: string) => {
      const m = new RegExp(`^${name}: (.+)$`, 'm').exec(doc);
      expect(m, name).not.toBeNull();
      return m![1]!.trim();
    };
    const secret = value('secret');
    const t = Number(value('t'));
    const body = value('body');
    const header = value('X-Hotline-Signature');
    expect(signWebhook(Buffer.from(secret, 'utf8'), t, body)).toBe(header);
    expect(header).toBe(`t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`);
  });
});

function agent(s: TestServer, key: string, clock: ManualClock, testAgent = false): HotlineClient {
  const c = new HotlineClient({ serverUrl: s.url, agreement: s.dep.agreement, device: s.dep.devices[key]!, storage: new MemoryStorage(), WebSocket, clock, ...(testAgent ? { testAgent: true } : {}) });
  onCleanup(() => c.stop());
  return c;
}

/** A FLASH jp → cn, delivered to cn's link (which sends no receipt): its id. */
async function sendFlash(s: TestServer, jp: LinkClient, cn: LinkClient): Promise<string> {
  const dir = await fetchDirectory(s.url, await login(s.url, s.dep.devices[`${JP}/op1`]!, s.dep.agreement));
  const env = await seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq: 1, directory: dir, precedence: 'FLASH', plaintext: { body: 'FLASH test text', lang: 'en' }, sentAt: s.now() });
  jp.send({ t: 'envelope', envelope: env });
  await jp.waitForType('accepted', (f) => f.id === env.header.id);
  await cn.waitForType('deliver', (f) => f.envelope.header.id === env.header.id);
  return env.header.id;
}
