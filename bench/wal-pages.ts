/**
 * Which b-trees each store commit writes, counted in WAL pages (issue 9; docs/performance.md,
 * twelfth session). A diagnostic, not a measurement of record: `npm run bench` is the judge.
 *
 * A preload for a process that runs a SqliteStore, usually the one-message trace:
 *
 *   WAL_PAGES_OUT=/tmp/wal-pages.txt node --import tsx --import ./bench/wal-pages.ts bench/trace-path.ts
 *
 * Every page a commit changes is written whole to the WAL (4 KiB and a 24-byte frame header), and
 * the commit's fsync waits for all of them: a bare loop on this machine commits 1–8 pages in
 * ~0.3 ms, 16 in ~0.55 ms, 32 in ~0.95 ms. This wraps `SqliteStore.prototype.commit`, turns off
 * the store's automatic checkpoints (so that the WAL only grows and each commit's frames are the
 * bytes it appended), reads the page number of each new frame, and names the b-tree that owns
 * the page from SQLite's `dbstat` table (refreshed every 50 commits; the last 50 are left out, as
 * are the first fifth). When the process ends it writes, per kind of commit (with an envelope,
 * with a receipt, acks only), the mean pages per commit and per write, and their owners.
 */
import { closeSync, openSync, readSync, statSync, writeFileSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { SqliteStore } from '../server/store/sqlite-store.js';
import type { Write } from '../server/relay/records.js';

const PAGE = 4096;
const FRAME_HEADER = 24;
const WAL_HEADER = 32;

const commits: { kind: string; pages: number[] }[] = [];
const owner = new Map<number, string>();
const tuned = new WeakSet<Database.Database>();

function framesBetween(wal: string, from: number, to: number): number[] {
  const fd = openSync(wal, 'r');
  try {
    const header = Buffer.alloc(FRAME_HEADER);
    const pages: number[] = [];
    for (let at = Math.max(from, WAL_HEADER); at + FRAME_HEADER <= to; at += PAGE + FRAME_HEADER) {
      readSync(fd, header, 0, FRAME_HEADER, at);
      pages.push(header.readUInt32BE(0));
    }
    return pages;
  } finally {
    closeSync(fd);
  }
}

function learnOwners(db: Database.Database): void {
  const rows = db.prepare<[], { name: string; pageno: number; pagetype: string | null }>('SELECT name, pageno, pagetype FROM dbstat').all();
  for (const r of rows) owner.set(r.pageno, `${r.name}${r.pagetype === 'internal' ? ' (interior)' : r.pagetype === 'overflow' ? ' (overflow)' : ''}`);
}

const commit = SqliteStore.prototype.commit;
SqliteStore.prototype.commit = function (this: SqliteStore, writes: readonly Write[], visible?: Parameters<typeof commit>[1]) {
  const store = this as unknown as { db: Database.Database; checkpointer: unknown };
  const db = store.db;
  if (!tuned.has(db)) {
    // No checkpoint of either kind, SQLite's own or the store's worker (which starts the WAL over),
    // so that the WAL only grows and each commit's frames are the bytes it appended.
    db.pragma('wal_autocheckpoint = 0');
    store.checkpointer = undefined;
    tuned.add(db);
  }
  const wal = `${db.name}-wal`;
  const before = statSync(wal).size;
  // Read when the transaction is done (`visible`), before any later commit can append.
  return commit.call(this, writes, (results) => {
    commits.push({ kind: writes.map((w) => w.kind).join(','), pages: framesBetween(wal, before, statSync(wal).size) });
    if (commits.length % 50 === 0) learnOwners(db);
    visible?.(results);
  });
};

process.on('exit', () => {
  const byKind = new Map<string, { commits: number; writes: number; owners: Map<string, number> }>();
  for (const c of commits.slice(Math.floor(commits.length / 5), Math.max(0, commits.length - 50))) {
    const kind = c.kind.includes('envelope') ? 'with an envelope' : c.kind.includes('receipt') ? 'with a receipt' : c.kind.split(',').every((k) => k === 'ack') ? 'acks only' : c.kind;
    const k = byKind.get(kind) ?? { commits: 0, writes: 0, owners: new Map<string, number>() };
    byKind.set(kind, k);
    k.commits++;
    k.writes += c.kind.split(',').filter((w) => w !== 'ack').length;
    for (const p of c.pages) {
      const name = p === 1 ? 'page 1 (the database header: its size in pages)' : (owner.get(p) ?? '(not named: allocated after the last dbstat)');
      k.owners.set(name, (k.owners.get(name) ?? 0) + 1);
    }
  }
  const out: string[] = [];
  for (const [kind, k] of byKind) {
    const total = [...k.owners.values()].reduce((a, b) => a + b, 0);
    out.push(`commits ${kind} (${k.commits}, ${(k.writes / k.commits).toFixed(1)} writes each besides acks): ${(total / k.commits).toFixed(1)} WAL pages each, ${k.writes > 0 ? (total / k.writes).toFixed(1) : '-'} per write`);
    for (const [name, n] of [...k.owners].sort((a, b) => b[1] - a[1])) out.push(`  ${(n / k.commits).toFixed(2).padStart(6)}  ${name}`);
  }
  writeFileSync(process.env['WAL_PAGES_OUT'] ?? 'wal-pages.txt', `${out.join('\n')}\n`);
});
