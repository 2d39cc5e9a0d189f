import { HotlineError } from '../shared/errors.js';
import { newestValid, verifyDirectory } from '../shared/crypto/directory.js';
import { verifyDeviceCertificate } from '../shared/crypto/keys.js';
import { prekeyRotationMs, verifyPrekey, wrapKeyFor } from '../shared/crypto/prekey.js';
import type { DeviceCertBody, DeviceCertificate, DeviceRef, PrekeyBody, Revocation, SignedPrekey } from '../shared/protocol/schemas.js';
import type { RelayApi } from './relay-api.js';
import type { CachedDirectory } from './storage/client-storage.js';
import { toHotlineError, type DeviceScope } from './scope.js';
import { labelRevoked } from './revoked-since.js';

export interface VerifiedDirectoryOptions extends Pick<DeviceScope, 'agreement' | 'key' | 'storage' | 'clock' | 'emit' | 'report' | 'running'> {
  api: Pick<RelayApi, 'ensureToken' | 'http'>;
}

/**
 * The directory of device certificates as this device trusts it: fetched from the relay, stored
 * (to seal offline), and verified here against the pinned agreement, certificate by certificate
 * and revocation by revocation.
 */
export class VerifiedDirectory {
  readonly #o: VerifiedDirectoryOptions;
  #valid = new Map<string, DeviceCertBody>();
  /** Every certificate known here whose root signature verifies, by `party/device`, valid now or not. */
  #known = new Map<string, { cert: DeviceCertBody }[]>();
  /** The earliest verified revocation time of each revoked certificate, by `party/device/signKey`. */
  #revokedAt = new Map<string, number>();
  #loaded = false;
  /** The directory's prekeys whose signature holds under their device's valid certificate, by `party/device`. */
  #prekeys = new Map<string, PrekeyBody[]>();

  constructor(options: VerifiedDirectoryOptions) {
    this.#o = options;
  }

