/**
 * The bench driver's side of a FLASH under load (docs/performance.md, tenth session): a preload for
 * the bench process itself, beside bench/trace-flash.ts in the server's. A diagnostic, not a
 * measurement of record.
 *
 *   HOTLINE_BENCH_SERVER_NODE_ARGS="--import tsx --import ./bench/trace-flash.ts" \
 *     FLASH_TRACE_OUT=/tmp/flash-trace.txt FLASH_TRACE_RAW=/tmp/flash-trace.json \
 *     node --import tsx --import ./bench/trace-flash-driver.ts bench/run.ts --only=capacity
 *
 * It timestamps, in this process, each FLASH delivery as it is read and its receipt as it is sent,
 * and when this process ends (after the server's, which wrote FLASH_TRACE_RAW) appends to
 * FLASH_TRACE_OUT the split of the server's "delivery written → receipt received": the hop to the
 * driver, the driver's own answer, and the hop back until the server reads it. process.hrtime is
 * the machine's monotonic clock, the same in both processes.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import WebSocket from 'ws';

const OUT = process.env['FLASH_TRACE_OUT'] ?? 'flash-trace.txt';
const RAW = process.env['FLASH_TRACE_RAW'];
const now = () => Number(process.hrtime.bigint()) / 1e6;
const field = (text: string, name: string) => new RegExp(`"${name}":"([0-9a-f]{32})"`).exec(text)?.[1];
/** FLASH id → when its delivery was read here, when its receipt was sent from here. */
const seen = new Map<string, { read: number; answered?: number }>();
/** FLASH id → when its envelope was sent from here, when its receipt pushed by the server was read here. */
const sent = new Map<string, { sent: number; receipt?: number }>();

const emit = WebSocket.prototype.emit;
WebSocket.prototype.emit = function (this: WebSocket, event: string | symbol, ...args: unknown[]): boolean {
  if (event === 'message') {
    const text = String(args[0]);
    if (text.startsWith('{"t":"deliver"') && text.includes('"precedence":"FLASH"')) {
      const id = field(text, 'id');
      if (id && !seen.has(id)) seen.set(id, { read: now() });
    } else if (text.startsWith('{"t":"receipt"')) {
      const m = sent.get(field(text, 'messageId') ?? '');
      if (m && m.receipt === undefined) m.receipt = now();
    }
  }
  return emit.call(this, event, ...args);
};
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (this: WebSocket, data: unknown, ...rest: unknown[]): void {
  const text = String(data);
  if (text.startsWith('{"t":"receipt"')) {
    const m = seen.get(field(text, 'messageId') ?? '');
    if (m && m.answered === undefined) m.answered = now();
  } else if (text.startsWith('{"t":"envelope"') && text.includes('"precedence":"FLASH"')) {
    const id = field(text, 'id');
    if (id && !sent.has(id)) sent.set(id, { sent: now() });
  }
  (send as (this: WebSocket, ...a: unknown[]) => void).call(this, data, ...rest);
};

process.on('exit', () => {
  if (!RAW || !existsSync(RAW)) return;
  const server = JSON.parse(readFileSync(RAW, 'utf8')) as { id?: string; recvEnv?: number; sendDeliver?: number; recvRcpt?: number; sendRcpt?: number }[];
  const half = Math.floor(server.length / 2);
  const q = (xs: number[], f: number) => xs[Math.min(xs.length - 1, Math.floor(xs.length * f))]!.toFixed(2);
  const p50p90 = (values: number[]) => {
    const xs = values.sort((a, b) => a - b);
    return `${q(xs, 0.5).padStart(7)} / ${q(xs, 0.9).padStart(7)}`;
  };
  const lines = ['', "the server's \"delivery written → receipt received\", split (ms at p50 / p90):"];
  for (const [name, part] of [['idle', server.slice(Math.floor(half / 10), half)], ['under load', server.slice(half + Math.floor(half / 10))]] as const) {
    const rows = part.flatMap((s) => {
      const d = s.id === undefined ? undefined : seen.get(s.id);
      return d?.answered !== undefined && s.sendDeliver !== undefined && s.recvRcpt !== undefined ? [{ s, d: { read: d.read, answered: d.answered } }] : [];
    });
    if (rows.length === 0) continue;
    const step = (f: (r: (typeof rows)[number]) => number) => p50p90(rows.map(f));
    lines.push(`${name}: ${rows.length} FLASH messages`);
    lines.push(`  ${step((r) => r.d.read - r.s.sendDeliver!)}  delivery written by the server → read by the driver`);
    lines.push(`  ${step((r) => r.d.answered - r.d.read)}  read → the driver's receipt sent`);
    lines.push(`  ${step((r) => r.s.recvRcpt! - r.d.answered)}  receipt sent → read by the server`);
    const ends = part.flatMap((s) => {
      const e = s.id === undefined ? undefined : sent.get(s.id);
      return e?.receipt !== undefined && s.recvEnv !== undefined && s.sendRcpt !== undefined ? [{ s, e: { sent: e.sent, receipt: e.receipt } }] : [];
    });
    if (ends.length === 0) continue;
    const end = (f: (r: (typeof ends)[number]) => number) => p50p90(ends.map(f));
    lines.push(`  ${end((r) => r.s.recvEnv! - r.e.sent)}  the sender's envelope sent → read by the server`);
    lines.push(`  ${end((r) => r.e.receipt - r.s.sendRcpt!)}  the receipt pushed by the server → read by the sender`);
    lines.push(`  ${end((r) => r.e.receipt - r.e.sent)}  the sender's envelope sent → its receipt read`);
  }
  appendFileSync(OUT, lines.join('\n') + '\n');
});
