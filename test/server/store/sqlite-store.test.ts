import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { envelopeHash } from '../../../shared/crypto/envelope.js';
import { leafHash } from '../../../shared/audit/merkle.js';
import { bytesEqual, toHex, utf8 } from '../../../shared/encoding/base64.js';
import { MIGRATIONS, SqliteStore } from '../../../server/store/sqlite-store.js';
import type { Write } from '../../../server/relay/records.js';
import { CN, JP, tempDir } from '../../helpers/deployment.js';
import { onCleanup } from '../../helpers/test-server.js';
import { openSqliteStore } from '../../helpers/stores.js';

/** What only the SQLite adapter does: the store contract itself is store-contract.test.ts. */

const setup = openSqliteStore;

/**
 * The audit size the store serves without waiting, or 'waits' while it waits for an fsync on the
 * thread pool (whose completion, a callback of the event loop, cannot come during microtasks).
 */
async function servedNow(store: SqliteStore): Promise<number | 'waits'> {
  let served: number | undefined;
  void store.auditSize().then((n) => (served = n));
  for (let i = 0; i < 10; i++) await null;
  return served ?? 'waits';
}

const ALL = { upTo: Number.MAX_SAFE_INTEGER, limit: 1000 };

/** A database at the schema just before the migration that mentions `marker`, open for rows as that schema wrote them. */
function databaseBefore(marker: string): { path: string; raw: Database.Database } {
  const before = MIGRATIONS.findIndex((m) => m.includes(marker));
  expect(before).toBeGreaterThan(0);
  const dir = tempDir();
  onCleanup(() => dir.remove());
  const path = join(dir.path, 'old.sqlite');
  const raw = new Database(path);
  for (const m of MIGRATIONS.slice(0, before)) raw.exec(m);
  raw.pragma(`user_version = ${before}`);
  return { path, raw };
}

