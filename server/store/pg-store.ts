import pg from 'pg';
import { HotlineError } from '../../shared/errors.js';
import type { NodeRef } from '../../shared/audit/merkle.js';
import { checkReplay } from '../../shared/crypto/envelope.js';
import type { DeviceCertificate, Envelope, EnvelopeHeader, Revocation, SignedPrekey } from '../../shared/protocol/schemas.js';
import {
  deviceKey,
  type AuditEntry,
  type DeadlineRecord,
  type DeviceKey,
  type EnvelopeWrite,
  type EventsWrite,
  type LinkPairRecord,
  type LinkStatus,
  type MailboxItem,
  type MailboxPosition,
  type PendingTest,
  type ReceiptWrite,
  type RefusalWrite,
  type StoredRefusal,
  type SideEffects,
  type StoredMessage,
  type Write,
  type WriteResult,
} from '../relay/records.js';
import { ESCALATION_CURSOR_KEY, escalationFromRow, settledColumns, type ClaimedEscalation, type EscalationRow, type EscalationSettled, type RelayMark, type RelayOutgoing, type ClusterListenHandlers, type DirectoryRowKey, type Store, type StoredCheckpoint, type StoredCosignature, type StoredEnvelope, type StoredEventRow } from './store.js';
import { AuditAppender, PgAuditTree, type Queryable } from './pg-audit-tree.js';
import { deadlineFromRow, type DeadlineRow } from './sqlite-store.js';

/**
 * Schema migrations of the PostgreSQL adapter, applied in order at start; the table
 * `schema_migrations` records each one applied (version, time). Migration 1 is the whole schema of
 * the SQLite adapter as it stood when this adapter came (its migrations 1–6), in PostgreSQL types.
 * Differences that are not just types: a mailbox row names its envelope (`envelope_id`) or its
 * receipt/event (`ref_id`) in two typed columns instead of one text column, and `envelopes.pos`
 * stands for SQLite's rowid (acceptance order, for the relay-to-relay link).
 */
