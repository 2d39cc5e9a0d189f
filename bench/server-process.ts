// The server in a process of its own, as deployed: `server/main.ts`'s `main()` with its
// configuration from the environment (HOTLINE_AGREEMENT, HOTLINE_DATA_DIR, HOTLINE_RATE_*, ...).
// It tells its parent over the IPC channel where it listens, and answers usage questions with its
// own CPU time and RSS, so that the bench reads the server's costs without reaching into it.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { main } from '../server/main.js';

export type ServerProcessMessage =
  | { type: 'listening'; url: string; startMs: number }
  | { type: 'usage'; id: number; cpuMicros: number; rss: number; loopDelayMaxMs: number };

// The longest the event loop was held up between two usage questions (each question resets it).
// The histogram records the time between two runs of a timer of this period, so a reading is the
// stall plus up to one period: at the default 10 ms, a 30 ms busy loop read 40.3 ms on this machine,
// at 1 ms 32.7 ms (docs/performance.md, fourteenth session). The timer is libuv's, no JavaScript runs.
const LOOP_DELAY_RESOLUTION_MS = 1;
const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
loopDelay.enable();
const t0 = performance.now();
const server = await main([], process.env);
const send = (m: ServerProcessMessage) => process.send?.(m);
send({ type: 'listening', url: server.url, startMs: performance.now() - t0 });
process.on('message', (m: { type?: string; id?: number }) => {
  if (m.type !== 'usage') return;
  const cpu = process.cpuUsage();
  send({ type: 'usage', id: m.id ?? 0, cpuMicros: cpu.user + cpu.system, rss: process.memoryUsage().rss, loopDelayMaxMs: loopDelay.max / 1e6 });
  loopDelay.reset();
});
// The parent going away must not leave a server behind.
process.on('disconnect', () => void server.close().then(() => process.exit(0)));