describe('SqliteStore', () => {
  it('opens in WAL mode, migrates once, and reopens the same database', async () => {
    const { store, path } = await setup();
    await store.appendAudit({ type: 'server.start', at: 1 });
    const raw = new Database(path, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(raw.pragma('user_version', { simple: true })).toBeGreaterThanOrEqual(1);
    raw.close();
    const again = new SqliteStore(path);
    expect(await again.auditSize()).toBe(1);
    await again.close();
  });

  it('a group commit is answered after its WAL fsync, and its audit entries are not served before: the size asked meanwhile waits for it', async () => {
    const { store, path, envelopeWrite } = await setup();
    const before = await store.auditSize();
    const batch = await Promise.all(Array.from({ length: 5 }, (_, i) => envelopeWrite(i + 1)));
    const committing = store.commit(batch);
    // The transaction ran (other readers of the file see the rows) but the fsync is still pending:
    // the tree size, which every checkpoint and proof starts from, is served once it has ended.
    const reader = new Database(path, { readonly: true });
    onCleanup(() => {
      reader.close();
    });
    expect(reader.prepare('SELECT COUNT(*) AS n FROM envelopes').get()).toEqual({ n: batch.length });
    expect(await servedNow(store)).toBe('waits');
    // Asked now, answered once the fsync has ended: with the batch's entries.
    expect(await store.auditSize()).toBe(before + batch.length);
    const results = await committing;
    expect(results.every((r) => r.ok && r.status === 'new')).toBe(true);
  });

  it('every batch, a FLASH\'s too, acks riding along or not, is fsync\'d on the thread pool: served once that fsync has ended', async () => {
    const { store, envelopeWrite } = await setup();
    const acks = Array.from({ length: 12 }, (_, i) => ({ kind: 'ack', device: 'cn-mnd/op1', cursors: [i + 1], acceptedAt: 1 }) as Write);
    const batches = [[await envelopeWrite(1, undefined, 'ROUTINE')], [await envelopeWrite(2, undefined, 'FLASH')], [...acks, await envelopeWrite(3, undefined, 'FLASH')]];
    for (const batch of batches) {
      const before = await store.auditSize();
      const committing = store.commit(batch);
      expect(await servedNow(store)).toBe('waits');
      expect((await committing).every((r) => r.ok)).toBe(true);
      expect(await store.auditSize()).toBe(before + 1);
    }
  });

  it('tells the batch\'s results once its transaction is done, before its fsync: the rows are there, the entries not yet served', async () => {
    const { store, path, envelopeWrite } = await setup();
    const before = await store.auditSize();
    const batch = await Promise.all([1, 2, 3].map((n) => envelopeWrite(n, undefined, n === 2 ? 'FLASH' : 'ROUTINE')));
    const reader = new Database(path, { readonly: true });
    onCleanup(() => {
      reader.close();
    });
    let told: { results: readonly unknown[]; rows: unknown } | undefined;
    const committing = store.commit(batch, (results) => {
      told = { results, rows: reader.prepare('SELECT COUNT(*) AS n FROM envelopes').get() };
    });
    expect(told?.rows).toEqual({ n: 3 });
    expect(await servedNow(store)).toBe('waits');
    const results = await committing;
    expect(told?.results).toEqual(results);
    expect(results.every((r) => r.ok && r.status === 'new')).toBe(true);
    expect(await store.auditSize()).toBe(before + 3);
  });

  it('commits may overlap: a FLASH batch committed beside one whose fsync runs follows it in the file, and both are served once both fsyncs have ended', async () => {
    const { store, path, envelopeWrite } = await setup();
    expect(store.commitsOverlap).toBe(true);
    const before = await store.auditSize();
    const routine = await Promise.all([1, 2, 3, 4, 5].map((n) => envelopeWrite(n, undefined, 'ROUTINE')));
    const flash = await envelopeWrite(6, undefined, 'FLASH');
    const first = store.commit(routine);
    expect(await servedNow(store)).toBe('waits');
    const second = store.commit([flash]);
    const reader = new Database(path, { readonly: true });
    onCleanup(() => {
      reader.close();
    });
    expect(reader.prepare('SELECT seq FROM envelopes ORDER BY rowid').all()).toEqual([1, 2, 3, 4, 5, 6].map((seq) => ({ seq })));
    expect(await servedNow(store)).toBe('waits');
    expect((await second)[0]).toMatchObject({ ok: true, status: 'new' });
    expect((await first).every((r) => r.ok && r.status === 'new')).toBe(true);
    expect(await store.auditSize()).toBe(before + 6);
  });

  it('migration: ranks the un-acknowledged rows of a database made before ranks', async () => {
    const { envelopeWrite } = await setup();
    const routine = (await envelopeWrite(1, undefined, 'ROUTINE')).envelope;
    const flash = (await envelopeWrite(2, undefined, 'FLASH')).envelope;
    const receiptJson = JSON.stringify({ receipt: { messageId: flash.header.id }, signature: 'x' });
    // A database at the schema just before the rank migration, with rows as that schema wrote them
    // (whatever migrations come after it run on top, as in a real upgrade).
    const { path: oldPath, raw } = databaseBefore('ADD COLUMN rank');
    const putEnvelope = raw.prepare('INSERT INTO envelopes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
    for (const e of [routine, flash]) {
      const h = e.header;
      putEnvelope.run(h.id, envelopeHash(h), h.from.party, h.from.device, h.to, h.precedence, h.seq, JSON.stringify(h), JSON.stringify(e), 1);
    }
    raw.prepare('INSERT INTO receipts (message_id, kind, by_party, by_device, receipt, at, accepted_at) VALUES (?, ?, ?, ?, ?, 1, 1)').run(flash.header.id, 'delivered', CN, 'op1', receiptJson);
    raw.prepare('INSERT INTO events (type, event, at) VALUES (?, ?, 1)').run('deadline.missed', JSON.stringify({ type: 'deadline.missed', precedence: 'PRIORITY', at: 1 }));
    raw.prepare('INSERT INTO events (type, event, at) VALUES (?, ?, 1)').run('link.down', JSON.stringify({ type: 'link.down', at: 1 }));
    const box = raw.prepare('INSERT INTO mailbox (device, kind, ref) VALUES (?, ?, ?)');
    box.run(`${JP}/op1`, 'envelope', routine.header.id);
    box.run(`${JP}/op1`, 'envelope', flash.header.id);
    box.run(`${JP}/op1`, 'receipt', '1');
    box.run(`${JP}/op1`, 'event', '1');
    box.run(`${JP}/op1`, 'event', '2');
    raw.close();

    const migrated = new SqliteStore(oldPath);
    onCleanup(() => migrated.close());
    const items = await migrated.mailbox(`${JP}/op1`, ALL);
    // FLASH envelope, the receipt for it and the link event rank 0; the PRIORITY deadline event 2; ROUTINE 3.
    expect(items.map((i) => [i.cursor, i.rank])).toEqual([[2, 0], [3, 0], [5, 0], [4, 2], [1, 3]]);
    // The seq index came with it: a used seq is refused.
    const [again] = await migrated.commit([await envelopeWrite(1, undefined, 'ROUTINE')]);
    expect(again!.ok === false && (again!.error as { code?: string }).code).toBe('HL_ERR_ENVELOPE_REPLAY');
  });

  it('migration: the indexes of open rows only, with each device\'s highest acknowledged cursor carried over', async () => {
    const { envelopeWrite } = await setup();
    // A database at the schema just before these indexes, with acknowledged and open rows of two
    // devices and closed and open deadlines, as that schema wrote them.
    const { path: oldPath, raw } = databaseBefore('mailbox_unacked');
    const box = raw.prepare('INSERT INTO mailbox (device, kind, ref, acked, rank) VALUES (?, ?, ?, ?, ?)');
    box.run(`${CN}/op1`, 'event', '1', 1, 3); // 1
    box.run(`${CN}/op1`, 'event', '1', 1, 0); // 2: the highest acknowledged of cn-mnd/op1, a FLASH rank
    box.run(`${JP}/op1`, 'event', '1', 1, 3); // 3: the highest acknowledged of jp-mod/op1
    box.run(`${CN}/op1`, 'event', '1', 0, 3); // 4: open
    box.run(`${JP}/op1`, 'event', '1', 0, 1); // 5: open
    raw.prepare('INSERT INTO events (id, type, event, at) VALUES (1, ?, ?, 1)').run('link.down', JSON.stringify({ type: 'link.down', at: 1 }));
    const deadline = raw.prepare(
      "INSERT INTO deadlines (message_id, rung, from_party, to_party, precedence, accepted_at, due_at, level, next_at, closed_at) VALUES (?, 'delivered', 'jp-mod', 'cn-mnd', 'FLASH', 1, ?, 0, ?, ?)",
    );
    deadline.run('m-closed', 10, 10, 5);
    deadline.run('m-open-late', 30, 30, null);
    deadline.run('m-open-soon', 20, 20, null);
    raw.close();

    const migrated = new SqliteStore(oldPath);
    onCleanup(() => migrated.close());
    expect(await migrated.ackedCursor(`${CN}/op1`)).toBe(2);
    expect(await migrated.ackedCursor(`${JP}/op1`)).toBe(3);
    expect(await migrated.ackedCursor(`${CN}/archive1`)).toBe(0);
    expect((await migrated.mailbox(`${CN}/op1`, ALL)).map((i) => i.cursor)).toEqual([4]);
    expect((await migrated.mailbox(`${JP}/op1`, ALL)).map((i) => i.cursor)).toEqual([5]);
    expect((await migrated.loadDeadlines()).map((d) => d.messageId)).toEqual(['m-open-soon', 'm-open-late']);
    // And on from there: a new item acknowledged moves the device's cursor, an old one does not.
    await migrated.commit([await envelopeWrite(1)]);
    const [fresh] = await migrated.mailbox(`${CN}/op1`, ALL);
    expect(fresh!.cursor).toBeGreaterThan(5);
    expect(await migrated.ack(`${CN}/op1`, [fresh!.cursor])).toBe(fresh!.cursor);
    expect(await migrated.ack(`${CN}/op1`, [4])).toBe(fresh!.cursor);
    // The open-rows index is the one a device's backlog is read through.
    const plan = new Database(oldPath, { readonly: true });
    onCleanup(() => {
      plan.close();
    });
    const detail = plan
      .prepare("EXPLAIN QUERY PLAN SELECT cursor FROM mailbox WHERE device = 'x' AND acked = 0 AND rank = 0 AND cursor > 0 AND cursor <= 9 ORDER BY cursor")
      .all()
      .map((r) => (r as { detail: string }).detail)
      .join(' ');
    expect(detail).toContain('mailbox_unacked');
  });

  it('refuses a database whose schema is newer than this relay (HL_ERR_CONFIG_INVALID, upgrade the relay), and leaves it as it was', async () => {
    const dir = tempDir();
    onCleanup(() => dir.remove());
    const path = join(dir.path, 'newer.sqlite');
    const first = new SqliteStore(path);
    await first.close();
    const raw = new Database(path);
    raw.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    raw.close();
    let error: unknown;
    try {
      new SqliteStore(path);
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ code: 'HL_ERR_CONFIG_INVALID' });
    expect((error as Error).message).toMatch(new RegExp(`version ${MIGRATIONS.length + 1}, newer than this relay knows \\(${MIGRATIONS.length}\\): upgrade the relay`));
    const after = new Database(path, { readonly: true });
    onCleanup(() => {
      after.close();
    });
    expect(after.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length + 1);
  });

  it('keeps the audit log\'s tip in memory: a batch rolled back part-way appends nothing, and what follows chains on the last committed entry', async () => {
    const { store, path, envelopeWrite } = await setup();
    await store.appendAudit({ type: 'server.start', at: 1 });
    const [first, poison, third] = [await envelopeWrite(1), await envelopeWrite(2), await envelopeWrite(3)];
    // The second write fails after the first has appended its entry in the same transaction: the
    // batch is rolled back whole and each write retried alone (SqliteStore.commitNow).
    const raw = new Database(path);
    raw.exec(`CREATE TRIGGER refuse_second BEFORE INSERT ON envelopes WHEN NEW.id = '${poison.envelope.header.id}' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`);
    raw.close();
    const results = await store.commit([first, poison, third]);
    expect(results.map((r) => r.ok)).toEqual([true, false, true]);
    await store.appendAudit({ type: 'server.stop', at: 2 });

    const chained = async (s: SqliteStore) => {
      const size = await s.auditSize();
      const entries = await s.auditEntries(0, size);
      expect(entries.map((e) => e.idx)).toEqual([...Array(size).keys()]);
      entries.forEach((e, k) => {
        const parsed = JSON.parse(e.entry) as { idx: number; prev: string };
        expect(parsed.idx).toBe(k);
        expect(parsed.prev).toBe(k === 0 ? '' : toHex(entries[k - 1]!.leafHash));
        expect(bytesEqual(e.leafHash, leafHash(utf8(e.entry)))).toBe(true);
      });
      expect(await s.checkAuditTree()).toBeUndefined();
      return entries.map((e) => (JSON.parse(e.entry) as { type: string }).type);
    };
    expect(await chained(store)).toEqual(['server.start', 'envelope.accepted', 'envelope.accepted', 'server.stop']);
    // A store opened afterwards reads the same tip from the table and goes on from it.
    await store.close();
    const again = new SqliteStore(path);
    onCleanup(() => again.close());
    await again.appendAudit({ type: 'server.start', at: 3 });
    expect(await chained(again)).toEqual(['server.start', 'envelope.accepted', 'envelope.accepted', 'server.stop', 'server.start']);
  });
});
