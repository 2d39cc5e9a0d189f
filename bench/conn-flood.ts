/**
 * Issue 13, case 5 ("file handles"), at full size: 25,000 idle TCP connections against a server
 * whose descriptor limit is far below that, from a few loopback source addresses (Linux routes all
 * of 127/8 to lo). With the per-address cap the server holds at most `cap` connections per
 * address, closes the rest at once, counts them on /metrics and logs one line per address; a real
 * device logs in and opens its link while the flood goes on. Without the cap the server would run
 * out of descriptors and new links would fail ("socket hang up"), as the issue measured.
 *
 * Loopback only, bounded in count and in time. Part of `npm run bench` (bench/run.ts, full size;
 * `--smoke` runs it tiny); on its own: `node --import tsx bench/conn-flood.ts [COUNT]`.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { makeDeployment } from '../test/helpers/fixtures.js';
import { LinkClient, login } from '../test/helpers/ws-client.js';
import { BENCH_RATE_ENV } from './server.js';
import type { ServerProcessMessage } from './server-process.js';

const SCRIPT = fileURLToPath(new URL('./server-process.ts', import.meta.url));
/** Connections from 127.0.0.1 besides the flood that a sample of the gauge may count (see below). */
const LOCAL_CONNECTIONS = 16;

export interface ConnFloodOptions {
  /** Connections attempted in all. */
  count: number;
  /** Loopback source addresses, used in turn (none of them 127.0.0.1, where the real device is). */
  sources: readonly string[];
  /** The server's `HOTLINE_MAX_CONNECTIONS_PER_ADDRESS`. */
  cap: number;
  /** The server process's open-files limit (`ulimit -n`), below `count`. */
  serverFdLimit: number;
  /** Connection attempts in flight at once. */
  concurrency: number;
  /** Bound on the flood, seconds. */
  maxSeconds: number;
}

export interface ConnFloodResult {
  attempted: number;
  sources: number;
  cap: number;
  serverFdLimit: number;
  /** Attempts whose connect succeeded (the kernel accepts before the server decides). */
  connected: number;
  /** Client-side errors (ECONNREFUSED, ECONNRESET, EADDRNOTAVAIL, ...): none expected. */
  connectErrors: number;
  errorCodes: Record<string, number>;
  /** `hotline_connections_refused_total` at the end. */
  refusedByServer: number;
  /** Highest `hotline_connections_open` seen while flooding (sampled), and the highest descriptor count of the server process. */
  peakOpen: number;
  peakServerFds: number;
  /** `connection cap reached` log lines. */
  capLogLines: number;
  /** A real device's login + link + hello during the flood, ms; NaN if it failed. */
  realLinkMs: number;
  realLinkError?: string;
  /** /readyz after the flood. */
  readyAfter: number;
  durationMs: number;
  /**
   * The cap held (peak open ≤ sources × cap + the few connections from 127.0.0.1), connections past
   * it were refused and counted, one log line per address and minute, no attempt failed on the
   * client's side, the real device linked during the flood, and /readyz is 200 after it.
   */
  ok: boolean;
}

interface FloodServer {
  url: string;
  pid: number;
  capLines(): number;
  stop(): Promise<void>;
}

