import { closeSync, existsSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, fsyncSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { HotlineError } from '../shared/errors.js';
import { agreementHash } from '../shared/crypto/keys.js';
import { randomBytes } from '../shared/crypto/random.js';
import { sha256Hex } from '../shared/crypto/hash.js';
import { canonicalize } from '../shared/encoding/canonical-json.js';
import { toBase64 } from '../shared/encoding/base64.js';
import type { Agreement } from '../shared/protocol/schemas.js';

/** What the data directory says about itself, beside the database. */
export const IDENTITY_FILE = 'data-identity.json';
/** Held while a server runs on the directory. */
export const LOCK_FILE = 'hotline.lock';
/** The database's copy of the deployment id (the `meta` table), tying the file to its directory. */
export const DEPLOYMENT_META_KEY = 'deployment_id';

/**
 * The directory's record of its own data, rewritten at start, on every checkpoint interval and at
 * a clean stop. At the next start the database must hold at least this much log, with this root at
 * this size: a database that was deleted, truncated, replaced or rolled back (a lost WAL) is then
 * found before the relay serves from it. The checksum catches a damaged file, not an attacker: one
 * who can rewrite the directory can rewrite this too, and the parties' cosigned checkpoints are the
 * defence against that.
 */
export interface DataIdentity {
  type: 'hotline-data-identity';
  v: 1;
  /** Random at the directory's first start; also kept in the database's meta table. */
  deploymentId: string;
  agreementHash: string;
  /** The audit log's size and root (hex) when this was written. */
  auditSize: number;
  auditRoot: string;
  writtenAt: number;
  reason: 'start' | 'checkpoint' | 'stop';
  /** SHA-256 of the canonical JSON of every other field. */
  checksum: string;
}

/** What a start found wrong with the data; each makes the server refuse to start. */
export interface DataProblem {
  what: string;
}

/** Read the identity file; undefined when there is none, an error when it is damaged. */
export function readIdentity(dataDir: string): DataIdentity | undefined {
  const path = join(dataDir, IDENTITY_FILE);
  if (!existsSync(path)) return undefined;
  let value: DataIdentity;
  try {
    value = JSON.parse(readFileSync(path, 'utf8')) as DataIdentity;
  } catch (cause) {
    throw new HotlineError('HL_ERR_STORE_DATA_LOST', `${path} is damaged (not JSON): restore the data directory from a backup, or start with --accept-data-loss`, { cause });
  }
  const { checksum, ...rest } = value;
  if (value.type !== 'hotline-data-identity' || checksum !== sha256Hex(canonicalize(rest))) {
    throw new HotlineError('HL_ERR_STORE_DATA_LOST', `${path} is damaged (checksum): restore the data directory from a backup, or start with --accept-data-loss`);
  }
  return value;
}

/** Write the identity atomically (temporary file, fsync, rename). */
export function writeIdentity(dataDir: string, fields: Omit<DataIdentity, 'type' | 'v' | 'checksum'>): DataIdentity {
  const rest = { type: 'hotline-data-identity' as const, v: 1 as const, ...fields };
  const identity: DataIdentity = { ...rest, checksum: sha256Hex(canonicalize(rest)) };
  const path = join(dataDir, IDENTITY_FILE);
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeFileSync(fd, JSON.stringify(identity, null, 2) + '\n');
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  return identity;
}

/** A fresh deployment id. */
export function newDeploymentId(): string {
  return toBase64(randomBytes(16));
}

/** The agreement hash the identity records. */
export function identityAgreementHash(agreement: Agreement): string {
  return agreementHash(agreement);
}

/**
 * What the database at `dbPath` looks like before it is opened, against what the directory says:
 * a directory that was in use (an identity file, or a token secret from before identity files)
 * whose database is missing or empty has lost its data.
 */
export function checkDatabaseFile(dataDir: string, dbPath: string, identity: DataIdentity | undefined, legacyMarker: string): DataProblem | undefined {
  const inUse = identity !== undefined || existsSync(join(dataDir, legacyMarker));
  if (!inUse) return undefined;
  if (!existsSync(dbPath)) return { what: `the database ${dbPath} is missing, but this directory was in use` };
  if (statSync(dbPath).size === 0) return { what: `the database ${dbPath} is empty (0 bytes), but this directory was in use` };
  return undefined;
}

/**
 * One server per data directory: a lock file naming the holder's process. A lock left by a process
 * that no longer runs (a crash, a kill) is taken over; a live holder is refused.
 */
export function acquireLock(dataDir: string): () => void {
  const path = join(dataDir, LOCK_FILE);
  const mine = JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, mine + '\n', { flag: 'wx', mode: 0o600 });
      let released = false;
      return () => {
        if (released) return;
        released = true;
        rmSync(path, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = readHolder(path);
    if (holder && holder.host === hostname() && isAlive(holder.pid)) {
      throw new HotlineError(
        'HL_ERR_STORE_LOCKED',
        `another server (pid ${holder.pid}, since ${holder.since}) runs on this data directory (${path}); stop it first, or give this one its own --data-dir`,
      );
    }
    if (holder && holder.host !== hostname()) {
      throw new HotlineError('HL_ERR_STORE_LOCKED', `the data directory is locked by a server on host ${holder.host} (${path}); if that server is gone, delete the lock file`);
    }
    // Stale (its process is gone) or unreadable: take it over.
    rmSync(path, { force: true });
  }
  throw new HotlineError('HL_ERR_STORE_LOCKED', `could not take the lock ${path}: another server is starting on this data directory`);
}

function readHolder(path: string): { pid: number; host: string; since: string } | undefined {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as { pid: unknown; host: unknown; since: unknown };
    if (typeof v.pid === 'number' && typeof v.host === 'string') return { pid: v.pid, host: v.host, since: String(v.since) };
  } catch {
    /* unreadable: treated as stale */
  }
  return undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
