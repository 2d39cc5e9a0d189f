/**
 * Issue 9's start-up goal: "the server is ready ≤ 2 s after restart with 1,000,000 log entries (the
 * bench builds that database itself)". `buildBigLog` writes N audit entries through the store's own
 * append (canonical entries chained by `prev`, leaf hashes and the tree's nodes, exactly as a
 * running server writes them) in large transactions, so a million entries take seconds, not one
 * fsync each. `timeToReady` starts a server on that data directory and measures until it listens.
 *
 * Run alone: `node --import tsx bench/big-log.ts [entries]` (default 1,000,000).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { DATABASE_FILE, startServer } from '../server/main.js';
import { SqliteStore } from '../server/store/sqlite-store.js';
import type { AuditEntry } from '../server/relay/records.js';
import { useNodeCrypto } from '../server/node-crypto.js';
import { formatAuditEntry } from '../shared/audit/log-verify.js';
import { leafHash } from '../shared/audit/merkle.js';
import { utf8 } from '../shared/encoding/base64.js';
import type { Agreement } from '../shared/protocol/schemas.js';
import { createDeployment } from '../test/helpers/deployment.js';

const BATCH = 50_000;

/** Append `n` audit entries to the database in `dir` (created if needed). Returns the seconds it took. */
export async function buildBigLog(dir: string, n: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  const path = join(dir, DATABASE_FILE);
  await new SqliteStore(path).close(); // the schema, by the store's own migrations
  const db = new Database(path);
  try {
    db.pragma('synchronous = OFF');
    const last = db.prepare<[], { idx: number; leaf_hash: Buffer }>('SELECT idx, leaf_hash FROM audit_entries ORDER BY idx DESC LIMIT 1').get();
    const insert = db.prepare('INSERT INTO audit_entries (idx, entry, leaf_hash) VALUES (?, ?, ?)');
    let idx = last ? last.idx + 1 : 0;
    let prev: Uint8Array | null = last ? new Uint8Array(last.leaf_hash) : null;
    const end = idx + n;
    const append = db.transaction((count: number) => {
      for (let k = 0; k < count; k++, idx++) {
        const text = entryText(idx, prev);
        prev = leafHash(utf8(text));
        insert.run(idx, text, Buffer.from(prev));
      }
    });
    while (idx < end) append(Math.min(BATCH, end - idx));
  } finally {
    db.close();
  }
  const store = new SqliteStore(path);
  try {
    await store.rebuildAuditTree();
  } finally {
    await store.close();
  }
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Shaped like a login entry (metadata only), about the size of the common entries. */
function entryAt(i: number): AuditEntry {
  return { type: 'login', at: 1_767_225_600_000 + i, party: 'jp-mod', device: `op${i % 7}`, role: 'operator' };
}

/**
 * `formatAuditEntry(entryAt(i), i, prev)` written out (keys in canonical order): canonicalising a
 * million objects would be most of the build time. The first entries are checked against it.
 */
function entryText(i: number, prev: Uint8Array | null): string {
  const e = entryAt(i);
  const text = `{"at":${e.at},"device":"${String(e['device'])}","idx":${i},"party":"${String(e['party'])}","prev":"${prev ? Buffer.from(prev).toString('hex') : ''}","role":"${String(e['role'])}","type":"${e.type}"}`;
  if (i < 2 && text !== formatAuditEntry(e, i, prev)) throw new Error('bench/big-log.ts: the hand-written entry is not canonical');
  return text;
}

/** Start a server on `dir` (port 0) and return the milliseconds until it listens; it is closed again. */
export async function timeToReady(dir: string, agreement: Agreement): Promise<number> {
  const t0 = process.hrtime.bigint();
  const server = await startServer({ agreement, dataDir: dir, host: '127.0.0.1', port: 0, logLevel: 'silent' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  await server.close();
  return ms;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  useNodeCrypto();
  const n = Number(process.argv[2] ?? 1_000_000);
  const dir = mkdtempSync(join(tmpdir(), 'hotline-big-log-'));
  try {
    const built = await buildBigLog(dir, n);
    const { agreement } = await createDeployment();
    const first = await timeToReady(dir, agreement);
    const second = await timeToReady(dir, agreement);
    console.log(`${n} entries built in ${built.toFixed(1)} s; ready after ${first.toFixed(0)} ms (first start), ${second.toFixed(0)} ms (restart)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
