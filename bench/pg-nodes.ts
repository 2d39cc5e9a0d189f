import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startServer, type RunningServer } from '../server/main.js';
import { makeDeployment } from '../test/helpers/fixtures.js';
import { measureClients, type LatencyRun } from './clients.js';
import { enrolCertificates } from './deployment.js';

export interface PgNodesResult {
  /** Where the database is, without the password. */
  database: string;
  oneNode: { serial: LatencyRun; pipelined: LatencyRun };
  /** jp-mod's operators on node A, cn-mnd's on node B: every message and receipt crosses nodes (LISTEN/NOTIFY). */
  twoNodes: { serial: LatencyRun; pipelined: LatencyRun };
}

/**
 * The database `npm run bench -- --store pg` runs on: `HOTLINE_BENCH_DATABASE_URL`, else what the
 * tests use (scripts/test-postgres.sh: HOTLINE_TEST_DATABASE_URL, or the local test database,
 * started and created where it can be). Each run works in schemas of its own, dropped after.
 */
export function benchDatabaseUrl(env: Readonly<Record<string, string | undefined>>): string {
  const given = env['HOTLINE_BENCH_DATABASE_URL'];
  if (given) return given;
  const script = fileURLToPath(new URL('../scripts/test-postgres.sh', import.meta.url));
  try {
    return execFileSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 }).trim();
  } catch (err) {
    throw new Error(`--store pg needs a PostgreSQL database: set HOTLINE_BENCH_DATABASE_URL, or see scripts/test-postgres.sh:\n${String((err as { stderr?: unknown }).stderr ?? err)}`, { cause: err });
  }
}

async function dropSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

/**
 * The HotlineClients of `measureClients` on PostgreSQL (issue 12), in this process like the SQLite
 * "in-process" line: one node, then two nodes of one relay on one database with the sender on
 * node A and the addressee on node B. Each in a fresh schema of its own.
 */
export async function measurePgNodes(
  url: string,
  dir: string,
  options: { serial: number; pipelined: number; window: number; maxSeconds: number },
): Promise<PgNodesResult> {
  const run = async (nodes: 1 | 2) => {
    const schema = `bench_${randomBytes(6).toString('hex')}`;
    const d = await makeDeployment(Date.now() - 60_000);
    const servers: RunningServer[] = [];
    const start = async (name: string) => {
      const s = await startServer({ agreement: d.agreement, dataDir: join(dir, `pg-${nodes}-${name}`), host: '127.0.0.1', port: 0, logLevel: 'silent', databaseUrl: url, pg: { schema } });
      servers.push(s);
      return s;
    };
    try {
      const a = await start('a');
      if (nodes === 1) return await measureClients(a.url, d, options);
      // Enrolled before node B starts: a node reads the directory at its start (docs/postgresql.md).
      await enrolCertificates(a.url, Object.values(d.devices).map((dev) => dev.certificate));
      const b = await start('b');
      return await measureClients(a.url, d, options, { cnServerUrl: b.url });
    } finally {
      for (const s of servers) await s.close();
      await dropSchema(url, schema);
    }
  };
  const safe = new URL(url);
  safe.password = '';
  return { database: safe.toString(), oneNode: await run(1), twoNodes: await run(2) };
}
