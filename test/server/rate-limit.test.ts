import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { AppOptions } from '../../server/app.js';
import { loadConfig } from '../../server/config.js';
import { DATABASE_FILE } from '../../server/main.js';
import { OVERFLOW_KEY, RateLimiter, addressKey } from '../../server/relay/rate-limit.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { revokeDevice } from '../../shared/crypto/keys.js';
import { randomBytes } from '../../shared/crypto/random.js';
import { toBase64 } from '../../shared/encoding/base64.js';
import type { DeviceSecretFile } from '../../shared/protocol/schemas.js';
import { CN, JP, createDeployment } from '../helpers/deployment.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';
import { loginSignature, seal, type LooseJson } from '../helpers/ws-client.js';

const MINUTE = 60_000;
/** A second loopback address: Linux routes all of 127/8 to lo, so a test can be two peers. */
const OTHER = '127.0.0.2';

interface Answer {
  status: number;
  retryAfter: string | undefined;
  body: LooseJson;
}

/** An HTTP JSON call from a chosen local address (fetch cannot pick one). */
function callFrom(from: string, base: string, method: string, path: string, body?: unknown): Promise<Answer> {
  const url = new URL(path, base);
  const data = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: url.hostname, port: url.port, path: url.pathname, method, localAddress: from, headers: data === undefined ? {} : { 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          const h = res.headers['retry-after'];
          resolve({ status: res.statusCode ?? 0, retryAfter: Array.isArray(h) ? h[0] : h, body: text === '' ? undefined : (JSON.parse(text) as LooseJson) });
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

const call = (base: string, method: string, path: string, body?: unknown) => callFrom('127.0.0.1', base, method, path, body);

/** A login that cannot succeed: a challenge the server never issued, a signature of zeros. */
function badLogin(s: TestServer, key: string, from = '127.0.0.1'): Promise<Answer> {
  const [party, device] = key.split('/');
  return callFrom(from, s.url, 'POST', '/v1/auth/login', { party, device, challenge: toBase64(randomBytes(32)), signature: 'A'.repeat(86) + '==' });
}

async function loginFrom(from: string, s: TestServer, dev: DeviceSecretFile): Promise<Answer> {
  const { party, device } = dev.certificate.cert;
  const ch = await callFrom(from, s.url, 'POST', '/v1/auth/challenge', { party, device });
  if (ch.status !== 200) return ch;
  const signature = await loginSignature(dev, ch.body.challenge, s.dep.agreement);
  return callFrom(from, s.url, 'POST', '/v1/auth/login', { party, device, challenge: ch.body.challenge, signature });
}

/** The audit entries appended since `from`. */
async function entriesSince(s: TestServer, from: number): Promise<Record<string, unknown>[]> {
  const size = await s.store.auditSize();
  return (await s.store.auditEntries(from, size)).map((e) => JSON.parse(e.entry) as Record<string, unknown>);
}

/** A link upgrade from a chosen address: 'open' (then closed again) or the refusal's status and Retry-After. */
function upgrade(s: TestServer, token: string, from = '127.0.0.1'): Promise<'open' | Answer> {
  const ws = new WebSocket(`${s.url.replace(/^http/, 'ws')}/v1/link`, ['hotline.v1', `bearer.${token}`], { localAddress: from });
  return new Promise((resolve, reject) => {
    ws.once('open', () => {
      ws.close();
      resolve('open');
    });
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        const h = res.headers['retry-after'];
        resolve({ status: res.statusCode ?? 0, retryAfter: Array.isArray(h) ? h[0] : h, body: JSON.parse(text) as LooseJson });
      });
    });
    ws.once('error', reject);
  });
}

async function manualServer(app: AppOptions = {}, enrolAll = true): Promise<{ s: TestServer; clock: ManualClock }> {
  const clock = new ManualClock(Date.now());
  const dep = await createDeployment(clock.now() - 1000);
  // Links in these tests must outlive minutes of manual time without answering pings.
  const s = await startTestServer({ dep, clock, enrolAll, app: { heartbeatIntervalMs: 24 * 3_600_000, ...app } });
  return { s, clock };
}

