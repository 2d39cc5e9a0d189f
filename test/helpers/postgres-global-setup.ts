import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Vitest global setup: find the PostgreSQL database the PostgreSQL tests use, once per run, and
 * export its URL as HOTLINE_TEST_DATABASE_URL to the test workers (they start after this).
 *
 * scripts/test-postgres.sh does the work: with HOTLINE_TEST_DATABASE_URL set (CI) it only checks
 * that the database is reachable; without it, it uses the local default and starts PostgreSQL and
 * creates the test role and database where it can. When no database can be had, the run FAILS here
 * with what to do: the PostgreSQL tests are never skipped.
 */
export default function setup(): void {
  const script = join(dirname(fileURLToPath(import.meta.url)), '../../scripts/test-postgres.sh');
  let url: string;
  try {
    url = execFileSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 }).trim();
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? (err as Error).message);
    throw new Error(`the PostgreSQL tests have no database:\n${stderr}`, { cause: err });
  }
  process.env['HOTLINE_TEST_DATABASE_URL'] = url;
}
