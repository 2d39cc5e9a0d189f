import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { signReceipt } from '../../shared/crypto/receipt.js';
import { verifyAuditExport } from '../../shared/audit/log-verify.js';
import type { HotlineEvent } from '../../shared/protocol/frames.js';
import type { Envelope } from '../../shared/protocol/schemas.js';
import { CN, JP, createDeployment, type Deployment } from '../helpers/deployment.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';
import { testDatabaseUrl, testSchema } from '../helpers/stores.js';
import { fetchExport } from '../helpers/audit.js';
import type { LinkClient } from '../helpers/ws-client.js';
import { seal } from '../helpers/ws-client.js';

/**
 * Several nodes of one relay on one PostgreSQL database (issue 12, docs/postgresql.md): two
 * servers started on the same database URL and schema, a device on each. These run against the
 * test database the global setup provides (test/helpers/postgres-global-setup.ts): they fail, never
 * skip, when it is unreachable.
 */

const MIN = 60_000;
/** Heartbeats run on the manual clock: out of the way of the jumps below. */
/**
 * The deadline timer looks at the database at least every 10 minutes: the FLASH acknowledged
 * deadline (10 minutes), so that the node that did not open it wakes exactly when it falls due.
 */
const APP = { heartbeatIntervalMs: 365 * 24 * 60 * MIN, checkpointIntervalMs: MIN, clusterPollMs: 10 * MIN };

interface Nodes {
  clock: ManualClock;
  dep: Deployment;
  schema: string;
  a: TestServer;
  b: TestServer;
}

async function twoNodes(): Promise<Nodes> {
  const clock = new ManualClock();
  const dep = await createDeployment(clock.now());
  const database = { url: testDatabaseUrl(), schema: testSchema() };
  const a = await startTestServer({ dep, database, clock, app: APP, withLogKey: true });
  const b = await startTestServer({ dep, database, clock, app: APP, withLogKey: true, enrolAll: false });
  return { clock, dep, schema: database.schema, a, b };
}

let seqs = new Map<string, number>();
async function send(n: Nodes, on: TestServer, from: LinkClient, fromKey: string, to: string, body: string): Promise<Envelope> {
  const seq = (seqs.get(fromKey) ?? 0) + 1;
  seqs.set(fromKey, seq);
  const env = await seal({ sender: n.dep.devices[fromKey]!, to, seq, directory: await on.directory(), plaintext: { body, lang: 'en' }, sentAt: n.clock.now() });
  from.send({ t: 'envelope', envelope: env });
  await from.waitForType('accepted', (f) => f.id === env.header.id);
  return env;
}

const eventsOf = (c: LinkClient, pred: (e: HotlineEvent) => boolean) => c.ofType('event').map((f) => f.event).filter(pred);

async function sql<R extends object>(text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: testDatabaseUrl() });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

