/**
 * `npm run bench`: Hotline's end-to-end speed beside a floor measured in the same run.
 *
 * Floor: a bare `ws` echo of 1 KiB on loopback (no crypto, no disk). Hotline: two real
 * HotlineClients (jp-mod and cn-mnd operators, plus a jp-mod colleague who gets copies) through a
 * real server on SQLite with `synchronous=FULL`; each message is sealed (box + secretbox +
 * Ed25519), verified and stored by the server before `accepted`, delivered, verified and decrypted
 * by the recipient, which signs a `delivered` receipt that the server verifies, stores and relays
 * back; the clock stops when the sender has verified that receipt. Measured twice: with the server
 * in the benchmark's own process (one core for everything, like the floor), and with the server in
 * a process of its own (the deployment's shape, using the second core). Counts are bounded
 * (HOTLINE_BENCH_SERIAL, HOTLINE_BENCH_PIPELINED) and so is the time (HOTLINE_BENCH_MAX_SECONDS per
 * phase).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { startServer } from '../server/main.js';
import { HotlineClient } from '../client/hotline-client.js';
import { MemoryStorage } from '../client/storage/memory-storage.js';
import { makeDeployment, type TestDeployment } from '../test/helpers/fixtures.js';
import { spawnServer } from '../test/helpers/spawn-server.js';
import { measureRawWsFloor, percentile } from './raw-ws.js';

const SERIAL = Number(process.env['HOTLINE_BENCH_SERIAL'] ?? 300);
const PIPELINED = Number(process.env['HOTLINE_BENCH_PIPELINED'] ?? 2000);
const WINDOW = Number(process.env['HOTLINE_BENCH_WINDOW'] ?? 100);
const MAX_SECONDS = Number(process.env['HOTLINE_BENCH_MAX_SECONDS'] ?? 60);
const BODY = '至急：演習区域を変更する。'.repeat(24); // about 1 KiB of UTF-8, like the floor's payload

interface PhaseResult {
  count: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

function summarize(latenciesMs: number[], seconds: number): PhaseResult {
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  return { count: sorted.length, seconds, perSecond: sorted.length / seconds, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
}

/** Both phases (1 in flight, WINDOW in flight) against a running server. */
async function measureHotline(serverUrl: string, d: TestDeployment): Promise<{ serial: PhaseResult; pipelined: PhaseResult }> {
  for (const dev of Object.values(d.devices)) {
    await fetch(`${serverUrl}/v1/directory/devices`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(dev.certificate) });
  }
  const mk = (device: typeof d.devices.jpOp) => new HotlineClient({ serverUrl, agreement: d.agreement, device, storage: new MemoryStorage(), WebSocket });
  const jp = mk(d.devices.jpOp);
  const cn = mk(d.devices.cnOp);
  const jp2 = mk(d.devices.jpOp2);
  await Promise.all([jp.start(), cn.start(), jp2.start()]);

  // Resolve each message's latency when its verified `delivered` receipt reaches the sender.
  const pending = new Map<string, { t0: bigint; done: (ms: number) => void }>();
  const early = new Map<string, bigint>();
  jp.on('receipt', (e) => {
    if (!e.verified || e.receipt.receipt.kind !== 'delivered') return;
    const p = pending.get(e.receipt.receipt.messageId);
    if (p) {
      pending.delete(e.receipt.receipt.messageId);
      p.done(Number(process.hrtime.bigint() - p.t0) / 1e6);
    } else {
      early.set(e.receipt.receipt.messageId, process.hrtime.bigint());
    }
  });
  const sendOne = async (): Promise<number> => {
    const t0 = process.hrtime.bigint();
    const { id } = await jp.send({ to: 'cn-mnd', precedence: 'FLASH', body: BODY, lang: 'ja' });
    const already = early.get(id);
    if (already !== undefined) {
      early.delete(id);
      return Number(already - t0) / 1e6;
    }
    return new Promise<number>((resolve) => pending.set(id, { t0, done: resolve }));
  };
  const overtime = (start: number) => Date.now() - start > MAX_SECONDS * 1000;

  const serialLat: number[] = [];
  let start = Date.now();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < SERIAL && !overtime(start); i++) serialLat.push(await sendOne());
  const serial = summarize(serialLat, Number(process.hrtime.bigint() - t0) / 1e9);

  const pipeLat: number[] = [];
  start = Date.now();
  const t1 = process.hrtime.bigint();
  await new Promise<void>((resolve) => {
    let sent = 0;
    let done = 0;
    const pump = () => {
      while (sent < PIPELINED && sent - done < WINDOW && !overtime(start)) {
        sent++;
        void sendOne().then((ms) => {
          pipeLat.push(ms);
          done++;
          if (done === sent && (sent === PIPELINED || overtime(start))) resolve();
          else pump();
        });
      }
    };
    pump();
  });
  const pipelined = summarize(pipeLat, Number(process.hrtime.bigint() - t1) / 1e9);
  await Promise.all([jp.stop(), cn.stop(), jp2.stop()]);
  return { serial, pipelined };
}

