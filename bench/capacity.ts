import type { BenchConfig } from './config.js';
import type { BenchDeployment } from './deployment.js';
import { summarize } from './clients.js';
import { cpuMicrosPerMessage, openPairs, startSession } from './session.js';
import { prepareMessages, runStream, type Prepared } from './traffic.js';

export interface CapacityResult {
  pairs: number;
  window: number;
  sent: number;
  completed: number;
  seconds: number;
  /** Messages whose `delivered` receipt came back to the sender, per second. */
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Server CPU time per message and its share of one core during the run. */
  serverCpuMicrosPerMessage: number;
  serverCoreShare: number;
  /** The driver's (this process's) CPU share of one core: near 1, the driver may have been the limit. */
  driverCoreShare: number;
  once: number;
  duplicated: number;
  missing: number;
  errors: string[];
}

export interface FlashLoadResult {
  flashesIdle: number;
  flashesLoaded: number;
  idleP50Ms: number;
  loadedP50Ms: number;
  /** The ROUTINE stream asked for (half of the measured capacity) and what it achieved. */
  streamTargetPerSecond: number;
  streamAchievedPerSecond: number;
  once: number;
  duplicated: number;
  missing: number;
  errors: string[];
}

/**
 * Server capacity over raw links: pre-sealed envelopes and pre-signed receipts, every pair's sender
 * keeping `window` messages in flight (sent, its receipt not back), until the count or the time is
 * reached. Then, on the same server: FLASH send → `delivered` receipt, idle, and again while the
 * ROUTINE stream runs at half the measured capacity. The prepared capacity messages are returned
 * for the scale phases, which replay them on fresh servers.
 */
export async function capacityPhase(cfg: BenchConfig, dep: BenchDeployment, dir: string): Promise<{ capacity: CapacityResult; flash: FlashLoadResult; prepared: Prepared[][] }> {
  const perPair = Math.ceil(cfg.capacity / dep.pairs.length);
  const prepared = await Promise.all(dep.pairs.map((p) => prepareMessages(p, dep.operators, 1, perPair, 'ROUTINE')));
  const s = await startSession(dep, dir, 'capacity');
  try {
    await openPairs(s, dep);
    const u0 = await s.server.usage();
    const c0 = process.cpuUsage();
    const run = await runStream(
      s.traffic,
      s.senders.map((link, i) => ({ link, messages: prepared[i]! })),
      { window: cfg.window, stopAtMs: Date.now() + cfg.maxSeconds * 1000 },
    );
    const c1 = process.cpuUsage(c0);
    const u1 = await s.server.usage();
    const lat = summarize(run.latenciesMs, run.seconds);
    const capacity: CapacityResult = {
      pairs: dep.pairs.length,
      window: cfg.window,
      sent: run.sent,
      completed: run.completed,
      seconds: run.seconds,
      perSecond: lat.perSecond,
      p50Ms: lat.p50Ms,
      p99Ms: lat.p99Ms,
      serverCpuMicrosPerMessage: cpuMicrosPerMessage(u0, u1, run.completed),
      serverCoreShare: (u1.cpuMicros - u0.cpuMicros) / 1e6 / run.seconds,
      driverCoreShare: (c1.user + c1.system) / 1e6 / run.seconds,
      ...s.traffic.tally(run.sentIds),
      errors: s.traffic.errors(),
    };

    // FLASH, idle: one at a time from a party of its own to the first pair's addressee.
    const flashLink = await s.traffic.open(s.server.url, dep.flash.from, dep.agreement);
    const flashes = await prepareMessages(dep.flash, dep.operators, 1, 2 * cfg.flashes, 'FLASH');
    const idle: number[] = [];
    const idleStop = Date.now() + cfg.maxSeconds * 1000;
    for (let i = 0; i < cfg.flashes && Date.now() < idleStop; i++) idle.push(await s.traffic.sendForReceipt(flashLink, flashes[i]!));

    // FLASH under a ROUTINE stream at half of capacity, for `loadSeconds` (or as long as the
    // prepared messages last: at most `capacity` of them are sealed for it).
    const rate = Math.max(1, capacity.perSecond / 2);
    const loadPerPair = Math.ceil(Math.min(rate * cfg.loadSeconds, cfg.capacity) / dep.pairs.length);
    const load = await Promise.all(dep.pairs.map((p) => prepareMessages(p, dep.operators, perPair + 1, loadPerPair, 'ROUTINE')));
    let streamDone = false;
    let flashesDone = false;
    const streamRun = runStream(
      s.traffic,
      s.senders.map((link, i) => ({ link, messages: load[i]! })),
      { window: cfg.window, ratePerSecond: rate, stopAtMs: Date.now() + cfg.loadSeconds * 1000, stop: () => flashesDone },
    ).then((r) => {
      streamDone = true;
      return r;
    });
    // Let the stream settle into its rate before timing, then one FLASH after another.
    await new Promise((resolve) => setTimeout(resolve, Math.min(1000, cfg.loadSeconds * 100)));
    const loaded: number[] = [];
    for (let i = cfg.flashes; i < 2 * cfg.flashes && !streamDone; i++) {
      const ms = await s.traffic.sendForReceipt(flashLink, flashes[i]!);
      if (!streamDone) loaded.push(ms);
    }
    flashesDone = true;
    const stream = await streamRun;
    const sentFlashes = flashes.slice(0, idle.length).concat(flashes.slice(cfg.flashes, cfg.flashes + loaded.length)).map((m) => m.id);
    const tally = s.traffic.tally([...stream.sentIds, ...sentFlashes]);
    const flash: FlashLoadResult = {
      flashesIdle: idle.length,
      flashesLoaded: loaded.length,
      idleP50Ms: summarize(idle, 1).p50Ms,
      loadedP50Ms: summarize(loaded, 1).p50Ms,
      streamTargetPerSecond: rate,
      streamAchievedPerSecond: stream.completed / stream.seconds,
      ...tally,
      // Every error frame on this server so far (the capacity run's included).
      errors: s.traffic.errors(),
    };
    return { capacity, flash, prepared };
  } finally {
    await s.close();
  }
}
