import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchConfig } from './config.js';
import type { BenchDeployment } from './deployment.js';
import { buildBigLog } from './big-log.js';
import { spawnBenchServer } from './server.js';

export interface StartResult {
  /** Spawning the process → /readyz answers 200 (node and tsx start-up included). */
  spawnToReadyMs: number;
  /** The server's own `main()`, as it measured it. */
  mainMs: number;
}

export interface RestartResult {
  auditEntries: number;
  buildSeconds: number;
  empty: StartResult;
  big: StartResult;
}

async function timeStart(agreementPath: string, dataDir: string): Promise<StartResult> {
  const t0 = performance.now();
  const server = await spawnBenchServer({ agreementPath, dataDir });
  try {
    for (;;) {
      const r = await fetch(`${server.url}/readyz`);
      await r.arrayBuffer();
      if (r.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return { spawnToReadyMs: performance.now() - t0, mainMs: server.mainMs };
  } finally {
    await server.stop();
  }
}

/**
 * Start-up with a long audit log: the time from spawning the server to /readyz on a database of
 * `auditEntries` entries, beside the same on an empty data directory in the same run.
 */
export async function restartPhase(cfg: BenchConfig, dep: BenchDeployment, dir: string): Promise<RestartResult> {
  const emptyDir = join(dir, 'restart-empty');
  mkdirSync(emptyDir, { recursive: true, mode: 0o700 });
  const empty = await timeStart(dep.agreementPath, emptyDir);
  const bigDir = join(dir, 'restart-big');
  const b0 = performance.now();
  mkdirSync(bigDir, { recursive: true, mode: 0o700 });
  await buildBigLog(bigDir, cfg.auditEntries);
  const buildSeconds = (performance.now() - b0) / 1000;
  const big = await timeStart(dep.agreementPath, bigDir);
  return { auditEntries: cfg.auditEntries, buildSeconds, empty, big };
}
