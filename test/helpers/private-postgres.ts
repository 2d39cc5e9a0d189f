import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { onCleanup } from './test-server.js';

const run = promisify(execFile);

/** Where Debian's PostgreSQL 15 puts its server binaries (CI installs the `postgresql` package). */
const BIN = process.env['HOTLINE_TEST_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';

/**
 * A throwaway PostgreSQL cluster of the test's own, on a free loopback port, for tests that stop
 * and start the database (the shared test cluster on 5432 must never be restarted: other test
 * files use it in parallel). initdb refuses to run as root, so as root the cluster belongs to the
 * `postgres` OS user (`runuser -u postgres --`). Stopped and removed after the test. Without the
 * binaries it throws (the test fails, it never skips).
 */
export interface PrivatePostgres {
  /** postgres://postgres@127.0.0.1:<port>/postgres (trust authentication on loopback). */
  url: string;
  /** A clean shutdown (`pg_ctl stop -m fast`: every connection is ended). */
  stop(): Promise<void>;
  start(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  for (const tool of ['initdb', 'pg_ctl']) {
    if (!existsSync(join(BIN, tool))) {
      throw new Error(`${join(BIN, tool)} is missing: this test runs a PostgreSQL cluster of its own (install the postgresql package, or set HOTLINE_TEST_PG_BIN to its bin directory)`);
    }
  }
  const asRoot = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'hotline-pg-'));
  const data = join(dir, 'data');
  if (asRoot) {
    const ids = await run('id', ['-u', 'postgres']).then((r) => Number(r.stdout.trim()));
    const gid = await run('id', ['-g', 'postgres']).then((r) => Number(r.stdout.trim()));
    chownSync(dir, ids, gid);
  }
  const pgTool = (tool: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', join(BIN, tool), ...args], { timeout: 120_000 }) : run(join(BIN, tool), args, { timeout: 120_000 });
  const port = await freePort();
  let running = false;
  onCleanup(async () => {
    if (running) await pgTool('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });
  await pgTool('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '--encoding=UTF8', '--locale=C']);
  // Loopback only, its socket in its own directory; no fsync: a throwaway cluster (a clean stop
  // still writes everything, which is what a restart test needs).
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50`;
  const pg: PrivatePostgres = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async start() {
      await pgTool('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']);
      running = true;
    },
    async stop() {
      await pgTool('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']);
      running = false;
    },
  };
  await pg.start();
  return pg;
}
