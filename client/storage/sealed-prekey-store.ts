import type { HeldPrekey } from '../../shared/crypto/prekey.js';
import { parsePrekeyStoreContent, prekeyStoreContent, type PrekeyStore } from '../prekeys.js';
import type { StateCipher } from './browser-storage.js';
import type { KeyValueStore } from './kv.js';

/**
 * A browser console's prekey secrets (PROTOCOL.md "Prekeys and forward secrecy"): one record of the
 * key-value store (`prekeys/<party>/<device>`), sealed with the key store's data key like the
 * console's other records, and replaced whole on every save, so that a deleted secret is no longer
 * in the record when `save` resolves.
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
}
