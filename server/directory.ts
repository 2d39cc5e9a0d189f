import { HotlineError } from '../shared/errors.js';
import { verifyDeviceCertificate, verifyRevocation } from '../shared/crypto/keys.js';
import type { Agreement, DeviceCertBody, DeviceCertificate, Revocation } from '../shared/protocol/schemas.js';
import type { Store } from './store/store.js';

/**
 * The server's view of the device directory: every stored certificate and revocation, held in
 * memory (loaded from the store at start, updated on each enrolment and revocation) so that the
 * hot path (each envelope) needs no store read. A certificate is accepted only if it chains to the
 * agreement, so enrolment needs no token (DESIGN.md "Trust model").
 */
export class Directory {
  private certificates: DeviceCertificate[] = [];
  private revocations: Revocation[] = [];
  private revokedKeys = new Set<string>();

  constructor(
    private readonly agreement: Agreement,
    private readonly store: Store,
  ) {}

  async load(): Promise<void> {
    this.certificates = await this.store.listDevices();
    this.revocations = await this.store.listRevocations();
    this.revokedKeys = new Set(this.revocations.map((r) => revKey(r.revocation)));
  }

  /** Revocations name the certificate's signKey: a re-enrolled device of the same name is not revoked. */
  isRevoked = (cert: { party: string; device: string; signKey: string }): boolean => this.revokedKeys.has(revKey(cert));

  /** Verify and store a certificate. Idempotent. */
  async enrol(value: unknown, now: number): Promise<DeviceCertificate> {
    await verifyDeviceCertificate(this.agreement, value, { now, isRevoked: this.isRevoked });
    const certificate = value as DeviceCertificate;
    if (await this.store.putDevice(certificate, now)) {
      if (!this.certificates.some((c) => sameCert(c.cert, certificate.cert))) this.certificates.push(certificate);
    }
    return certificate;
  }

  /** Verify and store a revocation. Idempotent. */
  async revoke(value: unknown, now: number): Promise<Revocation> {
    const rev = await verifyRevocation(this.agreement, value);
    if (await this.store.putRevocation(rev, now)) {
      this.revocations.push(rev);
      this.revokedKeys.add(revKey(rev.revocation));
    }
    return rev;
  }

  allRevocations(): Revocation[] {
    return [...this.revocations];
  }

  private inDate(c: DeviceCertBody, now: number): boolean {
    return now >= c.notBefore && now < c.notAfter;
  }

  /**
   * The currently valid certificates (in date, not revoked), one per device: when a device was
   * re-enrolled, the newest valid certificate wins.
   */
  validCertificates(now: number): DeviceCertificate[] {
    const byDevice = new Map<string, DeviceCertificate>();
    for (const c of this.certificates) {
      if (!this.inDate(c.cert, now) || this.isRevoked(c.cert)) continue;
      const k = `${c.cert.party}/${c.cert.device}`;
      const prev = byDevice.get(k);
      if (!prev || c.cert.notBefore >= prev.cert.notBefore) byDevice.set(k, c);
    }
    return [...byDevice.values()].sort((a, b) => (deviceName(a.cert) < deviceName(b.cert) ? -1 : 1));
  }

  validBodies(now: number): DeviceCertBody[] {
    return this.validCertificates(now).map((c) => c.cert);
  }

  /**
   * The valid certificate of a device now (optionally the one with this signKey), or the error
   * that says why there is none: unknown, revoked, expired, not yet valid.
   */
  current(party: string, device: string, now: number, signKey?: string): DeviceCertBody {
    const mine = this.certificates
      .map((c) => c.cert)
      .filter((c) => c.party === party && c.device === device && (signKey === undefined || c.signKey === signKey))
      .sort((a, b) => b.notBefore - a.notBefore);
    const valid = mine.find((c) => this.inDate(c, now) && !this.isRevoked(c));
    if (valid) return valid;
    const newest = mine[0];
    if (!newest) throw new HotlineError('HL_ERR_CERT_UNKNOWN_DEVICE', `${party}/${device} is not enrolled`);
    if (this.isRevoked(newest)) throw new HotlineError('HL_ERR_CERT_REVOKED', `certificate of ${party}/${device} is revoked`);
    if (now < newest.notBefore) throw new HotlineError('HL_ERR_CERT_NOT_YET_VALID', `certificate of ${party}/${device} is not yet valid`);
    throw new HotlineError('HL_ERR_CERT_EXPIRED', `certificate of ${party}/${device} has expired`);
  }
}

function revKey(r: { party: string; device: string; signKey: string }): string {
  return `${r.party}/${r.device}/${r.signKey}`;
}

function deviceName(c: DeviceCertBody): string {
  return `${c.party}/${c.device}`;
}

function sameCert(a: DeviceCertBody, b: DeviceCertBody): boolean {
  return a.party === b.party && a.device === b.device && a.signKey === b.signKey;
}