describe('two relay nodes on one PostgreSQL database', () => {
  it('a device on each: messages both ways and receipts; a deadline fired once; checkpoints signed once per interval; the export verifies', async () => {
    seqs = new Map();
    const n = await twoNodes();
    const { a, b, clock, dep } = n;
    const jp = await a.connect(`${JP}/op1`);
    const cn = await b.connect(`${CN}/op1`);

    // A → B: the envelope is committed by node A and reaches the link on node B by notification.
    const toCn = await send(n, a, jp, `${JP}/op1`, CN, 'from node A');
    expect((await cn.waitForType('deliver', (f) => f.envelope.header.id === toCn.header.id)).envelope).toEqual(toCn);
    const delivered = await signReceipt(dep.devices[`${CN}/op1`]!, toCn.header, 'delivered', clock.now());
    cn.send({ t: 'receipt', receipt: delivered });
    await cn.waitForType('receipt-accepted', (f) => f.messageId === toCn.header.id);
    expect((await jp.waitForType('receipt', (f) => f.receipt.receipt.messageId === toCn.header.id)).receipt).toEqual(delivered);

    // B → A.
    const toJp = await send(n, b, cn, `${CN}/op1`, JP, 'from node B');
    expect((await jp.waitForType('deliver', (f) => f.envelope.header.id === toJp.header.id)).envelope).toEqual(toJp);
    const back = await signReceipt(dep.devices[`${JP}/op1`]!, toJp.header, 'acknowledged', clock.now());
    jp.send({ t: 'receipt', receipt: back });
    expect((await cn.waitForType('receipt', (f) => f.receipt.receipt.messageId === toJp.header.id)).receipt).toEqual(back);

    // The delivered rung of A→B was reached in time (closed on node B, opened on node A); its
    // acknowledged rung falls due after 10 minutes (FLASH): both nodes' timers run, one fires it.
    // Both nodes' timers first wake at the delivered rungs' due time (30 s: one message opened on
    // each node), find nothing due and re-arm for the acknowledged rung; then both look at once.
    const tick = 'due deadlines and link tests fired from the database';
    const t0 = clock.now();
    const due = dep.agreement.deadlines.FLASH.acknowledgedMs;
    const ticked = (s: TestServer, at: number) => s.logs.waitFor((r) => r['msg'] === tick && (r['at'] as number) >= at);
    clock.advance(due);
    await Promise.all([ticked(a, t0 + dep.agreement.deadlines.FLASH.deliveredMs), ticked(b, t0 + dep.agreement.deadlines.FLASH.deliveredMs)]);
    clock.advance(1);
    await Promise.all([ticked(a, t0 + due), ticked(b, t0 + due)]);
    const isMissed = (e: HotlineEvent) => e.type === 'deadline.missed' && e.messageId === toCn.header.id;
    await jp.waitFor((f) => f.t === 'event' && isMissed(f.event), 'missed on A');
    await cn.waitFor((f) => f.t === 'event' && isMissed(f.event), 'missed on B');
    await Promise.all([jp.sync(), cn.sync()]);
    expect(eventsOf(jp, isMissed)).toEqual([expect.objectContaining({ rung: 'acknowledged', level: 1 })]);
    expect(eventsOf(cn, isMissed)).toEqual([expect.objectContaining({ rung: 'acknowledged', level: 1 })]);
    // Nothing else missed: the delivered rung closed by the receipt taken on the other node.
    expect(eventsOf(jp, (e) => e.type === 'deadline.missed')).toHaveLength(1);
    const logged = await sql<{ entry: string }>(`SELECT entry FROM ${n.schema}.audit_entries WHERE entry LIKE '%"deadline.missed"%'`);
    expect(logged).toHaveLength(1);

    // Checkpoints: both nodes' timers run each interval; one checkpoint per interval is signed.
    const periodic = (s: TestServer) => s.logs.records().filter((r) => r['msg'] === 'periodic checkpoint').length;
    for (let round = 0; round < 3; round++) {
      await send(n, round % 2 === 0 ? a : b, round % 2 === 0 ? jp : cn, round % 2 === 0 ? `${JP}/op1` : `${CN}/op1`, round % 2 === 0 ? CN : JP, `round ${round}`);
      const [pa, pb] = [periodic(a), periodic(b)];
      const slotStart = Math.floor((clock.now() + MIN) / MIN) * MIN;
      clock.advance(MIN);
      await Promise.all([a.logs.waitFor((r) => r['msg'] === 'periodic checkpoint', pa + 1), b.logs.waitFor((r) => r['msg'] === 'periodic checkpoint', pb + 1)]);
      const inSlot = await sql<{ size: number }>(`SELECT size FROM ${n.schema}.checkpoints WHERE created_at >= $1 AND created_at < $2`, [slotStart, slotStart + MIN]);
      expect(inSlot).toHaveLength(1);
    }

    // The log, exported from either node, is one log and verifies.
    const auditor = dep.devices[`${JP}/audit1`]!;
    for (const s of [a, b]) {
      const exported = await fetchExport(s.url, auditor, dep.agreement);
      const result = await verifyAuditExport(dep.agreement, exported);
      expect(result).toMatchObject({ ok: true, entries: exported.entries.length });
      expect(result.verifiedSize).toBeGreaterThan(0);
    }
  });

  it('the listening connection cut (pg_terminate_backend) and restored: items committed meanwhile are delivered', async () => {
    seqs = new Map();
    const n = await twoNodes();
    const { a, b } = n;
    const jp = await a.connect(`${JP}/op1`);
    const cn = await b.connect(`${CN}/op1`);
    const listeners = async () =>
      (await sql<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = 'hotline-listen' AND query LIKE $1`, [`%hotline_mailbox_${n.schema}%`])).map((r) => r.pid);
    const before = await listeners();
    expect(before).toHaveLength(2);
    const restored = (s: TestServer) => s.logs.records().filter((r) => String(r['msg']).startsWith('listening for new mailbox items again')).length;
    for (let round = 1; round <= 3; round++) {
      const pids = await listeners();
      expect(pids).toHaveLength(2);
      await sql('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
      // Sent while node B's listener is down or coming back: its notification may well be lost.
      const env = await send(n, a, jp, `${JP}/op1`, CN, `while cut ${round}`);
      // Both listeners back before the next round cuts them again.
      await Promise.all([a, b].map((s) => s.logs.waitFor((r) => String(r['msg']).startsWith('listening for new mailbox items again'), round)));
      expect((await cn.waitForType('deliver', (f) => f.envelope.header.id === env.header.id)).envelope).toEqual(env);
    }
    expect(restored(a)).toBe(3);
    const after = await listeners();
    expect(after).toHaveLength(2);
    expect(after.some((p) => before.includes(p))).toBe(false);
    // Each delivered once.
    await cn.sync();
    const ids = cn.ofType('deliver').map((f) => f.envelope.header.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toHaveLength(3);
  });
});
