/**
 * Where a FLASH's time goes inside the server under load (issue 9; docs/performance.md, ninth
 * session). A diagnostic, not a measurement of record: `npm run bench` is the judge.
 *
 * A preload for the bench's server process:
 *
 *   HOTLINE_BENCH_SERVER_NODE_ARGS="--import tsx --import ./bench/trace-flash.ts" \
 *     FLASH_TRACE_OUT=/tmp/flash-trace.txt npm run bench -- --only=capacity
 *
 * It wraps `ws`'s WebSocket.prototype.emit/send, WriteQueue.prototype.enqueue and
 * SqliteStore.prototype.commit for the life of that process only, timestamps each FLASH envelope and
 * its receipt at each step through the server, and when the process ends writes to FLASH_TRACE_OUT
 * the medians and p90 of each step for the idle FLASH messages and for those sent under the ROUTINE
 * stream (the capacity phase sends its idle ones first, then as many under load; the first tenth of
 * each is left out), and how long each store commit held the event loop while the loaded ones ran
 * (all commits, ROUTINE batches included: what a FLASH frame arriving then waits for).
 *
 * With FLASH_TRACE_RAW=<file> it also writes each FLASH's timestamps there (process.hrtime, which
 * is the machine's monotonic clock, shared by every process), for bench/trace-flash-driver.ts to
 * split "delivery written → receipt received" into the bench driver's part and the server's.
 */
import { writeFileSync } from 'node:fs';
import WebSocket from 'ws';
import { SqliteStore } from '../server/store/sqlite-store.js';
import { WriteQueue } from '../server/store/write-queue.js';
import type { Write } from '../server/relay/records.js';

const OUT = process.env['FLASH_TRACE_OUT'] ?? 'flash-trace.txt';
// In the order of the path: a write's copies go out once its transaction is done, before its fsync
// (shared/PROTOCOL.md "Delivery before durability"); durability and the answer to the writer are
// off the path, and come last (the envelope's only: a FLASH's trace ends when its receipt is sent).
const STEPS = [
  ['recvEnv', 'queuedEnv', 'envelope received → admitted and queued'],
  ['queuedEnv', 'commitEnv', 'queued → its commit starts'],
  ['commitEnv', 'sendDeliver', 'its transaction, then the delivery written'],
  ['sendDeliver', 'recvRcpt', 'delivery written → receipt received'],
  ['recvRcpt', 'queuedRcpt', 'receipt received → admitted and queued'],
  ['queuedRcpt', 'commitRcpt', 'queued → its commit starts'],
  ['commitRcpt', 'sendRcpt', 'its transaction, then the receipt sent to the sender'],
  ['recvEnv', 'sendRcpt', 'envelope received → receipt sent'],
  ['commitEnv', 'txEnv', 'off the path: the envelope\'s commit call, on the loop'],
  ['txEnv', 'durEnv', 'off the path: then until durable'],
  ['durEnv', 'answeredEnv', 'off the path: then until answered'],
] as const;
// The receipt's own durability is marked too, though the trace has ended by then (see STEPS).
type Mark = (typeof STEPS)[number][0 | 1] | 'txRcpt' | 'durRcpt' | 'answeredRcpt';

const now = () => Number(process.hrtime.bigint()) / 1e6;
type Traced = Partial<Record<Mark, number>> & { id?: string };
const open = new Map<string, Traced>();
const done: Traced[] = [];
/** Every commit: when it began, how long its call held the event loop (ms), how many writes. */
const commits: [number, number, number][] = [];
const mark = (id: string | undefined, k: Mark) => {
  const m = id === undefined ? undefined : open.get(id);
  if (m && m[k] === undefined) m[k] = now();
};
const idOf = (w: Write) => (w.kind === 'envelope' ? w.envelope.header.id : w.kind === 'receipt' ? w.receipt.receipt.messageId : undefined);
const field = (text: string, name: string) => new RegExp(`"${name}":"([0-9a-f]{32})"`).exec(text)?.[1];

