import { execFile } from 'node:child_process';
import { closeSync, copyFileSync, mkdirSync, openSync, readSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it, vi } from 'vitest';
import { SqliteStore } from '../../../server/store/sqlite-store.js';
import { WalCheckpointer } from '../../../server/store/wal-checkpointer.js';
import { createDeployment, tempDir } from '../../helpers/deployment.js';
import { onCleanup } from '../../helpers/test-server.js';
import { envelopeWrites, openSqliteStore } from '../../helpers/stores.js';

const setup = openSqliteStore;

function countEnvelopes(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT COUNT(*) AS n FROM envelopes').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** How many times SQLite has started the WAL over: the checkpoint sequence number in its header. */
function walRestarts(path: string): number {
  const fd = openSync(`${path}-wal`, 'r');
  try {
    const header = Buffer.alloc(16);
    readSync(fd, header, 0, 16, 0);
    return header.readUInt32BE(12);
  } finally {
    closeSync(fd);
  }
}

/** A SQLite store whose group commits wait for the WAL to start over past `walSettlePages`. */
async function settlingStore(walSettlePages: number) {
  const dir = tempDir();
  const path = join(dir.path, 'hotline.sqlite');
  const store = new SqliteStore(path, { walSettlePages });
  onCleanup(async () => {
    await store.close();
    dir.remove();
  });
  return { store, path, envelopeWrite: envelopeWrites(await createDeployment()) };
}

describe('WAL checkpoints off the event loop (issue 9)', () => {
  it('the checkpoint worker copies the WAL into the database after 32 group commits, unasked', async () => {
    const { store, dir, path, envelopeWrite } = await setup();
    for (let seq = 1; seq <= 32; seq++) expect((await store.commit([await envelopeWrite(seq)]))[0]).toMatchObject({ ok: true, status: 'new' });
    // The worker answers in order: once this explicit checkpoint is done, the automatic one is too.
    const explicit = await store.checkpointWal();
    expect(store.walCheckpoints).toBe(2);
    expect(explicit).toMatchObject({ busy: 0 });
    expect(explicit!.checkpointed).toBe(explicit!.log);
    // The database file alone (no WAL beside it) holds every envelope: the worker copied them.
    const alone = join(dir, 'alone.sqlite');
    copyFileSync(path, alone);
    expect(countEnvelopes(alone)).toBe(32);
  });

  it('nothing committed is lost across checkpoints: a crash image (database + WAL as left) has every write', async () => {
    const { store, dir, path, envelopeWrite } = await setup();
    for (let seq = 1; seq <= 40; seq++) await store.commit([await envelopeWrite(seq)]);
    await store.checkpointWal();
    for (let seq = 41; seq <= 45; seq++) await store.commit([await envelopeWrite(seq)]);
    // Copied while the store is open, as a power cut would leave them (the WAL holds 41–45).
    copyFileSync(path, join(dir, 'crash.sqlite'));
    copyFileSync(`${path}-wal`, join(dir, 'crash.sqlite-wal'));
    expect(countEnvelopes(join(dir, 'crash.sqlite'))).toBe(45);
    // And the store itself, reopened after close, has them all.
    await store.close();
    const again = new SqliteStore(path);
    onCleanup(() => again.close());
    expect((await again.mailbox('cn-mnd/op1', { upTo: Number.MAX_SAFE_INTEGER, limit: 1000 })).length).toBeGreaterThan(0);
    expect(countEnvelopes(path)).toBe(45);
  });

  it('a worker that cannot open the database is reported once, so the writer checkpoints by itself again', async () => {
    const failures: Error[] = [];
    const c = new WalCheckpointer('/nonexistent-hotline-dir/x.sqlite', (e) => failures.push(e));
    await expect(c.checkpoint()).rejects.toThrow();
    expect(failures).toHaveLength(1);
    await expect(c.checkpoint()).rejects.toThrow(/failed/);
    c.committed();
    expect(failures).toHaveLength(1);
    await c.close();
  });

  it('a store whose worker fails tells its owner once (server/main.ts logs it as a warning) and goes on committing', async () => {
    const dir = tempDir();
    onCleanup(() => dir.remove());
    const data = join(dir.path, 'data');
    mkdirSync(data);
    const path = join(data, 'hotline.sqlite');
    const failures: Error[] = [];
    const store = new SqliteStore(path, { onCheckpointWorkerFailure: (e) => failures.push(e) });
    onCleanup(() => store.close());
    const envelopeWrite = envelopeWrites(await createDeployment());
    expect((await store.commit([await envelopeWrite(1)]))[0]).toMatchObject({ ok: true });
    // The worker opens the database by its path at its first checkpoint: with the folder moved
    // away for that moment, it cannot.
    renameSync(data, `${data}-away`);
    await expect(store.checkpointWal()).rejects.toThrow();
    renameSync(`${data}-away`, data);
    expect(failures).toHaveLength(1);
    await expect(store.checkpointWal()).rejects.toThrow(/failed/);
    for (let seq = 2; seq <= 40; seq++) expect((await store.commit([await envelopeWrite(seq)]))[0]).toMatchObject({ ok: true, status: 'new' });
    expect(failures).toHaveLength(1);
    await store.close();
    expect(countEnvelopes(path)).toBe(40);
  });

  it('a checkpoint awaited holds the process open until it is answered (an unref\'d worker let the bench stop silently); closed with one still out, until the worker has ended', async () => {
    const { dir } = await setup();
    const path = join(dir, 'child.sqlite');
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE t (v)');
    db.close();
    // Nothing else holds this child's event loop: with the worker unref'd while a checkpoint is
    // awaited, the loop empties, the process exits with status 0 and "answered" never prints.
    const script = join(dir, 'await-checkpoint.mts');
    const module = fileURLToPath(new URL('../../../server/store/wal-checkpointer.ts', import.meta.url));
    writeFileSync(
      script,
      [
        `import { WalCheckpointer } from ${JSON.stringify(module)};`,
        `const c = new WalCheckpointer(${JSON.stringify(path)}, (e) => { console.log('failed', e.message); });`,
        `const r = await c.checkpoint();`,
        `console.log('answered', r.busy);`,
        `await c.close();`,
        `console.log('closed');`,
      ].join('\n'),
    );
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', script], { cwd: fileURLToPath(new URL('../../..', import.meta.url)), timeout: 60_000 });
    expect(stdout.split('\n').filter(Boolean)).toEqual(['answered 0', 'closed']);

    // Closed while a checkpoint is still out (a group commit starts one and does not wait for it):
    // its answer, coming while close() waits for the worker to end, unref'd the worker, and the
    // process ended inside close() (status 13 here, at a top-level await; the bench's smoke run
    // stopped so, status 0, once a second worker thread shifted the timing).
    const inFlight = join(dir, 'close-in-flight.mts');
    writeFileSync(
      inFlight,
      [
        `import { WalCheckpointer } from ${JSON.stringify(module)};`,
        `const c = new WalCheckpointer(${JSON.stringify(path)}, (e) => { console.log('failed', e.message); });`,
        `await c.checkpoint();`,
        `const out = c.checkpoint();`,
        `await c.close();`,
        `console.log('closed', (await out).busy);`,
      ].join('\n'),
    );
    for (let i = 0; i < 3; i++) {
      const again = await promisify(execFile)(process.execPath, ['--import', 'tsx', inFlight], { cwd: fileURLToPath(new URL('../../..', import.meta.url)), timeout: 60_000 });
      expect(again.stdout.trim()).toBe('closed 0');
    }
  }, 120_000);

  it('under a stream of group commits the WAL starts over again and again; it grew to the fallback before, checkpointed on the event loop', async () => {
    const { store, path, envelopeWrite } = await settlingStore(256);
    const writes = [];
    for (let seq = 1; seq <= 1200; seq++) writes.push(await envelopeWrite(seq, undefined, 'ROUTINE'));
    // The worker started (as in a running relay), so that its checkpoints overlap the commits.
    await store.checkpointWal();
    const restartsBefore = walRestarts(path);
    // Back to back, as a backlog is accepted: a commit lands while each PASSIVE checkpoint runs.
    for (let i = 0; i < writes.length; i += 4) {
      for (const r of await store.commit(writes.slice(i, i + 4))) expect(r).toMatchObject({ ok: true, status: 'new' });
    }
    // ~27 pages a commit, ~8,000 in all: without the settles the WAL file held all of them (one
    // start-over at most, measured), with them it stays near 256 pages plus what lands between checkpoints.
    expect(walRestarts(path) - restartsBefore).toBeGreaterThanOrEqual(3);
    expect(statSync(`${path}-wal`).size / 4096).toBeLessThan(3000);
    // A power cut now (the database and the WAL as they are, the store still open): every write
    // is there, across all those start-overs.
    const crash = join(dirname(path), 'crash.sqlite');
    copyFileSync(path, crash);
    copyFileSync(`${path}-wal`, `${crash}-wal`);
    expect(countEnvelopes(crash)).toBe(1200);
    await store.close();
    expect(countEnvelopes(path)).toBe(1200);
  }, 60_000);

  it('a FLASH batch does not wait for the WAL to settle; the next ROUTINE batch does', async () => {
    const { store, envelopeWrite } = await settlingStore(16);
    for (let seq = 1; seq <= 8; seq++) await store.commit([await envelopeWrite(seq, undefined, 'ROUTINE')]);
    // The worker reports the WAL's size at each checkpoint: past 16 frames, a settle is due.
    expect((await store.checkpointWal())!.log).toBeGreaterThanOrEqual(16);
    const settle = vi.spyOn(WalCheckpointer.prototype, 'settle');
    onCleanup(() => settle.mockRestore());
    // Eight FLASH writes: too many to commit on the event loop, so through the same path as ROUTINE.
    const flash = [];
    for (let seq = 9; seq <= 16; seq++) flash.push(await envelopeWrite(seq, undefined, 'FLASH'));
    for (const r of await store.commit(flash)) expect(r).toMatchObject({ ok: true, status: 'new' });
    expect(settle).not.toHaveBeenCalled();
    expect((await store.commit([await envelopeWrite(17, undefined, 'ROUTINE')]))[0]).toMatchObject({ ok: true, status: 'new' });
    expect(settle).toHaveBeenCalledTimes(1);
  });

  it('a reader that keeps the WAL from starting over does not make every commit wait; once it is gone, settles are due as before', async () => {
    // A one-envelope commit writes ~11 frames; 64 frames is a handful of commits.
    const { store, path, envelopeWrite } = await settlingStore(64);
    let seq = 0;
    const routine = async (n = 1) => {
      for (let i = 0; i < n; i++) expect((await store.commit([await envelopeWrite(++seq, undefined, 'ROUTINE')]))[0]).toMatchObject({ ok: true, status: 'new' });
    };
    await routine();
    // A reader's snapshot, held open: no checkpoint may copy past it, and the WAL cannot start over.
    const reader = new Database(path, { readonly: true });
    onCleanup(() => {
      reader.close();
    });
    reader.prepare('BEGIN').run();
    reader.prepare('SELECT COUNT(*) FROM envelopes').get();
    await routine(7);
    const held = (await store.checkpointWal())!;
    expect(held.log).toBeGreaterThanOrEqual(64);
    expect(held.checkpointed).toBeLessThan(held.log);
    const settle = vi.spyOn(WalCheckpointer.prototype, 'settle');
    onCleanup(() => settle.mockRestore());
    await routine(3); // the first settles, in vain (the reader is still there); the next two do not wait
    expect(settle).toHaveBeenCalledTimes(1);
    // The reader goes; a checkpoint copies the WAL whole and the next write starts it over, with no
    // settle: it had not grown 64 frames since the one in vain.
    reader.prepare('COMMIT').run();
    await store.checkpointWal();
    const restarts = walRestarts(path);
    await routine();
    expect(walRestarts(path)).toBe(restarts + 1);
    expect(settle).toHaveBeenCalledTimes(1);
    // A checkpoint sees the WAL smaller: settles are due at 64 frames again, not 64 past the old size.
    await store.checkpointWal();
    await routine(8);
    expect((await store.checkpointWal())!.log).toBeGreaterThanOrEqual(64);
    await routine();
    expect(settle).toHaveBeenCalledTimes(2);
  });

  it('a settle with a failed worker does not hold the writer: it resolves, and no more are due', async () => {
    const failures: Error[] = [];
    const c = new WalCheckpointer('/nonexistent-hotline-dir/x.sqlite', (e) => failures.push(e), 32, 1);
    await expect(c.settle()).resolves.toBeUndefined();
    expect(failures).toHaveLength(1);
    expect(c.settleDue).toBe(false);
    await c.close();
  });
});
