import type { Clock } from '../clock.js';
import type { Store } from '../store/store.js';

/** The floor is written at most this often while a link is up (and always when it closes). */
const SAVE_EVERY_MS = 1_000;

/**
 * Where forwarding of one kind (envelopes, receipts or refusals) to one peer relay starts on a new
 * connection (PROTOCOL.md "Store and forward; idempotency"): a stored position (store meta
 * `relay/<peer>/floor/<kind>`) at or below which everything was confirmed by the peer, so that a
 * connection pages on from there instead of rescanning the whole history.
 *
 * The floor is conservative: it only passes positions the peer confirmed (or that were never for
 * it). Within a connection, every position read is either confirmed already (the store returns
 * only unconfirmed rows) or sent and pending until confirmed; a refused one stays pending, so the
 * floor stops below it and the next connection sends it again. A floor lost in a crash costs a
 * longer scan, never a message.
 */
export class ForwardCursor {
  #floor = 0;
  #read = 0;
  #saved = 0;
  #savedAt = Number.NEGATIVE_INFINITY;
  #loaded: Promise<void> | undefined;
  readonly #pending = new Map<string, number>();

  constructor(
    private readonly store: Pick<Store, 'getMeta' | 'setMeta'>,
    readonly key: string,
    private readonly clock: Clock,
  ) {}

  static key(peer: string, kind: 'envelope' | 'receipt' | 'refusal'): string {
    return `relay/${peer}/floor/${kind}`;
  }

  /** Read the stored floor (once per connection). */
  load(): Promise<void> {
    this.#loaded ??= this.store.getMeta(this.key).then((text) => {
      const n = Number(text ?? '0');
      this.#floor = this.#saved = this.#read = Number.isSafeInteger(n) && n > 0 ? n : 0;
    });
    return this.#loaded;
  }

  /** The last position read: the next page starts after it. */
  get after(): number {
    return this.#read;
  }

  /** A row read from the store; `ref` when it was sent now (pending until confirmed). */
  read(pos: number, ref?: string): void {
    this.#read = Math.max(this.#read, pos);
    if (ref !== undefined && !this.#pending.has(ref)) this.#pending.set(ref, pos);
  }

  confirmed(ref: string): void {
    this.#pending.delete(ref);
  }

  /** Nothing sent on this connection is waiting for the peer's confirmation (a refused one still is). */
  get settled(): boolean {
    return this.#pending.size === 0;
  }

  /** Everything at or below this position is confirmed. */
  get floor(): number {
    let min = Number.POSITIVE_INFINITY;
    for (const pos of this.#pending.values()) min = Math.min(min, pos);
    return Math.max(this.#floor, min === Number.POSITIVE_INFINITY ? this.#read : min - 1);
  }

  /** Store the floor if it moved (at most every second unless `force`). */
  async save(force = false): Promise<void> {
    const floor = this.floor;
    const now = this.clock.now();
    if (floor <= this.#saved || (!force && now - this.#savedAt < SAVE_EVERY_MS)) return;
    this.#saved = floor;
    this.#savedAt = now;
    await this.store.setMeta(this.key, String(floor));
  }
}
