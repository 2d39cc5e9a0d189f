import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { signReceipt } from '../../shared/crypto/receipt.js';
import type { Envelope, Precedence } from '../../shared/protocol/schemas.js';
import { loadConfig } from '../../server/config.js';
import { readMetricsToken, startOptionsFromConfig } from '../../server/main.js';
import { CN, JP, tempDir } from '../helpers/deployment.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { onCleanup, startTestServer, type TestServer } from '../helpers/test-server.js';
import { fetchDirectory, login, seal, type LinkClient } from '../helpers/ws-client.js';

const MIN = 60_000;
const QUIET = { heartbeatIntervalMs: 365 * 24 * 60 * MIN };
const TOKEN = 'a'.repeat(24) + 'metrics-token-for-tests';

/** The value of one sample of the exposition (0 when absent: prom-client leaves out unseen label sets of some metrics). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels);
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (want.every(([k, v]) => got[k] === v) && Object.keys(got).filter((k) => k !== 'le').length === want.length) return Number(m[3]);
  }
  return 0;
}

async function scrape(s: TestServer): Promise<string> {
  const r = await fetch(`${s.url}/metrics`);
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
  return r.text();
}

async function send(s: TestServer, jp: LinkClient, cn: LinkClient, seq: number, precedence: Precedence): Promise<Envelope> {
  const dir = await fetchDirectory(s.url, await login(s.url, s.dep.devices[`${JP}/op1`]!, s.dep.agreement));
  const env = await seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq, directory: dir, precedence, plaintext: { body: `metrics ${seq}`, lang: 'en' }, sentAt: s.now() });
  jp.send({ t: 'envelope', envelope: env });
  await jp.waitForType('accepted', (f) => f.id === env.header.id);
  await cn.waitForType('deliver', (f) => f.envelope.header.id === env.header.id);
  return env;
}

describe('GET /metrics (Prometheus, prom-client)', () => {
  it('counts messages by precedence and rung, misses, refusals by code, verify and commit timings, links and queues', async () => {
    const clock = new ManualClock();
    const s = await startTestServer({ clock, app: QUIET });
    const before = await scrape(s);
    expect(sample(before, 'hotline_messages_total', { precedence: 'FLASH', rung: 'accepted' })).toBe(0);
    expect(before).toMatch(/^# TYPE hotline_store_commit_seconds histogram$/m);
    expect(before).toMatch(/^# TYPE hotline_queue_depth gauge$/m);

    const jp = await s.connect(`${JP}/op1`);
    const cn = await s.connect(`${CN}/op1`);
    const flash = await send(s, jp, cn, 1, 'FLASH');
    const routine = await send(s, jp, cn, 2, 'ROUTINE');
    cn.send({ t: 'receipt', receipt: await signReceipt(s.dep.devices[`${CN}/op1`]!, flash.header, 'acknowledged', clock.now()) });
    await cn.waitForType('receipt-accepted', (f) => f.messageId === flash.header.id);
    // The same envelope under another seq is refused on the link (a replayed seq).
    jp.send({ t: 'envelope', envelope: { ...routine, header: { ...routine.header, seq: 1 } } });
    await jp.waitForType('error', (f) => f.ref === routine.header.id);
    // ROUTINE's delivered rung falls due.
    clock.advance(s.dep.agreement.deadlines.ROUTINE.deliveredMs);
    await jp.waitFor((f) => f.t === 'event' && f.event.type === 'deadline.missed' && f.event.messageId === routine.header.id, 'ROUTINE delivered missed');
    // An HTTP refusal.
    expect((await fetch(`${s.url}/v1/nothing-here`)).status).toBe(404);

    const text = await scrape(s);
    expect(sample(text, 'hotline_messages_total', { precedence: 'FLASH', rung: 'accepted' })).toBe(1);
    expect(sample(text, 'hotline_messages_total', { precedence: 'ROUTINE', rung: 'accepted' })).toBe(1);
    expect(sample(text, 'hotline_messages_total', { precedence: 'FLASH', rung: 'delivered' })).toBe(1);
    expect(sample(text, 'hotline_messages_total', { precedence: 'FLASH', rung: 'acknowledged' })).toBe(1);
    expect(sample(text, 'hotline_messages_total', { precedence: 'ROUTINE', rung: 'delivered' })).toBe(0);
    expect(sample(text, 'hotline_deadline_misses_total', { precedence: 'ROUTINE', rung: 'delivered' })).toBe(1);
    expect(sample(text, 'hotline_deadline_misses_total', { precedence: 'FLASH', rung: 'delivered' })).toBe(0);
    const refusedOnLink = text.split('\n').filter((l) => l.startsWith('hotline_refusals_total{') && l.includes('path="link"'));
    expect(refusedOnLink.length).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'hotline_refusals_total', { code: 'HL_ERR_NOT_FOUND', path: 'http' })).toBe(1);
    // Three signature checks of envelopes (the refused one included) and one of a receipt.
    expect(sample(text, 'hotline_signature_verify_seconds_count', { kind: 'envelope' })).toBe(3);
    expect(sample(text, 'hotline_signature_verify_seconds_count', { kind: 'receipt' })).toBe(1);
    expect(sample(text, 'hotline_store_commit_seconds_count')).toBeGreaterThanOrEqual(3);
    expect(sample(text, 'hotline_links_open')).toBe(2);
    expect(sample(text, 'hotline_connections_open')).toBeGreaterThanOrEqual(3);
    expect(sample(text, 'hotline_queue_depth', { queue: 'commit' })).toBe(0);
    // The FLASH held the ROUTINE envelope until its hold ran out (no delivered receipt: the
    // acknowledged one came after), 25 ms of real time.
    expect(sample(text, 'hotline_flash_gate_holds_total', { end: 'expired' })).toBe(1);
    expect(sample(text, 'hotline_flash_gate_holds_total', { end: 'receipt' })).toBe(0);
    expect(sample(text, 'hotline_flash_gate_breaks_total')).toBe(0);
    expect(sample(text, 'hotline_flash_gate_held_seconds_total')).toBeGreaterThanOrEqual(0.02);
    // No identifiers in labels: no message id, device or address appears.
    expect(text).not.toContain(flash.header.id);
    expect(text).not.toContain('op1');
  });

  it('answers loopback peers; a proxied request or another host needs the bearer token (HL_ERR_METRICS_FORBIDDEN)', async () => {
    const open = await startTestServer();
    const proxied = await fetch(`${open.url}/metrics`, { headers: { 'x-forwarded-for': '203.0.113.7' } });
    expect(proxied.status).toBe(403);
    expect(((await proxied.json()) as { error: { code: string } }).error.code).toBe('HL_ERR_METRICS_FORBIDDEN');

    const s = await startTestServer({ app: { metricsToken: TOKEN } });
    const viaProxy = { 'x-forwarded-for': '203.0.113.7' };
    expect((await fetch(`${s.url}/metrics`, { headers: viaProxy })).status).toBe(403);
    expect((await fetch(`${s.url}/metrics`, { headers: { ...viaProxy, authorization: 'Bearer wrong' } })).status).toBe(403);
    const ok = await fetch(`${s.url}/metrics`, { headers: { ...viaProxy, authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toMatch(/^hotline_connections_open \d+$/m);
  });

  it('reads the token from HOTLINE_METRICS_TOKEN_FILE and refuses a short one', () => {
    const tmp = tempDir();
    onCleanup(() => tmp.remove());
    const dir = tmp.path;
    const good = join(dir, 'metrics-token');
    writeFileSync(good, `${TOKEN}\n`);
    const config = loadConfig({ HOTLINE_AGREEMENT: '/a.json', HOTLINE_DATA_DIR: dir, HOTLINE_METRICS_TOKEN_FILE: good });
    expect(startOptionsFromConfig(config).app?.metricsToken).toBe(TOKEN);
    const short = join(dir, 'short');
    writeFileSync(short, 'abc');
    expect(() => readMetricsToken(short)).toThrow(/at least 32 characters/);
  });
});
