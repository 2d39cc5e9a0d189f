import { HotlineError } from '../shared/errors.js';
import { verifyDirectory } from '../shared/crypto/directory.js';
import type { DeviceCertBody, DeviceCertificate, DeviceRef, Revocation } from '../shared/protocol/schemas.js';
import type { RelayApi } from './relay-api.js';
import type { DeviceScope } from './scope.js';

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
  #loaded = false;

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
  async snapshot(): Promise<{ certificates: DeviceCertificate[]; revocations: Revocation[]; fetchedAt: number } | undefined> {
    return (await this.#o.storage.read(this.#o.key)).directory;
  }

  /** Fetch the directory from the server and verify every certificate and revocation here. */
  async refresh(): Promise<DeviceCertBody[]> {
    await this.#o.api.ensureToken();
    const dir = (await this.#o.api.http('GET', '/v1/directory', undefined, true)) as { certificates?: unknown; revocations?: unknown };
    if (!Array.isArray(dir.certificates) || !Array.isArray(dir.revocations)) {
      throw new HotlineError('HL_ERR_INPUT_SCHEMA', 'the server sent a malformed directory');
    }
    const certificates = dir.certificates as DeviceCertificate[];
    const revocations = dir.revocations as Revocation[];
    await this.#load(certificates, revocations);
    const fetchedAt = this.#o.clock.now();
    await this.#o.storage.update(this.#o.key, (s) => {
      s.directory = { certificates, revocations, fetchedAt };
    });
    this.#o.emit('directory', { certificates: this.list(), fetchedAt });
    return this.list();
  }

  /**
   * The directory as last stored, verified again, without the server (a console tab that does not
   * hold the link shows the peers' keys from it). Emits 'directory' when there is one.
   */
  async loadStored(): Promise<DeviceCertBody[]> {
    const stored = await this.snapshot();
    if (stored) {
      await this.#load(stored.certificates, stored.revocations);
      this.#o.emit('directory', { certificates: this.list(), fetchedAt: stored.fetchedAt });
    }
    return this.list();
  }

  /** Load the directory last stored, verified again, unless one is loaded already. */
  async ensureLoaded(): Promise<void> {
    if (this.#loaded) return;
    const cached = (await this.#o.storage.read(this.#o.key)).directory;
    if (cached) await this.#load(cached.certificates, cached.revocations);
  }

  /**
   * Verify the directory here, against the pinned agreement (the server is not trusted to), with
   * the one directory check. An expired, revoked or forged certificate is left out: nothing is
   * sealed to it or accepted from it. A forged revocation revokes nothing and is reported.
   */
  async #load(certificates: readonly unknown[], revocations: readonly unknown[]): Promise<void> {
    const verified = await verifyDirectory(this.#o.agreement, { certificates, revocations }, { now: this.#o.clock.now() });
    for (const r of verified.rejected) if (r.kind === 'revocation') this.#o.report(r.error);
    this.#valid = new Map(verified.bodies().map((cert) => [`${cert.party}/${cert.device}`, cert]));
    this.#loaded = true;
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