describe('RateLimiter', () => {
  it('allows `limit` attempts per key and window, then refuses until the window ends; other keys are unaffected', () => {
    const l = new RateLimiter({ limit: 3, windowMs: 1000 });
    const t0 = 5_000;
    expect([1, 2, 3].map(() => l.take('a', t0).allowed)).toEqual([true, true, true]);
    expect(l.take('a', t0 + 400)).toMatchObject({ allowed: false, retryAfterMs: 600, key: 'a' });
    expect(l.peek('a', t0 + 999)).toMatchObject({ allowed: false, retryAfterMs: 1 });
    expect(l.take('b', t0 + 999).allowed).toBe(true);
    // The window is [t0, t0 + 1000): at its end the key starts afresh.
    expect(l.take('a', t0 + 1000)).toMatchObject({ allowed: true, closed: [{ key: 'a', refused: 1, since: t0, until: t0 + 1000 }] });
    expect(l.take('a', t0 + 1001).closed).toEqual([]);
  });

  it('peek counts nothing', () => {
    const l = new RateLimiter({ limit: 1, windowMs: 1000 });
    for (let i = 0; i < 5; i++) expect(l.peek('a', 0).allowed).toBe(true);
    expect(l.take('a', 0).allowed).toBe(true);
    expect(l.peek('a', 0).allowed).toBe(false);
    expect(l.take('a', 0).allowed).toBe(false);
  });

  it('reports each window that refused something exactly once: swept when closed, or flushed while open', () => {
    const l = new RateLimiter({ limit: 1, windowMs: 1000 });
    l.take('quiet', 0);
    for (let i = 0; i < 4; i++) l.take('noisy', 100);
    expect(l.sweep(999)).toEqual([]);
    expect(l.sweep(1100)).toEqual([{ key: 'noisy', refused: 3, since: 100, until: 1100 }]);
    expect(l.size).toBe(0);
    expect(l.sweep(5000)).toEqual([]);

    l.take('x', 6000);
    l.take('x', 6000);
    expect(l.flush(6500)).toEqual([{ key: 'x', refused: 1, since: 6000, until: 6500 }]);
    expect(l.flush(6600)).toEqual([]);
    expect(l.sweep(7000)).toEqual([]);
  });

  it('holds at most maxKeys keys: new keys then share one overflow window, and room returns as windows close', () => {
    const l = new RateLimiter({ limit: 2, windowMs: 1000, maxKeys: 2 });
    l.take('a', 0);
    l.take('b', 0);
    expect(l.take('c', 10)).toMatchObject({ allowed: true, key: OVERFLOW_KEY });
    expect(l.take('d', 20)).toMatchObject({ allowed: true, key: OVERFLOW_KEY });
    expect(l.peek('e', 20)).toMatchObject({ allowed: false, key: OVERFLOW_KEY });
    expect(l.take('e', 30)).toMatchObject({ allowed: false, key: OVERFLOW_KEY, retryAfterMs: 980 });
    expect(l.size).toBe(3);
    // a and b closed (nothing refused): forgotten to make room for f.
    expect(l.take('f', 1000)).toMatchObject({ allowed: true, key: 'f' });
  });

  it('refuses nonsense options', () => {
    expect(() => new RateLimiter({ limit: 0, windowMs: 1000 })).toThrow(RangeError);
    expect(() => new RateLimiter({ limit: 1.5, windowMs: 1000 })).toThrow(RangeError);
    expect(() => new RateLimiter({ limit: 1, windowMs: 0 })).toThrow(RangeError);
    expect(() => new RateLimiter({ limit: 1, windowMs: 1000, maxKeys: 0 })).toThrow(RangeError);
  });
});

describe('addressKey', () => {
  it('keeps IPv4, unwraps IPv4-mapped IPv6, and groups IPv6 by /64', () => {
    expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:0db8:0001:0002::9')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressKey(undefined)).toBe('unknown');
  });
});

describe('loadConfig rate limits', () => {
  const base = { HOTLINE_AGREEMENT: 'a.json', HOTLINE_DATA_DIR: '/data' };
  it('reads the per-minute limits from the environment and flags, and leaves unset ones to the defaults', () => {
    expect(loadConfig(base).rateLimits).toBeUndefined();
    expect(loadConfig({ ...base, HOTLINE_RATE_LOGIN_PER_MINUTE: '30' }, ['--rate-directory-per-minute', '5']).rateLimits).toEqual({ loginPerMinute: 30, directoryPerMinute: 5 });
    expect(loadConfig({ ...base, HOTLINE_RATE_DEVICE_FAILURES_PER_MINUTE: '7' }).rateLimits).toEqual({ deviceFailuresPerMinute: 7 });
  });

  it('refuses limits that are not integers from 1 to 1000000, naming the variable', () => {
    for (const bad of ['0', '-1', '2.5', 'ten', '1000001']) {
      let error: { code?: string; message?: string } = {};
      try {
        loadConfig({ ...base, HOTLINE_RATE_LOGIN_PER_MINUTE: bad });
      } catch (e) {
        error = e as typeof error;
      }
      expect(error.code).toBe('HL_ERR_CONFIG_INVALID');
      expect(error.message).toContain('HOTLINE_RATE_LOGIN_PER_MINUTE');
    }
  });
});

