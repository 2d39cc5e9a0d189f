/**
 * `node --import tsx bench/trace-path.ts`: where the time of one message goes, hop by hop (issue 9;
 * docs/performance.md, the seventh and eighth sessions' traces). A diagnostic, not a measurement
 * of record: `npm run bench` is the judge.
 *
 * The server runs in this process with three real HotlineClients (jp-mod's operator A sending,
 * cn-mnd's operator B answering, jp-mod's colleague C getting copies; memory storage), as the
 * bench's "in-process" line. FLASH messages go one at a time; every WebSocket frame sent and
 * received (by whom, of which type), every write queued and every store commit (its transaction,
 * then its durability) is timestamped from `send()`. It prints each point's median over the last
 * four fifths of the messages, the send → verified receipt p50/p90/p99, and for the slowest 3 %
 * the steps that took a millisecond or more longer than their median.
 *
 * To see what changes, run it on two trees alternately (a worktree per tree): one process's runs
 * drift with this machine, but two trees interleaved see the same drift. Environment: TRACE_COUNT
 * (messages, default 600).
 *
 * It wraps `ws`'s WebSocket.prototype.emit/send, WriteQueue.prototype.enqueue and
 * SqliteStore.prototype.commit for the life of this process only.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { HotlineClient } from '../client/hotline-client.js';
import { MemoryStorage } from '../client/storage/memory-storage.js';
import { startServer } from '../server/main.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import { WriteQueue } from '../server/store/write-queue.js';
import type { Write } from '../server/relay/records.js';
import { makeDeployment } from '../test/helpers/fixtures.js';
import { enrolCertificates } from './deployment.js';
import { BODY } from './traffic.js';

const WHO = Symbol('trace: which client owns this socket');
type Traced = WebSocket & { [WHO]?: string };

let marks: [string, bigint][] = [];
const mark = (label: string) => marks.push([label, process.hrtime.bigint()]);
const frameType = (data: unknown) => /"t":"([\w-]+)"/.exec(String(data))?.[1] ?? '?';

function wrap(): void {
  const emit = WebSocket.prototype.emit;
  WebSocket.prototype.emit = function (this: Traced, event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'message') return emit.call(this, event, ...args);
    const who = this[WHO] ?? 'S';
    const t = frameType(args[0]);
    mark(`${who}.recv:${t}`);
    const handled = emit.call(this, event, ...args);
    mark(`${who}.handled:${t}`);
    return handled;
  };
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (this: Traced, data: unknown, ...rest: unknown[]): void {
    mark(`${this[WHO] ?? 'S'}.send:${frameType(data)}`);
    (send as (this: WebSocket, ...a: unknown[]) => void).call(this, data, ...rest);
  };
  const enqueue = WriteQueue.prototype.enqueue;
  WriteQueue.prototype.enqueue = function (this: WriteQueue, write: Write, ...rest: Parameters<typeof enqueue> extends [unknown, ...infer R] ? R : never) {
    mark(`S.queued:${write.kind}`);
    return enqueue.call(this, write, ...rest);
  };
  const commit = SqliteStore.prototype.commit;
  SqliteStore.prototype.commit = function (this: SqliteStore, writes: readonly Write[], visible?: Parameters<typeof commit>[1]) {
    const kinds = writes.map((w) => w.kind).join(',');
    mark(`S.commit:${kinds}`);
    // The transaction is done when the call returns (SqliteStore), and its copies forwarded
    // (`visible`); the promise is its durability.
    const done = commit.call(this, writes, visible);
    mark('S.transaction-done');
    return done.then((r) => {
      mark('S.durable');
      return r;
    });
  };
}

const count = Number(process.env['TRACE_COUNT'] ?? 600);
if (!Number.isInteger(count) || count < 10) throw new Error(`TRACE_COUNT must be an integer of at least 10, got "${process.env['TRACE_COUNT']}"`);

wrap();
const d = await makeDeployment(Date.now() - 60_000);
const dir = mkdtempSync(join(tmpdir(), 'hotline-trace-'));
const server = await startServer({ agreement: d.agreement, dataDir: join(dir, 'data'), host: '127.0.0.1', port: 0, logLevel: 'silent' });
await enrolCertificates(server.url, [d.devices.jpOp, d.devices.cnOp, d.devices.jpOp2].map((x) => x.certificate));
const client = (device: typeof d.devices.jpOp, who: string) => {
  class Socket extends WebSocket {
    constructor(url: string, protocols: string[]) {
      super(url, protocols);
      (this as Traced)[WHO] = who;
    }
  }
  return new HotlineClient({ serverUrl: server.url, agreement: d.agreement, device, storage: new MemoryStorage(), WebSocket: Socket });
};
const a = client(d.devices.jpOp, 'A');
const b = client(d.devices.cnOp, 'B');
const c = client(d.devices.jpOp2, 'C');
await Promise.all([a.start(), b.start(), c.start()]);

// The receipt may come before send() resolves (its copy is forwarded before the relay's fsync,
// the `accepted` only after it): the first verified `delivered` receipt of the turn is the one.
let verified: (() => void) | undefined;
a.on('receipt', (e) => {
  if (e.verified && e.receipt.receipt.kind === 'delivered' && verified !== undefined) {
    mark('A.receipt-verified');
    verified();
    verified = undefined;
  }
});
const runs: [string, number][][] = [];
for (let i = 0; i < count; i++) {
  marks = [];
  const t0 = process.hrtime.bigint();
  mark('A.send()');
  const receipt = new Promise<void>((resolve) => (verified = resolve));
  await a.send({ to: 'cn-mnd', precedence: 'FLASH', body: BODY, lang: 'ja' });
  await receipt;
  // The colleague's copy and the acks that follow the receipt land in this message's trace.
  await new Promise((resolve) => setTimeout(resolve, 2));
  const seen = new Map<string, number>();
  runs.push(
    marks.map(([label, t]) => {
      const n = (seen.get(label) ?? 0) + 1;
      seen.set(label, n);
      return [n > 1 ? `${label}#${n}` : label, Number(t - t0) / 1e6];
    }),
  );
}
await Promise.all([a.stop(), b.stop(), c.stop()]);
await server.close();
rmSync(dir, { recursive: true, force: true });

const used = runs.slice(Math.floor(count / 5));
const median = (xs: readonly number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const at = new Map<string, number[]>();
for (const run of used) for (const [label, ms] of run) (at.get(label) ?? at.set(label, []).get(label)!).push(ms);
const points = [...at].filter(([, xs]) => xs.length >= used.length / 2).map(([label, xs]) => ({ label, ms: median(xs), n: xs.length })).sort((x, y) => x.ms - y.ms);
console.log(`${used.length} of ${count} FLASH messages, one at a time (the first fifth left out); ms from send(), medians:`);
for (const p of points) console.log(`${p.ms.toFixed(3).padStart(9)}  ${p.label}${p.n < used.length ? ` (in ${p.n})` : ''}`);
const total = (run: [string, number][]) => run.find(([label]) => label === 'A.receipt-verified')?.[1] ?? Infinity;
const totals = used.map(total).sort((x, y) => x - y);
const q = (f: number) => totals[Math.min(totals.length - 1, Math.floor(totals.length * f))]!.toFixed(2);
console.log(`send → verified receipt: p50 ${q(0.5)} ms, p90 ${q(0.9)} ms, p99 ${q(0.99)} ms`);
console.log('slowest 3 %: the steps that took ≥ 1 ms longer than their median');
const order = points.map((p) => p.label);
const step = new Map(order.map((label, k) => [label, k === 0 ? 0 : points[k]!.ms - points[k - 1]!.ms]));
for (const run of [...used].sort((x, y) => total(x) - total(y)).slice(Math.floor(used.length * 0.97))) {
  const t = new Map(run);
  const grew = order.slice(1).flatMap((label, k) => {
    const took = (t.get(label) ?? NaN) - (t.get(order[k]!) ?? NaN);
    return took - step.get(label)! >= 1 ? [`${order[k]} → ${label} +${(took - step.get(label)!).toFixed(2)}`] : [];
  });
  console.log(`  ${total(run).toFixed(2)} ms: ${grew.join('; ') || '(spread thin)'}`);
}
