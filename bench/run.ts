/**
 * `npm run bench`: the judge of issue 9. Every figure beside a floor (or its own unloaded
 * baseline) measured in the same run on the same machine, the ratio, the goal and whether it is
 * met; a table on stdout and all figures as JSON in bench/results/<date>-<cores>cores.json.
 *
 * Floors: a bare `ws` echo on loopback; the path floor (bench/path-floor.ts: the sequential cost
 * of the crypto and the two fsync'd commits a message cannot avoid); single-core Ed25519
 * verifications per second. Phases: real HotlineClients end to end (server in this process and
 * in its own), server capacity over raw links (bench/capacity.ts), FLASH under load, a backlog for
 * an offline device (bench/backlog.ts), CPU per message against history and idle connections
 * (bench/scale.ts), start-up with a long audit log (bench/restart.ts), the console (bench/console.ts),
 * a flood of idle TCP connections against the per-address cap (bench/conn-flood.ts).
 * Counts and time are bounded (bench/config.ts); `--smoke` runs all of it with tiny counts.
 * `--store pg` adds the HotlineClients on PostgreSQL, one node and two (bench/pg-nodes.ts).
 *
 * Only public interfaces are used: the wire protocol, HotlineClient, startServer and the server's
 * `main()` with its environment, the shared crypto, the store's `commit` to build a long log.
 */
import { cpus, totalmem } from 'node:os';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { startServer } from '../server/main.js';
import { useNodeCrypto } from '../server/node-crypto.js';
import { makeDeployment } from '../test/helpers/fixtures.js';
import { measureClients } from './clients.js';
import { FULL_SIZE, loadBenchConfig, type BenchConfig, type BenchPhase } from './config.js';
import { makeBenchDeployment, makeDevices } from './deployment.js';
import { measurePathFloor, measureVerifyRate } from './path-floor.js';
import { measureRawWsFloor } from './raw-ws.js';
import { formatTable, type Row } from './report.js';
import { spawnBenchServer } from './server.js';
import { capacityPhase } from './capacity.js';
import { backlogPhase } from './backlog.js';
import { scalePhase } from './scale.js';
import { restartPhase } from './restart.js';
import { consolePhase } from './console.js';
import { connFloodPhase, floodOptions } from './conn-flood.js';
import { prepareBacklog, prepareMessages } from './traffic.js';
import { measureTwoRelays } from './two-relays.js';
import { benchDatabaseUrl, measurePgNodes } from './pg-nodes.js';

const GIB = 2 ** 30;

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

