import { readFileSync } from 'node:fs';
import type { BenchConfig } from './config.js';
import { enrolCertificates, forEachLimited, type BenchDeployment } from './deployment.js';
import { BenchLink } from './link-driver.js';
import { cpuMicrosPerMessage, openPairs, startSession, type Session } from './session.js';
import { runStream, sendAllAccepted, type Prepared } from './traffic.js';
import type { DeviceSecretFile } from '../shared/protocol/schemas.js';

export interface CpuRun {
  /** Messages of the measured stream (after a warm-up quarter). */
  messages: number;
  serverCpuMicrosPerMessage: number;
  once: number;
  duplicated: number;
  missing: number;
  errors: string[];
}

export interface ScaleResult {
  empty: CpuRun;
  /** With `openDeadlines` open deadlines (two per queued message without a receipt). */
  deadlines: CpuRun & { openDeadlines: number };
  /** With `enrolled` more devices (auditors) in the directory. */
  devices: CpuRun & { enrolled: number };
  /** Idle connected devices and the server's RSS before and with them. */
  idle: { connected: number; rssBeforeBytes: number; rssBytes: number; fdLimit: number | undefined };
}

/**
 * The stream of `prepared` (a quarter as warm-up, then measured), server CPU per message.
 * The messages were sealed for seqs from 1: each run is on a fresh server.
 */
async function measureCpu(s: Session, prepared: readonly Prepared[][], cfg: BenchConfig): Promise<CpuRun> {
  const perPair = Math.max(2, Math.ceil(cfg.stream / prepared.length));
  const warm = Math.max(1, Math.floor(perPair / 4));
  const stopAtMs = Date.now() + cfg.maxSeconds * 1000;
  await runStream(s.traffic, s.senders.map((link, i) => ({ link, messages: prepared[i]!.slice(0, warm) })), { window: cfg.window, stopAtMs });
  const u0 = await s.server.usage();
  const run = await runStream(s.traffic, s.senders.map((link, i) => ({ link, messages: prepared[i]!.slice(warm, perPair) })), { window: cfg.window, stopAtMs });
  const u1 = await s.server.usage();
  return { messages: run.completed, serverCpuMicrosPerMessage: cpuMicrosPerMessage(u0, u1, run.completed), ...s.traffic.tally(run.sentIds), errors: s.traffic.errors() };
}

/** The soft open-files limit the bench (and the server it spawns) inherited; Linux only, else undefined. */
function fdLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Server CPU per message with history around it: on an empty server, with many open deadlines,
 * with many enrolled devices; then the RSS of that last server with `idle` devices connected.
 * `offline` are messages of the deployment's offline pair, sent to create the open deadlines.
 * `extra` are the devices to enrol (at least `idle` of them).
 */
export async function scalePhase(
  cfg: BenchConfig,
  dep: BenchDeployment,
  dir: string,
  prepared: readonly Prepared[][],
  offline: readonly Prepared[],
  extra: readonly DeviceSecretFile[],
): Promise<ScaleResult> {
  const withSession = async <T>(name: string, fn: (s: Session) => Promise<T>): Promise<T> => {
    const s = await startSession(dep, dir, name);
    try {
      return await fn(s);
    } finally {
      await s.close();
    }
  };
  const empty = await withSession('scale-empty', async (s) => {
    await openPairs(s, dep);
    return measureCpu(s, prepared, cfg);
  });
  const deadlines = await withSession('scale-deadlines', async (s) => {
    // The addressee stays offline: no receipt, so both deadlines of each message stay open.
    const sender = await s.traffic.open(s.server.url, dep.offline.from, dep.agreement);
    const queued = await sendAllAccepted(s.traffic, sender, offline.slice(0, Math.ceil(cfg.deadlines / 2)), cfg.window, Date.now() + cfg.setupSeconds * 1000);
    await openPairs(s, dep);
    return { ...(await measureCpu(s, prepared, cfg)), openDeadlines: 2 * queued };
  });
  let idle: ScaleResult['idle'] | undefined;
  const devices = await withSession('scale-devices', async (s) => {
    const deadline = Date.now() + cfg.setupSeconds * 1000;
    const enrolled = await enrolCertificates(s.server.url, extra.slice(0, cfg.devices).map((d) => d.certificate), deadline);
    await openPairs(s, dep);
    const run = { ...(await measureCpu(s, prepared, cfg)), enrolled };
    await s.traffic.closeAll();

    // The same server, more devices, all connected and idle.
    const more = extra.slice(enrolled, cfg.idle);
    const total = enrolled + (await enrolCertificates(s.server.url, more.map((d) => d.certificate), Date.now() + cfg.setupSeconds * 1000));
    const rssBefore = (await s.server.usage()).rss;
    const links: BenchLink[] = [];
    const connectBy = Date.now() + cfg.setupSeconds * 1000;
    await forEachLimited(extra.slice(0, total), 16, async (d) => {
      if (Date.now() > connectBy) return;
      links.push(await BenchLink.open(s.server.url, d, dep.agreement));
    });
    const rss = (await s.server.usage()).rss;
    idle = { connected: links.length, rssBeforeBytes: rssBefore, rssBytes: rss, fdLimit: fdLimit() };
    await forEachLimited(links, 256, (l) => l.close());
    return run;
  });
  return { empty, deadlines, devices, idle: idle! };
}
