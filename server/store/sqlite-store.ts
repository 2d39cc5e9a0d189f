import { closeSync, fsync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { HotlineError } from '../../shared/errors.js';
import { utf8 } from '../../shared/encoding/base64.js';
import { leafHash, type NodeRef } from '../../shared/audit/merkle.js';
import { formatAuditEntry } from '../../shared/audit/log-verify.js';
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
  isFlashWrite,
} from '../relay/records.js';
import { ESCALATION_CURSOR_KEY, escalationFromRow, settledColumns, type ClaimedEscalation, type EscalationRow, type EscalationSettled, type RelayMark, type RelayOutgoing, type Store, type StoredCheckpoint, type StoredCosignature, type StoredEnvelope, type StoredEventRow } from './store.js';
import { WalCheckpointer, type CheckpointResult } from './wal-checkpointer.js';
import { SqliteAuditTree } from './sqlite-audit-tree.js';

/** Schema migrations, applied in order; `PRAGMA user_version` records how many have run. */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE devices (
    party TEXT NOT NULL, device TEXT NOT NULL, sign_key TEXT NOT NULL, role TEXT NOT NULL,
    not_before INTEGER NOT NULL, not_after INTEGER NOT NULL, certificate TEXT NOT NULL, enrolled_at INTEGER NOT NULL,
    PRIMARY KEY (party, device, sign_key)
  );
  CREATE TABLE revocations (
    party TEXT NOT NULL, device TEXT NOT NULL, sign_key TEXT NOT NULL, revocation TEXT NOT NULL, stored_at INTEGER NOT NULL,
    PRIMARY KEY (party, device, sign_key)
  );
  CREATE TABLE envelopes (
    id TEXT PRIMARY KEY, hash TEXT NOT NULL, from_party TEXT NOT NULL, from_device TEXT NOT NULL, to_party TEXT NOT NULL,
    precedence TEXT NOT NULL, seq INTEGER NOT NULL, header TEXT NOT NULL, envelope TEXT NOT NULL, accepted_at INTEGER NOT NULL
  );
  CREATE TABLE device_seq (device TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
  CREATE TABLE receipts (
    id INTEGER PRIMARY KEY, message_id TEXT NOT NULL, kind TEXT NOT NULL, by_party TEXT NOT NULL, by_device TEXT NOT NULL,
    receipt TEXT NOT NULL, at INTEGER NOT NULL, accepted_at INTEGER NOT NULL,
    UNIQUE (message_id, kind, by_party, by_device)
  );
  CREATE TABLE mailbox (
    cursor INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('envelope', 'receipt')),
    ref TEXT NOT NULL, acked INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX mailbox_by_device ON mailbox (device, acked, cursor);
  CREATE TABLE audit_entries (idx INTEGER PRIMARY KEY CHECK (idx >= 0), entry TEXT NOT NULL, leaf_hash BLOB NOT NULL);
  `,
  // 2: deadlines and link tests (issue 4). Mailboxes also carry events, so the mailbox table is
  // rebuilt with the wider CHECK (SQLite cannot alter a constraint); cursors are kept as they were.
  `
  CREATE TABLE events (id INTEGER PRIMARY KEY, type TEXT NOT NULL, event TEXT NOT NULL, at INTEGER NOT NULL);
  CREATE TABLE mailbox_v2 (
    cursor INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('envelope', 'receipt', 'event')),
    ref TEXT NOT NULL, acked INTEGER NOT NULL DEFAULT 0
  );
  INSERT INTO mailbox_v2 (cursor, device, kind, ref, acked) SELECT cursor, device, kind, ref, acked FROM mailbox;
  DROP TABLE mailbox;
  ALTER TABLE mailbox_v2 RENAME TO mailbox;
  CREATE INDEX mailbox_by_device ON mailbox (device, acked, cursor);
  CREATE TABLE deadlines (
    message_id TEXT NOT NULL, rung TEXT NOT NULL CHECK (rung IN ('delivered', 'acknowledged')),
    from_party TEXT NOT NULL, to_party TEXT NOT NULL, precedence TEXT NOT NULL,
    accepted_at INTEGER NOT NULL, due_at INTEGER NOT NULL, level INTEGER NOT NULL, next_at INTEGER NOT NULL,
    closed_at INTEGER, late INTEGER,
    PRIMARY KEY (message_id, rung)
  );
  CREATE INDEX deadlines_open ON deadlines (closed_at, next_at);
  CREATE TABLE link_pairs (
    from_party TEXT NOT NULL, to_party TEXT NOT NULL, status TEXT NOT NULL, since INTEGER, last TEXT,
    PRIMARY KEY (from_party, to_party)
  );
  CREATE TABLE link_tests (
    message_id TEXT PRIMARY KEY, from_party TEXT NOT NULL, to_party TEXT NOT NULL,
    sent_at INTEGER NOT NULL, due_at INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0
  );
  `,
  // 3: signed checkpoints and the parties' cosignatures (issue 5). A cosignature is not an audit
  // entry: it is a signature *over* the log, kept beside the checkpoint it signs.
  `
  CREATE TABLE checkpoints (size INTEGER PRIMARY KEY CHECK (size >= 0), root_hash TEXT NOT NULL, note TEXT NOT NULL, created_at INTEGER NOT NULL);
  CREATE TABLE cosignatures (
    size INTEGER NOT NULL, cosigner TEXT NOT NULL, signature TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (size, cosigner)
  );
  `,
  // 4 (issue 9): the audit tree's complete subtrees, so that start-up reads O(log n) rows instead of
  // every leaf (server/store/sqlite-audit-tree.ts). An existing log gets its nodes once, at the first
  // start (the start-up check finds them missing and builds them from the leaves).
  `
  CREATE TABLE audit_nodes (
    level INTEGER NOT NULL CHECK (level >= 1), idx INTEGER NOT NULL CHECK (idx >= 0), hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
  ) WITHOUT ROWID;
  `,
  // 5: precedence first and the replay window (issue 9). A mailbox row carries its delivery rank
  // (PROTOCOL.md "Delivery order"), so the backlog is read by (rank, cursor) from the index alone.
  // Only un-acknowledged rows are ranked here: an acknowledged row is never read again. The seq
  // index answers "was (device, seq) used?" now that seqs may arrive out of order; it is UNIQUE
  // because the store never accepted a seq twice.
  `
  ALTER TABLE mailbox ADD COLUMN rank INTEGER NOT NULL DEFAULT 0;
  UPDATE mailbox SET rank = COALESCE((
    SELECT CASE e.precedence WHEN 'FLASH' THEN 0 WHEN 'IMMEDIATE' THEN 1 WHEN 'PRIORITY' THEN 2 ELSE 3 END
      FROM envelopes e WHERE e.id = mailbox.ref), 0)
   WHERE kind = 'envelope' AND acked = 0;
  UPDATE mailbox SET rank = COALESCE((
    SELECT CASE e.precedence WHEN 'FLASH' THEN 0 WHEN 'IMMEDIATE' THEN 1 WHEN 'PRIORITY' THEN 2 ELSE 3 END
      FROM receipts r JOIN envelopes e ON e.id = r.message_id WHERE r.id = CAST(mailbox.ref AS INTEGER)), 0)
   WHERE kind = 'receipt' AND acked = 0;
  UPDATE mailbox SET rank = COALESCE((
    SELECT CASE json_extract(ev.event, '$.precedence') WHEN 'IMMEDIATE' THEN 1 WHEN 'PRIORITY' THEN 2 WHEN 'ROUTINE' THEN 3 ELSE 0 END
      FROM events ev WHERE ev.id = CAST(mailbox.ref AS INTEGER)), 0)
   WHERE kind = 'event' AND acked = 0;
  DROP INDEX mailbox_by_device;
  CREATE INDEX mailbox_by_device ON mailbox (device, acked, rank, cursor);
  CREATE UNIQUE INDEX envelopes_by_sender_seq ON envelopes (from_party, from_device, seq);
  `,
  // h11: the relay-to-relay link. What a peer relay has confirmed storing, by envelope id or
  // receipt identity; what is not here is still to be forwarded (the envelopes and receipts
  // tables are the queue, so acceptance needs no extra row).
  `
  CREATE TABLE relay_sent (
    kind TEXT NOT NULL CHECK (kind IN ('envelope', 'receipt')), ref TEXT NOT NULL, peer TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (kind, ref, peer)
  );
  `,
  // h13: refusals, a device's signed statement that it could not accept a message delivered to it
  // (PROTOCOL.md "Refusals"). One per (message, device); they close deadlines, not mailboxes.
  `
  CREATE TABLE refusals (
    message_id TEXT NOT NULL, by_party TEXT NOT NULL, by_device TEXT NOT NULL, code TEXT NOT NULL,
    refusal TEXT NOT NULL, accepted_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, by_party, by_device)
  );
  `,
  // h13-fwd: refusals cross the relay-to-relay link too (PROTOCOL.md "Refusals"): a peer relay's
  // confirmation of a refusal is recorded under kind 'refusal' (ref `messageId/party/device`). The
  // refusals table's rowid is the forward position. SQLite cannot widen a CHECK: the table is rebuilt.
  `
  CREATE TABLE relay_sent_new (
    kind TEXT NOT NULL CHECK (kind IN ('envelope', 'receipt', 'refusal')), ref TEXT NOT NULL, peer TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (kind, ref, peer)
  );
  INSERT INTO relay_sent_new (kind, ref, peer, at) SELECT kind, ref, peer, at FROM relay_sent;
  DROP TABLE relay_sent;
  ALTER TABLE relay_sent_new RENAME TO relay_sent;
  `,
  // h15-ladder: the ladder's later rungs get deadlines of their own where the agreement sets them
  // (PROTOCOL.md "Deadlines"). SQLite cannot alter a CHECK: the table is rebuilt, rows kept.
  `
  CREATE TABLE deadlines_v2 (
    message_id TEXT NOT NULL, rung TEXT NOT NULL CHECK (rung IN ('delivered', 'acknowledged', 'answered', 'complied')),
    from_party TEXT NOT NULL, to_party TEXT NOT NULL, precedence TEXT NOT NULL,
    accepted_at INTEGER NOT NULL, due_at INTEGER NOT NULL, level INTEGER NOT NULL, next_at INTEGER NOT NULL,
    closed_at INTEGER, late INTEGER,
    PRIMARY KEY (message_id, rung)
  );
  INSERT INTO deadlines_v2 SELECT message_id, rung, from_party, to_party, precedence, accepted_at, due_at, level, next_at, closed_at, late FROM deadlines;
  DROP TABLE deadlines;
  ALTER TABLE deadlines_v2 RENAME TO deadlines;
  CREATE INDEX deadlines_open ON deadlines (closed_at, next_at);
  `,
  // h15-esc: escalation beyond the console (docs/escalation.md): one row per (hook, event) to
  // notify, kept until answered or given up, so a restart loses no pending notification. The
  // events table is the source; meta `escalation_cursor` is how far it has been read.
  `
  CREATE TABLE escalations (
    hook TEXT NOT NULL, event_id INTEGER NOT NULL, event TEXT NOT NULL, created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, done_at INTEGER, outcome TEXT,
    PRIMARY KEY (hook, event_id)
  );
  CREATE INDEX escalations_due ON escalations (next_at) WHERE done_at IS NULL;
  `,
  // h15-fs: devices' signed prekeys (PROTOCOL.md "Prekeys and forward secrecy"), one row per box key.
  `
  CREATE TABLE prekeys (
    party TEXT NOT NULL, device TEXT NOT NULL, box_key TEXT NOT NULL,
    not_before INTEGER NOT NULL, not_after INTEGER NOT NULL, prekey TEXT NOT NULL, stored_at INTEGER NOT NULL,
    PRIMARY KEY (party, device, box_key)
  );
  `,
  // h9-pages (issue 9): indexes of what is still open only, so that they stop growing with history
  // and a commit writes fewer pages (bench/wal-pages.ts; docs/performance.md, twelfth session).
  // The mailbox index held every row ever delivered and an ack moved its entry from the device's
  // acked = 0 run to its acked = 1 run, two pages per device in each commit that acknowledged
  // something; now an ack removes the entry, and a device's highest acknowledged cursor is one row of
  // mailbox_acked (read off the old index before it goes: no scan of the table). Likewise a closed
  // deadline leaves deadlines_open instead of moving in it.
  `
  CREATE TABLE mailbox_acked (device TEXT PRIMARY KEY, cursor INTEGER NOT NULL) WITHOUT ROWID;
  INSERT INTO mailbox_acked (device, cursor) SELECT device, MAX(cursor) FROM mailbox WHERE acked = 1 GROUP BY device;
  DROP INDEX mailbox_by_device;
  CREATE INDEX mailbox_unacked ON mailbox (device, rank, cursor) WHERE acked = 0;
  DROP INDEX deadlines_open;
  CREATE INDEX deadlines_open ON deadlines (next_at) WHERE closed_at IS NULL;
  `,
];

const MAILBOX_SELECT = `SELECT m.cursor, m.rank, m.kind,
         COALESCE(e.envelope, r.receipt, ev.event) AS json,
         COALESCE(e.accepted_at, r.accepted_at, ev.at) AS accepted_at
    FROM mailbox m
    LEFT JOIN envelopes e ON m.kind = 'envelope' AND e.id = m.ref
    LEFT JOIN receipts r ON m.kind = 'receipt' AND r.id = CAST(m.ref AS INTEGER)
    LEFT JOIN events ev ON m.kind = 'event' AND ev.id = CAST(m.ref AS INTEGER)`;

interface MailboxRow {
  cursor: number;
  rank: number;
  kind: 'envelope' | 'receipt' | 'event';
  json: string;
  accepted_at: number;
}

/** The audit log's size, and the leaf hash of its last entry (null while it is empty). */
interface AuditTip {
  size: number;
  leaf: Uint8Array | null;
}

interface CheckpointRow {
  size: number;
  root_hash: string;
  note: string;
  created_at: number;
}

interface CosignatureRow {
  size: number;
  cosigner: string;
  signature: string;
  at: number;
}

function toCheckpoint(r: CheckpointRow): StoredCheckpoint {
  return { size: r.size, rootHash: r.root_hash, note: r.note, createdAt: r.created_at };
}

/** A deadlines row as both adapters read it (the PostgreSQL adapter uses the same columns). */
export interface DeadlineRow {
  message_id: string;
  rung: DeadlineRecord['rung'];
  from_party: string;
  to_party: string;
  precedence: DeadlineRecord['precedence'];
  accepted_at: number;
  due_at: number;
  level: number;
  next_at: number;
}

/** A deadlines row as the engine's record (both adapters). */
export function deadlineFromRow(r: DeadlineRow): DeadlineRecord {
  return {
    messageId: r.message_id,
    from: r.from_party,
    to: r.to_party,
    precedence: r.precedence,
    rung: r.rung,
    acceptedAt: r.accepted_at,
    dueAt: r.due_at,
    level: r.level,
    nextAt: r.next_at,
  };
}

/** Apply pending migrations in one transaction each. */
function migrate(db: Database.Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  // A newer relay's database is not this relay's to run: its tables and indexes may be read and
  // kept differently (h9-pages keeps each device's acknowledged cursor in a table of its own, which
  // an older relay would leave behind). As on PostgreSQL, refused with the way out.
  if (current > MIGRATIONS.length) {
    db.close();
    throw new HotlineError('HL_ERR_CONFIG_INVALID', `the database's schema is at version ${current}, newer than this relay knows (${MIGRATIONS.length}): upgrade the relay`);
  }
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

