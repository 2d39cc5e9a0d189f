import type { HeldPrekey } from '../../shared/crypto/prekey.js';
import { parsePrekeyStoreContent, prekeyStoreContent, type PrekeyStore } from '../prekeys.js';
import type { StateCipher } from './browser-storage.js';
import type { KeyValueStore } from './kv.js';

/**
 * A browser console's prekey secrets (PROTOCOL.md "Prekeys and forward secrecy"): one record of the
 * key-value store (`prekeys/<party>/<device>`), sealed with the key store's data key like the
 * console's other records, and replaced whole on every save, so that a deleted secret is no longer
 * in the record when `save` resolves. Tabs of one console share the record; they change it one at a
 * time under a Web Lock named after the record (`hotline-lock/<key>`).
 *
 * @example
 * const prekeys = new SealedPrekeyStore(kv, unlocked.data, 'prekeys/cn-mnd/op1');
 * const client = new HotlineClient({ ..., prekeys: { store: prekeys } });
 */
export class SealedPrekeyStore implements PrekeyStore {
  constructor(
    readonly kv: KeyValueStore,
    readonly cipher: StateCipher,
    readonly key: string,
  ) {}

  async load(): Promise<HeldPrekey[]> {
    const text = await this.kv.get(this.key);
    return text === undefined ? [] : parsePrekeyStoreContent(this.cipher.open(text), this.key);
  }

  async save(held: readonly HeldPrekey[]): Promise<void> {
    await this.kv.set(this.key, this.cipher.seal(prekeyStoreContent(held)));
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    // Web Locks are shared by every tab and worker of this origin. Where they are missing (a page
    // not served from a secure context, or Node, where this store runs over a memory key-value store
    // in tests), the run is not locked: two tabs rotating at the very same moment could then lose
    // one's prekey, as before locks existed.
    const locks: LockManager | undefined = typeof navigator === 'undefined' ? undefined : navigator.locks;
    if (!locks) return fn();
    return locks.request(`hotline-lock/${this.key}`, { mode: 'exclusive' }, fn);
  }
}