export const PG_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE devices (
    party TEXT NOT NULL, device TEXT NOT NULL, sign_key TEXT NOT NULL, role TEXT NOT NULL,
    not_before BIGINT NOT NULL, not_after BIGINT NOT NULL, certificate TEXT NOT NULL, enrolled_at BIGINT NOT NULL,
    PRIMARY KEY (party, device, sign_key)
  );
  CREATE TABLE revocations (
    party TEXT NOT NULL, device TEXT NOT NULL, sign_key TEXT NOT NULL, revocation TEXT NOT NULL, stored_at BIGINT NOT NULL,
    PRIMARY KEY (party, device, sign_key)
  );
  CREATE TABLE envelopes (
    pos BIGSERIAL NOT NULL UNIQUE,
    id TEXT PRIMARY KEY, hash TEXT NOT NULL, from_party TEXT NOT NULL, from_device TEXT NOT NULL, to_party TEXT NOT NULL,
    precedence TEXT NOT NULL, seq BIGINT NOT NULL, header TEXT NOT NULL, envelope TEXT NOT NULL, accepted_at BIGINT NOT NULL
  );
  CREATE UNIQUE INDEX envelopes_by_sender_seq ON envelopes (from_party, from_device, seq);
  CREATE TABLE device_seq (device TEXT PRIMARY KEY, last_seq BIGINT NOT NULL);
  CREATE TABLE receipts (
    id BIGSERIAL PRIMARY KEY, message_id TEXT NOT NULL, kind TEXT NOT NULL, by_party TEXT NOT NULL, by_device TEXT NOT NULL,
    receipt TEXT NOT NULL, at BIGINT NOT NULL, accepted_at BIGINT NOT NULL,
    UNIQUE (message_id, kind, by_party, by_device)
  );
  CREATE TABLE events (id BIGSERIAL PRIMARY KEY, type TEXT NOT NULL, event TEXT NOT NULL, at BIGINT NOT NULL);
  CREATE TABLE mailbox (
    cursor BIGSERIAL PRIMARY KEY, device TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('envelope', 'receipt', 'event')),
    envelope_id TEXT, ref_id BIGINT,
    acked SMALLINT NOT NULL DEFAULT 0, rank SMALLINT NOT NULL DEFAULT 0,
    CHECK ((kind = 'envelope') = (envelope_id IS NOT NULL) AND (kind <> 'envelope') = (ref_id IS NOT NULL))
  );
  CREATE INDEX mailbox_by_device ON mailbox (device, acked, rank, cursor);
  CREATE TABLE deadlines (
    message_id TEXT NOT NULL, rung TEXT NOT NULL CHECK (rung IN ('delivered', 'acknowledged')),
    from_party TEXT NOT NULL, to_party TEXT NOT NULL, precedence TEXT NOT NULL,
    accepted_at BIGINT NOT NULL, due_at BIGINT NOT NULL, level INTEGER NOT NULL, next_at BIGINT NOT NULL,
    closed_at BIGINT, late SMALLINT,
    PRIMARY KEY (message_id, rung)
  );
  CREATE INDEX deadlines_open ON deadlines (closed_at, next_at);
  CREATE TABLE link_pairs (
    from_party TEXT NOT NULL, to_party TEXT NOT NULL, status TEXT NOT NULL, since BIGINT, last TEXT,
    PRIMARY KEY (from_party, to_party)
  );
  CREATE TABLE link_tests (
    message_id TEXT PRIMARY KEY, from_party TEXT NOT NULL, to_party TEXT NOT NULL,
    sent_at BIGINT NOT NULL, due_at BIGINT NOT NULL, done SMALLINT NOT NULL DEFAULT 0
  );
  CREATE TABLE audit_entries (idx BIGINT PRIMARY KEY CHECK (idx >= 0), entry TEXT NOT NULL, leaf_hash BYTEA NOT NULL);
  CREATE TABLE audit_nodes (
    level INTEGER NOT NULL CHECK (level >= 1), idx BIGINT NOT NULL CHECK (idx >= 0), hash BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
  );
  CREATE TABLE checkpoints (size BIGINT PRIMARY KEY CHECK (size >= 0), root_hash TEXT NOT NULL, note TEXT NOT NULL, created_at BIGINT NOT NULL);
  CREATE TABLE cosignatures (
    size BIGINT NOT NULL, cosigner TEXT NOT NULL, signature TEXT NOT NULL, at BIGINT NOT NULL,
    PRIMARY KEY (size, cosigner)
  );
  CREATE TABLE relay_sent (
    kind TEXT NOT NULL CHECK (kind IN ('envelope', 'receipt')), ref TEXT NOT NULL, peer TEXT NOT NULL, at BIGINT NOT NULL,
    PRIMARY KEY (kind, ref, peer)
  );
  `,
  // 2: refusals, a device's signed statement that it could not accept a message delivered to it
  // (PROTOCOL.md "Refusals"). One per (message, device); they close deadlines, not mailboxes.
  `
  CREATE TABLE refusals (
    message_id TEXT NOT NULL, by_party TEXT NOT NULL, by_device TEXT NOT NULL, code TEXT NOT NULL,
    refusal TEXT NOT NULL, accepted_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, by_party, by_device)
  );
  `,
  // 3 (h13-fwd): refusals cross the relay-to-relay link too (PROTOCOL.md "Refusals"): a peer
  // relay's confirmation is recorded under kind 'refusal' (ref `messageId/party/device`), and a
  // refusal's forward position is its own sequence number.
  `
  ALTER TABLE relay_sent DROP CONSTRAINT relay_sent_kind_check;
  ALTER TABLE relay_sent ADD CONSTRAINT relay_sent_kind_check CHECK (kind IN ('envelope', 'receipt', 'refusal'));
  ALTER TABLE refusals ADD COLUMN pos BIGSERIAL;
  CREATE UNIQUE INDEX refusals_by_pos ON refusals (pos);
  `,
  // 4 (h15-ladder): the ladder's later rungs get deadlines of their own where the agreement sets them
  // (PROTOCOL.md "Deadlines"): the rung CHECK widens.
  `
  ALTER TABLE deadlines DROP CONSTRAINT IF EXISTS deadlines_rung_check;
  ALTER TABLE deadlines ADD CONSTRAINT deadlines_rung_check CHECK (rung IN ('delivered', 'acknowledged', 'answered', 'complied'));
  `,
  // h15-esc: escalation beyond the console (docs/escalation.md): one row per (hook, event) to
  // notify, kept until answered or given up; meta `escalation_cursor` is how far the events table
  // has been read. Claimed with SKIP LOCKED and a lease, so one node sends each notification.
  `
  CREATE TABLE escalations (
    hook TEXT NOT NULL, event_id BIGINT NOT NULL, event TEXT NOT NULL, created_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_at BIGINT NOT NULL, done_at BIGINT, outcome TEXT,
    PRIMARY KEY (hook, event_id)
  );
  CREATE INDEX escalations_due ON escalations (next_at) WHERE done_at IS NULL;
  `,
  // h15-fs: devices' signed prekeys (PROTOCOL.md "Prekeys and forward secrecy"), one row per box key.
  `
  CREATE TABLE prekeys (
    party TEXT NOT NULL, device TEXT NOT NULL, box_key TEXT NOT NULL,
    not_before BIGINT NOT NULL, not_after BIGINT NOT NULL, prekey TEXT NOT NULL, stored_at BIGINT NOT NULL,
    PRIMARY KEY (party, device, box_key)
  );
  `,
];

/**
 * Advisory-lock keys, namespaced by the schema (several relays, or parallel tests, may share one
 * database in separate schemas). `hashtext` gives an int4; the second key separates the purposes.
 */
const LOCK_MIGRATE = 1;
const LOCK_AUDIT = 2;
/** Firing due deadlines and link tests: one node at a time (README "Running on PostgreSQL"). */
const LOCK_FIRE = 4;
/** Signing a periodic checkpoint: one node at a time. */
const LOCK_CHECKPOINT = 5;
/** The NOTIFY channel of new mailbox items is this prefix and the schema's name. */
const MAILBOX_CHANNEL_PREFIX = 'hotline_mailbox_';
/**
 * The NOTIFY channel of stored certificates and revocations (this prefix and the schema's name):
 * the payload is the row's key as JSON (DirectoryRowKey), the node reads the row itself.
 */
const DIRECTORY_CHANNEL_PREFIX = 'hotline_directory_';
const lockSql = (purpose: number) => `SELECT pg_advisory_xact_lock(hashtext(current_schema()), ${purpose})`;

const MAILBOX_SELECT = `SELECT m.cursor, m.rank, m.kind,
         COALESCE(e.envelope, r.receipt, ev.event) AS json,
         COALESCE(e.accepted_at, r.accepted_at, ev.at) AS accepted_at
    FROM mailbox m
    LEFT JOIN envelopes e ON m.kind = 'envelope' AND e.id = m.envelope_id
    LEFT JOIN receipts r ON m.kind = 'receipt' AND r.id = m.ref_id
    LEFT JOIN events ev ON m.kind = 'event' AND ev.id = m.ref_id`;

interface MailboxRow {
  cursor: number;
  rank: number;
  kind: 'envelope' | 'receipt' | 'event';
  json: string;
  accepted_at: number;
}

interface CheckpointRow {
  size: number;
  root_hash: string;
  note: string;
  created_at: number;
}

function toCheckpoint(r: CheckpointRow): StoredCheckpoint {
  return { size: r.size, rootHash: r.root_hash, note: r.note, createdAt: r.created_at };
}


interface PairRow {
  from_party: string;
  to_party: string;
  status: LinkStatus;
  since: number | null;
  last: string | null;
}

function toPair(r: PairRow): LinkPairRecord {
  return {
    from: r.from_party,
    to: r.to_party,
    status: r.status,
    ...(r.since === null ? {} : { since: r.since }),
    ...(r.last === null ? {} : { last: JSON.parse(r.last) as LinkPairRecord['last'] & object }),
  };
}

/**
 * int8 (BIGINT, BIGSERIAL, COUNT, MAX) as a JS number: every value this store keeps (cursors,
 * indexes, milliseconds) is far below 2^53. Per pool, so that nothing else in the process changes.
 */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format ?? 'text')) as typeof pg.types.getTypeParser,
};

function storeFailed(cause: unknown): HotlineError {
  return new HotlineError('HL_ERR_STORE_FAILED', 'the store could not complete the write', { cause });
}

export interface PgStoreOptions {
  /**
   * Use this schema (created if missing) instead of the role's default one: several relays, or
   * parallel test suites, on one database each in its own schema.
   */
  schema?: string;
  /** Connections in the pool (default 10). */
  maxConnections?: number;
  /** How long a query waits for a connection before failing (default 10 000 ms). */
  connectTimeoutMs?: number;
  /**
   * How often the LISTEN connection is asked a trivial query, and how long it has to answer
   * (default 15 000 ms): see {@link MailboxListener}.
   */
  listenProbeMs?: number;
}

/**
 * A schema name this adapter accepts: it goes into SQL as an identifier, and into the NOTIFY
 * channel names (`hotline_directory_<schema>`), which PostgreSQL cuts at 63 bytes: at most 45
 * characters, so that no two schemas share a channel and no notification fails.
 */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,44}$/;

/**
 * The PostgreSQL adapter (node-postgres), chosen by `HOTLINE_DATABASE_URL=postgres://…`.
 * `synchronous_commit = on` on every connection: a commit returns only once its WAL is flushed, so
 * (as with SQLite's `synchronous=FULL`) nothing is "accepted" that a crash could lose. Group commit
 * is the WriteQueue's, as with SQLite: one transaction per batch.
 *
 * Open with `PgStore.open(url)`: the migrations run before the store is returned.
 */
export class PgStore implements Store {
  private readonly tree = new PgAuditTree();
  /** Devices given new mailbox rows in each open transaction: told to every node at its commit (NOTIFY). */
  private readonly touched = new WeakMap<pg.PoolClient, Set<DeviceKey>>();

  private constructor(
    private readonly pool: pg.Pool,
    private readonly clientConfig: pg.ClientConfig,
    private readonly listenProbeMs: number,
  ) {}

  static async open(url: string, options: PgStoreOptions = {}): Promise<PgStore> {
    const schema = options.schema;
    if (schema !== undefined && !SCHEMA_NAME.test(schema)) {
      throw new HotlineError('HL_ERR_CONFIG_INVALID', `the PostgreSQL schema name "${schema}" is not a plain lower-case identifier of at most 45 characters`);
    }
    const clientConfig: pg.ClientConfig = {
      connectionString: url,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
      types: TYPES,
      // Durable before "accepted", whatever the server's default; the schema, when given, first on the path.
      options: `-c synchronous_commit=on${schema ? ` -c search_path=${schema}` : ''}`,
    };
    const pool = new pg.Pool({ ...clientConfig, max: options.maxConnections ?? 10 });
    // An idle connection that the server drops (restart, fail-over) must not crash the process:
    // the pool discards it and the next query opens a new one.
    pool.on('error', () => {});
    const store = new PgStore(pool, clientConfig, options.listenProbeMs ?? LISTEN_PROBE_MS);
    try {
      if (schema) await pool.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
      await store.migrate();
    } catch (err) {
      await pool.end();
      throw err;
    }
    return store;
  }

  /** Apply pending migrations, each in its own transaction, under an advisory lock (nodes may start together). */
  private async migrate(): Promise<void> {
    await this.tx(async (c) => {
      await c.query(lockSql(LOCK_MIGRATE));
      await c.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())');
    });
    for (;;) {
      const applied = await this.tx(async (c) => {
        await c.query(lockSql(LOCK_MIGRATE));
        const current = (await c.query<{ v: number | null }>('SELECT MAX(version) AS v FROM schema_migrations')).rows[0]?.v ?? 0;
        if (current > PG_MIGRATIONS.length) {
          throw new HotlineError('HL_ERR_CONFIG_INVALID', `the database's schema is at version ${current}, newer than this relay knows (${PG_MIGRATIONS.length}): upgrade the relay`);
        }
        if (current === PG_MIGRATIONS.length) return false;
        await c.query(PG_MIGRATIONS[current]!);
        await c.query('INSERT INTO schema_migrations (version) VALUES ($1)', [current + 1]);
        return true;
      });
      if (!applied) return;
    }
  }

  /** The schema version (number of migrations applied). */
  async schemaVersion(): Promise<number> {
    return (await this.pool.query<{ v: number | null }>('SELECT MAX(version) AS v FROM schema_migrations')).rows[0]?.v ?? 0;
  }

  /** Run `fn` in one transaction on one connection; rolled back if it throws. */
  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    let broken: unknown;
    // The pool listens for errors of idle connections only: a checked-out one whose server ends
    // (PostgreSQL stopped or restarted mid-transaction, 57P01) emits 'error' on the client, which
    // unheard would be an uncaught exception that takes the node down. The failed query says it.
    const onError = (err: Error) => {
      broken = err;
    };
    c.on('error', onError);
    const touched = new Set<DeviceKey>();
    this.touched.set(c, touched);
    try {
      await c.query('BEGIN');
      const result = await fn(c);
      // One notification per device given new items, delivered to the listening nodes at the commit
      // (and dropped with a rollback): it names the mailbox only, the node then reads it by cursor.
      if (touched.size > 0) await c.query(`SELECT pg_notify('${MAILBOX_CHANNEL_PREFIX}' || current_schema(), d) FROM unnest($1::text[]) AS d`, [[...touched]]);
      await c.query('COMMIT');
      return result;
    } catch (err) {
      try {
        await c.query('ROLLBACK');
      } catch (rollbackError) {
        broken = rollbackError;
      }
      throw err;
    } finally {
      this.touched.delete(c);
      c.off('error', onError);
      // A connection that failed mid-transaction is not put back for reuse.
      c.release(broken instanceof Error ? broken : undefined);
    }
  }

  /**
   * One transaction that may append audit entries: `fn` appends through the AuditAppender, which
   * takes the audit lock at the first append; the entries are written before the commit.
   */
  private async txAudit<T>(fn: (c: pg.PoolClient, audit: AuditAppender) => Promise<T>): Promise<T> {
    return this.tx(async (c) => {
      const audit = new AuditAppender(c, this.tree, lockSql(LOCK_AUDIT));
      const result = await fn(c, audit);
      await audit.flush();
      return result;
    });
  }

  /** Mailbox rows for `devices`, one statement; the cursors in the order of `devices`. */
  private async insertMailboxes(c: pg.PoolClient, devices: readonly DeviceKey[], kind: MailboxItem['kind'], ref: string | number, rank: number): Promise<number[]> {
    if (devices.length === 0) return [];
    const { rows } = await c.query<{ cursor: number; device: string }>(
      `INSERT INTO mailbox (device, kind, envelope_id, ref_id, rank)
       SELECT d, $2, $3, $4, $5 FROM unnest($1::text[]) WITH ORDINALITY AS t(d, n) ORDER BY n
       RETURNING cursor, device`,
      [devices, kind, kind === 'envelope' ? ref : null, kind === 'envelope' ? null : ref, rank],
    );
    for (const d of devices) this.touched.get(c)?.add(d);
    // A write names each device once (its mailboxes), so the device finds its row.
    const byDevice = new Map(rows.map((r) => [r.device, r.cursor]));
    return devices.map((d) => byDevice.get(d)!);
  }

  private async applySideEffects(c: pg.PoolClient, side: SideEffects | undefined, audit: AuditAppender): Promise<{ device: DeviceKey; item: MailboxItem }[]> {
    if (!side) return [];
    // One row per (message, rung), the last given winning, as upserts one after another would leave it.
    const deadlines = [...new Map((side.deadlines ?? []).map((r) => [`${r.messageId}/${r.rung}`, r])).values()];
    if (deadlines.length > 0) {
      // All of a write's deadline rows in one statement (an envelope opens two rungs).
      await c.query(
        `INSERT INTO deadlines (message_id, rung, from_party, to_party, precedence, accepted_at, due_at, level, next_at, closed_at, late)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::int[], $9::bigint[], $10::bigint[], $11::smallint[])
         ON CONFLICT (message_id, rung) DO UPDATE SET level = excluded.level, next_at = excluded.next_at,
           closed_at = excluded.closed_at, late = excluded.late
         WHERE deadlines.closed_at IS NULL`,
        [
          deadlines.map((r) => r.messageId),
          deadlines.map((r) => r.rung),
          deadlines.map((r) => r.from),
          deadlines.map((r) => r.to),
          deadlines.map((r) => r.precedence),
          deadlines.map((r) => r.acceptedAt),
          deadlines.map((r) => r.dueAt),
          deadlines.map((r) => r.level),
          deadlines.map((r) => r.nextAt),
          deadlines.map((r) => r.closedAt ?? null),
          deadlines.map((r) => (r.late === undefined ? null : r.late ? 1 : 0)),
        ],
      );
    }
    for (const p of side.linkPairs ?? []) {
      await c.query(
        `INSERT INTO link_pairs (from_party, to_party, status, since, last) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (from_party, to_party) DO UPDATE SET status = excluded.status, since = excluded.since, last = excluded.last`,
        [p.from, p.to, p.status, p.since ?? null, p.last ? JSON.stringify(p.last) : null],
      );
    }
    for (const { test, done } of side.linkTests ?? []) {
      await c.query(
        `INSERT INTO link_tests (message_id, from_party, to_party, sent_at, due_at, done) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (message_id) DO UPDATE SET done = excluded.done WHERE link_tests.done = 0`,
        [test.messageId, test.from, test.to, test.sentAt, test.dueAt, done ? 1 : 0],
      );
    }
    const delivered: { device: DeviceKey; item: MailboxItem }[] = [];
    for (const { event, rank, mailboxes } of side.events ?? []) {
      const json = JSON.stringify(event);
      const id = (await c.query<{ id: number }>('INSERT INTO events (type, event, at) VALUES ($1, $2, $3) RETURNING id', [event.type, json, event.at])).rows[0]!.id;
      const cursors = await this.insertMailboxes(c, mailboxes, 'event', id, rank);
      mailboxes.forEach((device, k) => delivered.push({ device, item: { cursor: cursors[k]!, rank, kind: 'event', json, acceptedAt: event.at } }));
      await audit.append(event as AuditEntry);
    }
    for (const entry of side.audit ?? []) await audit.append(entry);
    return delivered;
  }

  async loadDeadlines(): Promise<DeadlineRecord[]> {
    const { rows } = await this.pool.query<DeadlineRow>('SELECT * FROM deadlines WHERE closed_at IS NULL ORDER BY next_at, message_id, rung');
    return rows.map(deadlineFromRow);
  }

  async loadLinkTests(): Promise<{ pairs: LinkPairRecord[]; pending: PendingTest[] }> {
    const pairs = (await this.pool.query<PairRow>('SELECT * FROM link_pairs ORDER BY from_party, to_party')).rows.map(toPair);
    const testRows = (
      await this.pool.query<{ message_id: string; from_party: string; to_party: string; sent_at: number; due_at: number }>('SELECT * FROM link_tests WHERE done = 0 ORDER BY due_at')
    ).rows;
    const pending = testRows.map((r): PendingTest => ({ messageId: r.message_id, from: r.from_party, to: r.to_party, sentAt: r.sent_at, dueAt: r.due_at }));
    return { pairs, pending };
  }

  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }

  async putDevice(certificate: DeviceCertificate, at: number, audit: AuditEntry): Promise<boolean> {
    const c = certificate.cert;
    return this.txAudit(async (client, log) => {
      const r = await client.query(
        `INSERT INTO devices (party, device, sign_key, role, not_before, not_after, certificate, enrolled_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
        [c.party, c.device, c.signKey, c.role, c.notBefore, c.notAfter, JSON.stringify(certificate), at],
      );
      if (r.rowCount === 0) return false;
      await log.append(audit);
      await notifyDirectory(client, { kind: 'device', party: c.party, device: c.device, signKey: c.signKey });
      return true;
    });
  }

  async putRevocation(revocation: Revocation, at: number, audit: AuditEntry): Promise<boolean> {
    const r = revocation.revocation;
    return this.txAudit(async (client, log) => {
      const res = await client.query('INSERT INTO revocations (party, device, sign_key, revocation, stored_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING', [
        r.party,
        r.device,
        r.signKey,
        JSON.stringify(revocation),
        at,
      ]);
      if (res.rowCount === 0) return false;
      await log.append(audit);
      await notifyDirectory(client, { kind: 'revocation', party: r.party, device: r.device, signKey: r.signKey });
      return true;
    });
  }

  async listDevices(): Promise<DeviceCertificate[]> {
    const { rows } = await this.pool.query<{ certificate: string }>('SELECT certificate FROM devices ORDER BY party, device, not_before');
    return rows.map((r) => JSON.parse(r.certificate) as DeviceCertificate);
  }

  async putPrekey(signed: SignedPrekey, at: number): Promise<boolean> {
    const p = signed.prekey;
    const r = await this.pool.query(
      `INSERT INTO prekeys (party, device, box_key, not_before, not_after, prekey, stored_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
      [p.party, p.device, p.boxKey, p.notBefore, p.notAfter, JSON.stringify(signed), at],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async listPrekeys(now: number): Promise<SignedPrekey[]> {
    const { rows } = await this.pool.query<{ prekey: string }>('SELECT prekey FROM prekeys WHERE not_after > $1 ORDER BY party, device, not_before', [now]);
    return rows.map((r) => JSON.parse(r.prekey) as SignedPrekey);
  }

  /** The stored certificate or revocation a directory notification names (several nodes: docs/postgresql.md). */
  async directoryRow(key: DirectoryRowKey): Promise<DeviceCertificate | Revocation | undefined> {
    const sql =
      key.kind === 'device'
        ? 'SELECT certificate AS json FROM devices WHERE party = $1 AND device = $2 AND sign_key = $3'
        : 'SELECT revocation AS json FROM revocations WHERE party = $1 AND device = $2 AND sign_key = $3';
    const row = (await this.pool.query<{ json: string }>(sql, [key.party, key.device, key.signKey])).rows[0];
    return row ? (JSON.parse(row.json) as DeviceCertificate | Revocation) : undefined;
  }

  async listRevocations(): Promise<Revocation[]> {
    const { rows } = await this.pool.query<{ revocation: string }>('SELECT revocation FROM revocations ORDER BY stored_at, party, device');
    return rows.map((r) => JSON.parse(r.revocation) as Revocation);
  }

  async getEnvelope(id: string): Promise<StoredEnvelope | undefined> {
    const row = (await this.pool.query<{ envelope: string; hash: string; accepted_at: number }>('SELECT envelope, hash, accepted_at FROM envelopes WHERE id = $1', [id])).rows[0];
    if (!row) return undefined;
    return { envelope: JSON.parse(row.envelope) as Envelope, envelopeHash: row.hash, acceptedAt: row.accepted_at };
  }

  async getMessage(id: string): Promise<StoredMessage | undefined> {
    const row = (await this.pool.query<{ header: string; hash: string }>('SELECT header, hash FROM envelopes WHERE id = $1', [id])).rows[0];
    return row ? { header: JSON.parse(row.header) as EnvelopeHeader, envelopeHash: row.hash } : undefined;
  }

  private async writeEnvelope(c: pg.PoolClient, w: EnvelopeWrite, audit: AuditAppender): Promise<WriteResult> {
    const h = w.envelope.header;
    // What the replay check needs, read in one round trip inside the transaction (so that earlier
    // writes of the batch count): the stored hash and time of this id, the device's highest seq,
    // and whether this seq is used.
    const known = (
      await c.query<{ hash: string | null; accepted_at: number | null; last_seq: number | null; used: boolean }>(
        `SELECT (SELECT hash FROM envelopes WHERE id = $1) AS hash,
                (SELECT accepted_at FROM envelopes WHERE id = $1) AS accepted_at,
                (SELECT last_seq FROM device_seq WHERE device = $2) AS last_seq,
                EXISTS (SELECT 1 FROM envelopes WHERE from_party = $3 AND from_device = $4 AND seq = $5) AS used`,
        [h.id, deviceKey(h.from), h.from.party, h.from.device, h.seq],
      )
    ).rows[0]!;
    const guard = {
      lastSeq: () => known.last_seq ?? 0,
      seqUsed: (_party: string, _device: string, seq: number) => {
        if (seq !== h.seq) throw new Error(`replay guard asked about seq ${seq}, read for ${h.seq}`);
        return known.used;
      },
      hashOf: () => known.hash ?? undefined,
    };
    // Checked again here, inside the transaction: two envelopes may have passed the relay's checks
    // concurrently (on this node or another), and only the first of a (device, seq) or id may win;
    // the unique indexes settle a race between nodes (the batch then fails and is retried write by write).
    if (checkReplay(h, guard, w.envelopeHash) === 'duplicate') {
      return { ok: true, status: 'duplicate', acceptedAt: known.accepted_at! };
    }
    const json = JSON.stringify(w.envelope);
    // The envelope, its sender's seq and its mailbox rows in one statement (one round trip).
    const { rows } = await c.query<{ cursor: number; device: string }>(
      `WITH e AS (
         INSERT INTO envelopes (id, hash, from_party, from_device, to_party, precedence, seq, header, envelope, accepted_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)),
       s AS (
         INSERT INTO device_seq (device, last_seq) VALUES ($11, $7)
         ON CONFLICT (device) DO UPDATE SET last_seq = GREATEST(device_seq.last_seq, excluded.last_seq))
       INSERT INTO mailbox (device, kind, envelope_id, rank)
       SELECT d, 'envelope', $1, $12 FROM unnest($13::text[]) WITH ORDINALITY AS t(d, n) ORDER BY n
       RETURNING cursor, device`,
      [h.id, w.envelopeHash, h.from.party, h.from.device, h.to, h.precedence, h.seq, JSON.stringify(h), json, w.acceptedAt, deviceKey(h.from), w.rank, w.mailboxes],
    );
    for (const d of w.mailboxes) this.touched.get(c)?.add(d);
    // A write names each device once (its mailboxes), so the device finds its row.
    const cursorOf = new Map(rows.map((r) => [r.device, r.cursor]));
    const delivered = w.mailboxes.map((device) => ({ device, item: { cursor: cursorOf.get(device)!, rank: w.rank, kind: 'envelope' as const, json, acceptedAt: w.acceptedAt } }));
    await audit.append(w.audit);
    const followers = await this.applySideEffects(c, w.effects, audit);
    return { ok: true, status: 'new', acceptedAt: w.acceptedAt, delivered: [...delivered, ...followers] };
  }

  private async writeReceipt(c: pg.PoolClient, w: ReceiptWrite, audit: AuditAppender): Promise<WriteResult> {
    const r = w.receipt.receipt;
    const existing = (
      await c.query<{ accepted_at: number }>('SELECT accepted_at FROM receipts WHERE message_id = $1 AND kind = $2 AND by_party = $3 AND by_device = $4', [
        r.messageId,
        r.kind,
        r.by.party,
        r.by.device,
      ])
    ).rows[0];
    if (existing) return { ok: true, status: 'duplicate', acceptedAt: existing.accepted_at };
    const json = JSON.stringify(w.receipt);
    const id = (
      await c.query<{ id: number }>(
        'INSERT INTO receipts (message_id, kind, by_party, by_device, receipt, at, accepted_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id',
        [r.messageId, r.kind, r.by.party, r.by.device, json, r.at, w.acceptedAt],
      )
    ).rows[0]!.id;
    const cursors = await this.insertMailboxes(c, w.mailboxes, 'receipt', id, w.rank);
    const delivered = w.mailboxes.map((device, k) => ({ device, item: { cursor: cursors[k]!, rank: w.rank, kind: 'receipt' as const, json, acceptedAt: w.acceptedAt } }));
    await audit.append(w.audit);
    const followers = await this.applySideEffects(c, w.effects, audit);
    return { ok: true, status: 'new', acceptedAt: w.acceptedAt, delivered: [...delivered, ...followers] };
  }

  private async writeRefusal(c: pg.PoolClient, w: RefusalWrite, audit: AuditAppender): Promise<WriteResult> {
    const r = w.refusal.refusal;
    const json = JSON.stringify(w.refusal);
    const existing = (
      await c.query<{ refusal: string; accepted_at: number }>('SELECT refusal, accepted_at FROM refusals WHERE message_id = $1 AND by_party = $2 AND by_device = $3', [
        r.messageId,
        r.by.party,
        r.by.device,
      ])
    ).rows[0];
    if (existing) {
      // As the SQLite adapter: the same refusal again is answered again; another one is a conflict.
      if (existing.refusal === json) return { ok: true, status: 'duplicate', acceptedAt: Number(existing.accepted_at) };
      throw new HotlineError('HL_ERR_REFUSAL_CONFLICT', `${r.by.party}/${r.by.device} has already refused ${r.messageId} with another refusal`);
    }
    const signed = await c.query('SELECT 1 FROM receipts WHERE message_id = $1 AND by_party = $2 AND by_device = $3 LIMIT 1', [r.messageId, r.by.party, r.by.device]);
    if ((signed.rowCount ?? 0) > 0) {
      throw new HotlineError('HL_ERR_REFUSAL_CONFLICT', `${r.by.party}/${r.by.device} has already signed a receipt for ${r.messageId}: it cannot refuse it now`);
    }
    await c.query('INSERT INTO refusals (message_id, by_party, by_device, code, refusal, accepted_at) VALUES ($1, $2, $3, $4, $5, $6)', [
      r.messageId,
      r.by.party,
      r.by.device,
      r.code,
      json,
      w.acceptedAt,
    ]);
    await audit.append(w.audit);
    const followers = await this.applySideEffects(c, w.effects, audit);
    return { ok: true, status: 'new', acceptedAt: w.acceptedAt, delivered: followers };
  }

  async refusalsOf(messageId: string): Promise<StoredRefusal[]> {
    const { rows } = await this.pool.query<{ by_party: string; by_device: string; code: string; accepted_at: number }>(
      'SELECT by_party, by_device, code, accepted_at FROM refusals WHERE message_id = $1 ORDER BY accepted_at, by_party, by_device',
      [messageId],
    );
    return rows.map((r) => ({ party: r.by_party, device: r.by_device, code: r.code, acceptedAt: Number(r.accepted_at) }));
  }

  async commit(writes: readonly Write[]): Promise<WriteResult[]> {
    // As the SQLite adapter: one transaction (one WAL flush) for the batch; each write checks
    // everything that could refuse it before its first statement, so a refused write has touched
    // nothing. Anything else failing part-way rolls the batch back, and each write is retried in
    // its own transaction so that one bad write fails alone.
    try {
      return await this.txAudit((c, audit) => this.writeBatch(c, writes, audit));
    } catch {
      const results: WriteResult[] = [];
      for (const w of writes) {
        try {
          results.push((await this.txAudit((c, audit) => this.writeBatch(c, [w], audit)))[0]!);
        } catch (error) {
          results.push({ ok: false, error: storeFailed(error) });
        }
      }
      return results;
    }
  }

  private async writeBatch(c: pg.PoolClient, writes: readonly Write[], audit: AuditAppender): Promise<WriteResult[]> {
    const acks: [number, DeviceKey][] = [];
    const results: WriteResult[] = [];
    for (const w of writes) {
      if (w.kind === 'ack') {
        for (const cursor of w.cursors) acks.push([cursor, w.device]);
        results.push({ ok: true, status: 'new', acceptedAt: w.acceptedAt, delivered: [] });
        continue;
      }
      try {
        results.push(
          w.kind === 'envelope'
            ? await this.writeEnvelope(c, w, audit)
            : w.kind === 'receipt'
              ? await this.writeReceipt(c, w, audit)
              : w.kind === 'refusal'
                ? await this.writeRefusal(c, w, audit)
                : { ok: true, status: 'new', acceptedAt: w.acceptedAt, delivered: await this.applySideEffects(c, w, audit) },
        );
      } catch (error) {
        // Refusals are thrown before anything is written; anything else aborts the batch (above).
        if (error instanceof HotlineError && error.code !== 'HL_ERR_STORE_FAILED') {
          results.push({ ok: false, error });
          continue;
        }
        throw error;
      }
    }
    if (acks.length > 0) await this.ackIn(c, acks);
    return results;
  }

  /** All acks of a batch in one statement. Cursors are unique across devices; the device check keeps a device from acknowledging another's items. */
  private async ackIn(q: Queryable, acks: readonly [number, DeviceKey][]): Promise<void> {
    await q.query(
      `UPDATE mailbox SET acked = 1 FROM unnest($1::bigint[], $2::text[]) AS a(c, d)
        WHERE mailbox.cursor = a.c AND mailbox.device = a.d AND mailbox.acked = 0`,
      [acks.map((a) => a[0]), acks.map((a) => a[1])],
    );
  }

  async mailbox(device: DeviceKey, options: { after?: MailboxPosition; upTo: number; limit: number }): Promise<MailboxItem[]> {
    const { after, upTo, limit } = options;
    // Keyset paging on (device, acked, rank, cursor): PostgreSQL seeks a row-value comparison on the whole key.
    const { rows } = await this.pool.query<MailboxRow>(
      `${MAILBOX_SELECT} WHERE m.device = $1 AND m.acked = 0 AND (m.rank, m.cursor) > ($2, $3) AND m.cursor <= $4 ORDER BY m.rank, m.cursor LIMIT $5`,
      [device, after?.rank ?? -1, after?.cursor ?? 0, upTo, limit],
    );
    return rows.map((row): MailboxItem => ({ cursor: row.cursor, rank: row.rank, kind: row.kind, json: row.json, acceptedAt: row.accepted_at }));
  }

  async maxCursor(): Promise<number> {
    return (await this.pool.query<{ c: number | null }>('SELECT MAX(cursor) AS c FROM mailbox')).rows[0]?.c ?? 0;
  }

  async ack(device: DeviceKey, cursors: readonly number[]): Promise<number> {
    await this.ackIn(this.pool, cursors.map((c) => [c, device]));
    return this.ackedCursor(device);
  }

  async lastSeq(device: DeviceKey): Promise<number> {
    return (await this.pool.query<{ last_seq: number }>('SELECT last_seq FROM device_seq WHERE device = $1', [device])).rows[0]?.last_seq ?? 0;
  }

  async ackedCursor(device: DeviceKey): Promise<number> {
    // One index probe per rank (there are four), not a scan of the device's history.
    const { rows } = await this.pool.query<{ c: number | null }>(
      `SELECT GREATEST(
         (SELECT MAX(cursor) FROM mailbox WHERE device = $1 AND acked = 1 AND rank = 0),
         (SELECT MAX(cursor) FROM mailbox WHERE device = $1 AND acked = 1 AND rank = 1),
         (SELECT MAX(cursor) FROM mailbox WHERE device = $1 AND acked = 1 AND rank = 2),
         (SELECT MAX(cursor) FROM mailbox WHERE device = $1 AND acked = 1 AND rank = 3)) AS c`,
      [device],
    );
    return rows[0]?.c ?? 0;
  }

  async appendAudit(entry: AuditEntry): Promise<number> {
    return this.txAudit((_c, audit) => audit.append(entry));
  }

  /** Append many entries in one transaction: for building large test and bench logs. */
  async appendAuditMany(entries: Iterable<AuditEntry>): Promise<number> {
    return this.txAudit(async (_c, audit) => {
      let n = 0;
      for (const e of entries) {
        await audit.append(e);
        n++;
      }
      return n;
    });
  }

  async auditSize(): Promise<number> {
    return this.tree.size(this.pool);
  }

  async auditEntries(from: number, to: number): Promise<{ idx: number; entry: string; leafHash: Uint8Array }[]> {
    const { rows } = await this.pool.query<{ idx: number; entry: string; leaf_hash: Buffer }>('SELECT idx, entry, leaf_hash FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx', [from, to]);
    return rows.map((r) => ({ idx: r.idx, entry: r.entry, leafHash: new Uint8Array(r.leaf_hash) }));
  }

  async auditNodes(refs: readonly NodeRef[]): Promise<Uint8Array[]> {
    return this.tree.nodes(this.pool, refs);
  }

  async checkAuditTree(): Promise<string | undefined> {
    // One snapshot for the whole check: another node may append meanwhile.
    return this.snapshot((c) => this.tree.check(c));
  }

  async checkAuditNodes(level: number, from: number, to: number): Promise<string | undefined> {
    return this.snapshot((c) => this.tree.checkNodes(c, level, from, to));
  }

  async rebuildAuditTree(): Promise<number> {
    return this.tx(async (c) => {
      await c.query(lockSql(LOCK_AUDIT));
      return this.tree.rebuild(c);
    });
  }

  /** A read-only transaction at REPEATABLE READ: every query of `fn` sees the same state. */
  private async snapshot<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.tx(async (c) => {
      await c.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY');
      return fn(c);
    });
  }

  async putCheckpoint(c: StoredCheckpoint): Promise<boolean> {
    const r = await this.pool.query('INSERT INTO checkpoints (size, root_hash, note, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [c.size, c.rootHash, c.note, c.createdAt]);
    return (r.rowCount ?? 0) > 0;
  }

  async listCheckpoints(after = -1): Promise<StoredCheckpoint[]> {
    return (await this.pool.query<CheckpointRow>('SELECT size, root_hash, note, created_at FROM checkpoints WHERE size > $1 ORDER BY size', [after])).rows.map(toCheckpoint);
  }

  async getCheckpoint(size?: number): Promise<StoredCheckpoint | undefined> {
    const { rows } =
      size === undefined
        ? await this.pool.query<CheckpointRow>('SELECT size, root_hash, note, created_at FROM checkpoints ORDER BY size DESC LIMIT 1')
        : await this.pool.query<CheckpointRow>('SELECT size, root_hash, note, created_at FROM checkpoints WHERE size = $1', [size]);
    return rows[0] ? toCheckpoint(rows[0]) : undefined;
  }

  async putCosignature(c: StoredCosignature): Promise<void> {
    await this.pool.query(
      `INSERT INTO cosignatures (size, cosigner, signature, at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (size, cosigner) DO UPDATE SET signature = excluded.signature, at = excluded.at`,
      [c.size, c.cosigner, c.signature, c.at],
    );
  }

  async listCosignatures(size?: number): Promise<StoredCosignature[]> {
    const { rows } =
      size === undefined
        ? await this.pool.query<StoredCosignature>('SELECT size, cosigner, signature, at FROM cosignatures ORDER BY size, cosigner')
        : await this.pool.query<StoredCosignature>('SELECT size, cosigner, signature, at FROM cosignatures WHERE size = $1 ORDER BY cosigner', [size]);
    return rows.map((r) => ({ size: r.size, cosigner: r.cosigner, signature: r.signature, at: r.at }));
  }

  /**
   * PostgreSQL checks its own pages (checksums, WAL replay) and has no quick_check; what is checked
   * here is that the schema is the one this relay knows and every table of it is readable.
   */
  async checkIntegrity(): Promise<string | undefined> {
    try {
      const version = await this.schemaVersion();
      if (version !== PG_MIGRATIONS.length) return `the schema is at version ${version}, this relay expects ${PG_MIGRATIONS.length}`;
      for (const table of ['meta', 'devices', 'revocations', 'envelopes', 'receipts', 'refusals', 'events', 'mailbox', 'audit_entries', 'audit_nodes', 'checkpoints']) {
        await this.pool.query(`SELECT 1 FROM ${table} LIMIT 1`);
      }
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  async relayOutgoing(options: { kind: RelayMark['kind']; local: string; peer: string; after: number; limit: number }): Promise<RelayOutgoing[]> {
    const { kind, local, peer, after, limit } = options;
    const { rows } =
      kind === 'refusal'
        ? await this.pool.query<{ pos: number; json: string; accepted_at: number }>(
            `SELECT f.pos, f.refusal AS json, f.accepted_at FROM refusals f JOIN envelopes e ON e.id = f.message_id
              WHERE f.pos > $1 AND f.by_party = $2 AND e.from_party = $3
                AND NOT EXISTS (SELECT 1 FROM relay_sent s WHERE s.kind = 'refusal' AND s.peer = $3
                                  AND s.ref = f.message_id || '/' || f.by_party || '/' || f.by_device)
              ORDER BY f.pos LIMIT $4`,
            [after, local, peer, limit],
          )
        : kind === 'envelope'
        ? await this.pool.query<{ pos: number; json: string; accepted_at: number }>(
            `SELECT e.pos, e.envelope AS json, e.accepted_at FROM envelopes e
              WHERE e.pos > $1 AND e.from_party = $2 AND e.to_party = $3
                AND NOT EXISTS (SELECT 1 FROM relay_sent s WHERE s.kind = 'envelope' AND s.ref = e.id AND s.peer = $3)
              ORDER BY e.pos LIMIT $4`,
            [after, local, peer, limit],
          )
        : await this.pool.query<{ pos: number; json: string; accepted_at: number }>(
            `SELECT r.id AS pos, r.receipt AS json, r.accepted_at FROM receipts r JOIN envelopes e ON e.id = r.message_id
              WHERE r.id > $1 AND r.by_party = $2 AND e.from_party = $3
                AND NOT EXISTS (SELECT 1 FROM relay_sent s WHERE s.kind = 'receipt' AND s.peer = $3
                                  AND s.ref = r.message_id || '/' || r.kind || '/' || r.by_party || '/' || r.by_device)
              ORDER BY r.id LIMIT $4`,
            [after, local, peer, limit],
          );
    return rows.map((r) => ({ pos: r.pos, json: r.json, acceptedAt: r.accepted_at }));
  }

  async markRelayed(marks: readonly RelayMark[], events?: EventsWrite): Promise<{ device: DeviceKey; item: MailboxItem }[]> {
    try {
      return await this.txAudit(async (c, audit) => {
        let fresh = false;
        for (const m of marks) {
          const r = await c.query('INSERT INTO relay_sent (kind, ref, peer, at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [m.kind, m.ref, m.peer, m.at]);
          fresh = (r.rowCount ?? 0) > 0 || fresh;
        }
        // The events (the sender's `message.relayed`) go with the first confirmation only.
        return fresh && events ? this.applySideEffects(c, events, audit) : [];
      });
    } catch (error) {
      throw storeFailed(error);
    }
  }

  async getMeta(key: string): Promise<string | undefined> {
    return (await this.pool.query<{ value: string }>('SELECT value FROM meta WHERE key = $1', [key])).rows[0]?.value;
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.pool.query('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [key, value]);
  }

  /** Set `key` only if it has no value yet (nodes starting together agree on the first one). */
  async setMetaIfAbsent(key: string, value: string): Promise<void> {
    await this.pool.query('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [key, value]);
  }

  // ----- escalation (server/escalation/) -----

  async eventsAfter(afterId: number, limit: number): Promise<StoredEventRow[]> {
    return (await this.pool.query<StoredEventRow>('SELECT id, event, at FROM events WHERE id > $1 ORDER BY id LIMIT $2', [afterId, limit])).rows;
  }

  async lastEventId(): Promise<number> {
    return (await this.pool.query<{ id: number | null }>('SELECT MAX(id) AS id FROM events')).rows[0]?.id ?? 0;
  }

  async queueEscalations(from: number | undefined, to: number, rows: readonly EscalationRow[]): Promise<boolean> {
    try {
      return await this.tx(async (c) => {
        // The cursor row moves only from where this node read it: another node's intake in between
        // makes this one change nothing (it reads again from the new cursor).
        const moved =
          from === undefined
            ? await c.query('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [ESCALATION_CURSOR_KEY, String(to)])
            : await c.query('UPDATE meta SET value = $2 WHERE key = $1 AND value = $3', [ESCALATION_CURSOR_KEY, String(to), String(from)]);
        if (moved.rowCount !== 1) return false;
        if (rows.length > 0) {
          await c.query(
            `INSERT INTO escalations (hook, event_id, event, created_at, next_at)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) ON CONFLICT DO NOTHING`,
            [rows.map((r) => r.hook), rows.map((r) => r.eventId), rows.map((r) => r.event), rows.map((r) => r.createdAt), rows.map((r) => r.nextAt)],
          );
        }
        return true;
      });
    } catch (error) {
      throw storeFailed(error);
    }
  }

  async claimEscalations(now: number, leaseUntil: number, limit: number): Promise<ClaimedEscalation[]> {
    try {
      const { rows } = await this.pool.query<{ hook: string; event_id: number; event: string; created_at: number; attempts: number }>(
        `UPDATE escalations e SET attempts = e.attempts + 1, next_at = $1
           FROM (SELECT hook, event_id FROM escalations WHERE done_at IS NULL AND next_at <= $2
                  ORDER BY next_at, event_id LIMIT $3 FOR UPDATE SKIP LOCKED) d
          WHERE e.hook = d.hook AND e.event_id = d.event_id
         RETURNING e.hook, e.event_id, e.event, e.created_at, e.attempts`,
        [leaseUntil, now, limit],
      );
      return rows.map(escalationFromRow);
    } catch (error) {
      throw storeFailed(error);
    }
  }

  async settleEscalation(hook: string, eventId: number, settled: EscalationSettled): Promise<void> {
    try {
      await this.pool.query('UPDATE escalations SET done_at = $1, next_at = COALESCE($2, next_at), outcome = $3 WHERE hook = $4 AND event_id = $5', [...settledColumns(settled), hook, eventId]);
    } catch (error) {
      throw storeFailed(error);
    }
  }

  async nextEscalationAt(): Promise<number | undefined> {
    return (await this.pool.query<{ at: number | null }>('SELECT MIN(next_at) AS at FROM escalations WHERE done_at IS NULL')).rows[0]?.at ?? undefined;
  }

  // ----- several nodes on one database (README "Running on PostgreSQL", docs/postgresql.md) -----

  private readonly listeners = new Set<MailboxListener>();

  /**
   * Listen for new mailbox items and directory rows committed by any node (this one included):
   * `devices` is called with the devices named by each mailbox notification, `directory` with the
   * certificate or revocation named by each directory notification. The listening connection is its
   * own; when it is lost it is opened again (backing off up to 2 s), and once it listens again
   * `restored` is called, so that the caller reads what was committed meanwhile (a notification
   * sent while nobody listened is lost; the rows are not).
   */
  async listenMailboxes(handlers: ClusterListenHandlers): Promise<MailboxListener> {
    const listener = new MailboxListener(this.clientConfig, handlers, this.listenProbeMs);
    this.listeners.add(listener);
    listener.onClose = () => this.listeners.delete(listener);
    try {
      await listener.open();
    } catch (err) {
      await listener.close();
      throw err;
    }
    return listener;
  }

  /**
   * Live items of `device` with cursor above `after` not yet acknowledged, in cursor order: what a
   * node reads for a connected device when a notification (or a restored listener) says there may
   * be new ones.
   */
  async liveMailbox(device: DeviceKey, after: number, limit: number): Promise<MailboxItem[]> {
    const { rows } = await this.pool.query<MailboxRow>(`${MAILBOX_SELECT} WHERE m.device = $1 AND m.acked = 0 AND m.cursor > $2 ORDER BY m.cursor LIMIT $3`, [device, after, limit]);
    return rows.map((row): MailboxItem => ({ cursor: row.cursor, rank: row.rank, kind: row.kind, json: row.json, acceptedAt: row.accepted_at }));
  }

  /** The earliest time an open deadline or a link test in flight is due, from the database. */
  async nextDue(): Promise<number | undefined> {
    const { rows } = await this.pool.query<{ at: number | null }>(
      `SELECT LEAST((SELECT MIN(next_at) FROM deadlines WHERE closed_at IS NULL), (SELECT MIN(due_at) FROM link_tests WHERE done = 0)) AS at`,
    );
    return rows[0]?.at ?? undefined;
  }

  /** The open deadlines of one message, as stored now. */
  async openDeadlinesOf(messageId: string): Promise<DeadlineRecord[]> {
    const { rows } = await this.pool.query<DeadlineRow>('SELECT * FROM deadlines WHERE message_id = $1 AND closed_at IS NULL ORDER BY rung', [messageId]);
    return rows.map(deadlineFromRow);
  }

  /**
   * Fire what is due at `now`, exactly once across every node on the database: under an advisory
   * lock, the due deadlines and link tests are read (rows locked, so that a receipt being committed
   * on them is waited for and seen), `compute` turns them into the rows and events to write (the
   * engines, server/relay/), and those are written in the same transaction. A node that dies before
   * the commit has fired nothing; one that dies after has moved each row past `now`.
   */
  async fireDue(
    now: number,
    compute: (due: { deadlines: DeadlineRecord[]; tests: PendingTest[]; pairs: LinkPairRecord[] }) => SideEffects | undefined,
  ): Promise<{ device: DeviceKey; item: MailboxItem }[]> {
    return this.txAudit(async (c, audit) => {
      await c.query(lockSql(LOCK_FIRE));
      const deadlines = (await c.query<DeadlineRow>('SELECT * FROM deadlines WHERE closed_at IS NULL AND next_at <= $1 ORDER BY next_at, message_id, rung FOR UPDATE', [now])).rows.map(deadlineFromRow);
      // Pairs before tests: the order in which a receipt's write takes them (applySideEffects), so the two never deadlock.
      const due = (await c.query<{ n: number }>('SELECT COUNT(*) AS n FROM link_tests WHERE done = 0 AND due_at <= $1', [now])).rows[0]!.n;
      let tests: PendingTest[] = [];
      let pairs: LinkPairRecord[] = [];
      if (due > 0) {
        pairs = (await c.query<PairRow>('SELECT * FROM link_pairs ORDER BY from_party, to_party FOR UPDATE')).rows.map(toPair);
        tests = (
          await c.query<{ message_id: string; from_party: string; to_party: string; sent_at: number; due_at: number }>(
            'SELECT * FROM link_tests WHERE done = 0 AND due_at <= $1 ORDER BY due_at FOR UPDATE',
            [now],
          )
        ).rows.map((r): PendingTest => ({ messageId: r.message_id, from: r.from_party, to: r.to_party, sentAt: r.sent_at, dueAt: r.due_at }));
      }
      if (deadlines.length === 0 && tests.length === 0) return [];
      return this.applySideEffects(c, compute({ deadlines, tests, pairs }), audit);
    });
  }

  /**
   * Run `fn` while holding an advisory lock of the database (nodes take turns): for signing the
   * periodic checkpoint, which `fn` first checks is not already signed for its interval.
   */
  async exclusive<T>(purpose: 'checkpoint', fn: () => Promise<T>): Promise<T> {
    return this.tx(async (c) => {
      await c.query(lockSql(purpose === 'checkpoint' ? LOCK_CHECKPOINT : LOCK_CHECKPOINT));
      return fn();
    });
  }

  private closed = false;

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.listeners].map((l) => l.close()));
    await this.pool.end();
  }
}

/** Where the listening connection is: for the operator's log and for tests that cut it. */
const LISTEN_BACKOFF_MAX_MS = 2_000;
/** The LISTEN connection's liveness probe: interval, and time to answer (PgStoreOptions.listenProbeMs). */
const LISTEN_PROBE_MS = 15_000;

/** Tell every node, at the commit of `c`'s transaction, that a directory row was stored. */
async function notifyDirectory(c: pg.PoolClient, key: DirectoryRowKey): Promise<void> {
  await c.query(`SELECT pg_notify('${DIRECTORY_CHANNEL_PREFIX}' || current_schema(), $1)`, [JSON.stringify(key)]);
}

/**
 * The row key of a directory notification. Anyone who may connect to the database can NOTIFY on the
 * channel, so it is checked; what does not parse is undefined (the node then reads the whole directory).
 */
function parseDirectoryKey(payload: string | undefined): DirectoryRowKey | undefined {
  try {
    const k = JSON.parse(payload ?? '') as Partial<Record<keyof DirectoryRowKey, unknown>>;
    if ((k.kind === 'device' || k.kind === 'revocation') && typeof k.party === 'string' && typeof k.device === 'string' && typeof k.signKey === 'string') {
      return { kind: k.kind, party: k.party, device: k.device, signKey: k.signKey };
    }
  } catch {
    // not JSON: read the whole directory
  }
  return undefined;
}

/**
 * The LISTEN connection of one node (PgStore.listenMailboxes): a client of its own, outside the pool
 * (a pooled connection would be handed to queries and its LISTEN lost). Reopened after any loss.
 *
 * A connection that goes silent (the network drops packets; no reset ever arrives) sends no error
 * and no notification: the node would hear nothing and never catch up. So it is asked `SELECT 1`
 * every `probeMs`, and one that has not answered within `probeMs` is taken as lost (reopened, then
 * the catch-up read), as is one that errs.
 */
export class MailboxListener {
  private client: pg.Client | undefined;
  private closed = false;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private backoffMs = 50;
  /** The server process id of the listening connection while it listens (tests end it on purpose). */
  pid: number | undefined;
  onClose: () => void = () => {};

  private probe: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly handlers: ClusterListenHandlers,
    private readonly probeMs: number = LISTEN_PROBE_MS,
  ) {}

  /** Connect and LISTEN; throws if that fails (at start: the node does not start half-deaf). */
  async open(): Promise<void> {
    const client = new pg.Client({ ...this.config, application_name: 'hotline-listen', keepAlive: true });
    let gone = false;
    let probe: ReturnType<typeof setInterval> | undefined;
    const onLost = (err: Error) => {
      if (gone) return;
      gone = true;
      if (probe !== undefined) clearInterval(probe);
      if (this.probe === probe) this.probe = undefined;
      if (this.client === client) {
        this.client = undefined;
        this.pid = undefined;
      }
      void client.end().catch(() => {});
      // A silent connection never answers the goodbye either: drop its socket now.
      (client as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream?.destroy?.();
      if (this.closed) return;
      this.handlers.lost(err);
      this.scheduleReopen();
    };
    client.on('error', onLost);
    client.on('end', () => onLost(new Error('the listening connection ended')));
    client.on('notification', (n) => {
      if (n.channel.startsWith(DIRECTORY_CHANNEL_PREFIX)) this.handlers.directory(parseDirectoryKey(n.payload));
      else if (n.payload) this.handlers.devices([n.payload]);
    });
    try {
      await client.connect();
      const { rows } = await client.query<{ schema: string; pid: number }>('SELECT current_schema() AS schema, pg_backend_pid() AS pid');
      // Both channels in one statement: listening starts for both at once (a catch-up after it misses neither).
      const listen = [MAILBOX_CHANNEL_PREFIX, DIRECTORY_CHANNEL_PREFIX].map((prefix) => `LISTEN "${`${prefix}${rows[0]!.schema}`.replaceAll('"', '""')}"`);
      await client.query(listen.join('; '));
      if (this.closed || gone) throw new Error('the listening connection ended');
      this.client = client;
      this.pid = rows[0]!.pid;
      this.backoffMs = 50;
      let asking = false;
      probe = setInterval(() => {
        if (asking) return;
        asking = true;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const silent = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the listening connection did not answer within ${this.probeMs} ms`)), this.probeMs);
        });
        Promise.race([client.query('SELECT 1'), silent]).then(
          () => undefined,
          (err: unknown) => onLost(err as Error),
        ).finally(() => {
          clearTimeout(timer);
          asking = false;
        });
      }, this.probeMs);
      probe.unref?.();
      this.probe = probe;
    } catch (err) {
      gone = true;
      await client.end().catch(() => {});
      throw err;
    }
  }

  private scheduleReopen(): void {
    if (this.closed || this.retry !== undefined) return;
    const wait = this.backoffMs;
    this.backoffMs = Math.min(LISTEN_BACKOFF_MAX_MS, this.backoffMs * 2);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.open().then(
        () => {
          // Listening again: what was committed while nobody listened is read now.
          if (!this.closed) this.handlers.restored();
        },
        (err: unknown) => {
          if (this.closed) return;
          this.handlers.lost(err as Error);
          this.scheduleReopen();
        },
      );
    }, wait);
    this.retry.unref?.();
  }

  /** Whether it listens now. */
  get listening(): boolean {
    return this.client !== undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.probe !== undefined) clearInterval(this.probe);
    this.probe = undefined;
    if (this.retry !== undefined) clearTimeout(this.retry);
    this.retry = undefined;
    const client = this.client;
    this.client = undefined;
    this.pid = undefined;
    await client?.end().catch(() => {});
    this.onClose();
  }
}
