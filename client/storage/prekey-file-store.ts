import { readFile } from 'node:fs/promises';
import { HotlineError } from '../../shared/errors.js';
import type { HeldPrekey } from '../../shared/crypto/prekey.js';
import { parsePrekeyStoreContent, prekeyStoreContent, type PrekeyStore } from '../prekeys.js';
import { writeFileAtomic } from './atomic-file.js';
import { withFileLock, type FileLockOptions } from './file-lock.js';

/**
 * A device's prekey secrets in one JSON file (mode 0600), rewritten whole on every save, so that a
 * deleted secret leaves the file at once (PROTOCOL.md "When a prekey's secret is deleted"). The CLI
 * keeps it beside the client state: `<state>.prekeys`. Processes of one device that share it
 * (`hotline listen`, `hotline prekeys`) change it one at a time under the lock file `<file>.lock`
 * ({@link withFileLock}).
 *
 * @example
 * const client = new HotlineClient({ ..., prekeys: { store: new FilePrekeyStore('jp-op.state.json.prekeys') } });
 */
export class FilePrekeyStore implements PrekeyStore {
  constructor(
    readonly path: string,
    readonly lock: FileLockOptions = {},
  ) {}

  async load(): Promise<HeldPrekey[]> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new HotlineError('HL_ERR_STORE_FAILED', `cannot read the prekey file ${this.path}`, { cause: err });
    }
    return parsePrekeyStoreContent(JSON.parse(text), this.path);
  }

  async save(held: readonly HeldPrekey[]): Promise<void> {
    await writeFileAtomic(this.path, JSON.stringify(prekeyStoreContent(held)), 'the prekey file');
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return withFileLock(this.path, fn, this.lock);
  }
}
