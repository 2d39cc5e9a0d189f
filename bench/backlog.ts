import type { BenchConfig } from './config.js';
import type { BenchDeployment } from './deployment.js';
import { startSession } from './session.js';
import { sendAllAccepted, type Prepared } from './traffic.js';

export interface BacklogResult {
  /** ROUTINE messages accepted for the offline device before the FLASH, and how fast they were accepted. */
  queued: number;
  queuePerSecond: number;
  /** The server's longest event-loop delay while they were accepted (a FLASH then waits as long). */
  queueLoopStallMs: number;
  /** Whether the FLASH, sent last, was the first message delivered when the device connected. */
  flashFirst: boolean;
  /** Its position in the delivery order (0 = first; -1 = not delivered). */
  flashPosition: number;
  /** Items delivered after `hello`, the seconds until the last, and the rate. */
  drained: number;
  drainSeconds: number;
  drainPerSecond: number;
  /** Longest pause between two deliveries during the drain, as the device saw it. */
  maxGapMs: number;
  /** Slowest /healthz answer while draining, as this process saw it (its own loop included). */
  maxHealthzMs: number;
  /** The server's longest event-loop delay from the device's login to the end of the drain. */
  serverLoopStallMs: number;
  once: number;
  duplicated: number;
  missing: number;
  errors: string[];
}

/**
 * A backlog for an offline device: `backlog` ROUTINE messages accepted for it, then one FLASH sent
 * last. The device then connects; it acknowledges each item (it sends no receipts, so this is the
 * relay's delivery rate alone). `offline` holds the pair's messages sealed in advance (at least
 * `backlog` + 1; the last one is re-sealed as FLASH by the caller).
 */
export async function backlogPhase(cfg: BenchConfig, dep: BenchDeployment, dir: string, routine: readonly Prepared[], flash: Prepared, name = 'backlog'): Promise<BacklogResult> {
  const s = await startSession(dep, dir, name);
  try {
    const sender = await s.traffic.open(s.server.url, dep.offline.from, dep.agreement);
    await s.server.usage(); // resets the server's event-loop delay record
    const t0 = performance.now();
    const queued = await sendAllAccepted(s.traffic, sender, routine, cfg.window, Date.now() + cfg.setupSeconds * 1000);
    const queueSeconds = (performance.now() - t0) / 1000;
    const queueLoopStallMs = (await s.server.usage()).loopDelayMaxMs;
    await s.traffic.sendForAccepted(sender, flash);

    const expected = queued + 1;
    const name = `${dep.offline.to.certificate.cert.party}/${dep.offline.to.certificate.cert.device}`;
    s.traffic.recordOrder(name);
    let delivered = 0;
    let last = 0n;
    let maxGap = 0n;
    let allDelivered: () => void = () => {};
    const done = new Promise<void>((resolve) => (allDelivered = resolve));
    s.traffic.onDeliver = () => {
      const now = process.hrtime.bigint();
      if (last !== 0n && now - last > maxGap) maxGap = now - last;
      last = now;
      if (++delivered === expected) allDelivered();
    };
    let maxHealthz = 0;
    let probing = true;
    const probe = (async () => {
      while (probing) {
        const h0 = performance.now();
        await fetch(`${s.server.url}/healthz`).then((r) => r.arrayBuffer());
        maxHealthz = Math.max(maxHealthz, performance.now() - h0);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    await s.server.usage(); // resets the server's event-loop delay record
    const receiver = await s.traffic.open(s.server.url, dep.offline.to, dep.agreement);
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, cfg.maxSeconds * 1000).unref());
    await Promise.race([done, timeout]);
    const serverLoopStallMs = (await s.server.usage()).loopDelayMaxMs;
    probing = false;
    await probe;
    const drainSeconds = delivered === 0 ? NaN : Number(last - receiver.helloAt) / 1e9;
    const order = s.traffic.order.get(name) ?? [];
    const ids = [...routine.slice(0, queued).map((m) => m.id), flash.id];
    return {
      queued,
      queuePerSecond: queued / queueSeconds,
      queueLoopStallMs,
      flashFirst: order[0] === flash.id,
      flashPosition: order.indexOf(flash.id),
      drained: delivered,
      drainSeconds,
      drainPerSecond: delivered / drainSeconds,
      maxGapMs: Number(maxGap) / 1e6,
      maxHealthzMs: maxHealthz,
      serverLoopStallMs,
      ...s.traffic.tally(ids),
      errors: s.traffic.errors(),
    };
  } finally {
    await s.close();
  }
}