  /** Whether a directory (fetched or stored) has been verified since this client was made. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /** The verified, currently valid certificates of the directory (as of the last fetch). */
  list(): DeviceCertBody[] {
    return [...this.#valid.values()];
  }

  /** The raw directory as last fetched (certificates and revocations), e.g. to save for `hotline seal`. */
  async snapshot(): Promise<CachedDirectory | undefined> {
    return (await this.#o.storage.read(this.#o.key)).directory;
  }

  /** Fetch the directory from the server and verify every certificate and revocation here. */
  async refresh(): Promise<DeviceCertBody[]> {
    await this.#o.api.ensureToken();
    const dir = (await this.#o.api.http('GET', '/v1/directory', undefined, true)) as { certificates?: unknown; revocations?: unknown; past?: unknown; prekeys?: unknown };
    if (!Array.isArray(dir.certificates) || !Array.isArray(dir.revocations)) {
      throw new HotlineError('HL_ERR_INPUT_SCHEMA', 'the server sent a malformed directory');
    }
    const certificates = dir.certificates as DeviceCertificate[];
    const revocations = dir.revocations as Revocation[];
    // `past` (revoked, expired, superseded certificates) came later: a relay without it sends none.
    const past = (Array.isArray(dir.past) ? dir.past : []) as DeviceCertificate[];
    // `prekeys` came later still (PROTOCOL.md "Prekeys and forward secrecy"); none: wrap to certificates.
    const prekeys = (Array.isArray(dir.prekeys) ? dir.prekeys : []) as SignedPrekey[];
    await this.#load(certificates, revocations, past, prekeys);
    const fetchedAt = this.#o.clock.now();
    const labelled = await this.#o.storage.update(this.#o.key, (s) => {
      s.directory = { certificates, revocations, past, fetchedAt, ...(prekeys.length > 0 ? { prekeys } : {}) };
      // What was stored here before a revocation this fetch brings is labelled, in the same update.
      return labelRevoked(s, (ref, at) => this.revokedSince(ref, at));
    });
    this.#o.emit('directory', { certificates: this.list(), fetchedAt });
    if (labelled.messages.length + labelled.receipts.length > 0) this.#o.emit('revoked-since', labelled);
    return this.list();
  }

  /**
   * The directory as last stored, verified again, without the server (a console tab that does not
   * hold the link shows the peers' keys from it). Emits 'directory' when there is one.
   */
  async loadStored(): Promise<DeviceCertBody[]> {
    const stored = await this.snapshot();
    if (stored) {
      await this.#load(stored.certificates, stored.revocations, stored.past ?? [], stored.prekeys ?? []);
      this.#o.emit('directory', { certificates: this.list(), fetchedAt: stored.fetchedAt });
    }
    return this.list();
  }

  /** Load the directory last stored, verified again, unless one is loaded already. */
  async ensureLoaded(): Promise<void> {
    if (this.#loaded) return;
    const cached = (await this.#o.storage.read(this.#o.key)).directory;
    if (cached) await this.#load(cached.certificates, cached.revocations, cached.past ?? [], cached.prekeys ?? []);
  }

  /**
   * Verify the directory here, against the pinned agreement (the server is not trusted to), with
   * the one directory check. An expired, revoked or forged certificate is left out: nothing is
   * sealed to it or accepted from it. A forged revocation revokes nothing and is reported.
   */
  async #load(certificates: readonly unknown[], revocations: readonly unknown[], past: readonly unknown[], prekeys: readonly unknown[]): Promise<void> {
    const verified = await verifyDirectory(this.#o.agreement, { certificates, revocations }, { now: this.#o.clock.now() });
    for (const r of verified.rejected) if (r.kind === 'revocation') this.#o.report(r.error);
    this.#valid = new Map(verified.bodies().map((cert) => [`${cert.party}/${cert.device}`, cert]));
    const revokedAt = new Map<string, number>();
    for (const { revocation: r } of verified.revocations) {
      const k = `${r.party}/${r.device}/${r.signKey}`;
      revokedAt.set(k, Math.min(r.at, revokedAt.get(k) ?? Infinity));
    }
    const known = new Map<string, { cert: DeviceCertBody }[]>();
    const remember = (cert: DeviceCertBody) => {
      const k = `${cert.party}/${cert.device}`;
      const list = known.get(k) ?? [];
      if (!list.some((c) => c.cert.signKey === cert.signKey)) list.push({ cert });
      known.set(k, list);
    };
    for (const cert of this.#valid.values()) remember(cert);
    for (const c of past) {
      try {
        // Root signature and schema only, judged at the certificate's own start: whether it was
        // valid when a message was accepted is decided by certAt, at that time.
        const value = c as DeviceCertificate;
        remember(await verifyDeviceCertificate(this.#o.agreement, c, { now: value?.cert?.notBefore ?? 0 }));
      } catch (err) {
        this.#o.report(toHotlineError(err));
      }
    }
    this.#known = known;
    this.#revokedAt = revokedAt;
    this.#prekeys = await this.#verifyPrekeys(prekeys);
    this.#loaded = true;
  }

  /**
   * Each prekey checked here against the valid certificate of the device it names (the relay is not
   * trusted to): a forged one (not signed by that certificate's key, or naming another device) is
   * left out and reported, so nothing is wrapped to it.
   */
  async #verifyPrekeys(prekeys: readonly unknown[]): Promise<Map<string, PrekeyBody[]>> {
    const out = new Map<string, PrekeyBody[]>();
    const rotationMs = prekeyRotationMs(this.#o.agreement);
    for (const value of prekeys) {
      try {
        const claimed = (value as Partial<SignedPrekey> | null)?.prekey;
        const cert = this.#valid.get(`${claimed?.party}/${claimed?.device}`);
        if (!cert) throw new HotlineError('HL_ERR_PREKEY_WRONG_DEVICE', `a prekey names ${claimed?.party}/${claimed?.device}, which has no valid certificate here`);
        const p = await verifyPrekey(value, cert, rotationMs);
        const k = `${p.party}/${p.device}`;
        out.set(k, [...(out.get(k) ?? []), p]);
      } catch (err) {
        this.#o.report(toHotlineError(err));
      }
    }
    return out;
  }

  /**
   * The box key to wrap to for each of `recipients` whose device has a verified prekey in date now
   * (its newest), by `party/device`; a device missing here is wrapped to its certificate's box key.
   */
  wrapKeys(recipients: readonly DeviceCertBody[]): Map<string, string> {
    const now = this.#o.clock.now();
    const out = new Map<string, string>();
    for (const cert of recipients) {
      const k = `${cert.party}/${cert.device}`;
      const key = wrapKeyFor(cert, this.#prekeys.get(k) ?? [], now);
      if (key !== cert.boxKey) out.set(k, key);
    }
    return out;
  }

  /**
   * The certificate `ref` had at `at` (the relay's acceptance time of a message or receipt):
   * in date at `at` and not revoked as of `at` — a revocation counts from its signed `at`, so what
   * was accepted before it stays verifiable (PROTOCOL.md "Revocation is about the time of
   * acceptance"). `revokedAt` is set when that certificate has been revoked since. A device not
   * known here has the directory fetched again first (while running).
   */
  async certAt(ref: DeviceRef, at: number): Promise<{ cert: DeviceCertBody; revokedAt?: number }> {
    const k = `${ref.party}/${ref.device}`;
    const find = () => newestValid(this.#known.get(k) ?? [], at, (c) => (this.#revokedAt.get(`${k}/${c.signKey}`) ?? Infinity) <= at);
    let found = find();
    if (!found && this.#o.running()) {
      await this.refresh();
      found = find();
    }
    if (!found) throw new HotlineError('HL_ERR_CERT_UNKNOWN_DEVICE', `${k} had no valid certificate in the directory when the relay accepted this`);
    const revokedAt = this.#revokedAt.get(`${k}/${found.cert.signKey}`);
    return revokedAt === undefined ? { cert: found.cert } : { cert: found.cert, revokedAt };
  }

  /**
   * The signed time of the revocation of the certificate `ref` had at `at`, if it has been
   * revoked (from what is loaded here; no fetch). The certificate is the one valid at `at`; when a
   * revocation dated before `at` leaves none, the one in date at `at` (a revocation backdated to
   * a compromise is shown too).
   */
  revokedSince(ref: DeviceRef, at: number): number | undefined {
    const k = `${ref.party}/${ref.device}`;
    const candidates = this.#known.get(k) ?? [];
    const revoked = (c: DeviceCertBody) => this.#revokedAt.get(`${k}/${c.signKey}`);
    const found = newestValid(candidates, at, (c) => (revoked(c) ?? Infinity) <= at) ?? newestValid(candidates, at, () => false);
    return found ? revoked(found.cert) : undefined;
  }

  /** The valid certificate of `ref`; a device not known here has the directory fetched again first (while running). */
  async certFor(ref: DeviceRef): Promise<DeviceCertBody> {
    const k = `${ref.party}/${ref.device}`;
    let cert = this.#valid.get(k);
    if (!cert && this.#o.running()) {
      await this.refresh();
      cert = this.#valid.get(k);
    }
    if (!cert) throw new HotlineError('HL_ERR_CERT_UNKNOWN_DEVICE', `${k} has no valid certificate in the directory`);
    return cert;
  }
}
