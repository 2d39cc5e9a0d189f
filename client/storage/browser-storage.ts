import { HotlineError } from '../../shared/errors.js';
import {
  RECORD_MAPS,
  initialState,
  migrateState,
  pruneState,
  trackChanges,
  type ClientState,
  type ClientStorage,
  type RecordMapName,
  type StateChanges,
} from './client-storage.js';
import type { KeyValueStore, RecordStore, RecordStoreName, RecordWrite } from './kv.js';

/** Seals stored values (the console's DataCipher: secretbox under the key store's data key). */
export interface StateCipher {
  seal(value: unknown): string;
  open(text: string): unknown;
}

interface LockManagerLike {
  request<T>(name: string, callback: () => Promise<T>): Promise<T>;
}

/** The keys an update or another tab changed, per record map (outbox keys as in `state.outbox`). */
export type StorageChange = Record<RecordMapName, string[]>;

const MAP_STORES: Record<RecordMapName, RecordStoreName> = {
  outbox: 'state-outbox',
  inbox: 'state-inbox',
  sent: 'state-sent',
  peerSeq: 'state-peerSeq',
};
const VERSION = '#version';
const LOG_PREFIX = '#log/';
/** Updates another tab may be behind and still catch up record by record (else it reads everything). */
const LOG_KEEP = 256;

/** One update as other tabs replay it: ordinals set or deleted per map, top-level fields set or deleted. */
interface LogEntry {
  set: [RecordMapName, number][];
  deleted: [RecordMapName, number][];
  top: string[];
}

/**
 * The ordinal of each record of one map. A record is stored under its ordinal, not its key: the
 * key (a message id, a peer device) is sealed inside the record with its value, so nothing about
 * the messages shows in clear, and ordinals ascending give back the map's insertion order (which
 * pruning and the outbox's queue order rely on).
 */
class Ordinals {
  readonly byKey = new Map<string, number>();
  readonly byOrdinal = new Map<number, string>();
  next = 1;

  set(key: string, n: number): void {
    this.byKey.set(key, n);
    this.byOrdinal.set(n, key);
    this.next = Math.max(this.next, n + 1);
  }

  /** The ordinal of `key`, a new one if it has none. */
  take(key: string): number {
    const n = this.byKey.get(key) ?? this.next;
    this.set(key, n);
    return n;
  }

  drop(key: string): number | undefined {
    const n = this.byKey.get(key);
    if (n === undefined) return undefined;
    this.byKey.delete(key);
    this.byOrdinal.delete(n);
    return n;
  }
}

interface Loaded {
  state: ClientState;
  ordinals: Record<RecordMapName, Ordinals>;
  version: number;
  /** Another tab wrote since: catch up before the next read. */
  stale: boolean;
}

/**
 * ClientStorage for the browser consoles: the client state in IndexedDB, one record per outbox
 * item, inbox record, sent record and peer replay window, and one per top-level field, each sealed
 * on its own with the key store's data key (nothing is stored in clear), so that an update writes
 * the size of its change (issue 9: the whole state, 407 KB after 200 messages, was decrypted,
 * re-encrypted and rewritten on every update). The state is kept in memory: reads cost nothing.
 *
 * Updates are atomic within a tab (a promise chain) and across tabs of the same origin (the Web
 * Locks API). Each update bumps a version record and logs the ordinals it wrote; a tab that finds
 * the version moved (under the lock before each update, or told by a BroadcastChannel) re-reads
 * only the records logged since, or everything if it is too far behind.
 *
 * The single sealed record of earlier versions (`client-state/<device>` in the key-value store) is
 * read once, split into records, and removed in the same IndexedDB transaction that writes them.
 *
 * @example
 * const storage = new BrowserStorage(await openIndexedDb(), unlocked.data);
 * const client = new HotlineClient({ ...options, storage, WebSocket });
 */
export class BrowserStorage implements ClientStorage {
  readonly #kv: KeyValueStore & RecordStore;
  readonly #cipher: StateCipher;
  readonly #loaded = new Map<string, Promise<Loaded>>();
  readonly #listeners = new Set<(device: string, change: StorageChange) => void>();
  readonly #channel: BroadcastChannel | undefined;
  #chain: Promise<unknown> = Promise.resolve();

