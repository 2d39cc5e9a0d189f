/**
 * A small key-value port for browser storage (BrowserStorage's records, the consoles' key store):
 * IndexedDB in a browser, a Map in Node tests. Values are strings (JSON the callers already
 * encrypted where it matters).
 *
 * @example
 * const kv = await openIndexedDb();
 * await kv.set('k', 'v');
 */
export interface KeyValueStore {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
}

/** The object stores of sealed records, one per kind of record (see BrowserStorage). */
export const RECORD_STORES = ['state-top', 'state-outbox', 'state-inbox', 'state-sent', 'state-peerSeq', 'console-notes'] as const;
export type RecordStoreName = (typeof RECORD_STORES)[number];
export type RecordKey = string | number;

/** One record to put (`value`) or delete (no `value`). */
export interface RecordWrite {
  store: RecordStoreName;
  key: RecordKey;
  value?: string;
}

/**
 * Records per scope (a device), each stored and replaced on its own, so that an update writes
 * only what changed. Keys are strings or ordinal numbers; `records` lists a scope's records in key
 * order (numbers ascending, then strings), as IndexedDB does.
 */
export interface RecordStore {
  records(scope: string, store: RecordStoreName): Promise<[RecordKey, string][]>;
  record(scope: string, store: RecordStoreName, key: RecordKey): Promise<string | undefined>;
  /**
   * Apply `writes` and the key-value changes in `kv` in one transaction: all or nothing (a
   * migration removes the single-record state in the same transaction as it writes its records).
   */
  writeRecords(scope: string, writes: readonly RecordWrite[], kv?: { delete?: readonly string[] }): Promise<void>;
}

/** In-memory store (tests; a browser without IndexedDB falls back to nothing: it must have it). */
export class MemoryKeyValueStore implements KeyValueStore, RecordStore {
  readonly map = new Map<string, string>();
  /** `store` NUL `scope` → key → value. */
  readonly recordMaps = new Map<string, Map<RecordKey, string>>();

  async records(scope: string, store: RecordStoreName): Promise<[RecordKey, string][]> {
    return [...(this.recordMaps.get(`${store}\0${scope}`) ?? new Map<RecordKey, string>())].sort(([a], [b]) => compareKeys(a, b));
  }

  async record(scope: string, store: RecordStoreName, key: RecordKey): Promise<string | undefined> {
    return this.recordMaps.get(`${store}\0${scope}`)?.get(key);
  }

  async writeRecords(scope: string, writes: readonly RecordWrite[], kv: { delete?: readonly string[] } = {}): Promise<void> {
    for (const w of writes) {
      const name = `${w.store}\0${scope}`;
      let m = this.recordMaps.get(name);
      if (!m) this.recordMaps.set(name, (m = new Map()));
      if (w.value === undefined) m.delete(w.key);
      else m.set(w.key, w.value);
    }
    for (const k of kv.delete ?? []) this.map.delete(k);
  }

  async get(key: string): Promise<string | undefined> {
    return this.map.get(key);
  }

  async set(key: string, value: string): Promise<void> {
    this.map.set(key, value);
  }

  async delete(key: string): Promise<void> {
    this.map.delete(key);
  }
}

const STORE = 'kv';

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
  });
}

function compareKeys(a: RecordKey, b: RecordKey): number {
  if (typeof a !== typeof b) return typeof a === 'number' ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** IndexedDB-backed store: one database, an object store of strings and the record stores (keys `[scope, key]`). */
export class IndexedDbKeyValueStore implements KeyValueStore, RecordStore {
  readonly #db: IDBDatabase;

  constructor(db: IDBDatabase) {
    this.#db = db;
  }

  async get(key: string): Promise<string | undefined> {
    const v = await request(this.#db.transaction(STORE, 'readonly').objectStore(STORE).get(key));
    return typeof v === 'string' ? v : undefined;
  }

  async set(key: string, value: string): Promise<void> {
    const tx = this.#db.transaction(STORE, 'readwrite', { durability: 'strict' });
    tx.objectStore(STORE).put(value, key);
    await transactionDone(tx);
  }

  async delete(key: string): Promise<void> {
    const tx = this.#db.transaction(STORE, 'readwrite', { durability: 'strict' });
    tx.objectStore(STORE).delete(key);
    await transactionDone(tx);
  }

  async records(scope: string, store: RecordStoreName): Promise<[RecordKey, string][]> {
    const os = this.#db.transaction(store, 'readonly').objectStore(store);
    // An array sorts after every number and string: [scope, []] bounds every key of the scope.
    const range = IDBKeyRange.bound([scope], [scope, []]);
    const [keys, values] = await Promise.all([request(os.getAllKeys(range)), request(os.getAll(range))]);
    return keys.map((k, i) => [(k as [string, RecordKey])[1], values[i] as string]);
  }

  async record(scope: string, store: RecordStoreName, key: RecordKey): Promise<string | undefined> {
    const v = await request(this.#db.transaction(store, 'readonly').objectStore(store).get([scope, key]));
    return typeof v === 'string' ? v : undefined;
  }

  async writeRecords(scope: string, writes: readonly RecordWrite[], kv: { delete?: readonly string[] } = {}): Promise<void> {
    const names = new Set<string>(writes.map((w) => w.store));
    if (kv.delete?.length) names.add(STORE);
    if (names.size === 0) return;
    const tx = this.#db.transaction([...names], 'readwrite', { durability: 'strict' });
    for (const w of writes) {
      const os = tx.objectStore(w.store);
      if (w.value === undefined) os.delete([scope, w.key]);
      else os.put(w.value, [scope, w.key]);
    }
    for (const k of kv.delete ?? []) tx.objectStore(STORE).delete(k);
    await transactionDone(tx);
  }
}

function transactionDone(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
  });
}

/** Open (creating on first use) the consoles' IndexedDB database. */
export async function openIndexedDb(name = 'hotline-console'): Promise<IndexedDbKeyValueStore> {
  // Version 2 adds the record stores (issue 9); the kv store keeps the key store and older state.
  const req = indexedDB.open(name, 2);
  req.onupgradeneeded = () => {
    for (const s of [STORE, ...RECORD_STORES]) {
      if (!req.result.objectStoreNames.contains(s)) req.result.createObjectStore(s);
    }
  };
  return new IndexedDbKeyValueStore(await request(req));
}