describe('abuse limits on the server', () => {
  it('answers bad logins from one address with 429 past the limit, audits at most the limit plus one summary, and lets the device in after the window', async () => {
    const { s, clock } = await manualServer({ rateLimits: { loginPerMinute: 5, deviceFailuresPerMinute: 1000 } });
    const start = await s.store.auditSize();
    const t0 = clock.now();

    const answers: Answer[] = [];
    for (let i = 0; i < 20; i++) answers.push(await badLogin(s, `${JP}/op1`));
    expect(answers.slice(0, 5).map((a) => [a.status, a.body.error.code])).toEqual(Array(5).fill([401, 'HL_ERR_AUTH_CHALLENGE_INVALID']));
    for (const a of answers.slice(5)) {
      expect([a.status, a.body.error.code, a.retryAfter]).toEqual([429, 'HL_ERR_INPUT_RATE_LIMITED', '60']);
    }
    expect((await entriesSince(s, start)).map((e) => e.type)).toEqual(Array(5).fill('login.refused'));

    // The real device behind the same address waits too; its colleague elsewhere does not.
    clock.advance(15_000);
    const blocked = await loginFrom('127.0.0.1', s, s.dep.devices[`${JP}/op1`]!);
    expect([blocked.status, blocked.body.error.code, blocked.retryAfter]).toEqual([429, 'HL_ERR_INPUT_RATE_LIMITED', '45']);
    const elsewhere = await loginFrom(OTHER, s, s.dep.devices[`${CN}/op1`]!);
    expect(elsewhere.status).toBe(200);

    clock.advance(45_000);
    const after = await loginFrom('127.0.0.1', s, s.dep.devices[`${JP}/op1`]!);
    expect(after.status).toBe(200);
    const entries = await entriesSince(s, start);
    expect(entries.map((e) => e.type)).toEqual([...Array<string>(5).fill('login.refused'), 'login', 'login.refused.suppressed', 'login']);
    // 15 logins and the blocked challenge; no address in the shared log.
    expect(entries[6]).toMatchObject({ by: 'address', count: 16, since: t0, until: t0 + MINUTE });
    expect(JSON.stringify(entries[6])).not.toContain('127.0.0.1');
    expect(s.logs.records().some((r) => r.msg === 'rate limited' && r.key === '127.0.0.1' && r.refused === 16)).toBe(true);

    // Summarised once: later windows without refusals add nothing.
    clock.advance(3 * MINUTE);
    expect((await loginFrom('127.0.0.1', s, s.dep.devices[`${JP}/op2`]!)).status).toBe(200);
    expect((await entriesSince(s, start)).filter((e) => e.type === 'login.refused.suppressed')).toHaveLength(1);
  });

  it('writes the summary before the next allowed entry when the window closed between sweeps', async () => {
    const { s, clock } = await manualServer({ rateLimits: { loginPerMinute: 2, deviceFailuresPerMinute: 1000 } });
    clock.advance(30_000); // the sweep runs at +60 s, +120 s…: this window is [+30 s, +90 s)
    const start = await s.store.auditSize();
    const t1 = clock.now();
    for (let i = 0; i < 5; i++) await badLogin(s, `${JP}/op1`);
    clock.advance(MINUTE);
    expect((await loginFrom('127.0.0.1', s, s.dep.devices[`${JP}/op1`]!)).status).toBe(200);
    const entries = await entriesSince(s, start);
    expect(entries.map((e) => e.type)).toEqual(['login.refused', 'login.refused', 'login.refused.suppressed', 'login']);
    expect(entries[2]).toMatchObject({ by: 'address', count: 3, since: t1, until: t1 + MINUTE });
    clock.advance(MINUTE); // the sweep finds nothing left to summarise
    expect((await entriesSince(s, start)).filter((e) => e.type === 'login.refused.suppressed')).toHaveLength(1);
  });

  it('limits refused logins per claimed device from any address, without locking the real device out', async () => {
    const { s, clock } = await manualServer({ rateLimits: { loginPerMinute: 1000, deviceFailuresPerMinute: 3 } });
    const start = await s.store.auditSize();
    const codes: string[] = [];
    for (let i = 0; i < 10; i++) codes.push((await badLogin(s, `${JP}/op1`, i % 2 === 0 ? '127.0.0.1' : OTHER)).body.error.code);
    expect(codes).toEqual([...Array<string>(3).fill('HL_ERR_AUTH_CHALLENGE_INVALID'), ...Array<string>(7).fill('HL_ERR_INPUT_RATE_LIMITED')]);
    // Another device's refusals keep their own code; the flooded device's real login succeeds.
    expect((await badLogin(s, `${JP}/op2`)).body.error.code).toBe('HL_ERR_AUTH_CHALLENGE_INVALID');
    expect((await loginFrom(OTHER, s, s.dep.devices[`${JP}/op1`]!)).status).toBe(200);
    expect((await entriesSince(s, start)).map((e) => e.type)).toEqual([...Array<string>(4).fill('login.refused'), 'login']);

    clock.advance(MINUTE);
    const suppressed = (await entriesSince(s, start)).filter((e) => e.type === 'login.refused.suppressed');
    expect(suppressed).toEqual([expect.objectContaining({ by: 'device', party: JP, device: 'op1', count: 7 })]);
    expect((await badLogin(s, `${JP}/op1`)).body.error.code).toBe('HL_ERR_AUTH_CHALLENGE_INVALID');
  });

  it('keeps serving the open links during a flood of bad logins, and exchanges afterwards', async () => {
    const { s } = await manualServer({ rateLimits: { loginPerMinute: 20, deviceFailuresPerMinute: 1000 } });
    const dir = await s.directory();
    const jp = await s.connect(`${JP}/op1`);
    const cn = await s.connect(`${CN}/op1`);
    const start = await s.store.auditSize();
    const sender = s.dep.devices[`${JP}/op1`]!;

    const exchange = async (seq: number) => {
      const env = await seal({ sender, to: CN, seq, directory: dir, plaintext: { body: `m${seq}`, lang: 'en' } });
      jp.send({ t: 'envelope', envelope: env });
      await jp.waitForType('accepted', (f) => f.id === env.header.id);
      return (await cn.waitForType('deliver', (f) => f.envelope.header.id === env.header.id)).envelope.header.id;
    };
    const flood = Promise.all(Array.from({ length: 300 }, (_, i) => badLogin(s, `${CN}/op${i % 7}`)));
    const during = exchange(1);
    const answers = await flood;
    expect(await during).toBeTypeOf('string');
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((x) => x === 429).length).toBeGreaterThanOrEqual(300 - 20);
    expect(statuses.every((x) => x === 429 || x === 401)).toBe(true);

    expect(await exchange(2)).toBeTypeOf('string');
    const grown = await entriesSince(s, start);
    expect(grown.filter((e) => e.type === 'login.refused').length).toBeLessThanOrEqual(20);
    expect(grown.filter((e) => e.type !== 'login.refused' && e.type !== 'envelope.accepted')).toEqual([]);
  });

  it('counts refused link upgrades against the address; past the limit even a valid token waits, other addresses do not', async () => {
    const { s, clock } = await manualServer({ rateLimits: { loginPerMinute: 4, deviceFailuresPerMinute: 1000 } });
    const token = await s.token(`${JP}/op1`); // challenge + login: 2 of 4
    // Good upgrades do not count.
    for (let i = 0; i < 5; i++) expect(await upgrade(s, token)).toBe('open');
    for (let i = 0; i < 2; i++) expect(await upgrade(s, 'not-a-token')).toMatchObject({ status: 401, body: { error: { code: 'HL_ERR_AUTH_TOKEN_INVALID' } } });
    expect(await upgrade(s, 'not-a-token')).toEqual({ status: 429, retryAfter: '60', body: { error: { code: 'HL_ERR_INPUT_RATE_LIMITED', message: expect.any(String) } } });
    expect(await upgrade(s, token)).toMatchObject({ status: 429, body: { error: { code: 'HL_ERR_INPUT_RATE_LIMITED' } } });
    expect((await call(s.url, 'POST', '/v1/auth/challenge', { party: JP, device: 'op1' })).status).toBe(429);
    expect(await upgrade(s, token, OTHER)).toBe('open');

    clock.advance(MINUTE);
    expect(await upgrade(s, token)).toBe('open');
    const suppressed = (await entriesSince(s, 0)).filter((e) => e.type === 'login.refused.suppressed');
    expect(suppressed).toEqual([expect.objectContaining({ by: 'address', count: 3 })]);
  });

  it('limits enrolments and revocations per address, without audit entries for the refused ones', async () => {
    const { s, clock } = await manualServer({ rateLimits: { directoryPerMinute: 2 } }, false);
    const op1 = s.dep.devices[`${JP}/op1`]!;
    const op2 = s.dep.devices[`${JP}/op2`]!;
    expect((await call(s.url, 'POST', '/v1/directory/devices', op1.certificate)).status).toBe(201);
    expect((await call(s.url, 'POST', '/v1/directory/devices', op1.certificate)).status).toBe(201);
    const start = await s.store.auditSize();
    const third = await call(s.url, 'POST', '/v1/directory/devices', op2.certificate);
    expect([third.status, third.body.error.code, third.retryAfter]).toEqual([429, 'HL_ERR_INPUT_RATE_LIMITED', '60']);
    const revocation = await revokeDevice(s.dep.parties[JP]!, op1.certificate.cert, { reason: 'test', at: clock.now() });
    expect((await call(s.url, 'POST', '/v1/directory/revocations', revocation)).status).toBe(429);
    expect((await callFrom(OTHER, s.url, 'POST', '/v1/directory/devices', op2.certificate)).status).toBe(201);

    clock.advance(MINUTE);
    expect((await call(s.url, 'POST', '/v1/directory/revocations', revocation)).status).toBe(201);
    expect((await entriesSince(s, start)).map((e) => e.type)).toEqual(['device.enrolled', 'device.revoked']);
  });

  it('keeps no challenge table: a flood of challenges under other names never blocks the real device', async () => {
    const { s, clock } = await manualServer({ rateLimits: { loginPerMinute: 1_000_000, deviceFailuresPerMinute: 1000 } });
    const dev = s.dep.devices[`${JP}/op1`]!;
    // 20,000 challenges (twice the old table) from two addresses under names that are not enrolled.
    const flood = async (from: string, count: number) => {
      for (let i = 0; i < count; i++) expect((await callFrom(from, s.url, 'POST', '/v1/auth/challenge', { party: JP, device: `x${i}` })).status).toBe(200);
    };
    await Promise.all([flood('127.0.0.1', 10_000), flood(OTHER, 10_000)]);
    expect((await loginFrom('127.0.0.1', s, dev)).status).toBe(200);

    const ask = () => call(s.url, 'POST', '/v1/auth/challenge', { party: JP, device: 'op1' });
    const login = (challenge: string, device = 'op1') =>
      loginSignature(dev, challenge, s.dep.agreement).then((signature) => call(s.url, 'POST', '/v1/auth/login', { party: JP, device, challenge, signature }));
    // Single use.
    const once = (await ask()).body.challenge as string;
    expect((await login(once)).status).toBe(200);
    const again = await login(once);
    expect([again.status, again.body.error.code]).toEqual([401, 'HL_ERR_AUTH_CHALLENGE_INVALID']);
    // Bound to the device it was issued to.
    const other = (await call(s.url, 'POST', '/v1/auth/challenge', { party: JP, device: 'op2' })).body.challenge as string;
    expect((await login(other)).body.error.code).toBe('HL_ERR_AUTH_CHALLENGE_INVALID');
    // Forged (right shape, wrong MAC).
    const forged = toBase64(randomBytes(32));
    expect((await login(forged)).body.error.code).toBe('HL_ERR_AUTH_CHALLENGE_INVALID');
    // Expired after 60 s.
    const late = (await ask()).body.challenge as string;
    clock.advance(61_000);
    expect((await login(late)).body.error.code).toBe('HL_ERR_AUTH_CHALLENGE_INVALID');
  });

  it('records the refusals of a window still open at shutdown before server.stop', async () => {
    const { s } = await manualServer({ rateLimits: { loginPerMinute: 1, deviceFailuresPerMinute: 1000 } });
    await badLogin(s, `${JP}/op1`);
    expect((await badLogin(s, `${JP}/op1`)).status).toBe(429);
    await s.close();
    const store = new SqliteStore(join(s.dataDir, DATABASE_FILE));
    try {
      const size = await store.auditSize();
      const last = (await store.auditEntries(size - 2, size)).map((e) => JSON.parse(e.entry) as Record<string, unknown>);
      expect(last.map((e) => e.type)).toEqual(['login.refused.suppressed', 'server.stop']);
      expect(last[0]).toMatchObject({ by: 'address', count: 1 });
    } finally {
      await store.close();
    }
  });
});
