import WebSocket from 'ws';
import { HotlineClient } from '../client/hotline-client.js';
import { MemoryStorage } from '../client/storage/memory-storage.js';
import type { TestDeployment } from '../test/helpers/fixtures.js';
import { enrolCertificates } from './deployment.js';
import { percentile } from './raw-ws.js';
import { BODY } from './traffic.js';

export interface LatencyRun {
  count: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Messages whose `delivered` receipt reached the sender more than once, or never (must be 0). */
  duplicated: number;
  missing: number;
  /** Messages sent first and left out of the figures (a fresh process's first messages). */
  warmup: number;
}

export function summarize(latenciesMs: readonly number[], seconds: number): Omit<LatencyRun, 'duplicated' | 'missing' | 'warmup'> {
  const sorted = latenciesMs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return { count: sorted.length, seconds, perSecond: sorted.length / seconds, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
}

/**
 * Real HotlineClients (jp-mod and cn-mnd operators, plus a jp-mod colleague who gets copies, in
 * memory storage) through a running server: send → the sender has verified the addressee's signed
 * `delivered` receipt. With 1 in flight, then with `window` in flight.
 */
export async function measureClients(
  serverUrl: string,
  d: Pick<TestDeployment, 'agreement'> & { devices: Pick<TestDeployment['devices'], 'jpOp' | 'jpOp2' | 'cnOp'> & Partial<TestDeployment['devices']> },
  options: { serial: number; pipelined: number; window: number; maxSeconds: number },
  /**
   * Two relays (bench/two-relays.ts): cn-mnd's operator connects to its own relay at this URL, and
   * the devices are enrolled already (each at its own relay).
   */
  twoRelays?: { cnServerUrl: string },
): Promise<{ serial: LatencyRun; pipelined: LatencyRun }> {
  if (!twoRelays) await enrolCertificates(serverUrl, Object.values(d.devices).map((dev) => dev!.certificate));
  const mk = (device: typeof d.devices.jpOp) => {
    const url = twoRelays && device.certificate.cert.party === 'cn-mnd' ? twoRelays.cnServerUrl : serverUrl;
    return new HotlineClient({ serverUrl: url, agreement: d.agreement, device, storage: new MemoryStorage(), WebSocket });
  };
  const jp = mk(d.devices.jpOp);
  const cn = mk(d.devices.cnOp);
  const jp2 = mk(d.devices.jpOp2);
  await Promise.all([jp.start(), cn.start(), jp2.start()]);

  // Resolve each message's latency when its verified `delivered` receipt reaches the sender; count
  // receipts per message to check that each arrives exactly once.
  const receipts = new Map<string, number>();
  const pending = new Map<string, { t0: bigint; done: (ms: number) => void }>();
  const early = new Map<string, bigint>();
  jp.on('receipt', (e) => {
    if (!e.verified || e.receipt.receipt.kind !== 'delivered') return;
    const id = e.receipt.receipt.messageId;
    receipts.set(id, (receipts.get(id) ?? 0) + 1);
    const p = pending.get(id);
    if (p) {
      pending.delete(id);
      p.done(Number(process.hrtime.bigint() - p.t0) / 1e6);
    } else if (!early.has(id)) {
      early.set(id, process.hrtime.bigint());
    }
  });
  const ids: string[] = [];
  const sendOne = async (): Promise<number> => {
    const t0 = process.hrtime.bigint();
    const { id } = await jp.send({ to: 'cn-mnd', precedence: 'FLASH', body: BODY, lang: 'ja' });
    ids.push(id);
    const already = early.get(id);
    if (already !== undefined) return Number(already - t0) / 1e6;
    return new Promise<number>((resolve) => pending.set(id, { t0, done: resolve }));
  };
  const tally = (from: number): { duplicated: number; missing: number } => {
    const mine = ids.slice(from);
    return { duplicated: mine.filter((id) => (receipts.get(id) ?? 0) > 1).length, missing: mine.filter((id) => !receipts.has(id)).length };
  };

  // Warm-up: the first messages of a fresh process run through code not yet compiled and caches
  // not yet filled (10–25 ms each against ~6 ms after), and with 300 messages three of them are
  // the p99. They are sent, checked for exactly-once with the rest, and left out of the figures.
  const warmup = Math.min(30, Math.floor(options.serial / 10));
  let stopAt = Date.now() + options.maxSeconds * 1000;
  for (let i = 0; i < warmup && Date.now() < stopAt; i++) await sendOne();
  const serialLat: number[] = [];
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < options.serial && Date.now() < stopAt; i++) serialLat.push(await sendOne());
  const serial = { ...summarize(serialLat, Number(process.hrtime.bigint() - t0) / 1e9), ...tally(0), warmup };

  const pipeLat: number[] = [];
  const firstPipelined = ids.length;
  stopAt = Date.now() + options.maxSeconds * 1000;
  t0 = process.hrtime.bigint();
  await new Promise<void>((resolve) => {
    let sent = 0;
    let done = 0;
    const pump = () => {
      while (sent < options.pipelined && sent - done < options.window && Date.now() < stopAt) {
        sent++;
        void sendOne().then((ms) => {
          pipeLat.push(ms);
          done++;
          if (done === sent && (sent === options.pipelined || Date.now() >= stopAt)) resolve();
          else pump();
        });
      }
    };
    pump();
  });
  const pipelined = { ...summarize(pipeLat, Number(process.hrtime.bigint() - t0) / 1e9), ...tally(firstPipelined), warmup: 0 };
  await Promise.all([jp.stop(), cn.stop(), jp2.stop()]);
  return { serial, pipelined };
}