  constructor(kv: KeyValueStore & RecordStore, cipher: StateCipher) {
    this.#kv = kv;
    this.#cipher = cipher;
    const Channel = (globalThis as { BroadcastChannel?: typeof BroadcastChannel }).BroadcastChannel;
    this.#channel = Channel ? new Channel('hotline-state') : undefined;
    this.#channel?.addEventListener('message', (ev: MessageEvent<{ device?: unknown; version?: unknown }>) => {
      const { device, version } = ev.data;
      if (typeof device === 'string' && typeof version === 'number') void this.#remoteWrite(device, version);
    });
  }

  /** The live state, read-only for the caller (as with every ClientStorage). */
  async read(device: string): Promise<ClientState> {
    const loaded = await this.#get(device);
    if (loaded.stale) await this.#serial(() => this.#catchUp(device, loaded));
    return loaded.state;
  }

  update<T>(device: string, mutate: (state: ClientState) => T): Promise<T> {
    return this.#serial(() =>
      this.#locked(device, async () => {
        const loaded = await this.#get(device);
        await this.#catchUp(device, loaded);
        const { draft, changes } = trackChanges(loaded.state);
        let result: T;
        let change: StateChanges | undefined;
        try {
          result = mutate(draft);
          pruneState(draft);
          change = changes();
          if (change !== undefined) await this.#commit(device, loaded, change);
        } catch (err) {
          // The state in memory is half-changed, or not stored: read it again next time.
          this.#loaded.delete(device);
          throw err;
        }
        if (change !== undefined) this.#emit(device, changedKeys(change));
        return result;
      }),
    );
  }

  /**
   * Called after each update of this tab and after catching up with another tab's, with the keys
   * that changed (the console redraws those rows only). Returns the function that unsubscribes.
   */
  onChange(listener: (device: string, change: StorageChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stop listening to other tabs. */
  close(): void {
    this.#channel?.close();
  }

  #get(device: string): Promise<Loaded> {
    let p = this.#loaded.get(device);
    if (!p) {
      p = this.#load(device);
      this.#loaded.set(device, p);
      p.catch(() => this.#loaded.delete(device));
    }
    return p;
  }

  async #load(device: string): Promise<Loaded> {
    const top = await this.#kv.records(device, 'state-top');
    const ordinals = freshOrdinals();
    if (top.length === 0) return this.#migrate(device, ordinals);
    const state = initialState(device);
    const s = state as unknown as Record<string, unknown>;
    let version = 0;
    for (const [k, text] of top) {
      if (k === VERSION) version = Number(text);
      else if (typeof k === 'string' && !k.startsWith(LOG_PREFIX)) s[k] = this.#cipher.open(text);
    }
    if (state.device !== device) throw new HotlineError('HL_ERR_CONFIG_INVALID', `the stored state belongs to ${String(state.device)}, not ${device}`);
    await Promise.all(
      RECORD_MAPS.map(async (name) => {
        const map = s[name] as Record<string, unknown>;
        for (const [n, text] of await this.#kv.records(device, MAP_STORES[name])) {
          const { k, v } = this.#cipher.open(text) as { k: string; v: unknown };
          map[k] = v;
          ordinals[name].set(k, Number(n));
        }
      }),
    );
    return { state, ordinals, version, stale: false };
  }

  /** No records yet: split the single sealed record of earlier versions, if there is one. */
  async #migrate(device: string, ordinals: Record<RecordMapName, Ordinals>): Promise<Loaded> {
    const legacyKey = `client-state/${device}`;
    const text = await this.#kv.get(legacyKey);
    if (text === undefined) return { state: initialState(device), ordinals, version: 0, stale: false };
    const state = this.#cipher.open(text) as ClientState;
    if (state.v !== 1 || state.device !== device) {
      throw new HotlineError('HL_ERR_CONFIG_INVALID', `the stored state belongs to ${String(state.device)}, not ${device}`);
    }
    migrateState(state);
    const s = state as unknown as Record<string, unknown>;
    const writes: RecordWrite[] = [{ store: 'state-top', key: VERSION, value: '1' }];
    for (const [k, v] of Object.entries(s)) {
      if ((RECORD_MAPS as readonly string[]).includes(k)) continue;
      writes.push({ store: 'state-top', key: k, value: this.#cipher.seal(v) });
    }
    for (const name of RECORD_MAPS) {
      for (const [k, v] of Object.entries(state[name] as Record<string, unknown>)) {
        writes.push({ store: MAP_STORES[name], key: ordinals[name].take(k), value: this.#cipher.seal({ k, v }) });
      }
    }
    // One transaction: the old record goes only with the new ones committed.
    await this.#kv.writeRecords(device, writes, { delete: [legacyKey] });
    return { state, ordinals, version: 1, stale: false };
  }

  async #commit(device: string, loaded: Loaded, change: StateChanges): Promise<void> {
    const writes: RecordWrite[] = [];
    const log: LogEntry = { set: [], deleted: [], top: [] };
    const s = loaded.state as unknown as Record<string, unknown>;
    const putRecord = (name: RecordMapName, k: string, v: unknown) => {
      const n = loaded.ordinals[name].take(k);
      writes.push({ store: MAP_STORES[name], key: n, value: this.#cipher.seal({ k, v }) });
      log.set.push([name, n]);
    };
    const dropRecord = (name: RecordMapName, k: string) => {
      const n = loaded.ordinals[name].drop(k);
      if (n === undefined) return;
      writes.push({ store: MAP_STORES[name], key: n });
      log.deleted.push([name, n]);
    };
    for (const [k, v] of change.set) {
      if (isRecordMap(k)) {
        // A record map replaced whole: every record goes, the new ones come.
        for (const old of [...loaded.ordinals[k].byKey.keys()]) dropRecord(k, old);
        for (const [rk, rv] of Object.entries(s[k] as Record<string, unknown>)) putRecord(k, rk, rv);
      } else {
        writes.push({ store: 'state-top', key: k, value: this.#cipher.seal(v) });
        log.top.push(k);
      }
    }
    for (const k of change.deleted) {
      writes.push({ store: 'state-top', key: k });
      log.top.push(k);
    }
    for (const name of RECORD_MAPS) {
      const c = change.maps[name];
      if (!c) continue;
      for (const k of c.deleted) dropRecord(name, k);
      for (const [k, v] of c.set) putRecord(name, k, v);
    }
    const version = loaded.version + 1;
    writes.push(
      { store: 'state-top', key: VERSION, value: String(version) },
      { store: 'state-top', key: `${LOG_PREFIX}${version}`, value: this.#cipher.seal(log) },
    );
    if (version > LOG_KEEP) writes.push({ store: 'state-top', key: `${LOG_PREFIX}${version - LOG_KEEP}` });
    await this.#kv.writeRecords(device, writes);
    loaded.version = version;
    this.#channel?.postMessage({ device, version });
  }

  /** Replay what other tabs wrote since `loaded.version`: the logged records, or everything if the log is gone. */
  async #catchUp(device: string, loaded: Loaded): Promise<void> {
    const stored = Number((await this.#kv.record(device, 'state-top', VERSION)) ?? 0);
    loaded.stale = false;
    if (stored === loaded.version) return;
    if (stored < loaded.version) {
      // The records were removed or replaced under this tab: nothing to replay from.
      await this.#reloadAll(device, loaded);
      return;
    }
    const entries: LogEntry[] = [];
    for (let v = loaded.version + 1; v <= stored; v++) {
      const text = await this.#kv.record(device, 'state-top', `${LOG_PREFIX}${v}`);
      if (text === undefined) {
        await this.#reloadAll(device, loaded);
        return;
      }
      entries.push(this.#cipher.open(text) as LogEntry);
    }
    const change: StorageChange = { outbox: [], inbox: [], sent: [], peerSeq: [] };
    const s = loaded.state as unknown as Record<string, unknown>;
    for (const e of entries) {
      for (const [name, n] of e.deleted) {
        const k = loaded.ordinals[name].byOrdinal.get(n);
        if (k === undefined) continue;
        loaded.ordinals[name].drop(k);
        delete (s[name] as Record<string, unknown>)[k];
        change[name].push(k);
      }
      for (const [name, n] of e.set) {
        const text = await this.#kv.record(device, MAP_STORES[name], n);
        // Deleted again by a later update in `entries`: that entry removes it.
        if (text === undefined) continue;
        const { k, v } = this.#cipher.open(text) as { k: string; v: unknown };
        loaded.ordinals[name].set(k, n);
        (s[name] as Record<string, unknown>)[k] = v;
        change[name].push(k);
      }
      for (const k of e.top) {
        const text = await this.#kv.record(device, 'state-top', k);
        if (text === undefined) delete s[k];
        else s[k] = this.#cipher.open(text);
      }
    }
    loaded.version = stored;
    this.#emit(device, change);
  }

  async #reloadAll(device: string, loaded: Loaded): Promise<void> {
    const fresh = await this.#load(device);
    Object.assign(loaded, fresh);
    this.#emit(device, { outbox: Object.keys(fresh.state.outbox), inbox: Object.keys(fresh.state.inbox), sent: Object.keys(fresh.state.sent), peerSeq: [] });
  }

  async #remoteWrite(device: string, version: number): Promise<void> {
    const p = this.#loaded.get(device);
    if (!p) return;
    const loaded = await p;
    if (version <= loaded.version) return;
    loaded.stale = true;
    // Caught up now, so that listeners (the console's rows) see the other tab's change promptly.
    await this.#serial(() => (loaded.stale ? this.#catchUp(device, loaded) : Promise.resolve())).catch(() => undefined);
  }

  #emit(device: string, change: StorageChange): void {
    for (const l of this.#listeners) l(device, change);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(fn);
    this.#chain = run.catch(() => undefined);
    return run;
  }

  #locked<T>(device: string, fn: () => Promise<T>): Promise<T> {
    const locks = (globalThis.navigator as { locks?: LockManagerLike } | undefined)?.locks;
    return locks ? locks.request(`hotline-state/${device}`, fn) : fn();
  }
}

function freshOrdinals(): Record<RecordMapName, Ordinals> {
  return { outbox: new Ordinals(), inbox: new Ordinals(), sent: new Ordinals(), peerSeq: new Ordinals() };
}

function isRecordMap(k: string): k is RecordMapName {
  return (RECORD_MAPS as readonly string[]).includes(k);
}

function changedKeys(change: StateChanges): StorageChange {
  const out: StorageChange = { outbox: [], inbox: [], sent: [], peerSeq: [] };
  for (const name of RECORD_MAPS) {
    const c = change.maps[name];
    if (c) out[name].push(...c.deleted, ...c.set.map(([k]) => k));
  }
  for (const [k, v] of change.set) if (isRecordMap(k)) out[k].push(...Object.keys(v as object));
  return out;
}

