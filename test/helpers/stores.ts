import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { PgStore } from '../../server/store/pg-store.js';
import type { Store } from '../../server/store/store.js';
import type { AuditEntry, EnvelopeWrite } from '../../server/relay/records.js';
import { envelopeAcceptedEntry } from '../../server/relay/audit-entries.js';
import { PRECEDENCE_RANK } from '../../server/relay/delivery.js';
import { envelopeHash, expectedRecipients } from '../../shared/crypto/envelope.js';
import type { Precedence } from '../../shared/protocol/schemas.js';
import { CN, JP, type Deployment, createDeployment, tempDir } from './deployment.js';
import { seal } from './ws-client.js';
import { onCleanup } from './test-server.js';

/**
 * The store adapters the contract suite runs against (test/server/store/store-contract.test.ts):
 * each `open()` gives a fresh, empty store that is closed and removed after the test. A PostgreSQL
 * store gets a schema of its own (created here, dropped after), so that suites run in parallel on
 * one database.
 */
export interface StoreAdapter {
  name: 'sqlite' | 'pg';
  open(): Promise<OpenedStore>;
}

export interface OpenedStore {
  store: Store & { appendAuditMany(entries: Iterable<AuditEntry>): number | Promise<number> };
  /** Open the same database again (a restart): a second store on the same data. */
  reopen(): Promise<Store>;
  /** Run raw SQL on the database (for tests that damage it on purpose); returns the rows of the last statement. */
  exec(sql: string): Promise<Record<string, unknown>[]>;
  /** A literal of `bytes` in this adapter's SQL dialect. */
  blob(bytes: Uint8Array): string;
}

/** The test database's URL: set by the global setup (test/helpers/postgres-global-setup.ts). */
export function testDatabaseUrl(): string {
  const url = process.env['HOTLINE_TEST_DATABASE_URL'];
  if (!url) throw new Error('HOTLINE_TEST_DATABASE_URL is not set: run the tests through vitest (its global setup finds the database)');
  return url;
}

/** A fresh schema name, dropped (with everything in it) after the test. */
export function testSchema(): string {
  const schema = `t_${randomBytes(8).toString('hex')}`;
  onCleanup(async () => {
    const client = new pg.Client({ connectionString: testDatabaseUrl() });
    await client.connect();
    try {
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    } finally {
      await client.end();
    }
  });
  return schema;
}

export const sqliteAdapter: StoreAdapter = {
  name: 'sqlite',
  async open() {
    const dir = tempDir();
    const path = join(dir.path, 'hotline.sqlite');
    const store = new SqliteStore(path);
    const others: Store[] = [];
    onCleanup(async () => {
      for (const s of others) await s.close();
      await store.close();
      dir.remove();
    });
    return {
      store,
      async reopen() {
        const s = new SqliteStore(path);
        others.push(s);
        return s;
      },
      async exec(sql: string) {
        const db = new Database(path);
        try {
          const stmt = db.prepare(sql);
          if (stmt.reader) return stmt.all() as Record<string, unknown>[];
          stmt.run();
          return [];
        } finally {
          db.close();
        }
      },
      blob: (bytes) => `X'${Buffer.from(bytes).toString('hex')}'`,
    };
  },
};

export const pgAdapter: StoreAdapter = {
  name: 'pg',
  async open() {
    const url = testDatabaseUrl();
    const schema = testSchema();
    const store = await PgStore.open(url, { schema, maxConnections: 4 });
    const others: Store[] = [];
    // Registered after testSchema's cleanup, so run before it (cleanups run in reverse order).
    onCleanup(async () => {
      for (const s of others) await s.close();
      await store.close();
    });
    return {
      store,
      async reopen() {
        const s = await PgStore.open(url, { schema, maxConnections: 4 });
        others.push(s);
        return s;
      },
      async exec(sql: string) {
        const client = new pg.Client({ connectionString: url, options: `-c search_path=${schema}` });
        await client.connect();
        try {
          return (await client.query<Record<string, unknown>>(sql)).rows;
        } finally {
          await client.end();
        }
      },
      blob: (bytes) => `'\\x${Buffer.from(bytes).toString('hex')}'::bytea`,
    };
  },
};

export const STORE_ADAPTERS: readonly StoreAdapter[] = [sqliteAdapter, pgAdapter];

/**
 * An envelope write as the relay makes it (sealed by jp-mod/op1 to CN, mailboxes of every CN
 * device, its audit entry), accepted at 1000 + seq: the store tests' unit of work.
 */
export function envelopeWrites(dep: Deployment): (seq: number, id?: string, precedence?: Precedence) => Promise<EnvelopeWrite> {
  const certs = Object.values(dep.devices).map((d) => d.certificate.cert);
  const sender = dep.devices[`${JP}/op1`]!;
  return async (seq, id, precedence = 'FLASH') => {
    const env = await seal({ sender, to: CN, seq, precedence, directory: certs, plaintext: { body: `m${seq}`, lang: 'en' }, ...(id ? { id } : {}) });
    const hash = envelopeHash(env.header);
    return {
      kind: 'envelope',
      envelope: env,
      envelopeHash: hash,
      acceptedAt: 1000 + seq,
      rank: PRECEDENCE_RANK[precedence],
      mailboxes: expectedRecipients(certs, sender.certificate.cert, CN).map((c) => `${c.party}/${c.device}`),
      audit: envelopeAcceptedEntry(env, hash, 1000 + seq),
    };
  };
}

/** A fresh SQLite store in a folder of its own (closed and removed after the test), and a deployment whose envelopes it can take. */
export async function openSqliteStore(): Promise<{ store: SqliteStore; dir: string; path: string; dep: Deployment; envelopeWrite: ReturnType<typeof envelopeWrites> }> {
  const dir = tempDir();
  const path = join(dir.path, 'hotline.sqlite');
  const store = new SqliteStore(path);
  onCleanup(async () => {
    await store.close();
    dir.remove();
  });
  const dep = await createDeployment();
  return { store, dir: dir.path, path, dep, envelopeWrite: envelopeWrites(dep) };
}
