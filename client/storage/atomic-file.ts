import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { HotlineError } from '../../shared/errors.js';

/**
 * Replace a file's whole content atomically and durably, mode 0600: a temporary file beside it,
 * fsync, rename over it, fsync of the directory. A crash leaves the old or the new content; once it
 * resolves, the old content is no longer the file's (a prekey secret deleted from it is gone from
 * the file, though not necessarily from the disk's free blocks).
 */
export async function writeFileAtomic(path: string, text: string, what: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    await syncDir(dirname(path));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw new HotlineError('HL_ERR_STORE_FAILED', `cannot write ${what} ${path}`, { cause: err });
  }
}

/** fsync a directory, best effort (not every platform lets a directory be opened for it). */
export async function syncDir(dir: string): Promise<void> {
  // A rename is durable only once its directory entry is; the rename itself is already atomic, so
  // failure here is not fatal.
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* best effort */
  }
}
