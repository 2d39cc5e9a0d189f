/**
 * A bounded least-recently-used cache of imported keys, keyed by the key's bytes.
 *
 * Importing a raw key into OpenSSL or WebCrypto costs more than the signature or the X25519 it is
 * used for, so imported keys are kept. By content, not by array identity: callers decode the same
 * base64 into a new array every time. Bounded, because public keys arrive from peers
 * (attacker-controlled); least-recently-used, so that a stream of one-off keys (every message's
 * ephemeral X25519 key) does not push out the few long-lived ones in constant use.
 */
export class KeyCache<V> {
  readonly #map = new Map<string, V>();

  constructor(private readonly limit: number) {}

  /** The cached value for `bytes`, made by `make` on a miss. */
  get(bytes: Uint8Array, make: () => V): V {
    const k = keyOf(bytes);
    const hit = this.#map.get(k);
    if (hit !== undefined) {
      this.#map.delete(k);
      this.#map.set(k, hit);
      return hit;
    }
    const value = make();
    if (this.#map.size >= this.limit) this.#map.delete(this.#map.keys().next().value as string);
    this.#map.set(k, value);
    return value;
  }

  /** Store a value made elsewhere (a key generated in OpenSSL). */
  set(bytes: Uint8Array, value: V): void {
    this.get(bytes, () => value);
  }

  /** Forget `bytes` (a secret that must not outlive its use). */
  delete(bytes: Uint8Array): void {
    this.#map.delete(keyOf(bytes));
  }

  get size(): number {
    return this.#map.size;
  }
}

/** One UTF-16 unit per byte. `apply`, not a spread: a spread walks an iterator, with garbage per byte. */
function keyOf(bytes: Uint8Array): string {
  return String.fromCharCode.apply(null, bytes as unknown as number[]);
}