const emit = WebSocket.prototype.emit;
WebSocket.prototype.emit = function (this: WebSocket, event: string | symbol, ...args: unknown[]): boolean {
  if (event === 'message') {
    const text = String(args[0]);
    if (text.startsWith('{"t":"envelope"') && text.includes('"precedence":"FLASH"')) {
      const id = field(text, 'id');
      if (id) open.set(id, { recvEnv: now(), id });
    } else if (text.startsWith('{"t":"receipt"')) mark(field(text, 'messageId'), 'recvRcpt');
  }
  return emit.call(this, event, ...args);
};
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (this: WebSocket, data: unknown, ...rest: unknown[]): void {
  const text = String(data);
  const t = /"t":"([\w-]+)"/.exec(text)?.[1];
  if (t === 'deliver') mark(field(text, 'id'), 'sendDeliver');
  else if (t === 'receipt') {
    const id = field(text, 'messageId');
    const m = id === undefined ? undefined : open.get(id);
    if (m && m.sendRcpt === undefined) {
      m.sendRcpt = now();
      done.push(m);
      open.delete(id!);
    }
  }
  (send as (this: WebSocket, ...a: unknown[]) => void).call(this, data, ...rest);
};
const enqueue = WriteQueue.prototype.enqueue;
// `visible` passed through: the relay forwards a write's copies when the store calls it.
WriteQueue.prototype.enqueue = function (this: WriteQueue, write: Write, visible?: Parameters<typeof enqueue>[1]) {
  const id = idOf(write);
  const envelope = write.kind === 'envelope';
  mark(id, envelope ? 'queuedEnv' : 'queuedRcpt');
  const answered = enqueue.call(this, write, visible);
  void answered.then(() => mark(id, envelope ? 'answeredEnv' : 'answeredRcpt'));
  return answered;
};
const commit = SqliteStore.prototype.commit;
SqliteStore.prototype.commit = function (this: SqliteStore, writes: readonly Write[], visible?: Parameters<typeof commit>[1]) {
  const ids = writes.map(idOf).filter((id): id is string => id !== undefined && open.has(id));
  const step = (id: string, env: Mark, rcpt: Mark) => mark(id, open.get(id)?.[env] === undefined ? env : rcpt);
  for (const id of ids) step(id, 'commitEnv', 'commitRcpt');
  const started = now();
  const result = commit.call(this, writes, visible);
  commits.push([started, now() - started, writes.length]);
  for (const id of ids) step(id, 'txEnv', 'txRcpt');
  return result.then((r) => {
    for (const id of ids) step(id, 'durEnv', 'durRcpt');
    return r;
  });
};

process.on('exit', () => {
  const q = (xs: number[], f: number) => xs[Math.min(xs.length - 1, Math.floor(xs.length * f))]!.toFixed(2);
  const half = Math.floor(done.length / 2);
  const lines: string[] = [];
  for (const [name, part] of [['idle', done.slice(Math.floor(half / 10), half)], ['under load', done.slice(half + Math.floor(half / 10))]] as const) {
    lines.push(`${name}: ${part.length} FLASH messages, ms at p50 / p90`);
    for (const [from, to, label] of STEPS) {
      const xs = part.map((m) => (m[to] ?? NaN) - (m[from] ?? NaN)).filter(Number.isFinite).sort((a, b) => a - b);
      if (xs.length > 0) lines.push(`  ${q(xs, 0.5).padStart(7)} / ${q(xs, 0.9).padStart(7)}  ${label}`);
    }
  }
  const loaded = done.slice(half + Math.floor(half / 10));
  if (loaded.length > 1) {
    const from = loaded[0]!.recvEnv!;
    const to = loaded.at(-1)!.sendRcpt!;
    const held = commits.filter(([at]) => at >= from && at <= to);
    const ms = held.map(([, d]) => d).sort((a, b) => a - b);
    const sizes = held.map(([, , n]) => n).sort((a, b) => a - b);
    const share = ms.reduce((a, b) => a + b, 0) / (to - from);
    lines.push(`store commits while the loaded FLASH messages ran: ${held.length} in ${((to - from) / 1000).toFixed(1)} s, holding the event loop ${(100 * share).toFixed(0)} % of the time`);
    if (ms.length > 0) lines.push(`  ${q(ms, 0.5).padStart(7)} / ${q(ms, 0.9).padStart(7)}  ms per commit (max ${ms.at(-1)!.toFixed(2)}), batch size p50 ${sizes[sizes.length >> 1]}, p90 ${sizes[Math.floor(sizes.length * 0.9)]}, max ${sizes.at(-1)}`);
  }
  writeFileSync(OUT, lines.join('\n') + '\n');
  const raw = process.env['FLASH_TRACE_RAW'];
  if (raw) writeFileSync(raw, JSON.stringify(done));
});
