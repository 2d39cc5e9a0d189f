import { HotlineError } from '../shared/errors.js';
import { createPrekey, newestPrekey, prekeyRotationDue, prekeyRotationMs, prekeysToDelete, type HeldPrekey } from '../shared/crypto/prekey.js';
import type { RelayApi } from './relay-api.js';
import type { DeviceScope } from './scope.js';
import type { TimerHandle } from './ports.js';

/**
 * Where a device keeps the secrets of its prekeys (PROTOCOL.md "Prekeys and forward secrecy"). Kept
 * apart from the client state on purpose: that state is a journal, where a deleted record stays on
 * disk until the next compaction; a prekey store replaces its whole content on every save, so a
 * deleted secret is gone from the file when `save` resolves.
 */
export interface PrekeyStore {
  load(): Promise<HeldPrekey[]>;
  /** Replace the whole content durably. */
  save(held: readonly HeldPrekey[]): Promise<void>;
  /**
   * Run `fn` (a load, a change, a save) while no other user of the same store runs one: another
   * process of the device (a lock file), another tab of the browser (a Web Lock). Without it, two
   * runs that load the same content at the same moment each save their own change over the other's,
   * and a prekey secret is lost while messages are wrapped to it. A store only one process uses
   * (memory) may leave it out.
   */
  exclusive?<T>(fn: () => Promise<T>): Promise<T>;
}

/** A prekey store in memory only (tests; a device whose prekeys need not survive a restart). */
export class MemoryPrekeyStore implements PrekeyStore {
  #held: HeldPrekey[] = [];
  async load(): Promise<HeldPrekey[]> {
    return [...this.#held];
  }
  async save(held: readonly HeldPrekey[]): Promise<void> {
    this.#held = [...held];
  }
}

/** What a prekey store keeps, whatever the medium: `{ type: 'hotline-prekeys', v: 1, held }`. */
export function prekeyStoreContent(held: readonly HeldPrekey[]): { type: 'hotline-prekeys'; v: 1; held: readonly HeldPrekey[] } {
  return { type: 'hotline-prekeys', v: 1, held };
}

/** The held prekeys of a stored {@link prekeyStoreContent}; `where` names the store in the error. */
export function parsePrekeyStoreContent(value: unknown, where: string): HeldPrekey[] {
  const v = value as { type?: unknown; held?: unknown } | null;
  if (v === null || typeof v !== 'object' || v.type !== 'hotline-prekeys' || !Array.isArray(v.held)) throw new HotlineError('HL_ERR_KEY_INVALID', `${where} is not a prekey store`);
  return v.held as HeldPrekey[];
}

/** The longest a timer may be set for (2^31 − 1 ms, about 24.8 days); a later run is re-armed from there. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Options of the client's prekeys ({@link HotlineClientOptions.prekeys}). */
export interface PrekeyOptions {
  store: PrekeyStore;
  /**
   * How long after a prekey's `notAfter` its secret is kept (default 0: deleted as soon as no message
   * wrapped to it can still arrive). An archive device sets its retention period here, so that what
   * it stored stays readable that long (PROTOCOL.md "Archives").
   */
  keepMs?: number;
}

export interface PrekeyManagerOptions extends Pick<DeviceScope, 'agreement' | 'device' | 'clock' | 'emit' | 'report' | 'running'>, PrekeyOptions {
  api: Pick<RelayApi, 'ensureToken' | 'http'>;
}

/** What one {@link PrekeyManager.maintain} did. */
export interface PrekeyMaintenance {
  /** keyId of the prekey made and published now, if any. */
  rotated?: string;
  /** keyIds whose secrets were deleted now. */
  deleted: string[];
}

/**
 * A device's prekeys: made on the agreement's schedule, published to the relay, handed to the inbox
 * to open what was wrapped to them, and deleted once the relay will accept no more messages wrapped
 * to them and holds none waiting for this device (plus `keepMs`). Runs on every connection and again
 * whenever the next rotation or deletion falls due (on the injected clock).
 */
export class PrekeyManager {
  readonly #o: PrekeyManagerOptions;
  readonly #rotationMs: number;
  #held: HeldPrekey[] = [];
  #published = new Set<string>();
  #timer: TimerHandle | undefined;
  #running: Promise<PrekeyMaintenance> | undefined;

  constructor(options: PrekeyManagerOptions) {
    this.#o = options;
    this.#rotationMs = prekeyRotationMs(options.agreement);
  }

  /** Read the stored secrets (before the first delivery is opened). */
  async load(): Promise<void> {
    this.#held = await this.#o.store.load();
  }

