import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { verifyAuditExport } from '../../shared/audit/log-verify.js';
import { amendAgreement, CN, JP, createDeployment, tempDir, writeAgreement } from '../helpers/deployment.js';
import { spawnServer, type ServerProcess } from '../helpers/spawn-server.js';
import { onCleanup } from '../helpers/test-server.js';
import { testDatabaseUrl, testSchema } from '../helpers/stores.js';
import { LoopbackProxy } from '../helpers/two-relays.js';
import { enrol } from '../helpers/ws-client.js';
import { fetchExport, signNow } from '../helpers/audit.js';

/**
 * Issue 12: two nodes of one relay on one PostgreSQL database, each in its own process behind a
 * loopback proxy with a fixed address (the URLs the clients are given), killed with SIGKILL 20
 * times between them while messages go both ways, each started again at once. A short deadline
 * table makes the acknowledged deadline of every FLASH message fall due during the kills. At the
 * end every message has arrived exactly once, each acceptance and each missed deadline is in the
 * log once, and the log, exported, verifies.
 */

const KILLS = 20;
const PAIRS = 40;
/** FLASH: delivered within 1.5 s (met, or missed around a kill), acknowledged within 2 s (always missed: nobody acknowledges). */
const FLASH = { deliveredMs: 1_500, acknowledgedMs: 2_000 };

type Node = 'a' | 'b';

