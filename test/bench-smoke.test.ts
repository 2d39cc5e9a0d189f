import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from './helpers/deployment.js';
import { onCleanup } from './helpers/test-server.js';
import { testDatabaseUrl } from './helpers/stores.js';

const RUN = fileURLToPath(new URL('../bench/run.ts', import.meta.url));
const TIMEOUT_MS = 360_000;

/** Every number in a JSON value, with its path; `null` (a NaN or a missing figure) is reported as such. */
function leaves(value: unknown, path: string, out: { path: string; value: unknown }[]): void {
  if (value === null || typeof value !== 'object') out.push({ path, value });
  else if (Array.isArray(value)) value.forEach((v, i) => leaves(v, `${path}[${i}]`, out));
  else for (const [k, v] of Object.entries(value)) leaves(v, `${path}.${k}`, out);
}

// Behaviour only: that every phase runs end to end and loses or repeats no message. The timings of
// a smoke run mean nothing and are not asserted.
describe('npm run bench -- --smoke --store pg', () => {
  it(
    'runs every phase and writes numeric figures; every message arrives exactly once',
    async () => {
      const out = tempDir('hotline-bench-smoke-');
      onCleanup(() => out.remove());
      // With --store pg: the PostgreSQL phases too, on the tests' database (the bench's own variable).
      const child = spawn(process.execPath, ['--import', 'tsx', RUN, '--smoke', '--store', 'pg'], {
        env: { ...process.env, HOTLINE_BENCH_RESULTS_DIR: out.path, HOTLINE_BENCH_DATABASE_URL: testDatabaseUrl() },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (c: Buffer) => (output += c.toString()));
      child.stderr.on('data', (c: Buffer) => (output += c.toString()));
      const kill = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS - 5_000);
      const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      clearTimeout(kill);
      expect(code, output).toBe(0);

      const files = readdirSync(out.path).filter((f) => f.endsWith('-smoke.json'));
      expect(files).toHaveLength(1);
      expect(files[0]).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z-\d+cores-smoke\.json$/);
      const json = JSON.parse(readFileSync(join(out.path, files[0]!), 'utf8'));

      expect(json.smoke).toBe(true);
      expect(json.machine.cores).toBeGreaterThan(0);
      expect(Object.keys(json.phases).sort()).toEqual(['backlog', 'backlogAtGoal', 'capacity', 'clientsInProcess', 'clientsOwnProcess', 'connFlood', 'console', 'flashUnderLoad', 'pgNodes', 'restart', 'scale', 'twoRelays']);
      // The console phase is a slot another change fills; until then it is null and printed "not measured".
      const found: { path: string; value: unknown }[] = [];
      leaves({ floors: json.floors, phases: { ...json.phases, console: undefined } }, '', found);
      const figures = found.filter((f) => f.value !== undefined && typeof f.value !== 'boolean' && typeof f.value !== 'string');
      expect(figures.length).toBeGreaterThan(50);
      for (const f of figures) expect(Number.isFinite(f.value), `${f.path} = ${String(f.value)}`).toBe(true);

      const p = json.phases;
      for (const run of [p.clientsInProcess.serial, p.clientsInProcess.pipelined, p.clientsOwnProcess.serial, p.clientsOwnProcess.pipelined, p.twoRelays.serial, p.twoRelays.pipelined, p.pgNodes.oneNode.serial, p.pgNodes.oneNode.pipelined, p.pgNodes.twoNodes.serial, p.pgNodes.twoNodes.pipelined]) {
        expect(run.count).toBeGreaterThan(0);
        expect([run.duplicated, run.missing]).toEqual([0, 0]);
      }
      for (const run of [p.capacity, p.flashUnderLoad, p.backlog, p.backlogAtGoal, p.scale.empty, p.scale.deadlines, p.scale.devices]) {
        expect(run.errors).toEqual([]);
        expect([run.duplicated, run.missing]).toEqual([0, 0]);
        expect(run.once).toBeGreaterThan(0);
      }
      expect(p.capacity.once).toBe(p.capacity.sent);
      expect(p.capacity.completed).toBe(p.capacity.sent);
      expect(p.backlog.drained).toBe(p.backlog.queued + 1);
      expect(p.backlog.queuePerSecond).toBeGreaterThan(0);
      expect(p.backlog.queueLoopStallMs).toBeGreaterThan(0);
      expect(p.backlog.queued).toBe(json.config.backlog);
      expect(p.backlog.flashPosition).toBeGreaterThanOrEqual(0);
      // The goals' size on a server of its own: its own FLASH, sent after fewer ROUTINE.
      expect(p.backlogAtGoal.queued).toBe(json.config.backlogGoal);
      expect(p.backlogAtGoal.queued).toBeLessThan(p.backlog.queued);
      expect(p.backlogAtGoal.drained).toBe(p.backlogAtGoal.queued + 1);
      expect(p.backlogAtGoal.flashPosition).toBeGreaterThanOrEqual(0);
      expect(p.scale.deadlines.openDeadlines).toBe(json.config.deadlines);
      expect(p.scale.devices.enrolled).toBe(json.config.devices);
      expect(p.scale.idle.connected).toBe(json.config.idle);
      expect(p.restart.auditEntries).toBe(json.config.auditEntries);
      // The connection flood: every attempt connected, the ones past the cap refused, counted and
      // logged, and the real device linked meanwhile.
      expect(p.connFlood).toMatchObject({ attempted: json.config.flood, connectErrors: 0, ok: true });
      expect(json.rows.length).toBeGreaterThan(15);
      // The PostgreSQL lines are in the table beside SQLite's; the password is not in the results.
      expect(json.rows.filter((r: { measurement: string }) => r.measurement.includes('PostgreSQL, two nodes'))).toHaveLength(5);
      expect(new URL(json.phases.pgNodes.database).password).toBe('');
    },
    TIMEOUT_MS,
  );
});
