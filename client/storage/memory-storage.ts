import { HotlineError } from '../../shared/errors.js';
import { initialState, pruneState, type ClientState, type ClientStorage } from './client-storage.js';

/**
 * Client state in memory (tests, and short-lived commands that must not write the state file).
 * Values are deep-copied in and out, like a real store, so callers cannot alias stored objects.
 *
 * @example
 * const client = new HotlineClient({ ...options, storage: new MemoryStorage() });
 */
export class MemoryStorage implements ClientStorage {
  #state: ClientState | undefined;

  constructor(initial?: ClientState) {
    this.#state = initial === undefined ? undefined : structuredClone(initial);
  }

  async read(device: string): Promise<ClientState> {
    return structuredClone(this.#current(device));
  }

  async update<T>(device: string, mutate: (state: ClientState) => T): Promise<T> {
    const draft = structuredClone(this.#current(device));
    const result = mutate(draft);
    pruneState(draft);
    this.#state = draft;
    return structuredClone(result);
  }

  #current(device: string): ClientState {
    const s = this.#state ?? initialState(device);
    if (s.device !== device) throw new HotlineError('HL_ERR_CONFIG_INVALID', `this state belongs to ${s.device}, not ${device}`);
    return s;
  }
}
