import { HotlineError } from '../../shared/errors.js';
import { initialState, pruneState, type ClientState, type ClientStorage } from './client-storage.js';
import type { KeyValueStore } from '../console/kv.js';

/** Seals stored values (the console's DataCipher: secretbox under the key store's data key). */
export interface StateCipher {
  seal(value: unknown): string;
  open(text: string): unknown;
}

interface LockManagerLike {
  request<T>(name: string, callback: () => Promise<T>): Promise<T>;
}

/**
 * ClientStorage for the browser consoles: the client state (outbox with drafts, seq, inbox ids)
 * in IndexedDB, sealed with the key store's data key, so that neither message text nor anything
 * else is stored in clear. `update` is atomic within a tab (a promise chain) and across tabs of
 * the same origin (the Web Locks API, where the browser has it).
 *
 * @example
 * const storage = new BrowserStorage(await openIndexedDb(), unlocked.data);
 * const client = new HotlineClient({ ...options, storage, WebSocket });
 */
export class BrowserStorage implements ClientStorage {
  readonly #kv: KeyValueStore;
  readonly #cipher: StateCipher;
  #chain: Promise<unknown> = Promise.resolve();

  constructor(kv: KeyValueStore, cipher: StateCipher) {
    this.#kv = kv;
    this.#cipher = cipher;
  }

  async read(device: string): Promise<ClientState> {
    return this.#load(device);
  }

  update<T>(device: string, mutate: (state: ClientState) => T): Promise<T> {
    const run = this.#chain.then(() => this.#locked(device, async () => {
      const state = await this.#load(device);
      const result = mutate(state);
      pruneState(state);
      await this.#kv.set(keyOf(device), this.#cipher.seal(state));
      return structuredClone(result);
    }));
    this.#chain = run.catch(() => undefined);
    return run;
  }

  async #load(device: string): Promise<ClientState> {
    const text = await this.#kv.get(keyOf(device));
    if (text === undefined) return initialState(device);
    const state = this.#cipher.open(text) as ClientState;
    if (state.v !== 1 || state.device !== device) {
      throw new HotlineError('HL_ERR_CONFIG_INVALID', `the stored state belongs to ${String(state.device)}, not ${device}`);
    }
    return state;
  }

  #locked<T>(device: string, fn: () => Promise<T>): Promise<T> {
    const locks = (globalThis.navigator as { locks?: LockManagerLike } | undefined)?.locks;
    return locks ? locks.request(`hotline-state/${device}`, fn) : fn();
  }
}

function keyOf(device: string): string {
  return `client-state/${device}`;
}
