import { HotlineError } from '../../shared/errors.js';
import { initialState, pruneState, type ClientState, type ClientStorage } from './client-storage.js';

const PRUNE_EVERY = 256;

/**
 * Client state in memory (tests, benchmarks, and short-lived commands that must not write the
 * state file).
 *
 * No copies: `read` returns the live state and `update` mutates it in place. Deep-copying the whole
 * state on every call made each operation O(state) — with a few hundred sent messages remembered,
 * that was most of a message's cost (measured with `npm run bench`). Callers treat what `read`
 * returns as read-only, as they must with any storage. A `mutate` that throws part-way leaves its
 * changes so far in place; the client's mutations are plain assignments that do not throw.
 *
 * @example
 * const client = new HotlineClient({ ...options, storage: new MemoryStorage() });
 */
export class MemoryStorage implements ClientStorage {
  #state: ClientState | undefined;
  #updates = 0;

  constructor(initial?: ClientState) {
    this.#state = initial === undefined ? undefined : structuredClone(initial);
  }

  async read(device: string): Promise<ClientState> {
    return this.#current(device);
  }

  async update<T>(device: string, mutate: (state: ClientState) => T): Promise<T> {
    const state = this.#current(device);
    const result = mutate(state);
    // Pruning walks every record; the bound is loose, so checking every so often is enough.
    if (++this.#updates % PRUNE_EVERY === 0) pruneState(state);
    return result;
  }

  #current(device: string): ClientState {
    this.#state ??= initialState(device);
    if (this.#state.device !== device) throw new HotlineError('HL_ERR_CONFIG_INVALID', `this state belongs to ${this.#state.device}, not ${device}`);
    return this.#state;
  }
}