export async function runBench(cfg: BenchConfig): Promise<{ json: Record<string, unknown>; rows: Row[]; file: string }> {
  const started = new Date();
  const dir = mkdtempSync(join(tmpdir(), 'hotline-bench-'));
  const deadline = () => Date.now() + cfg.maxSeconds * 1000;
  // `--only`: the floors always, then the phases named (undefined when a phase did not run).
  const want = (phase: BenchPhase) => cfg.only === undefined || cfg.only.includes(phase);
  const skip = <T>(phase: BenchPhase, run: () => Promise<T>): Promise<T | undefined> => (want(phase) ? run() : Promise.resolve(undefined));
  try {
    log('floors');
    const rawWs = await measureRawWsFloor({ serialCount: cfg.serial * 10, pipelinedCount: cfg.pipelined * 10, window: cfg.window });
    const d1 = await makeDeployment(Date.now() - 60_000);
    const path = await measurePathFloor({ sender: d1.devices.jpOp, addressee: d1.devices.cnOp, directory: Object.values(d1.devices), iterations: cfg.floorIterations, dir, deadlineMs: deadline() });
    const verify = await measureVerifyRate(d1.devices.jpOp, d1.devices.cnOp, cfg.smoke ? 0.1 : 1);

    const clientOptions = { serial: cfg.serial, pipelined: cfg.pipelined, window: cfg.window, maxSeconds: cfg.maxSeconds };
    const inProcess = await skip('clients', async () => {
      log('HotlineClients, server in this process');
      const inProcessServer = await startServer({ agreement: d1.agreement, dataDir: join(dir, 'clients-in-process'), host: '127.0.0.1', port: 0, logLevel: 'silent' });
      return measureClients(inProcessServer.url, d1, clientOptions).finally(() => inProcessServer.close());
    });

    let pgNodes: Awaited<ReturnType<typeof measurePgNodes>> | undefined;
    if (cfg.store === 'pg') {
      log('HotlineClients on PostgreSQL, one node and two nodes, in this process');
      pgNodes = await measurePgNodes(benchDatabaseUrl(process.env), dir, clientOptions);
    }

    const twoRelays = await skip('two-relays', async () => {
      log('HotlineClients, two relays linked relay to relay, in this process');
      return measureTwoRelays(dir, { ...clientOptions, setupSeconds: cfg.setupSeconds });
    });

    const ownProcess = await skip('clients', async () => {
      log('HotlineClients, server in its own process');
      const d2 = await makeDeployment(Date.now() - 60_000);
      const agreementPath = join(dir, 'clients-agreement.json');
      writeFileSync(agreementPath, JSON.stringify(d2.agreement));
      const child = await spawnBenchServer({ agreementPath, dataDir: join(dir, 'clients-own-process') });
      return measureClients(child.url, d2, clientOptions).finally(() => child.stop());
    });

    log('raw links: sealing');
    const dep = await makeBenchDeployment(cfg.pairs, dir);
    const offlineCount = want('backlog') || want('scale') ? Math.max(cfg.backlog, Math.ceil(cfg.deadlines / 2)) : 0;
    const offline = await prepareBacklog(dep.offline, dep.operators, 1, offlineCount);
    const [backlogFlash] = await prepareMessages(dep.offline, dep.operators, cfg.backlog + 1, 1, 'FLASH');
    // The issue states FLASH overtaking and the drain's stall at 10,000 queued, the drain rate at
    // 100,000: both sizes run, each on a fresh server (the stall grows with the backlog: the open
    // deadlines of every queued message are in the server's heap, docs/performance.md).
    const goalBacklog = Math.min(cfg.backlog, cfg.backlogGoal);
    const [goalFlash] = goalBacklog < cfg.backlog ? await prepareMessages(dep.offline, dep.operators, goalBacklog + 1, 1, 'FLASH') : [backlogFlash];
    const cap = await skip('capacity', async () => {
      log('capacity and FLASH under load');
      return capacityPhase(cfg, dep, dir);
    });
    const backlogs = await skip('backlog', async () => {
      log(`backlog of ${goalBacklog}`);
      const atGoal = await backlogPhase(cfg, dep, dir, offline.slice(0, goalBacklog), goalFlash!, 'backlog-goal');
      if (goalBacklog === cfg.backlog) return { atGoal, full: atGoal };
      log(`backlog of ${cfg.backlog}`);
      return { atGoal, full: await backlogPhase(cfg, dep, dir, offline.slice(0, cfg.backlog), backlogFlash!) };
    });
    const scale = await skip('scale', async () => {
      log('scale: sealing devices');
      const extra = await makeDevices(dep, Math.max(cfg.devices, cfg.idle), 'auditor', 'aud');
      log('scale');
      return scalePhase(cfg, dep, dir, cap!.prepared, offline, extra);
    });
    const restart = await skip('restart', async () => {
      log('restart with a long audit log');
      return restartPhase(cfg, dep, dir);
    });
    // The console phase needs Debian's Chromium (installed by .ci/run only for the browser suite),
    // so the smoke run in `npm test` leaves it out and says so; `npm run test:browser` covers its
    // behaviour (test/browser/console-load.test.ts).
    const consoleResult = await skip('console', async () => {
      log('console');
      return cfg.smoke || !existsSync('/usr/bin/chromium') ? undefined : consolePhase({ count: FULL_SIZE.console, maxSeconds: cfg.maxSeconds * 5 });
    });

    const flood = await skip('flood', async () => {
      log('connection flood');
      return connFloodPhase(floodOptions(cfg.flood, cfg.smoke, cfg.maxSeconds * 2));
    });

    const capacityGoal = (0.7 * verify.perSecond) / 2;
    const rows: Row[] = [
      { measurement: `floor: raw ws echo 1 KiB, 1 in flight (${rawWs.serialCount})`, value: rawWs.p50Us / 1000, unit: 'ms p50' },
      { measurement: `floor: raw ws echo 1 KiB, ${cfg.window} in flight (${rawWs.pipelinedCount})`, value: rawWs.pipelinedPerSecond, unit: 'msgs/s' },
      { measurement: `floor: path (seal, 2 verify + 2 fsync'd commits, open, receipt sign + 2 verify) (${path.iterations})`, value: path.p50Ms, unit: 'ms p50' },
      { measurement: 'floor: Ed25519 verifications, one core (node:crypto)', value: verify.perSecond, unit: '/s' },
    ];
    const latencyRows = (label: string, r: NonNullable<typeof inProcess>) => {
      rows.push(
        { measurement: `${label}, 1 in flight, send → verified receipt, p50 (${r.serial.count} after ${r.serial.warmup} warm-up)`, value: r.serial.p50Ms, unit: 'ms', against: { label: 'path floor', value: path.p50Ms, unit: 'ms' }, ratio: r.serial.p50Ms / path.p50Ms, goal: '≤ 1.5×', met: r.serial.p50Ms <= 1.5 * path.p50Ms },
        { measurement: `${label}, 1 in flight, p99`, value: r.serial.p99Ms, unit: 'ms', against: { label: 'path floor', value: path.p50Ms, unit: 'ms' }, ratio: r.serial.p99Ms / path.p50Ms, goal: '≤ 3×', met: r.serial.p99Ms <= 3 * path.p50Ms },
        { measurement: `${label}, ${cfg.window} in flight, end to end (${r.pipelined.count})`, value: r.pipelined.perSecond, unit: 'msgs/s', against: { label: 'raw ws', value: rawWs.pipelinedPerSecond, unit: 'msgs/s' }, ratio: r.pipelined.perSecond / rawWs.pipelinedPerSecond },
      );
    };
    if (ownProcess) latencyRows('HotlineClients, server in its own process', ownProcess);
    if (inProcess) latencyRows('HotlineClients, server in-process', inProcess);
    // Issue 11: the same clients through two relays (one per party, in this process like the line
    // above), beside the single relay and the raw ws floor of this run. Reported; no goal is set.
    const oneRelay = { label: 'one relay, in-process', unit: 'ms' };
    if (twoRelays && inProcess) rows.push(
      { measurement: `HotlineClients, two relays in-process, 1 in flight, send → verified receipt, p50 (${twoRelays.serial.count})`, value: twoRelays.serial.p50Ms, unit: 'ms', against: { ...oneRelay, value: inProcess.serial.p50Ms }, ratio: twoRelays.serial.p50Ms / inProcess.serial.p50Ms },
      { measurement: 'HotlineClients, two relays in-process, 1 in flight, p50 against the raw ws echo', value: twoRelays.serial.p50Ms, unit: 'ms', against: { label: 'raw ws', value: rawWs.p50Us / 1000, unit: 'ms' }, ratio: twoRelays.serial.p50Ms / (rawWs.p50Us / 1000) },
      { measurement: 'HotlineClients, two relays in-process, 1 in flight, p50 against the path floor', value: twoRelays.serial.p50Ms, unit: 'ms', against: { label: 'path floor', value: path.p50Ms, unit: 'ms' }, ratio: twoRelays.serial.p50Ms / path.p50Ms },
      { measurement: 'HotlineClients, two relays in-process, 1 in flight, p99', value: twoRelays.serial.p99Ms, unit: 'ms', against: { ...oneRelay, value: inProcess.serial.p99Ms }, ratio: twoRelays.serial.p99Ms / inProcess.serial.p99Ms },
      { measurement: `HotlineClients, two relays in-process, ${cfg.window} in flight, end to end (${twoRelays.pipelined.count})`, value: twoRelays.pipelined.perSecond, unit: 'msgs/s', against: { label: 'one relay, in-process', value: inProcess.pipelined.perSecond, unit: 'msgs/s' }, ratio: twoRelays.pipelined.perSecond / inProcess.pipelined.perSecond },
    );
    // Issue 12: the same clients with the store on PostgreSQL (--store pg), one node and two nodes
    // of one relay (sender on one, addressee on the other), beside SQLite in-process and the floors
    // of this run. Reported; no goal is set.
    if (pgNodes && inProcess) {
      const sqlite = { label: 'SQLite, in-process', unit: 'ms' };
      for (const [label, r] of [
        ['PostgreSQL, one node', pgNodes.oneNode],
        ['PostgreSQL, two nodes (sender on A, addressee on B)', pgNodes.twoNodes],
      ] as const) {
        rows.push(
          { measurement: `HotlineClients, ${label}, in-process, 1 in flight, send → verified receipt, p50 (${r.serial.count})`, value: r.serial.p50Ms, unit: 'ms', against: { ...sqlite, value: inProcess.serial.p50Ms }, ratio: r.serial.p50Ms / inProcess.serial.p50Ms },
          { measurement: `HotlineClients, ${label}, 1 in flight, p50 against the path floor`, value: r.serial.p50Ms, unit: 'ms', against: { label: 'path floor', value: path.p50Ms, unit: 'ms' }, ratio: r.serial.p50Ms / path.p50Ms },
          { measurement: `HotlineClients, ${label}, 1 in flight, p99`, value: r.serial.p99Ms, unit: 'ms', against: { ...sqlite, value: inProcess.serial.p99Ms }, ratio: r.serial.p99Ms / inProcess.serial.p99Ms },
          { measurement: `HotlineClients, ${label}, ${cfg.window} in flight, end to end (${r.pipelined.count})`, value: r.pipelined.perSecond, unit: 'msgs/s', against: { label: 'SQLite, in-process', value: inProcess.pipelined.perSecond, unit: 'msgs/s' }, ratio: r.pipelined.perSecond / inProcess.pipelined.perSecond },
          { measurement: `HotlineClients, ${label}, ${cfg.window} in flight, against the raw ws echo`, value: r.pipelined.perSecond, unit: 'msgs/s', against: { label: 'raw ws', value: rawWs.pipelinedPerSecond, unit: 'msgs/s' }, ratio: r.pipelined.perSecond / rawWs.pipelinedPerSecond },
        );
      }
    }
    const capacity = cap?.capacity;
    const flash = cap?.flash;
    if (capacity && flash) rows.push(
      { measurement: `server capacity, raw links, ${cfg.pairs} pairs × window ${cfg.window} (${capacity.completed})`, value: capacity.perSecond, unit: 'msgs/s', against: { label: 'verifications/s ÷ 2', value: verify.perSecond / 2, unit: '/s' }, ratio: capacity.perSecond / (verify.perSecond / 2), goal: '≥ 0.7×', met: capacity.perSecond >= capacityGoal },
    );
    if (backlogs) {
      const { atGoal, full } = backlogs;
      for (const b of atGoal === full ? [full] : [atGoal, full]) rows.push(
        { measurement: `FLASH sent last after ${b.queued} ROUTINE for an offline device: delivered first`, value: b.flashFirst ? 1 : 0, unit: 'bool', goal: 'yes', met: b.flashFirst, reduced: b.queued < FULL_SIZE.backlogFlash },
      );
      rows.push(
        { measurement: `backlog drain (${full.drained} items)`, value: full.drainPerSecond, unit: 'msgs/s', goal: `≥ 5,000 msgs/s at ${FULL_SIZE.backlogDrain.toLocaleString('en-US')}`, met: full.drainPerSecond >= 5000, reduced: full.drained < FULL_SIZE.backlogDrain },
        { measurement: `longest server event-loop stall during the drain (${atGoal.drained} items)`, value: atGoal.serverLoopStallMs, unit: 'ms', goal: `≤ 50 ms at ${FULL_SIZE.backlogFlash.toLocaleString('en-US')}`, met: atGoal.serverLoopStallMs <= 50, reduced: atGoal.drained < FULL_SIZE.backlogFlash },
      );
      if (full !== atGoal) rows.push({ measurement: `longest server event-loop stall during the drain (${full.drained} items)`, value: full.serverLoopStallMs, unit: 'ms' });
      // Reported: the backlog's acceptance, a sustained stream of group commits (the WAL's growth; WalCheckpointer.settle).
      rows.push(
        { measurement: `backlog accepted, window ${cfg.window} (${full.queued} ROUTINE)`, value: full.queuePerSecond, unit: 'msgs/s' },
        { measurement: `longest server event-loop stall while the backlog was accepted (${full.queued} ROUTINE)`, value: full.queueLoopStallMs, unit: 'ms' },
      );
    }
    if (flash) rows.push(
      { measurement: `FLASH p50 under ROUTINE at half capacity (${flash.flashesLoaded})`, value: flash.loadedP50Ms, unit: 'ms', against: { label: 'idle FLASH p50', value: flash.idleP50Ms, unit: 'ms' }, ratio: flash.loadedP50Ms / flash.idleP50Ms, goal: '≤ 2×', met: flash.loadedP50Ms <= 2 * flash.idleP50Ms },
    );
    if (scale) rows.push(
      { measurement: `server CPU per message, ${scale.deadlines.openDeadlines} open deadlines`, value: scale.deadlines.serverCpuMicrosPerMessage, unit: 'µs', against: { label: 'empty', value: scale.empty.serverCpuMicrosPerMessage, unit: 'µs' }, ratio: scale.deadlines.serverCpuMicrosPerMessage / scale.empty.serverCpuMicrosPerMessage, goal: '≤ 1.2×', met: scale.deadlines.serverCpuMicrosPerMessage <= 1.2 * scale.empty.serverCpuMicrosPerMessage, reduced: scale.deadlines.openDeadlines < FULL_SIZE.deadlines },
      { measurement: `server CPU per message, ${scale.devices.enrolled} more enrolled devices`, value: scale.devices.serverCpuMicrosPerMessage, unit: 'µs', against: { label: 'empty', value: scale.empty.serverCpuMicrosPerMessage, unit: 'µs' }, ratio: scale.devices.serverCpuMicrosPerMessage / scale.empty.serverCpuMicrosPerMessage, goal: '≤ 1.2×', met: scale.devices.serverCpuMicrosPerMessage <= 1.2 * scale.empty.serverCpuMicrosPerMessage, reduced: scale.devices.enrolled < FULL_SIZE.devices },
    );
    if (restart) rows.push(
      // The goal is on the server's own start (store, directory, deadlines, audit tree, listen; /readyz
      // answers from then on). Process boot (node + tsx) is the same at every log size and is shown
      // on the next line, the empty log beside it.
      { measurement: `server start, main() → ready, ${restart.auditEntries.toLocaleString('en-US')} audit entries`, value: restart.big.mainMs / 1000, unit: 's', against: { label: 'empty log', value: restart.empty.mainMs / 1000, unit: 's' }, ratio: restart.big.mainMs / restart.empty.mainMs, goal: '≤ 2 s', met: restart.big.mainMs <= 2000, reduced: restart.auditEntries < FULL_SIZE.auditEntries },
      { measurement: `process spawn → /readyz 200, ${restart.auditEntries.toLocaleString('en-US')} audit entries`, value: restart.big.spawnToReadyMs / 1000, unit: 's', against: { label: 'empty log', value: restart.empty.spawnToReadyMs / 1000, unit: 's' }, ratio: restart.big.spawnToReadyMs / restart.empty.spawnToReadyMs },
    );
    if (scale) rows.push(
      { measurement: `server RSS, ${scale.idle.connected} idle connected devices`, value: scale.idle.rssBytes, unit: 'bytes', against: { label: 'before connecting', value: scale.idle.rssBeforeBytes, unit: 'bytes' }, ratio: scale.idle.rssBytes / scale.idle.rssBeforeBytes, goal: '< 1 GiB', met: scale.idle.rssBytes < GIB, reduced: scale.idle.connected < FULL_SIZE.idle },
    );
    if (want('console')) rows.push(
      consoleResult
        ? { measurement: `console: FLASH banner after ${consoleResult.count} ROUTINE (Chromium)`, value: consoleResult.flashBannerMs ?? NaN, unit: 'ms', goal: '≤ 2,000 ms', met: consoleResult.flashBannerMs !== undefined && consoleResult.flashBannerMs <= 2000 }
        : { measurement: `console: FLASH banner after ${FULL_SIZE.console.toLocaleString('en-US')} ROUTINE (Chromium; not in smoke or without /usr/bin/chromium)`, value: NaN, unit: 'ms', goal: '≤ 2,000 ms', notMeasured: true },
      consoleResult
        ? { measurement: `console: key-press-to-paint during the flood, max of ${consoleResult.keyToPaint.samples} (p99 ${consoleResult.keyToPaint.p99Ms.toFixed(1)} ms)`, value: consoleResult.keyToPaint.maxMs, unit: 'ms', goal: '≤ 100 ms', met: consoleResult.keyToPaint.maxMs <= 100 }
        : { measurement: 'console: key-press-to-paint during the flood', value: NaN, unit: 'ms', goal: '≤ 100 ms', notMeasured: true },
    );
    if (flood) rows.push(
      {
        measurement: `connection flood: ${flood.attempted.toLocaleString('en-US')} idle TCP connections from ${flood.sources} loopback addresses (cap ${flood.cap} each, server fd limit ${flood.serverFdLimit.toLocaleString('en-US')}; refused ${flood.refusedByServer.toLocaleString('en-US')}, peak open ${flood.peakOpen.toLocaleString('en-US')}, ${flood.capLogLines} cap log lines): a real device's login + link during it`,
        value: flood.realLinkMs,
        unit: 'ms',
        goal: 'links; cap holds; refusals counted and logged',
        met: flood.ok,
        reduced: flood.attempted < FULL_SIZE.flood,
      },
    );

    const json = {
      date: started.toISOString(),
      machine: { cores: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', totalMemBytes: totalmem(), node: process.version, platform: `${process.platform}-${process.arch}`, fdLimit: scale?.idle.fdLimit ?? null },
      smoke: cfg.smoke,
      only: cfg.only ?? null,
      config: { ...cfg, resultsDir: undefined },
      floors: { rawWs, path, verify: { ...verify, capacityGoalPerSecond: capacityGoal } },
      phases: {
        clientsInProcess: inProcess ?? null,
        clientsOwnProcess: ownProcess ?? null,
        twoRelays: twoRelays ?? null,
        ...(pgNodes ? { pgNodes } : {}),
        capacity: capacity ?? null,
        flashUnderLoad: flash ?? null,
        backlog: backlogs?.full ?? null,
        backlogAtGoal: backlogs?.atGoal ?? null,
        scale: scale ?? null,
        restart: restart ?? null,
        console: consoleResult ?? null,
        connFlood: flood ?? null,
      },
      rows,
    };
    mkdirSync(cfg.resultsDir, { recursive: true });
    const stamp = started.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
    const file = join(cfg.resultsDir, `${stamp}-${cpus().length}cores${cfg.smoke ? '-smoke' : ''}${cfg.only ? `-only-${cfg.only.join('-')}` : ''}.json`);
    writeFileSync(file, JSON.stringify(json, null, 2) + '\n');
    return { json, rows, file };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  useNodeCrypto();
  const cfg = loadBenchConfig(process.env, process.argv.slice(2));
  console.log(`Hotline benchmark${cfg.smoke ? ' (smoke: tiny counts, figures mean nothing)' : ''} — node ${process.version}, ${cpus().length} cores, ${new Date().toISOString()}`);
  const { rows, file } = await runBench(cfg);
  console.log('');
  console.log(formatTable(rows));
  console.log('');
  console.log('Ratios are to figures of this same run. "reduced size": measured below the size the goal is stated at');
  console.log('(raise the HOTLINE_BENCH_* count). Every message of the raw-link phases is checked to arrive exactly once.');
  console.log(`Results: ${file}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
