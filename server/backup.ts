import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { HotlineError } from '../shared/errors.js';
import { parseCheckpoint } from '../shared/audit/checkpoint.js';
import { rootFromLeafHashes } from '../shared/audit/merkle.js';
import { toHex } from '../shared/encoding/base64.js';
import { acquireLock, DEPLOYMENT_META_KEY, IDENTITY_FILE, readIdentity, writeIdentity } from './data-dir.js';
import { DATABASE_FILE } from './main.js';
import { SqliteStore } from './store/sqlite-store.js';

/** What `hotline backup` made. */
export interface BackupResult {
  out: string;
  auditSize: number;
}

/**
 * A consistent copy of the data directory's database while the server runs: SQLite's online backup
 * (page by page, restarted by SQLite if a write lands mid-way), then `quick_check` of the copy.
 */
export async function backupDatabase(dataDir: string, out: string): Promise<BackupResult> {
  const source = join(resolve(dataDir), DATABASE_FILE);
  if (!existsSync(source)) throw new HotlineError('HL_ERR_USAGE', `no database in ${dataDir} (expected ${source})`);
  if (existsSync(out)) throw new HotlineError('HL_ERR_USAGE', `${out} exists; give a new file name (a backup never overwrites)`);
  mkdirSync(dirname(resolve(out)), { recursive: true });
  const db = new Database(source, { readonly: true, fileMustExist: true });
  try {
    await db.backup(out);
  } finally {
    db.close();
  }
  const copy = new Database(out, { readonly: true });
  try {
    const found = (copy.pragma('quick_check(20)') as { quick_check: string }[]).map((r) => r.quick_check).filter((r) => r !== 'ok');
    if (found.length > 0) throw new HotlineError('HL_ERR_STORE_FAILED', `the backup ${out} does not pass quick_check: ${found.join('; ')}`);
    const size = (copy.prepare('SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM audit_entries').get() as { n: number }).n;
    return { out, auditSize: size };
  } finally {
    copy.close();
  }
}

/** What `hotline restore` found and did. */
export interface RestoreResult {
  auditSize: number;
  /** The newest checkpoint the parties cosigned, and that the restored log matches it. */
  cosigned: { size: number; cosigners: string[] } | undefined;
  /** What the directory had recorded before the restore, when it had a record. */
  recorded: { auditSize: number; at: number } | undefined;
  /** Entries the directory had recorded that the backup lacks (0 when none or unknown). */
  gap: number;
  /** Where the replaced database went, if there was one. */
  movedAside: string | undefined;
}

/**
 * Put a backup in place as the data directory's database (no server may be running on it): the
 * backup's log is verified against the newest checkpoint the parties cosigned, the database it
 * replaces is kept beside it, the gap to what the directory had recorded is named, and the restore
 * itself is an audit entry (`store.restored`), so the auditors of both parties see it.
 */
export async function restoreDatabase(dataDir: string, from: string, now = Date.now()): Promise<RestoreResult> {
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!existsSync(from)) throw new HotlineError('HL_ERR_USAGE', `no backup file ${from}`);
  const release = acquireLock(dir);
  try {
    let recordedIdentity;
    try {
      recordedIdentity = readIdentity(dir);
    } catch {
      recordedIdentity = undefined;
    }
    const staged = join(dir, `${DATABASE_FILE}.restoring`);
    rmSync(staged, { force: true });
    copyFileSync(from, staged);
    const store = new SqliteStore(staged);
    let result: Omit<RestoreResult, 'movedAside'>;
    let deploymentId: string | undefined;
    let auditRoot: string;
    try {
      const damage = await store.checkIntegrity();
      if (damage) throw new HotlineError('HL_ERR_STORE_DATA_LOST', `the backup ${from} is corrupt (quick_check: ${damage})`);
      const size = await store.auditSize();
      const leaves = (await store.auditEntries(0, size)).map((e) => e.leafHash);
      const cosigned = await newestCosigned(store);
      if (cosigned) {
        if (cosigned.size > size) throw new HotlineError('HL_ERR_AUDIT_ROOT_MISMATCH', `the backup's log has ${size} entries, fewer than the ${cosigned.size} its newest cosigned checkpoint covers`);
        if (toHex(rootFromLeafHashes(leaves.slice(0, cosigned.size))) !== toHex(cosigned.root)) {
          throw new HotlineError('HL_ERR_AUDIT_ROOT_MISMATCH', `the backup's log does not match the checkpoint of size ${cosigned.size} that ${cosigned.cosigners.join(', ')} cosigned: it was changed`);
        }
      }
      const recorded = recordedIdentity ? { auditSize: recordedIdentity.auditSize, at: recordedIdentity.writtenAt } : undefined;
      const gap = recorded ? Math.max(0, recorded.auditSize - size) : 0;
      await store.appendAudit({ type: 'store.restored', at: now, auditSize: size, ...(cosigned ? { cosignedSize: cosigned.size } : {}), ...(recorded ? { recordedSize: recorded.auditSize, recordedAt: recorded.at, lost: gap } : {}) });
      deploymentId = recordedIdentity?.deploymentId ?? (await store.getMeta(DEPLOYMENT_META_KEY));
      if (deploymentId !== undefined) await store.setMeta(DEPLOYMENT_META_KEY, deploymentId);
      const after = await store.auditSize();
      auditRoot = toHex(rootFromLeafHashes((await store.auditEntries(0, after)).map((e) => e.leafHash)));
      result = { auditSize: after, cosigned: cosigned && { size: cosigned.size, cosigners: cosigned.cosigners }, recorded, gap };
    } finally {
      await store.close();
    }
    const target = join(dir, DATABASE_FILE);
    let movedAside: string | undefined;
    if (existsSync(target)) {
      movedAside = `${target}.replaced-${now}`;
      renameSync(target, movedAside);
      for (const suffix of ['-wal', '-shm']) if (existsSync(target + suffix)) renameSync(target + suffix, movedAside + suffix);
    }
    renameSync(staged, target);
    for (const suffix of ['-wal', '-shm']) rmSync(staged + suffix, { force: true });
    // The directory's record now describes the restored log: the next start checks against it.
    if (recordedIdentity && deploymentId !== undefined) {
      writeIdentity(dir, { deploymentId, agreementHash: recordedIdentity.agreementHash, auditSize: result.auditSize, auditRoot, writtenAt: now, reason: 'stop' });
    } else {
      rmSync(join(dir, IDENTITY_FILE), { force: true });
    }
    return { ...result, movedAside };
  } finally {
    release();
  }
}

async function newestCosigned(store: SqliteStore): Promise<{ size: number; root: Uint8Array; cosigners: string[] } | undefined> {
  const cosignatures = await store.listCosignatures();
  const sizes = [...new Set(cosignatures.map((c) => c.size))].sort((a, b) => b - a);
  for (const size of sizes) {
    const checkpoint = await store.getCheckpoint(size);
    if (!checkpoint) continue;
    return { size, root: parseCheckpoint(checkpoint.note).rootHash, cosigners: cosignatures.filter((c) => c.size === size).map((c) => c.cosigner) };
  }
  return undefined;
}
