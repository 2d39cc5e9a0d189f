/**
 * A small key-value port for the browser consoles: IndexedDB in a browser, a Map in Node tests.
 * Values are strings (JSON the callers already encrypted where it matters).
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

/** In-memory store (tests; a browser without IndexedDB falls back to nothing: it must have it). */
export class MemoryKeyValueStore implements KeyValueStore {
  readonly map = new Map<string, string>();

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

/** IndexedDB-backed store: one database, one object store of strings. */
export class IndexedDbKeyValueStore implements KeyValueStore {
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
  const req = indexedDB.open(name, 1);
  req.onupgradeneeded = () => {
    if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE);
  };
  return new IndexedDbKeyValueStore(await request(req));
}
