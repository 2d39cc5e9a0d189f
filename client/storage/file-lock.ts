import { open, stat, unlink } from 'node:fs/promises';
import { HotlineError } from '../../shared/errors.js';

export interface FileLockOptions {
  /** A lock older than this is taken to be left by a crashed process and is broken (default 30 s). */
  staleLockMs?: number;
  /** How long to wait for another process's lock before failing (default 10 s). */
  lockTimeoutMs?: number;
}

/**
 * Run `fn` holding an exclusive lock on `path`: the lock file `path.lock`, created with O_EXCL and
 * deleted when `fn` settles. Another process (or another call in this one) waits for it, retrying
 * with backoff, and fails with HL_ERR_STORE_FAILED after `lockTimeoutMs`; a lock file older than
 * `staleLockMs` is taken to be left by a crashed process and is broken. Hold it for the few
 * milliseconds of a read-change-write, never across a network request.
 *
 * @example
 * await withFileLock('jp-op.state.json.prekeys', async () => save([...(await load()), made]));
 */
export async function withFileLock<T>(path: string, fn: () => Promise<T>, options: FileLockOptions = {}): Promise<T> {
  const staleLockMs = options.staleLockMs ?? 30_000;
  const lockTimeoutMs = options.lockTimeoutMs ?? 10_000;
  const lockPath = `${path}.lock`;
  const started = Date.now();
  let delay = 2;
  for (;;) {
    try {
      const fh = await open(lockPath, 'wx', 0o600);
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new HotlineError('HL_ERR_STORE_FAILED', `cannot lock ${path}`, { cause: err });
      }
      const age = await stat(lockPath).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > staleLockMs) {
        await unlink(lockPath).catch(() => undefined);
        continue;
      }
      if (Date.now() - started > lockTimeoutMs) {
        throw new HotlineError('HL_ERR_STORE_FAILED', `${lockPath} is held by another process; if none is running, delete it`);
      }
      // Another process holds the lock for the few milliseconds of one update: wait and retry.
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 50);
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(lockPath).catch(() => undefined);
  }
}