describe('two PostgreSQL nodes under SIGKILL', () => {
  it('20 kills across the two nodes: clients fail over, nothing accepted is lost or delivered twice, no deadline fires twice, the export verifies', { timeout: 600_000 }, async () => {
    const dep = await createDeployment();
    dep.agreement = await amendAgreement(dep, { deadlines: { ...dep.agreement.deadlines, FLASH } });
    const dir = tempDir();
    onCleanup(() => dir.remove());
    const agreementPath = writeAgreement(dir.path, dep.agreement);
    const logKeyPath = join(dir.path, 'log-secret.json');
    writeFileSync(logKeyPath, JSON.stringify(dep.logSecret), { mode: 0o600 });
    const schema = testSchema();
    const ports: Record<Node, number> = { a: 0, b: 0 };
    const proxy = { a: await LoopbackProxy.start(() => ports.a), b: await LoopbackProxy.start(() => ports.b) };
    onCleanup(() => Promise.all([proxy.a.close(), proxy.b.close()]).then(() => undefined));
    const nodes: Record<Node, ServerProcess | undefined> = { a: undefined, b: undefined };
    const start = async (n: Node) => {
      const s = await spawnServer({
        agreementPath,
        dataDir: join(dir.path, n),
        extraEnv: { HOTLINE_DATABASE_URL: testDatabaseUrl(), HOTLINE_PG_SCHEMA: schema, HOTLINE_LOG_KEY: logKeyPath, HOTLINE_CHECKPOINT_INTERVAL_MS: '1000' },
      });
      ports[n] = Number(new URL(s.url).port);
      nodes[n] = s;
      return s;
    };
    // Registered after testSchema's cleanup, so run before it: no node writes into a dropped schema.
    onCleanup(async () => {
      for (const s of Object.values(nodes)) {
        s?.child.kill('SIGKILL');
        if (s) await s.exited;
      }
    });
    // One after the other: the first creates the schema. The devices are enrolled before node B
    // starts: a node loads the directory at its start, and does not yet hear of an enrolment made
    // on another node (see docs/postgresql.md "Known limits").
    await start('a');
    for (const d of Object.values(dep.devices)) await enrol(proxy.a.url, d.certificate);
    await start('b');

    const urls = [proxy.a.url, proxy.b.url];
    const mk = (key: string, first: number) =>
      new HotlineClient({
        serverUrl: [urls[first]!, urls[1 - first]!],
        agreement: dep.agreement,
        device: dep.devices[key]!,
        storage: new MemoryStorage(),
        WebSocket,
        backoff: { initialMs: 50, maxMs: 400 },
      });
    // One client starts on each node.
    const clients = { jp: mk(`${JP}/op1`, 0), cn: mk(`${CN}/op1`, 1) };
    onCleanup(async () => {
      await clients.jp.stop();
      await clients.cn.stop();
    });
    const got = { jp: new Map<string, number>(), cn: new Map<string, number>() };
    const accepted = { jp: new Map<string, number>(), cn: new Map<string, number>() };
    const connectedAt = { jp: [] as string[], cn: [] as string[] };
    const missedSeen = new Set<string>();
    let wake = () => {};
    for (const side of ['jp', 'cn'] as const) {
      const c = clients[side];
      c.on('message', (m) => {
        got[side].set(m.header.id, (got[side].get(m.header.id) ?? 0) + 1);
        wake();
      });
      c.on('accepted', (a) => {
        accepted[side].set(a.id, (accepted[side].get(a.id) ?? 0) + 1);
        wake();
      });
      c.on('event', (e) => {
        if (e.type === 'deadline.missed') missedSeen.add(e.messageId);
        wake();
      });
      c.on('connected', (e) => {
        connectedAt[side].push(e.url);
        wake();
      });
    }
    await Promise.all([clients.jp.start(), clients.cn.start()]);
    /** Resolves once `cond` holds, looked at on every client event (and every 250 ms); fails after `ms`. */
    const until = async (what: string, cond: () => boolean, ms = 60_000) => {
      const end = Date.now() + ms;
      while (!cond()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await Promise.race([new Promise<void>((r) => (wake = r)), new Promise((r) => setTimeout(r, 250))]);
      }
    };

    const sent = { jp: [] as string[], cn: [] as string[] };
    const flash: string[] = [];
    let kills = 0;
    const killed: Record<Node, number> = { a: 0, b: 0 };
    let seed = 12;
    const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
    const t0 = Date.now();
    for (let i = 0; i < PAIRS; i++) {
      const jpFlash = i % 2 === 0;
      const j = await clients.jp.send({ to: CN, precedence: jpFlash ? 'FLASH' : 'ROUTINE', body: `jp ${i}`, lang: 'ja' });
      const c = await clients.cn.send({ to: JP, precedence: jpFlash ? 'ROUTINE' : 'FLASH', body: `cn ${i}`, lang: 'zh' });
      sent.jp.push(j.id);
      sent.cn.push(c.id);
      flash.push(jpFlash ? j.id : c.id);
      if (i % 2 === 1 && kills < KILLS) {
        // A random moment: at once, or after up to 40 ms of traffic; the nodes alternate mostly.
        await new Promise((r) => setTimeout(r, Math.floor(random() * 40)));
        const n: Node = random() < 0.5 ? 'a' : 'b';
        const victim = nodes[n]!;
        const before = connectedAt.jp.length + connectedAt.cn.length;
        const onVictim = (['jp', 'cn'] as const).filter((s) => clients[s].connected && clients[s].serverUrl === proxy[n].url).length;
        victim.child.kill('SIGKILL');
        expect((await victim.exited).signal).toBe('SIGKILL');
        kills++;
        killed[n]++;
        // The clients that were on the victim are connected again (to the other node, the next URL)
        // before the victim comes back: a fail-over, not a wait for the restart.
        await until(`the clients on node ${n} to fail over (kill ${kills})`, () => connectedAt.jp.length + connectedAt.cn.length >= before + onVictim);
        await start(n);
      }
    }
    expect(kills).toBe(KILLS);
    expect(killed.a).toBeGreaterThan(0);
    expect(killed.b).toBeGreaterThan(0);
    // Both clients used both nodes (the proxies' fixed URLs).
    for (const side of ['jp', 'cn'] as const) expect(new Set(connectedAt[side])).toEqual(new Set(urls));

    await until('every message to arrive and be accepted', () =>
      sent.jp.every((id) => got.cn.has(id) && accepted.jp.has(id)) && sent.cn.every((id) => got.jp.has(id) && accepted.cn.has(id)),
    );
    // The deadlines fire on the nodes' own timers (real time): every FLASH message's acknowledged
    // deadline is missed (nobody acknowledges), told to its sender.
    await until('every FLASH message to miss its acknowledged deadline', () => flash.every((id) => missedSeen.has(id)));

    // Nothing lost, nothing twice, either way (the client shows a message when it first arrives).
    expect([...got.cn.keys()].sort()).toEqual([...sent.jp].sort());
    expect([...got.jp.keys()].sort()).toEqual([...sent.cn].sort());
    expect([...got.cn.values(), ...got.jp.values(), ...accepted.jp.values(), ...accepted.cn.values()].every((n) => n === 1)).toBe(true);

    // The log: a checkpoint over all of it, then the export (from node B) verifies and holds each
    // acceptance once and each missed deadline once (by message, rung and level).
    const auditor = dep.devices[`${JP}/audit1`]!;
    const signed = await signNow(proxy.a.url, auditor, dep.agreement);
    const exported = await fetchExport(proxy.b.url, auditor, dep.agreement);
    const entries = exported.entries.map((e) => JSON.parse(e) as { type: string; header?: { id: string } });
    const acceptances = entries.filter((e) => e.type === 'envelope.accepted').map((e) => e.header!.id);
    expect(acceptances.sort()).toEqual([...sent.jp, ...sent.cn].sort());
    const missed = exported.entries.map((e) => JSON.parse(e) as { type: string; messageId?: string; rung?: string; level?: number }).filter((e) => e.type === 'deadline.missed');
    expect(missed.filter((e) => e.rung === 'acknowledged' && e.level === 1).map((e) => e.messageId).sort()).toEqual([...flash].sort());
    const keys = missed.map((e) => `${e.messageId}/${e.rung}/${e.level}`);
    expect(keys.length - new Set(keys).size).toBe(0);
    const result = await verifyAuditExport(dep.agreement, exported);
    expect(result).toMatchObject({ ok: true, entries: exported.entries.length });
    // Covered by a checkpoint up to at least what was signed just now (a periodic one may have come since).
    expect(result.verifiedSize).toBeGreaterThanOrEqual(signed.size);
    expect(signed.size).toBeGreaterThanOrEqual(acceptances.length);
    console.info(`pg-nodes-kill: ${kills} kills (a ${killed.a}, b ${killed.b}), ${sent.jp.length + sent.cn.length} messages, ${missed.length} missed deadlines, ${exported.entries.length} log entries, ${connectedAt.jp.length + connectedAt.cn.length} connections in ${Date.now() - t0} ms`);
  });
});