/** The server in its own process, with `ulimit -n` set for it, logging at `warn` (the cap's lines). */
function spawnFloodServer(agreementPath: string, dataDir: string, cap: number, fdLimit: number): Promise<FloodServer> {
  const child = spawn('/bin/sh', ['-c', `ulimit -n ${fdLimit} && exec "$0" --import tsx "$1"`, process.execPath, SCRIPT], {
    env: {
      ...process.env,
      ...BENCH_RATE_ENV,
      HOTLINE_MAX_CONNECTIONS_PER_ADDRESS: String(cap),
      HOTLINE_AGREEMENT: agreementPath,
      HOTLINE_DATA_DIR: dataDir,
      HOTLINE_HOST: '127.0.0.1',
      HOTLINE_PORT: '0',
      HOTLINE_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let capLines = 0;
  let partial = '';
  child.stdout!.on('data', (c: Buffer) => {
    const lines = (partial + c.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) if (l.includes('connection cap reached')) capLines++;
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the flood server did not listen within 120 s: ${stderr}`));
    }, 120_000);
    void exited.then(() => reject(new Error(`the flood server ended before listening: ${stderr}`)));
    child.on('message', (m: ServerProcessMessage) => {
      if (m.type !== 'listening') return;
      clearTimeout(timer);
      resolvePromise({
        url: m.url,
        pid: child.pid!,
        capLines: () => capLines,
        stop: async () => {
          child.disconnect();
          const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
          await exited;
          clearTimeout(killer);
        },
      });
    });
  });
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

/** Descriptors the process holds now (Linux /proc), 0 where unknown. */
function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

export async function connFloodPhase(o: ConnFloodOptions): Promise<ConnFloodResult> {
  const dir = mkdtempSync(join(tmpdir(), 'hotline-flood-'));
  const dep = await makeDeployment(Date.now() - 60_000);
  const agreementPath = join(dir, 'agreement.json');
  writeFileSync(agreementPath, JSON.stringify(dep.agreement));
  const server = await spawnFloodServer(agreementPath, join(dir, 'data'), o.cap, o.serverFdLimit);
  const { hostname, port } = new URL(server.url);
  const held: Socket[] = [];
  try {
    for (const d of [dep.devices.jpOp, dep.devices.cnOp]) {
      const res = await fetch(`${server.url}/v1/directory/devices`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(d.certificate) });
      if (res.status !== 201) throw new Error(`enrolment failed: HTTP ${res.status}`);
    }
    const started = performance.now();
    const until = started + o.maxSeconds * 1000;
    let connected = 0;
    let connectErrors = 0;
    const errorCodes: Record<string, number> = {};
    let peakOpen = 0;
    let peakServerFds = 0;
    let sampling = true;
    // Sampled from 127.0.0.1, which is not a flood source: the gauge and the server's descriptors.
    const sampler = (async () => {
      while (sampling) {
        peakOpen = Math.max(peakOpen, await metric(server.url, 'hotline_connections_open').catch(() => 0));
        peakServerFds = Math.max(peakServerFds, fdCount(server.pid));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    const attempt = (i: number) =>
      new Promise<void>((done) => {
        const s = connect({ host: hostname, port: Number(port), localAddress: o.sources[i % o.sources.length] });
        let settled = false;
        s.once('connect', () => {
          settled = true;
          connected++;
          held.push(s);
          done();
        });
        s.on('error', (err: NodeJS.ErrnoException) => {
          // After connecting, a reset is the server's refusal, not a failed attempt.
          if (settled) return;
          settled = true;
          connectErrors++;
          errorCodes[err.code ?? 'unknown'] = (errorCodes[err.code ?? 'unknown'] ?? 0) + 1;
          done();
        });
      });

    // The real device goes in halfway through the flood.
    let realLinkMs = NaN;
    let realLinkError: string | undefined;
    let real: Promise<void> | undefined;
    const realDevice = async () => {
      const t0 = performance.now();
      try {
        const token = await login(server.url, dep.devices.cnOp, dep.agreement);
        const link = await LinkClient.open(server.url, token);
        await link.waitForType('hello');
        realLinkMs = performance.now() - t0;
        await link.close();
      } catch (err) {
        realLinkError = (err as Error).message;
      }
    };

    let next = 0;
    const workers = Array.from({ length: Math.min(o.concurrency, o.count) }, async () => {
      while (next < o.count && performance.now() < until) {
        const i = next++;
        if (i === Math.floor(o.count / 2)) real = realDevice();
        await attempt(i);
      }
    });
    await Promise.all(workers);
    await real;
    // The server's closes of the last attempts arrive a moment later; its counter is read once
    // every attempt past the cap has been refused (bounded wait). Held sockets the server ends for
    // idleness (10 s without request headers) let as many later attempts in: hence "at most".
    const pastCap = Math.max(0, connected - o.sources.length * o.cap);
    let refusedByServer = await metric(server.url, 'hotline_connections_refused_total');
    for (let k = 0; k < 100 && refusedByServer < pastCap; k++) {
      await new Promise((r) => setTimeout(r, 50));
      refusedByServer = await metric(server.url, 'hotline_connections_refused_total');
    }
    sampling = false;
    await sampler;
    const durationMs = performance.now() - started;
    const readyAfter = (await fetch(`${server.url}/readyz`)).status;
    const capLogLines = server.capLines();
    // Besides the flood, a sample counts the connections from 127.0.0.1: the sampler's own, the
    // real device's link and fetch's keep-alive pool (its enrolments and login).
    const minutes = 1 + Math.floor(durationMs / 60_000);
    const ok =
      connectErrors === 0 &&
      peakOpen <= o.sources.length * o.cap + LOCAL_CONNECTIONS &&
      refusedByServer > 0 &&
      refusedByServer <= connected &&
      // One line per address per minute.
      capLogLines >= o.sources.length &&
      capLogLines <= o.sources.length * minutes &&
      Number.isFinite(realLinkMs) &&
      readyAfter === 200;
    return {
      attempted: next,
      sources: o.sources.length,
      cap: o.cap,
      serverFdLimit: o.serverFdLimit,
      connected,
      connectErrors,
      errorCodes,
      refusedByServer,
      peakOpen,
      peakServerFds,
      capLogLines,
      realLinkMs,
      ...(realLinkError === undefined ? {} : { realLinkError }),
      readyAfter,
      durationMs,
      ok,
    };
  } finally {
    for (const s of held) s.destroy();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The sizes of `npm run bench` (full) and of its smoke run. */
export function floodOptions(count: number, smoke: boolean, maxSeconds: number): ConnFloodOptions {
  return smoke
    ? { count, sources: ['127.0.0.2', '127.0.0.3'], cap: 50, serverFdLimit: 1024, concurrency: 50, maxSeconds }
    : { count, sources: ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'], cap: 512, serverFdLimit: 4096, concurrency: 256, maxSeconds };
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const count = Number(process.argv[2] ?? 25_000);
  connFloodPhase(floodOptions(count, false, 120)).then(
    (r) => {
      console.log(JSON.stringify(r, null, 2));
      process.exit(r.ok ? 0 : 1);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
