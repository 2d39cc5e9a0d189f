import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { CN, JP, createDeployment } from '../helpers/deployment.js';
import { onCleanup, startTestServer, type TestServer } from '../helpers/test-server.js';
import { startPrivatePostgres } from '../helpers/private-postgres.js';
import { fetchExport } from '../helpers/audit.js';
import { call, seal } from '../helpers/ws-client.js';

/**
 * Issue 12: PostgreSQL itself restarted under load. Two nodes of one relay on a cluster of the
 * test's own (test/helpers/private-postgres.ts: the shared test cluster is never restarted),
 * clients on both sending both ways. While the database is down both nodes answer `/readyz` 503,
 * an envelope sent is refused (`HL_ERR_STORE_FAILED`, no `accepted`) and stays in the sender's
 * outbox; once the database is back the nodes recover by themselves, the outboxes are sent again,
 * and every message arrives once and is stored once.
 */

const PER_PHASE = 8;

/** `/readyz` of `s` until it answers `status` (bounded by count; each answer is a round trip, not a sleep). */
async function readyzUntil(s: TestServer, status: number): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if ((await call(s.url, 'GET', '/readyz')).status === status) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${s.url}/readyz never answered ${status}`);
}

describe('PostgreSQL restarted under load', () => {
  it('both nodes are not ready while it is down and accept nothing; they recover by themselves and every message arrives once', { timeout: 240_000 }, async () => {
    const pg = await startPrivatePostgres();
    const dep = await createDeployment();
    const database = { url: pg.url, schema: 'hotline' };
    const a = await startTestServer({ dep, database, logLevel: 'warn' });
    const b = await startTestServer({ dep, database, logLevel: 'warn', enrolAll: false });

    const mk = (key: string, urls: string[]) => {
      const c = new HotlineClient({ serverUrl: urls, agreement: dep.agreement, device: dep.devices[key]!, storage: new MemoryStorage(), WebSocket, backoff: { initialMs: 50, maxMs: 500 } });
      onCleanup(() => c.stop());
      return c;
    };
    const clients = { jp: mk(`${JP}/op1`, [a.url, b.url]), cn: mk(`${CN}/op1`, [b.url, a.url]) };
    const got = { jp: new Map<string, number>(), cn: new Map<string, number>() };
    const accepted = { jp: new Map<string, number>(), cn: new Map<string, number>() };
    let wake = () => {};
    for (const side of ['jp', 'cn'] as const) {
      clients[side].on('message', (m) => {
        got[side].set(m.header.id, (got[side].get(m.header.id) ?? 0) + 1);
        wake();
      });
      clients[side].on('accepted', (x) => {
        accepted[side].set(x.id, (accepted[side].get(x.id) ?? 0) + 1);
        wake();
      });
    }
    const until = async (what: string, cond: () => boolean, ms = 90_000) => {
      const end = Date.now() + ms;
      while (!cond()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await Promise.race([new Promise<void>((r) => (wake = r)), new Promise((r) => setTimeout(r, 250))]);
      }
    };
    await Promise.all([clients.jp.start(), clients.cn.start()]);

    const sent = { jp: [] as string[], cn: [] as string[] };
    const phase = async (label: string) => {
      const ids = { jp: [] as string[], cn: [] as string[] };
      for (let i = 0; i < PER_PHASE; i++) {
        ids.jp.push((await clients.jp.send({ to: CN, precedence: 'FLASH', body: `jp ${label} ${i}` })).id);
        ids.cn.push((await clients.cn.send({ to: JP, precedence: 'ROUTINE', body: `cn ${label} ${i}` })).id);
      }
      sent.jp.push(...ids.jp);
      sent.cn.push(...ids.cn);
      return ids;
    };

    // Load before: these are in flight when the database stops.
    await phase('before');
    await until('some of the first phase accepted', () => accepted.jp.size + accepted.cn.size >= PER_PHASE);
    // A raw link to node A, to see the refusal itself.
    const probe = await a.connect(`${JP}/op2`);
    const directory = await a.directory();
    await pg.stop();

    // Down: both nodes not ready, with the store's reason.
    for (const s of [a, b]) {
      await readyzUntil(s, 503);
      const r = await call(s.url, 'GET', '/readyz');
      expect(r.body.error.code).toBe('HL_ERR_STORE_FAILED');
    }
    // Sent while it is down: not accepted (they stay in the outboxes).
    const during = await phase('during');
    // A raw envelope on a link to node A is refused with the store's code, and gets no `accepted`.
    const envelope = await seal({ sender: dep.devices[`${JP}/op2`]!, to: CN, seq: 1, directory, plaintext: { body: 'probe', lang: 'en' } });
    probe.send({ t: 'envelope', envelope });
    expect((await probe.waitForType('error', (f) => f.ref === envelope.header.id)).code).toBe('HL_ERR_STORE_FAILED');
    expect([...during.jp, ...during.cn].filter((id) => accepted.jp.has(id) || accepted.cn.has(id))).toEqual([]);
    for (const s of [a, b]) expect((await call(s.url, 'GET', '/readyz')).status).toBe(503);
    await probe.sync();
    expect(probe.ofType('accepted')).toEqual([]);

    // Back: the nodes recover by themselves (nothing restarts them).
    await pg.start();
    for (const s of [a, b]) await readyzUntil(s, 200);
    // The refused envelope, sent again, is accepted now.
    probe.send({ t: 'envelope', envelope });
    await probe.waitForType('accepted', (f) => f.id === envelope.header.id);
    await phase('after');

    await until('every message to arrive and be accepted', () =>
      sent.jp.every((id) => got.cn.has(id) && accepted.jp.has(id)) && sent.cn.every((id) => got.jp.has(id) && accepted.cn.has(id)),
    );
    // Both also get the probe (jp-mod/op2 to cn-mnd: its colleague jp-mod/op1 gets a copy).
    expect([...got.cn.keys()].sort()).toEqual([...sent.jp, envelope.header.id].sort());
    expect([...got.jp.keys()].sort()).toEqual([...sent.cn, envelope.header.id].sort());
    expect([...got.jp.values(), ...got.cn.values(), ...accepted.jp.values(), ...accepted.cn.values()].every((n) => n === 1)).toBe(true);
    // Stored once each (the resent outbox items included), probe too.
    const exported = await fetchExport(b.url, dep.devices[`${JP}/audit1`]!, dep.agreement);
    const acceptances = exported.entries.map((e) => JSON.parse(e) as { type: string; header?: { id: string } }).filter((e) => e.type === 'envelope.accepted');
    expect(acceptances.map((e) => e.header!.id).sort()).toEqual([...sent.jp, ...sent.cn, envelope.header.id].sort());
  });
});
