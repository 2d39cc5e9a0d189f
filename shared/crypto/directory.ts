import { HotlineError } from '../errors.js';
import type { Agreement, DeviceCertBody, DeviceCertificate, Revocation, Role } from '../protocol/schemas.js';
import { verifyDeviceCertificate, verifyRevocation, type RevocationCheck } from './keys.js';

/**
 * The one directory check (docs/design.md "Trust model"): which device certificates are valid at a given
 * time under the pinned agreement. The server, the client library, the CLI and the consoles all
 * decide it here, so that they cannot disagree about who a message is sealed to or accepted from.
 */

/** The party and device a certificate or revocation is about. */
export interface DeviceRef {
  party: string;
  device: string;
}

/** `party/device`: the name a device goes by in the directory. */
export function deviceName(ref: DeviceRef): string {
  return `${ref.party}/${ref.device}`;
}

/**
 * `party/device/signKey`: what a revocation revokes. Revocations name the certificate's signKey, so
 * a device re-enrolled under the same name with a new key is not revoked with the old one.
 */
export function revocationKey(ref: DeviceRef & { signKey: string }): string {
  return `${ref.party}/${ref.device}/${ref.signKey}`;
}

/** Is `at` inside the certificate's validity, `[notBefore, notAfter)`? */
export function isInDate(cert: Pick<DeviceCertBody, 'notBefore' | 'notAfter'>, at: number): boolean {
  return at >= cert.notBefore && at < cert.notAfter;
}

/**
 * The valid certificate among one device's certificates at `at`: in date, not revoked, and of
 * those the newest by `notBefore` (a re-enrolled device's new certificate wins; on a tie, the one
 * later in `candidates`). Undefined when none is valid.
 */
export function newestValid<T extends { cert: DeviceCertBody }>(candidates: Iterable<T>, at: number, isRevoked: RevocationCheck): T | undefined {
  let best: T | undefined;
  for (const c of candidates) {
    if (!isInDate(c.cert, at) || isRevoked(c.cert)) continue;
    if (!best || c.cert.notBefore >= best.cert.notBefore) best = c;
  }
  return best;
}

/**
 * The valid certificate of `ref` at `at` among its certificates, or the coded error saying why
 * there is none, judged on its newest certificate: unknown, revoked, not yet valid, expired.
 */
export function requireValid<T extends { cert: DeviceCertBody }>(ref: DeviceRef, candidates: readonly T[], at: number, isRevoked: RevocationCheck): T {
  const valid = newestValid(candidates, at, isRevoked);
  if (valid) return valid;
  let newest: T | undefined;
  for (const c of candidates) if (!newest || c.cert.notBefore > newest.cert.notBefore) newest = c;
  const name = deviceName(ref);
  if (!newest) throw new HotlineError('HL_ERR_CERT_UNKNOWN_DEVICE', `${name} is not enrolled`);
  if (isRevoked(newest.cert)) throw new HotlineError('HL_ERR_CERT_REVOKED', `certificate of ${name} is revoked`);
  if (at < newest.cert.notBefore) throw new HotlineError('HL_ERR_CERT_NOT_YET_VALID', `certificate of ${name} is not yet valid`);
  throw new HotlineError('HL_ERR_CERT_EXPIRED', `certificate of ${name} has expired`);
}

/** A directory as fetched or read from a file: not yet verified (attacker-controlled). */
export interface DirectoryEntries {
  certificates: readonly unknown[];
  revocations: readonly unknown[];
}

/** An entry {@link verifyDirectory} left out, with the coded reason. */
export interface RejectedEntry {
  kind: 'certificate' | 'revocation';
  /** Its index in the input list of its kind. */
  index: number;
  error: HotlineError;
}

/** The directory as verified against the agreement at one time. */
export interface VerifiedDirectory {
  /** The valid certificates, one per device (see {@link newestValid}), in `party/device` order. */
  certificates: DeviceCertificate[];
  /** The revocations whose signature holds under their party's root. */
  revocations: Revocation[];
  /** Is this certificate revoked by one of {@link revocations}? */
  isRevoked: RevocationCheck;
  /** Every entry left out: malformed, of an unknown party, badly signed, not in date or revoked. */
  rejected: RejectedEntry[];
  /** The bodies of the valid certificates, of `party` only and of `roles` only when given, in `party/device` order. */
  bodies(party?: string, roles?: readonly Role[]): DeviceCertBody[];
}

/**
 * Verify a directory against the pinned agreement at `now`: each revocation against its party's
 * root, then each certificate (schema, party, root signature, dates, not revoked: see
 * `verifyDeviceCertificate`). Entries that fail are left out and listed in `rejected` with their
 * coded error; a forged revocation revokes nothing. The caller decides whether a rejected entry is
 * fatal (the CLI refuses a directory file with a forged revocation) or only reported (the client).
 *
 * Async only because WebCrypto is; no I/O, no clock.
 *
 * @example
 * const dir = await verifyDirectory(agreement, await (await fetch('/v1/directory')).json(), { now: Date.now() });
 * const recipients = expectedRecipients(dir.certificates.map((c) => c.cert), me, 'cn-mnd');
 */
export async function verifyDirectory(agreement: Agreement, entries: DirectoryEntries, options: { now: number }): Promise<VerifiedDirectory> {
  const rejected: RejectedEntry[] = [];
  const revocations: Revocation[] = [];
  for (const [index, r] of entries.revocations.entries()) {
    try {
      revocations.push(await verifyRevocation(agreement, r));
    } catch (err) {
      rejected.push({ kind: 'revocation', index, error: asHotlineError(err) });
    }
  }
  const revoked = new Set(revocations.map((r) => revocationKey(r.revocation)));
  const isRevoked: RevocationCheck = (cert) => revoked.has(revocationKey(cert));

  const byDevice = new Map<string, DeviceCertificate[]>();
  for (const [index, c] of entries.certificates.entries()) {
    try {
      const cert = await verifyDeviceCertificate(agreement, c, { now: options.now, isRevoked });
      const name = deviceName(cert);
      const list = byDevice.get(name);
      if (list) list.push(c as DeviceCertificate);
      else byDevice.set(name, [c as DeviceCertificate]);
    } catch (err) {
      rejected.push({ kind: 'certificate', index, error: asHotlineError(err) });
    }
  }
  const certificates = [...byDevice.keys()]
    .sort()
    .map((name) => newestValid(byDevice.get(name)!, options.now, isRevoked)!);
  const bodies = (party?: string, roles?: readonly Role[]) =>
    certificates.map((c) => c.cert).filter((c) => (party === undefined || c.party === party) && (roles === undefined || roles.includes(c.role)));
  return { certificates, revocations, isRevoked, rejected, bodies };
}

function asHotlineError(err: unknown): HotlineError {
  if (err instanceof HotlineError) return err;
  // Not expected from the verifiers (they code every refusal); kept, with its cause, so that one
  // bad entry cannot stop the others from being judged.
  return new HotlineError('HL_ERR_INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
}