function storeFailed(cause: unknown): HotlineError {
  return new HotlineError('HL_ERR_STORE_FAILED', 'the store could not complete the write', { cause });
}

/**
 * `PRAGMA quick_check` of the database at `path` on its own read-only connection in a worker
 * thread, so that a large file is checked while the relay serves. Undefined when sound.
 */
export function checkIntegrityInWorker(path: string): Promise<string | undefined> {
  // Plain CommonJS for the worker: it runs without the TypeScript loader.
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    let found;
    try {
      const db = new (require(workerData.driver))(workerData.path, { readonly: true });
      found = db.pragma('quick_check(20)').map((r) => r.quick_check).filter((r) => r !== 'ok').join('; ') || undefined;
      db.close();
    } catch (err) {
      found = err.message;
    }
    parentPort.postMessage(found);`;
  return new Promise((resolve) => {
    const worker = new Worker(code, { eval: true, workerData: { path, driver: createRequire(import.meta.url).resolve('better-sqlite3') } });
    worker.once('message', (found: string | undefined) => resolve(found));
    worker.once('error', (err) => resolve(err.message));
  });
}

/**
 * The SQLite adapter (better-sqlite3 12.x): WAL and `synchronous=FULL`, so a committed transaction
 * survives a crash or power loss before the sender hears "accepted".
 *
 * The group commit (`commit`) is the exception in how, not in what: its transaction runs with
 * `synchronous=NORMAL` (no fsync inside COMMIT, which would block the event loop for the disk's
 * whole flush) and the WAL file is then fsync'd on libuv's thread pool; `commit` resolves only
 * after that fsync, so nobody hears "accepted" before the batch is on disk, as before. Meanwhile
 * the event loop admits the next frames (signature checks, the next batch) instead of waiting.
 * Until the fsync completes, the batch's rows are visible to this process's reads but not yet
 * durable, and the relay already forwards them (`commit`'s `visible`); the audit tree size served
 * (`auditSize`, hence every checkpoint and proof) counts only durable entries, so no checkpoint
 * ever signs an entry a crash could still take back, and it waits for the fsync begun last, so
 * that an entry whose message or event a device was sent is served to whoever asks after.
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly stmt;
  private readonly tree: SqliteAuditTree;
  /** The WAL file, open for fsync after each group commit (undefined: commit with synchronous=FULL). */
  private walFd: number | undefined;
  /**
   * A group commit's transaction is done at the call and its fsync then runs off the event loop,
   * so another may be committed meanwhile (a FLASH batch, server/store/write-queue.ts): its fsync
   * covers the earlier batch's WAL frames too.
   */
  readonly commitsOverlap: boolean;
  /** Group commits whose fsync has not completed yet. */
  private syncing = 0;
  /** Audit entries known durable while a group commit's fsync is pending. */
  private durableAudit = 0;
  /** Settles when the fsync begun last has ended (auditSize). */
  private lastSync: Promise<void> = Promise.resolve();
  /**
   * The audit log's size and last leaf hash as last committed, so that appending an entry and
   * reading the size (twice per group commit) read no row: on a FLASH's path those reads were four
   * statements outside a transaction, ~0.15 ms a message. Undefined: read it from the table (at
   * start, and after any rollback). This connection is the log's only writer.
   */
  private tip: AuditTip | undefined;
  /** The tip as the open transaction has moved it, published to `tip` when that transaction commits. */
  private txTip: AuditTip | undefined;
  /** WAL checkpoints off the event loop (server/store/wal-checkpointer.ts). */
  private readonly checkpointer: WalCheckpointer | undefined;

  /**
   * @param options.maxPageCount a cap on the database size in pages (SQLite `max_page_count`): a
   * quota; past it every write fails as on a full disk (SQLITE_FULL), which is how tests fill the disk.
   * @param options.onCheckpointWorkerFailure told once if the WAL checkpoint worker fails (this
   * connection then checkpoints on the event loop again: slower, nothing lost), for the log.
   * @param options.walSettlePages WAL frames past which a group commit first waits for the WAL to
   * be wholly checkpointed (WalCheckpointer.SETTLE_PAGES; smaller in tests).
   */
  constructor(path: string, options: { maxPageCount?: number; onCheckpointWorkerFailure?: (error: Error) => void; walSettlePages?: number } = {}) {
    this.db = new Database(path);
    if (options.maxPageCount !== undefined) this.db.pragma(`max_page_count = ${Math.floor(options.maxPageCount)}`);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    migrate(this.db);
    // Opened once and closed only after the database (closing another descriptor of a file would
    // drop SQLite's POSIX locks on it; the WAL's locks are in -shm, but the rule costs nothing).
    if (path !== ':memory:' && this.db.pragma('journal_mode', { simple: true }) === 'wal') {
      try {
        this.walFd = openSync(`${path}-wal`, 'r+');
      } catch {
        this.walFd = undefined;
      }
    }
    this.commitsOverlap = this.walFd !== undefined;
    if (this.walFd !== undefined) {
      // This connection checkpoints only if the worker falls behind or fails (see WalCheckpointer).
      this.db.pragma(`wal_autocheckpoint = ${WalCheckpointer.FALLBACK_PAGES}`);
      this.checkpointer = new WalCheckpointer(
        path,
        (error) => {
          if (this.db.open) this.db.pragma('wal_autocheckpoint = 1000');
          options.onCheckpointWorkerFailure?.(error);
        },
        undefined,
        options.walSettlePages,
      );
    }
    const db = this.db;
    this.stmt = {
      ping: db.prepare('SELECT 1'),
      syncNormal: db.prepare('PRAGMA synchronous = NORMAL'),
      syncFull: db.prepare('PRAGMA synchronous = FULL'),
      getMeta: db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?'),
      setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      insertDevice: db.prepare(
        'INSERT OR IGNORE INTO devices (party, device, sign_key, role, not_before, not_after, certificate, enrolled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      listDevices: db.prepare<[], { certificate: string }>('SELECT certificate FROM devices ORDER BY party, device, not_before'),
      insertRevocation: db.prepare('INSERT OR IGNORE INTO revocations (party, device, sign_key, revocation, stored_at) VALUES (?, ?, ?, ?, ?)'),
      listRevocations: db.prepare<[], { revocation: string }>('SELECT revocation FROM revocations ORDER BY stored_at, party, device'),
      insertPrekey: db.prepare('INSERT OR IGNORE INTO prekeys (party, device, box_key, not_before, not_after, prekey, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      listPrekeys: db.prepare<[number], { prekey: string }>('SELECT prekey FROM prekeys WHERE not_after > ? ORDER BY party, device, not_before'),
      envelopeHash: db.prepare<[string], { hash: string; accepted_at: number }>('SELECT hash, accepted_at FROM envelopes WHERE id = ?'),
      getEnvelope: db.prepare<[string], { envelope: string; hash: string; accepted_at: number }>(
        'SELECT envelope, hash, accepted_at FROM envelopes WHERE id = ?',
      ),
      // The header column is kept beside the envelope for this read: admitting a receipt never
      // reads (or parses) the ciphertext, which may be far larger than the header.
      getMessage: db.prepare<[string], { header: string; hash: string }>('SELECT header, hash FROM envelopes WHERE id = ?'),
      lastSeq: db.prepare<[string], { last_seq: number }>('SELECT last_seq FROM device_seq WHERE device = ?'),
      seqUsed: db.prepare<[string, string, number], { one: number }>(
        'SELECT 1 AS one FROM envelopes WHERE from_party = ? AND from_device = ? AND seq = ?',
      ),
      setSeq: db.prepare(
        'INSERT INTO device_seq (device, last_seq) VALUES (?, ?) ON CONFLICT (device) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)',
      ),
      insertEnvelope: db.prepare(
        'INSERT INTO envelopes (id, hash, from_party, from_device, to_party, precedence, seq, header, envelope, accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      findReceipt: db.prepare<[string, string, string, string], { accepted_at: number }>(
        'SELECT accepted_at FROM receipts WHERE message_id = ? AND kind = ? AND by_party = ? AND by_device = ?',
      ),
      insertReceipt: db.prepare(
        'INSERT INTO receipts (message_id, kind, by_party, by_device, receipt, at, accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      findRefusal: db.prepare<[string, string, string], { refusal: string; accepted_at: number }>(
        'SELECT refusal, accepted_at FROM refusals WHERE message_id = ? AND by_party = ? AND by_device = ?',
      ),
      receiptBy: db.prepare<[string, string, string], { one: number }>(
        'SELECT 1 AS one FROM receipts WHERE message_id = ? AND by_party = ? AND by_device = ? LIMIT 1',
      ),
      insertRefusal: db.prepare(
        'INSERT INTO refusals (message_id, by_party, by_device, code, refusal, accepted_at) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      refusalsOf: db.prepare<[string], { by_party: string; by_device: string; code: string; accepted_at: number }>(
        'SELECT by_party, by_device, code, accepted_at FROM refusals WHERE message_id = ? ORDER BY accepted_at, by_party, by_device',
      ),
      insertMailbox: db.prepare('INSERT INTO mailbox (device, kind, ref, rank) VALUES (?, ?, ?, ?)'),
      // Keyset paging on the (device, rank, cursor) index of un-acknowledged rows, in two statements so that each is
      // a plain index range (SQLite seeks a row-value (rank, cursor) > (?, ?) on rank alone and
      // would rescan the rank's earlier rows at every page): the rest of the current rank, then
      // the ranks after it.
      mailboxSameRank: db.prepare<[string, number, number, number, number], MailboxRow>(
        `${MAILBOX_SELECT} WHERE m.device = ? AND m.acked = 0 AND m.rank = ? AND m.cursor > ? AND m.cursor <= ? ORDER BY m.cursor LIMIT ?`,
      ),
      mailboxNextRanks: db.prepare<[string, number, number, number], MailboxRow>(
        `${MAILBOX_SELECT} WHERE m.device = ? AND m.acked = 0 AND m.rank > ? AND m.cursor <= ? ORDER BY m.rank, m.cursor LIMIT ?`,
      ),
      maxCursor: db.prepare<[], { c: number | null }>('SELECT MAX(cursor) AS c FROM mailbox'),
      // All acks of a batch in one statement: [[cursor, device], ...] as JSON. Cursors are unique
      // across devices; the device check keeps a device from acknowledging another's items.
      ack: db.prepare<[string]>(
        `UPDATE mailbox SET acked = 1
           FROM (SELECT value ->> 0 AS c, value ->> 1 AS d FROM json_each(?)) AS a
          WHERE mailbox.cursor = a.c AND mailbox.device = a.d AND mailbox.acked = 0`,
      ),
      // Each device's highest acknowledged cursor, from the same JSON: only cursors that are that
      // device's own rows count, as in the UPDATE above (whose rows are all acked = 1 by now).
      ackedUpTo: db.prepare<[string]>(
        `INSERT INTO mailbox_acked (device, cursor)
           SELECT mailbox.device, MAX(mailbox.cursor)
             FROM (SELECT value ->> 0 AS c, value ->> 1 AS d FROM json_each(?)) AS a
             JOIN mailbox ON mailbox.cursor = a.c AND mailbox.device = a.d
            WHERE mailbox.acked = 1
            GROUP BY mailbox.device
         ON CONFLICT (device) DO UPDATE SET cursor = MAX(cursor, excluded.cursor)`,
      ),
      ackedCursor: db.prepare<[string], { cursor: number }>('SELECT cursor FROM mailbox_acked WHERE device = ?'),
      insertEvent: db.prepare('INSERT INTO events (type, event, at) VALUES (?, ?, ?)'),
      upsertDeadline: db.prepare(
        `INSERT INTO deadlines (message_id, rung, from_party, to_party, precedence, accepted_at, due_at, level, next_at, closed_at, late)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (message_id, rung) DO UPDATE SET level = excluded.level, next_at = excluded.next_at,
           closed_at = excluded.closed_at, late = excluded.late`,
      ),
      openDeadlines: db.prepare<[], DeadlineRow>('SELECT * FROM deadlines WHERE closed_at IS NULL ORDER BY next_at, message_id, rung'),
      upsertLinkPair: db.prepare(
        `INSERT INTO link_pairs (from_party, to_party, status, since, last) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (from_party, to_party) DO UPDATE SET status = excluded.status, since = excluded.since, last = excluded.last`,
      ),
      linkPairs: db.prepare<[], { from_party: string; to_party: string; status: LinkStatus; since: number | null; last: string | null }>(
        'SELECT * FROM link_pairs ORDER BY from_party, to_party',
      ),
      upsertLinkTest: db.prepare(
        `INSERT INTO link_tests (message_id, from_party, to_party, sent_at, due_at, done) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (message_id) DO UPDATE SET done = excluded.done`,
      ),
      pendingLinkTests: db.prepare<[], { message_id: string; from_party: string; to_party: string; sent_at: number; due_at: number }>(
        'SELECT * FROM link_tests WHERE done = 0 ORDER BY due_at',
      ),
      lastAudit: db.prepare<[], { idx: number; leaf_hash: Buffer }>('SELECT idx, leaf_hash FROM audit_entries ORDER BY idx DESC LIMIT 1'),
      insertAudit: db.prepare('INSERT INTO audit_entries (idx, entry, leaf_hash) VALUES (?, ?, ?)'),
      auditRange: db.prepare<[number, number], { idx: number; entry: string; leaf_hash: Buffer }>(
        'SELECT idx, entry, leaf_hash FROM audit_entries WHERE idx >= ? AND idx < ? ORDER BY idx',
      ),
      insertCheckpoint: db.prepare('INSERT OR IGNORE INTO checkpoints (size, root_hash, note, created_at) VALUES (?, ?, ?, ?)'),
      listCheckpoints: db.prepare<[number], CheckpointRow>('SELECT size, root_hash, note, created_at FROM checkpoints WHERE size > ? ORDER BY size'),
      getCheckpoint: db.prepare<[number], CheckpointRow>('SELECT size, root_hash, note, created_at FROM checkpoints WHERE size = ?'),
      latestCheckpoint: db.prepare<[], CheckpointRow>('SELECT size, root_hash, note, created_at FROM checkpoints ORDER BY size DESC LIMIT 1'),
      putCosignature: db.prepare(
        `INSERT INTO cosignatures (size, cosigner, signature, at) VALUES (?, ?, ?, ?)
         ON CONFLICT (size, cosigner) DO UPDATE SET signature = excluded.signature, at = excluded.at`,
      ),
      cosignaturesOf: db.prepare<[number], CosignatureRow>('SELECT size, cosigner, signature, at FROM cosignatures WHERE size = ? ORDER BY cosigner'),
      allCosignatures: db.prepare<[], CosignatureRow>('SELECT size, cosigner, signature, at FROM cosignatures ORDER BY size, cosigner'),
      relayEnvelopes: db.prepare<[number, string, string, string, number], { pos: number; json: string; accepted_at: number }>(
        `SELECT e.rowid AS pos, e.envelope AS json, e.accepted_at FROM envelopes e
          WHERE e.rowid > ? AND e.from_party = ? AND e.to_party = ?
            AND NOT EXISTS (SELECT 1 FROM relay_sent s WHERE s.kind = 'envelope' AND s.ref = e.id AND s.peer = ?)
          ORDER BY e.rowid LIMIT ?`,
      ),
      relayReceipts: db.prepare<[number, string, string, string, number], { pos: number; json: string; accepted_at: number }>(
        `SELECT r.id AS pos, r.receipt AS json, r.accepted_at FROM receipts r JOIN envelopes e ON e.id = r.message_id
          WHERE r.id > ? AND r.by_party = ? AND e.from_party = ?
            AND NOT EXISTS (SELECT 1 FROM relay_sent s WHERE s.kind = 'receipt' AND s.peer = ?
                              AND s.ref = r.message_id || '/' || r.kind || '/' || r.by_party || '/' || r.by_device)
          ORDER BY r.id LIMIT ?`,
      ),
      relayRefusals: db.prepare<[number, string, string, string, number], { pos: number; json: string; accepted_at: number }>(
        `SELECT f.rowid AS pos, f.refusal AS json, f.accepted_at FROM refusals f JOIN envelopes e ON e.id = f.message_id
          WHERE f.rowid > ? AND f.by_party = ? AND e.from_party = ?
            AND NOT EXISTS (SELECT 1 FROM relay_sent s WHERE s.kind = 'refusal' AND s.peer = ?
                              AND s.ref = f.message_id || '/' || f.by_party || '/' || f.by_device)
          ORDER BY f.rowid LIMIT ?`,
      ),
      insertRelaySent: db.prepare('INSERT OR IGNORE INTO relay_sent (kind, ref, peer, at) VALUES (?, ?, ?, ?)'),
    };
    this.tree = new SqliteAuditTree(db);
  }

  /** Append inside a transaction of `tx`. */
  private audit(entry: AuditEntry): number {
    // Each entry names its own index and the leaf hash of the one before it, so that an auditor
    // can say *which* row was changed, deleted or moved (shared/audit/log-verify.ts).
    const { size: idx, leaf: last } = this.txTip ?? this.auditTip();
    const text = formatAuditEntry(entry, idx, last);
    const hash = leafHash(utf8(text));
    this.stmt.insertAudit.run(idx, text, Buffer.from(hash));
    this.tree.addLeaf(idx, hash);
    this.txTip = { size: idx + 1, leaf: hash };
    return idx;
  }

  /** The committed tip (inside a transaction that has appended nothing yet: the same). */
  private auditTip(): AuditTip {
    if (this.tip) return this.tip;
    const last = this.stmt.lastAudit.get();
    const tip = last ? { size: last.idx + 1, leaf: new Uint8Array(last.leaf_hash) } : { size: 0, leaf: null };
    if (!this.db.inTransaction) this.tip = tip;
    return tip;
  }

  /**
   * `fn` in a transaction (a savepoint inside another), with the audit tip kept in step: the
   * outermost transaction's commit publishes what it appended; any rollback forgets the tip, so
   * that the next append reads it from the table as it then is.
   */
  private tx<T>(fn: () => T): T {
    const outermost = !this.db.inTransaction;
    try {
      const result = this.db.transaction(fn)();
      if (outermost && this.txTip) this.tip = this.txTip;
      return result;
    } catch (error) {
      this.tip = undefined;
      this.txTip = undefined;
      throw error;
    } finally {
      if (outermost) this.txTip = undefined;
    }
  }

  /**
   * Record deadline and link-test state and their events inside the caller's transaction: each
   * event is stored, put in its mailboxes and appended, unchanged, to the audit log.
   */
  private applySideEffects(side: SideEffects | undefined): { device: DeviceKey; item: MailboxItem }[] {
    if (!side) return [];
    for (const r of side.deadlines ?? []) {
      this.stmt.upsertDeadline.run(
        r.messageId, r.rung, r.from, r.to, r.precedence, r.acceptedAt, r.dueAt, r.level, r.nextAt,
        r.closedAt ?? null, r.late === undefined ? null : r.late ? 1 : 0,
      );
    }
    for (const p of side.linkPairs ?? []) {
      this.stmt.upsertLinkPair.run(p.from, p.to, p.status, p.since ?? null, p.last ? JSON.stringify(p.last) : null);
    }
    for (const { test, done } of side.linkTests ?? []) {
      this.stmt.upsertLinkTest.run(test.messageId, test.from, test.to, test.sentAt, test.dueAt, done ? 1 : 0);
    }
    const delivered: { device: DeviceKey; item: MailboxItem }[] = [];
    for (const { event, rank, mailboxes } of side.events ?? []) {
      const json = JSON.stringify(event);
      const id = Number(this.stmt.insertEvent.run(event.type, json, event.at).lastInsertRowid);
      for (const device of mailboxes) {
        const cursor = Number(this.stmt.insertMailbox.run(device, 'event', String(id), rank).lastInsertRowid);
        delivered.push({ device, item: { cursor, rank, kind: 'event', json, acceptedAt: event.at } });
      }
      this.audit(event as AuditEntry);
    }
    for (const entry of side.audit ?? []) this.audit(entry);
    return delivered;
  }

  private writeEvents(w: EventsWrite): WriteResult {
    return { ok: true, status: 'new', acceptedAt: w.acceptedAt, delivered: this.applySideEffects(w) };
  }

  async loadDeadlines(): Promise<DeadlineRecord[]> {
    return this.stmt.openDeadlines.all().map(deadlineFromRow);
  }

  async loadLinkTests(): Promise<{ pairs: LinkPairRecord[]; pending: PendingTest[] }> {
    const pairs = this.stmt.linkPairs.all().map((r): LinkPairRecord => ({
      from: r.from_party,
      to: r.to_party,
      status: r.status,
      ...(r.since === null ? {} : { since: r.since }),
      ...(r.last === null ? {} : { last: JSON.parse(r.last) as LinkPairRecord['last'] & object }),
    }));
    const pending = this.stmt.pendingLinkTests.all().map((r): PendingTest => ({
      messageId: r.message_id,
      from: r.from_party,
      to: r.to_party,
      sentAt: r.sent_at,
      dueAt: r.due_at,
    }));
    return { pairs, pending };
  }

  async ping(): Promise<void> {
    this.stmt.ping.get();
  }

  async putDevice(certificate: DeviceCertificate, at: number, audit: AuditEntry): Promise<boolean> {
    const c = certificate.cert;
    return this.tx(() => {
      const r = this.stmt.insertDevice.run(c.party, c.device, c.signKey, c.role, c.notBefore, c.notAfter, JSON.stringify(certificate), at);
      if (r.changes === 0) return false;
      this.audit(audit);
      return true;
    });
  }

  async putRevocation(revocation: Revocation, at: number, audit: AuditEntry): Promise<boolean> {
    const r = revocation.revocation;
    return this.tx(() => {
      const res = this.stmt.insertRevocation.run(r.party, r.device, r.signKey, JSON.stringify(revocation), at);
      if (res.changes === 0) return false;
      this.audit(audit);
      return true;
    });
  }

  async listDevices(): Promise<DeviceCertificate[]> {
    return this.stmt.listDevices.all().map((r) => JSON.parse(r.certificate) as DeviceCertificate);
  }

  async putPrekey(signed: SignedPrekey, at: number): Promise<boolean> {
    const p = signed.prekey;
    return this.stmt.insertPrekey.run(p.party, p.device, p.boxKey, p.notBefore, p.notAfter, JSON.stringify(signed), at).changes > 0;
  }

  async listPrekeys(now: number): Promise<SignedPrekey[]> {
    return this.stmt.listPrekeys.all(now).map((r) => JSON.parse(r.prekey) as SignedPrekey);
  }

  async listRevocations(): Promise<Revocation[]> {
    return this.stmt.listRevocations.all().map((r) => JSON.parse(r.revocation) as Revocation);
  }

  async getEnvelope(id: string): Promise<StoredEnvelope | undefined> {
    const row = this.stmt.getEnvelope.get(id);
    if (!row) return undefined;
    return { envelope: JSON.parse(row.envelope) as Envelope, envelopeHash: row.hash, acceptedAt: row.accepted_at };
  }

  async getMessage(id: string): Promise<StoredMessage | undefined> {
    const row = this.stmt.getMessage.get(id);
    return row ? { header: JSON.parse(row.header) as EnvelopeHeader, envelopeHash: row.hash } : undefined;
  }

  private writeEnvelope(w: EnvelopeWrite): WriteResult {
    const h = w.envelope.header;
    const guard = {
      lastSeq: (party: string, device: string) => this.stmt.lastSeq.get(deviceKey({ party, device }))?.last_seq ?? 0,
      seqUsed: (party: string, device: string, seq: number) => this.stmt.seqUsed.get(party, device, seq) !== undefined,
      hashOf: (id: string) => this.stmt.envelopeHash.get(id)?.hash,
    };
    // Checked again here, inside the transaction: two envelopes may have passed the relay's checks
    // concurrently, and only the first of a (device, seq) or id may win.
    if (checkReplay(h, guard, w.envelopeHash) === 'duplicate') {
      return { ok: true, status: 'duplicate', acceptedAt: this.stmt.envelopeHash.get(h.id)!.accepted_at };
    }
    const json = JSON.stringify(w.envelope);
    this.stmt.insertEnvelope.run(h.id, w.envelopeHash, h.from.party, h.from.device, h.to, h.precedence, h.seq, JSON.stringify(h), json, w.acceptedAt);
    this.stmt.setSeq.run(deviceKey(h.from), h.seq);
    const delivered = w.mailboxes.map((device) => {
      const cursor = Number(this.stmt.insertMailbox.run(device, 'envelope', h.id, w.rank).lastInsertRowid);
      const item: MailboxItem = { cursor, rank: w.rank, kind: 'envelope', json, acceptedAt: w.acceptedAt };
      return { device, item };
    });
    this.audit(w.audit);
    const followers = this.applySideEffects(w.effects);
    return { ok: true, status: 'new', acceptedAt: w.acceptedAt, delivered: [...delivered, ...followers] };
  }

  private writeReceipt(w: ReceiptWrite): WriteResult {
    const r = w.receipt.receipt;
    const existing = this.stmt.findReceipt.get(r.messageId, r.kind, r.by.party, r.by.device);
    if (existing) return { ok: true, status: 'duplicate', acceptedAt: existing.accepted_at };
    const json = JSON.stringify(w.receipt);
    const id = Number(this.stmt.insertReceipt.run(r.messageId, r.kind, r.by.party, r.by.device, json, r.at, w.acceptedAt).lastInsertRowid);
    const delivered = w.mailboxes.map((device) => {
      const cursor = Number(this.stmt.insertMailbox.run(device, 'receipt', String(id), w.rank).lastInsertRowid);
      const item: MailboxItem = { cursor, rank: w.rank, kind: 'receipt', json, acceptedAt: w.acceptedAt };
      return { device, item };
    });
    this.audit(w.audit);
    const followers = this.applySideEffects(w.effects);
    return { ok: true, status: 'new', acceptedAt: w.acceptedAt, delivered: [...delivered, ...followers] };
  }

  private writeRefusal(w: RefusalWrite): WriteResult {
    const r = w.refusal.refusal;
    const json = JSON.stringify(w.refusal);
    const existing = this.stmt.findRefusal.get(r.messageId, r.by.party, r.by.device);
    if (existing) {
      // The same refusal again (a resend after a lost answer) is answered again; another one is a
      // device changing its account of the same message.
      if (existing.refusal === json) return { ok: true, status: 'duplicate', acceptedAt: existing.accepted_at };
      throw new HotlineError('HL_ERR_REFUSAL_CONFLICT', `${r.by.party}/${r.by.device} has already refused ${r.messageId} with another refusal`);
    }
    if (this.stmt.receiptBy.get(r.messageId, r.by.party, r.by.device)) {
      throw new HotlineError('HL_ERR_REFUSAL_CONFLICT', `${r.by.party}/${r.by.device} has already signed a receipt for ${r.messageId}: it cannot refuse it now`);
    }
    this.stmt.insertRefusal.run(r.messageId, r.by.party, r.by.device, r.code, json, w.acceptedAt);
    this.audit(w.audit);
    const followers = this.applySideEffects(w.effects);
    return { ok: true, status: 'new', acceptedAt: w.acceptedAt, delivered: followers };
  }

  async refusalsOf(messageId: string): Promise<StoredRefusal[]> {
    return this.stmt.refusalsOf.all(messageId).map((r) => ({ party: r.by_party, device: r.by_device, code: r.code, acceptedAt: r.accepted_at }));
  }

  async commit(writes: readonly Write[], visible?: (results: readonly WriteResult[]) => void): Promise<WriteResult[]> {
    // One transaction, one fsync, for the batch, and no savepoint per write: each write checks
    // everything that could refuse it (replay, duplicate id, duplicate receipt) before its first
    // statement, so a refused write has touched nothing. What is left to fail part-way is the
    // unexpected (disk full, I/O error, a bug); then the batch is rolled back whole and each write
    // is retried in its own transaction, so that one bad write still fails alone.
    //
    // Every batch, a FLASH's too, is fsync'd on the thread pool. A small FLASH batch used to commit
    // with its fsync inside COMMIT, on the event loop, because its copies waited for that fsync and
    // the thread pool's round trip cost it more; now they go out before it, and the loop, free
    // during the flush, reads the receipt sooner (docs/performance.md, eighteenth session).
    if (this.walFd !== undefined) return this.commitThenSync(writes, visible);
    const before = this.auditTip().size;
    const results = this.commitNow(writes);
    // A COMMIT that appended entries wrote WAL frames and fsync'd the WAL: every frame written
    // before it is durable too, those of batches whose own fsync is still pending on the thread
    // pool included. (A batch that wrote nothing, all duplicates, synced nothing: no claim then.)
    const after = this.auditTip().size;
    if (after > before) this.durableAudit = after;
    this.checkpointer?.committed();
    visible?.(results);
    return results;
  }

  /** The batch in one transaction with synchronous=NORMAL, `visible`, then the WAL fsync'd off the event loop. */
  private async commitThenSync(writes: readonly Write[], visible: ((results: readonly WriteResult[]) => void) | undefined): Promise<WriteResult[]> {
    const fd = this.walFd!;
    // A large WAL starts over before this batch, off the event loop (WalCheckpointer.settle). Not
    // before a FLASH: it may commit while the checkpoint runs, and the WAL starts over at the next settle.
    if (this.checkpointer?.settleDue === true && !writes.some(isFlashWrite)) await this.checkpointer.settle();
    this.stmt.syncNormal.run();
    let results: WriteResult[];
    try {
      results = this.commitNow(writes);
    } finally {
      this.stmt.syncFull.run();
    }
    // Done, not yet known durable: what it stored may be forwarded now (Store `commit`).
    visible?.(results);
    const size = this.auditTip().size;
    this.syncing++;
    let settled!: () => void;
    this.lastSync = new Promise<void>((resolve) => (settled = resolve));
    try {
      await new Promise<void>((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
      this.durableAudit = Math.max(this.durableAudit, size);
    } catch (error) {
      // Written but not known to be on disk: nobody may hear "accepted"; a resend is answered from the store.
      return writes.map(() => ({ ok: false, error: storeFailed(error) }));
    } finally {
      this.syncing--;
      settled();
    }
    this.checkpointer?.committed();
    return results;
  }

  private commitNow(writes: readonly Write[]): WriteResult[] {
    try {
      return this.tx(() => this.writeBatch(writes));
    } catch {
      return writes.map((w) => {
        try {
          return this.tx(() => this.writeBatch([w]))[0]!;
        } catch (error) {
          return { ok: false, error: storeFailed(error) };
        }
      });
    }
  }

  private writeBatch(writes: readonly Write[]): WriteResult[] {
    const acks: [number, DeviceKey][] = [];
    const results = writes.map((w): WriteResult => {
      if (w.kind === 'ack') {
        for (const cursor of w.cursors) acks.push([cursor, w.device]);
        return { ok: true, status: 'new', acceptedAt: w.acceptedAt, delivered: [] };
      }
      try {
        if (w.kind === 'refusal') return this.writeRefusal(w);
        return w.kind === 'envelope' ? this.writeEnvelope(w) : w.kind === 'receipt' ? this.writeReceipt(w) : this.writeEvents(w);
      } catch (error) {
        // Refusals are thrown before anything is written; anything else aborts the batch (above).
        if (error instanceof HotlineError && error.code !== 'HL_ERR_STORE_FAILED') return { ok: false, error };
        throw error;
      }
    });
    if (acks.length > 0) this.ackAll(JSON.stringify(acks));
    return results;
  }

  async mailbox(device: DeviceKey, options: { after?: MailboxPosition; upTo: number; limit: number }): Promise<MailboxItem[]> {
    const { after, upTo, limit } = options;
    const rows = after ? this.stmt.mailboxSameRank.all(device, after.rank, after.cursor, upTo, limit) : [];
    if (rows.length < limit) rows.push(...this.stmt.mailboxNextRanks.all(device, after?.rank ?? -1, upTo, limit - rows.length));
    return rows.map((row): MailboxItem => ({ cursor: row.cursor, rank: row.rank, kind: row.kind, json: row.json, acceptedAt: row.accepted_at }));
  }

  async maxCursor(): Promise<number> {
    return this.stmt.maxCursor.get()?.c ?? 0;
  }

  async ack(device: DeviceKey, cursors: readonly number[]): Promise<number> {
    this.db.transaction(() => this.ackAll(JSON.stringify(cursors.map((c) => [c, device]))))();
    return this.ackedCursor(device);
  }

  async lastSeq(device: DeviceKey): Promise<number> {
    return this.stmt.lastSeq.get(device)?.last_seq ?? 0;
  }

  async ackedCursor(device: DeviceKey): Promise<number> {
    return this.stmt.ackedCursor.get(device)?.cursor ?? 0;
  }

  /** `[[cursor, device], ...]` as JSON acknowledged, and each device's highest acknowledged cursor kept. */
  private ackAll(json: string): void {
    this.stmt.ack.run(json);
    this.stmt.ackedUpTo.run(json);
  }

  async appendAudit(entry: AuditEntry): Promise<number> {
    return this.tx(() => this.audit(entry));
  }

  /** Append many entries in one transaction (one fsync): for building large test and bench logs. */
  appendAuditMany(entries: Iterable<AuditEntry>): number {
    return this.tx(() => {
      let n = 0;
      for (const e of entries) {
        this.audit(e);
        n++;
      }
      return n;
    });
  }

  async auditSize(): Promise<number> {
    // While a group commit's fsync is pending, its entries are not served (see the class comment);
    // so the fsync begun last is waited for first (~1 ms): what a device was sent before this call
    // (forwarded at its transaction, before its fsync) is then served. Later commits are not waited
    // for, so a sustained stream cannot keep a reader waiting.
    if (this.syncing > 0 && this.auditTip().size > this.durableAudit) await this.lastSync;
    // Every other write commits with synchronous=FULL, which syncs the whole WAL: all is durable.
    const size = this.auditTip().size;
    if (this.syncing === 0) this.durableAudit = size;
    return Math.min(size, this.durableAudit);
  }

  async auditEntries(from: number, to: number): Promise<{ idx: number; entry: string; leafHash: Uint8Array }[]> {
    return this.stmt.auditRange.all(from, to).map((r) => ({ idx: r.idx, entry: r.entry, leafHash: new Uint8Array(r.leaf_hash) }));
  }

  async auditNodes(refs: readonly NodeRef[]): Promise<Uint8Array[]> {
    return this.tree.nodes(refs);
  }

  async checkAuditTree(): Promise<string | undefined> {
    return this.tree.check();
  }

  async checkAuditNodes(level: number, from: number, to: number): Promise<string | undefined> {
    return this.tree.checkNodes(level, from, to);
  }

  async rebuildAuditTree(): Promise<number> {
    return this.tree.rebuild();
  }

  async putCheckpoint(c: StoredCheckpoint): Promise<boolean> {
    return this.stmt.insertCheckpoint.run(c.size, c.rootHash, c.note, c.createdAt).changes > 0;
  }

  async listCheckpoints(after = -1): Promise<StoredCheckpoint[]> {
    return this.stmt.listCheckpoints.all(after).map(toCheckpoint);
  }

  async getCheckpoint(size?: number): Promise<StoredCheckpoint | undefined> {
    const row = size === undefined ? this.stmt.latestCheckpoint.get() : this.stmt.getCheckpoint.get(size);
    return row ? toCheckpoint(row) : undefined;
  }

  async putCosignature(c: StoredCosignature): Promise<void> {
    this.stmt.putCosignature.run(c.size, c.cosigner, c.signature, c.at);
  }

  async listCosignatures(size?: number): Promise<StoredCosignature[]> {
    return size === undefined ? this.stmt.allCosignatures.all() : this.stmt.cosignaturesOf.all(size);
  }

  async checkIntegrity(): Promise<string | undefined> {
    try {
      const rows = this.db.pragma('quick_check(20)') as { quick_check: string }[];
      const found = rows.map((r) => r.quick_check).filter((r) => r !== 'ok');
      return found.length === 0 ? undefined : found.join('; ');
    } catch (err) {
      // SQLITE_CORRUPT and friends: the check itself could not read the file.
      return (err as Error).message;
    }
  }

  async relayOutgoing(options: { kind: RelayMark['kind']; local: string; peer: string; after: number; limit: number }): Promise<RelayOutgoing[]> {
    const { kind, local, peer, after, limit } = options;
    const stmt = kind === 'envelope' ? this.stmt.relayEnvelopes : kind === 'receipt' ? this.stmt.relayReceipts : this.stmt.relayRefusals;
    const rows = stmt.all(after, local, peer, peer, limit);
    return rows.map((r) => ({ pos: r.pos, json: r.json, acceptedAt: r.accepted_at }));
  }

  async markRelayed(marks: readonly RelayMark[], events?: EventsWrite): Promise<{ device: DeviceKey; item: MailboxItem }[]> {
    try {
      return this.tx(() => {
        let fresh = false;
        for (const m of marks) fresh = this.stmt.insertRelaySent.run(m.kind, m.ref, m.peer, m.at).changes > 0 || fresh;
        // The events (the sender's `message.relayed`) go with the first confirmation only.
        return fresh && events ? this.applySideEffects(events) : [];
      });
    } catch (error) {
      throw storeFailed(error);
    }
  }

  async getMeta(key: string): Promise<string | undefined> {
    return this.stmt.getMeta.get(key)?.value;
  }

  async setMeta(key: string, value: string): Promise<void> {
    this.stmt.setMeta.run(key, value);
  }

  // ----- escalation (server/escalation/) -----

  async eventsAfter(afterId: number, limit: number): Promise<StoredEventRow[]> {
    return this.db.prepare<[number, number], StoredEventRow>('SELECT id, event, at FROM events WHERE id > ? ORDER BY id LIMIT ?').all(afterId, limit);
  }

  async lastEventId(): Promise<number> {
    return this.db.prepare<[], { id: number | null }>('SELECT MAX(id) AS id FROM events').get()?.id ?? 0;
  }

  async queueEscalations(from: number | undefined, to: number, rows: readonly EscalationRow[]): Promise<boolean> {
    try {
      return this.db.transaction(() => {
        const now = this.stmt.getMeta.get(ESCALATION_CURSOR_KEY)?.value;
        if (now !== (from === undefined ? undefined : String(from))) return false;
        const insert = this.db.prepare('INSERT INTO escalations (hook, event_id, event, created_at, next_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING');
        for (const r of rows) insert.run(r.hook, r.eventId, r.event, r.createdAt, r.nextAt);
        this.stmt.setMeta.run(ESCALATION_CURSOR_KEY, String(to));
        return true;
      })();
    } catch (error) {
      throw storeFailed(error);
    }
  }

  async claimEscalations(now: number, leaseUntil: number, limit: number): Promise<ClaimedEscalation[]> {
    try {
      return this.db
        .prepare<[number, number, number], { hook: string; event_id: number; event: string; created_at: number; attempts: number }>(
          `UPDATE escalations SET attempts = attempts + 1, next_at = ?
            WHERE rowid IN (SELECT rowid FROM escalations WHERE done_at IS NULL AND next_at <= ? ORDER BY next_at, event_id LIMIT ?)
           RETURNING hook, event_id, event, created_at, attempts`,
        )
        .all(leaseUntil, now, limit)
        .map(escalationFromRow);
    } catch (error) {
      throw storeFailed(error);
    }
  }

  async settleEscalation(hook: string, eventId: number, settled: EscalationSettled): Promise<void> {
    try {
      this.db.prepare('UPDATE escalations SET done_at = ?, next_at = COALESCE(?, next_at), outcome = ? WHERE hook = ? AND event_id = ?').run(...settledColumns(settled), hook, eventId);
    } catch (error) {
      throw storeFailed(error);
    }
  }

  async nextEscalationAt(): Promise<number | undefined> {
    return this.db.prepare<[], { at: number | null }>('SELECT MIN(next_at) AS at FROM escalations WHERE done_at IS NULL').get()?.at ?? undefined;
  }

  /** WAL checkpoints the checkpoint worker has completed (tests). */
  get walCheckpoints(): number {
    return this.checkpointer?.completed ?? 0;
  }

  /** A WAL checkpoint now, in the checkpoint worker (tests); undefined without a WAL. */
  async checkpointWal(): Promise<CheckpointResult | undefined> {
    return this.checkpointer?.checkpoint();
  }

  async close(): Promise<void> {
    // The worker's connection first: the last connection to close checkpoints and removes the WAL.
    await this.checkpointer?.close();
    if (this.db.open) this.db.close();
    if (this.walFd !== undefined) closeSync(this.walFd);
    this.walFd = undefined;
  }
}