  /**
   * The secrets held now, to open an envelope wrapped to `keyId`: read from the store again when
   * `keyId` is not among them, since another process of this device may have made it (`hotline
   * prekeys` beside `hotline listen`, which share the file).
   */
  async secretsFor(keyId: string): Promise<readonly HeldPrekey[]> {
    if (!this.#held.some((h) => h.keyId === keyId)) await this.load();
    return this.#held;
  }

  /** Rotate if due, publish what the relay may not have, delete what may go; then arm the next run. */
  maintain(): Promise<PrekeyMaintenance> {
    this.#running ??= this.#maintain().finally(() => {
      this.#running = undefined;
      this.#arm();
    });
    return this.#running;
  }

  stop(): void {
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Resolves once a run in progress has finished (its failure is reported where it was started): a
   * stopped client writes nothing after its `stop()` resolved, so its files may be moved or deleted.
   */
  async settled(): Promise<void> {
    await this.#running?.catch(() => undefined);
  }

  async #maintain(): Promise<PrekeyMaintenance> {
    const result: PrekeyMaintenance = { deleted: [] };
    // Read again each time, under the store's lock: another process of this device sharing the
    // store may have rotated or deleted since, and saving this one's older view would drop its
    // prekey or bring a deleted secret back.
    const now = await this.#exclusive(async () => {
      await this.load();
      const at = this.#o.clock.now();
      if (prekeyRotationDue(this.#held, at, this.#rotationMs)) {
        const made = await createPrekey(this.#o.device, { now: at, rotationMs: this.#rotationMs });
        // Stored before it is published: a message wrapped to it must never find its secret missing.
        await this.#o.store.save([...this.#held, made]);
        this.#held = [...this.#held, made];
        result.rotated = made.keyId;
      }
      return at;
    });
    const newest = newestPrekey(this.#held.map((h) => h.signed.prekey), now);
    for (const h of this.#held) {
      if (h.signed.prekey !== newest || this.#published.has(h.keyId)) continue;
      await this.#o.api.http('POST', '/v1/prekeys', h.signed, false);
      this.#published.add(h.keyId);
    }
    const keepMs = this.#o.keepMs ?? 0;
    // By this device's clock first (no request while nothing can go), then by the relay's.
    const candidates = this.#held.filter((h) => h.signed.prekey !== newest && now >= h.signed.prekey.notAfter + keepMs);
    if (candidates.length > 0 && this.#o.device.certificate.cert.role === 'archive') {
      // An archive reads its messages from audit exports, never from its mailbox (which keeps them
      // all): its rule is the retention alone, by its own clock (PROTOCOL.md "Archives").
      await this.#forget(prekeysToDelete(candidates, { serverTime: now, pending: new Set(), keepMs }), result);
    } else if (candidates.length > 0) {
      await this.#o.api.ensureToken();
      const answer = (await this.#o.api.http('GET', '/v1/prekeys/pending', undefined, true)) as { serverTime?: unknown; pending?: unknown };
      if (typeof answer.serverTime !== 'number' || !Array.isArray(answer.pending)) {
        throw new HotlineError('HL_ERR_INPUT_SCHEMA', 'the relay sent a malformed answer to /v1/prekeys/pending');
      }
      await this.#forget(prekeysToDelete(candidates, { serverTime: answer.serverTime, pending: new Set(answer.pending as string[]), keepMs }), result);
    }
    if (result.rotated !== undefined || result.deleted.length > 0) this.#o.emit('prekeys', result);
    return result;
  }

  async #forget(deleted: readonly HeldPrekey[], result: PrekeyMaintenance): Promise<void> {
    if (deleted.length === 0) return;
    const gone = new Set(deleted.map((h) => h.keyId));
    // Read again under the lock (the relay was asked in between, without it): a prekey another
    // process made meanwhile is kept, and one it already deleted is not counted again.
    await this.#exclusive(async () => {
      await this.load();
      const found = this.#held.filter((h) => gone.has(h.keyId)).map((h) => h.keyId);
      if (found.length === 0) return;
      const kept = this.#held.filter((h) => !gone.has(h.keyId));
      await this.#o.store.save(kept);
      this.#held = kept;
      result.deleted = found;
    });
  }

  /** `fn` under the store's lock, if it has one (PrekeyStore.exclusive). */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const store = this.#o.store;
    return store.exclusive ? store.exclusive(fn) : fn();
  }

  /** The next run: when the newest prekey is a rotation period old, or the earliest deletion falls due. */
  #arm(): void {
    this.stop();
    if (!this.#o.running()) return;
    const keepMs = this.#o.keepMs ?? 0;
    const times = this.#held.flatMap((h) => [h.signed.prekey.notBefore + this.#rotationMs, h.signed.prekey.notAfter + keepMs]);
    const now = this.#o.clock.now();
    // Timers take at most 2^31 − 1 ms, and an archive's retention is longer: a run then only re-arms.
    const next = Math.min(...times.filter((t) => t > now), now + Math.min(this.#rotationMs, MAX_TIMER_MS));
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = undefined;
      this.maintain().catch((err: unknown) => this.#o.report(err instanceof HotlineError ? err : new HotlineError('HL_ERR_INTERNAL', String(err), { cause: err })));
    }, next - now);
  }
}
