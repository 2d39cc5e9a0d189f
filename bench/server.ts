import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ServerProcessMessage } from './server-process.js';

const SCRIPT = fileURLToPath(new URL('./server-process.ts', import.meta.url));

/**
 * Limits lifted for the bench: thousands of devices log in, enrol and connect from one loopback address,
 * which the defaults (shared/PROTOCOL.md, server/config.ts) rightly refuse from a real peer.
 */
export const BENCH_RATE_ENV = {
  HOTLINE_RATE_LOGIN_PER_MINUTE: '1000000',
  HOTLINE_RATE_DEVICE_FAILURES_PER_MINUTE: '1000000',
  HOTLINE_RATE_DIRECTORY_PER_MINUTE: '1000000',
  // 10,000 idle devices connect from 127.0.0.1.
  HOTLINE_MAX_CONNECTIONS_PER_ADDRESS: '100000',
};

export interface ServerUsage {
  /** User + system CPU time of the server process since it started. */
  cpuMicros: number;
  rss: number;
  /** Longest event-loop delay of the server since the previous reading (ms). */
  loopDelayMaxMs: number;
}

export interface BenchServer {
  url: string;
  /** Milliseconds from spawning the process to its URL (node and tsx start-up included). */
  spawnToListeningMs: number;
  /** Milliseconds the server's own `main()` took, as it measured it. */
  mainMs: number;
  pid: number;
  usage(): Promise<ServerUsage>;
  stop(): Promise<void>;
}

/** Start `bench/server-process.ts` (`node --import tsx`) on a data directory, on 127.0.0.1 and a free port. */
export function spawnBenchServer(options: { agreementPath: string; dataDir: string; timeoutMs?: number }): Promise<BenchServer> {
  const t0 = performance.now();
  // HOTLINE_BENCH_SERVER_NODE_ARGS: extra node options for the server process only, e.g.
  // "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the server under a bench phase.
  const extra = (process.env['HOTLINE_BENCH_SERVER_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
  const child: ChildProcess = spawn(process.execPath, [...extra, '--import', 'tsx', SCRIPT], {
    env: {
      ...process.env,
      ...BENCH_RATE_ENV,
      HOTLINE_AGREEMENT: options.agreementPath,
      HOTLINE_DATA_DIR: options.dataDir,
      HOTLINE_HOST: '127.0.0.1',
      HOTLINE_PORT: '0',
      HOTLINE_LOG_LEVEL: 'silent',
    },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const waiting = new Map<number, (u: ServerUsage) => void>();
  let nextId = 1;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the bench server did not listen within ${options.timeoutMs ?? 120_000} ms: ${stderr}`));
    }, options.timeoutMs ?? 120_000);
    void exited.then(() => reject(new Error(`the bench server ended before listening: ${stderr}`)));
    child.on('message', (m: ServerProcessMessage) => {
      if (m.type === 'usage') {
        waiting.get(m.id)?.({ cpuMicros: m.cpuMicros, rss: m.rss, loopDelayMaxMs: m.loopDelayMaxMs });
        waiting.delete(m.id);
        return;
      }
      clearTimeout(timer);
      resolve({
        url: m.url,
        spawnToListeningMs: performance.now() - t0,
        mainMs: m.startMs,
        pid: child.pid!,
        usage: () =>
          new Promise<ServerUsage>((res) => {
            const id = nextId++;
            waiting.set(id, res);
            child.send({ type: 'usage', id });
          }),
        stop: async () => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          child.kill('SIGTERM');
          // A graceful stop waits for every socket's close handshake; past this, cut it short.
          const cut = setTimeout(() => child.kill('SIGKILL'), 30_000);
          await exited;
          clearTimeout(cut);
        },
      });
    });
  });
}
