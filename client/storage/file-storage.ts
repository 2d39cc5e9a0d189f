import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { HotlineError } from '../../shared/errors.js';
import { initialState, pruneState, type ClientState, type ClientStorage } from './client-storage.js';

export interface FileStorageOptions {
  /** A lock older than this is taken to be left by a crashed process and is broken. */
  staleLockMs?: number;
  /** How long to wait for another process's lock before failing. */
  lockTimeoutMs?: number;
}

/**
 * Client state in one JSON file, written atomically: a temporary file in the same directory is
 * written, fsynced and renamed over the old one, so a crash leaves either the old or the new state,
 * never a torn file. Mode 0600 (it holds drafts of unsent messages).
 *
 * Several processes may use the same device (`hotline listen` in one terminal, `hotline send` in
 * another): every update takes an exclusive lock file (`FILE.lock`, O_EXCL), re-reads the file,
 * applies the change and writes it back, so no process overwrites another's `seq` or outbox.
 *
 * @example
 * const storage = new FileStorage('jp-op.state.json');
 * const seq = await storage.update('jp-mod/op-1', (s) => ++s.lastSeq);
 */
export class FileStorage implements ClientStorage {
  readonly path: string;
  readonly #staleLockMs: number;
  readonly #lockTimeoutMs: number;
  /** Serialises updates within this process; the lock file serialises across processes. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(path: string, options: FileStorageOptions = {}) {
    this.path = path;
    this.#staleLockMs = options.staleLockMs ?? 30_000;
    this.#lockTimeoutMs = options.lockTimeoutMs ?? 10_000;
  }

  async read(device: string): Promise<ClientState> {
    return this.#load(device);
  }

  update<T>(device: string, mutate: (state: ClientState) => T): Promise<T> {
    const run = this.#queue.then(() => this.#locked(async () => {
      const state = await this.#load(device);
      const result = mutate(state);
      pruneState(state);
      await this.#write(state);
      return result;
    }));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #load(device: string): Promise<ClientState> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return initialState(device);
      throw new HotlineError('HL_ERR_STORE_FAILED', `cannot read the client state file ${this.path}`, { cause: err });
    }
    let state: ClientState;
    try {
      state = JSON.parse(text) as ClientState;
    } catch (cause) {
      throw new HotlineError('HL_ERR_CONFIG_INVALID', `the client state file ${this.path} is not valid JSON; move it aside and try again`, { cause });
    }
    if (state?.v !== 1 || typeof state.lastSeq !== 'number' || !Array.isArray(state.outbox)) {
      throw new HotlineError('HL_ERR_CONFIG_INVALID', `${this.path} is not a Hotline client state file`);
    }
    if (state.device !== device) {
      throw new HotlineError('HL_ERR_CONFIG_INVALID', `the state file ${this.path} belongs to ${state.device}, not ${device}; pass --state`);
    }
    return state;
  }

  async #write(state: ClientState): Promise<void> {
    const tmp = join(dirname(this.path), `.${basename(this.path)}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(JSON.stringify(state));
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.path);
      await syncDir(dirname(this.path));
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw new HotlineError('HL_ERR_STORE_FAILED', `cannot write the client state file ${this.path}`, { cause: err });
    }
  }

  async #locked<T>(fn: () => Promise<T>): Promise<T> {
    const lockPath = `${this.path}.lock`;
    const started = Date.now();
    let delay = 2;
    for (;;) {
      try {
        const fh = await open(lockPath, 'wx', 0o600);
        await fh.close();
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new HotlineError('HL_ERR_STORE_FAILED', `cannot lock ${this.path}`, { cause: err });
        }
        const age = await stat(lockPath).then((s) => Date.now() - s.mtimeMs, () => 0);
        if (age > this.#staleLockMs) {
          await unlink(lockPath).catch(() => undefined);
          continue;
        }
        if (Date.now() - started > this.#lockTimeoutMs) {
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
}

async function syncDir(dir: string): Promise<void> {
  // A rename is durable only once its directory entry is; not every platform lets a directory be
  // opened for fsync, and the rename itself is already atomic, so failure here is not fatal.
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