async function main(): Promise<void> {
  console.log(`Hotline benchmark — node ${process.version}, ${new Date().toISOString()}`);
  const floor = await measureRawWsFloor({ serialCount: SERIAL * 10, pipelinedCount: PIPELINED * 10, window: WINDOW });
  const dir = mkdtempSync(join(tmpdir(), 'hotline-bench-'));

  const d1 = await makeDeployment(Date.now() - 60_000);
  const inProcess = await startServer({ agreement: d1.agreement, dataDir: join(dir, 'in-process'), host: '127.0.0.1', port: 0, logLevel: 'silent' });
  const one = await measureHotline(inProcess.url, d1);
  await inProcess.close();

  const d2 = await makeDeployment(Date.now() - 60_000);
  const agreementPath = join(dir, 'agreement.json');
  writeFileSync(agreementPath, JSON.stringify(d2.agreement));
  const child = await spawnServer({ agreementPath, dataDir: join(dir, 'own-process') });
  const two = await measureHotline(child.url, d2);
  child.child.kill('SIGTERM');
  await child.exited;
  rmSync(dir, { recursive: true, force: true });

  const f = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  const row = (label: string, r: PhaseResult, floorRate: number) =>
    console.log(`| ${label} (${f(r.count)}) | ${f(r.perSecond)} | ${f(r.p50Ms, 2)} ms | ${f(r.p99Ms, 2)} ms | ${f(r.perSecond / floorRate, 3)} |`);
  console.log('');
  console.log('| measurement | msgs/s | p50 | p99 | ratio to floor (msgs/s) |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  console.log(`| floor: raw ws echo 1 KiB, 1 in flight (${f(SERIAL * 10)}) | ${f(floor.serialPerSecond)} | ${f(floor.p50Us / 1000, 3)} ms | ${f(floor.p99Us / 1000, 3)} ms | 1.000 |`);
  console.log(`| floor: raw ws echo 1 KiB, ${WINDOW} in flight (${f(PIPELINED * 10)}) | ${f(floor.pipelinedPerSecond)} | – | – | 1.000 |`);
  row('hotline, server in-process, 1 in flight', one.serial, floor.serialPerSecond);
  row(`hotline, server in-process, ${WINDOW} in flight`, one.pipelined, floor.pipelinedPerSecond);
  row('hotline, server in its own process, 1 in flight', two.serial, floor.serialPerSecond);
  row(`hotline, server in its own process, ${WINDOW} in flight`, two.pipelined, floor.pipelinedPerSecond);
  console.log('');
  console.log('Latency is send → the sender has verified the addressee’s signed `delivered` receipt. Each message:');
  console.log('1 seal (1 Ed25519 sign, 4 X25519 wraps), server verify + fsync, 3 deliveries, recipient verify +');
  console.log('decrypt + receipt sign, server receipt verify + fsync, sender receipt verify.');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
