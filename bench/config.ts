/**
 * The bench's counts and bounds, read once from the environment. Every phase is bounded twice: by
 * a count (its `HOTLINE_BENCH_*` variable; the full size by default) and by
 * `HOTLINE_BENCH_MAX_SECONDS` of measuring (`HOTLINE_BENCH_SETUP_SECONDS` for each preparation that
 * goes through the server: queueing a backlog, enrolling devices, connecting them). `--smoke` (or HOTLINE_BENCH_SMOKE=1) swaps in tiny
 * counts so that every phase runs end to end in CI in seconds; its figures mean nothing.
 */
export interface BenchConfig {
  smoke: boolean;
  /** `--store pg`: also measure the HotlineClients on PostgreSQL, one node and two (bench/pg-nodes.ts). */
  store: 'sqlite' | 'pg';
  /** Measuring time per phase, seconds (preparation such as sealing is not counted). */
  maxSeconds: number;
  /** Time for each preparation that goes through the server (queueing a backlog, enrolling, connecting), seconds. */
  setupSeconds: number;
  /** Path floor iterations. */
  floorIterations: number;
  /** HotlineClient phases: messages with 1 in flight, and with `window` in flight. */
  serial: number;
  pipelined: number;
  window: number;
  /** Raw-link capacity: messages over all pairs, and the number of sender/addressee pairs. */
  capacity: number;
  pairs: number;
  /** FLASH messages timed when idle and again under a ROUTINE stream at half of capacity. */
  flashes: number;
  /** Seconds the half-capacity ROUTINE stream runs while the FLASHes are timed. */
  loadSeconds: number;
  /** ROUTINE messages queued for an offline device before the FLASH, for the drain rate (goal stated at 100,000). */
  backlog: number;
  /** The same on a fresh server at the size the FLASH-first and stall goals are stated at (10,000). */
  backlogGoal: number;
  /** Open deadlines (two per message that has no receipt yet) for the CPU-per-message comparison. */
  deadlines: number;
  /** Enrolled devices for the CPU-per-message comparison. */
  devices: number;
  /** Idle connected devices whose server RSS is measured. */
  idle: number;
  /** Audit log entries of the database the server restarts on. */
  auditEntries: number;
  /** Messages of the stream whose server CPU per message is compared (empty, deadlines, devices). */
  stream: number;
  /** Idle TCP connections of the connection flood (bench/conn-flood.ts; issue 13 measured 25,000). */
  flood: number;
  /** Where the JSON goes. */
  resultsDir: string;
  /**
   * Only these phases (the floors always run): `--only=capacity,clients` or HOTLINE_BENCH_ONLY;
   * undefined, all of them. `scale` replays the capacity phase's messages, so it runs capacity too.
   */
  only: readonly BenchPhase[] | undefined;
}

/** The phases `--only` may name. */
export const BENCH_PHASES = ['clients', 'two-relays', 'capacity', 'backlog', 'scale', 'restart', 'console', 'flood'] as const;
export type BenchPhase = (typeof BENCH_PHASES)[number];

function phasesOf(text: string | undefined): BenchPhase[] | undefined {
  if (text === undefined || text === '') return undefined;
  const names = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const n of names) {
    if (!(BENCH_PHASES as readonly string[]).includes(n)) throw new Error(`unknown bench phase "${n}"; known: ${BENCH_PHASES.join(', ')}`);
  }
  const phases = names as BenchPhase[];
  return phases.includes('scale') && !phases.includes('capacity') ? [...phases, 'capacity'] : phases;
}

/** The sizes the issue states the goals at. */
export const FULL_SIZE = {
  backlogFlash: 10_000,
  backlogDrain: 100_000,
  deadlines: 20_000,
  devices: 5_000,
  idle: 10_000,
  auditEntries: 1_000_000,
  console: 1_000,
  flood: 25_000,
} as const;

type Env = Readonly<Record<string, string | undefined>>;

function count(env: Env, name: string, full: number, smoke: number, isSmoke: boolean): number {
  const text = env[`HOTLINE_BENCH_${name}`];
  if (text === undefined || text === '') return isSmoke ? smoke : full;
  const n = Number(text);
  if (!Number.isFinite(n) || n < 1) throw new Error(`HOTLINE_BENCH_${name} must be a positive number, got "${text}"`);
  return n;
}

export function loadBenchConfig(env: Env, argv: readonly string[]): BenchConfig {
  const smoke = argv.includes('--smoke') || env['HOTLINE_BENCH_SMOKE'] === '1';
  const c = (name: string, full: number, small: number) => count(env, name, full, small, smoke);
  const at = argv.findIndex((a) => a === '--store' || a.startsWith('--store='));
  const store = at < 0 ? 'sqlite' : argv[at]!.startsWith('--store=') ? argv[at]!.slice('--store='.length) : argv[at + 1];
  if (store !== 'sqlite' && store !== 'pg') throw new Error(`--store takes sqlite or pg, got "${String(store)}"`);
  return {
    smoke,
    store,
    maxSeconds: c('MAX_SECONDS', 60, 10),
    setupSeconds: c('SETUP_SECONDS', 90, 10),
    floorIterations: c('FLOOR', 300, 10),
    serial: c('SERIAL', 300, 5),
    pipelined: c('PIPELINED', 2000, 20),
    window: c('WINDOW', 100, 10),
    capacity: c('CAPACITY', 10_000, 60),
    pairs: c('PAIRS', 4, 2),
    flashes: c('FLASHES', 200, 3),
    loadSeconds: c('LOAD_SECONDS', 10, 1),
    backlog: c('BACKLOG', FULL_SIZE.backlogDrain, 30),
    backlogGoal: c('BACKLOG_GOAL', FULL_SIZE.backlogFlash, 10),
    deadlines: c('DEADLINES', FULL_SIZE.deadlines, 40),
    devices: c('DEVICES', FULL_SIZE.devices, 20),
    idle: c('IDLE', FULL_SIZE.idle, 30),
    auditEntries: c('AUDIT', FULL_SIZE.auditEntries, 2000),
    stream: c('STREAM', 2000, 30),
    flood: c('FLOOD', FULL_SIZE.flood, 300),
    resultsDir: env['HOTLINE_BENCH_RESULTS_DIR'] ?? new URL('./results/', import.meta.url).pathname,
    only: phasesOf(argv.find((a) => a.startsWith('--only='))?.slice('--only='.length) ?? env['HOTLINE_BENCH_ONLY']),
  };
}
