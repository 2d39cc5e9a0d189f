import { HotlineError } from '../errors.js';
import { fromBase64, toBase64 } from '../encoding/base64.js';
import { assertSchema } from '../protocol/validate.js';
import { SignedPrekey, type Agreement, type DeviceCertBody, type DeviceSecretFile, type PrekeyBody } from '../protocol/schemas.js';
import { ed25519Sign, ed25519Verify } from './ed25519.js';
import { keyIdOf, signingBytes } from './keys.js';
import { boxKeyPair } from './x25519.js';

/**
 * Prekeys: medium-term box keys that give messages forward secrecy (PROTOCOL.md "Prekeys and
 * forward secrecy"). A device signs each with its certificate key; senders wrap to the newest one
 * in date; the device deletes its secret once no message wrapped to it can still arrive.
 */

/** Signing-string context line of a prekey (PROTOCOL.md "Conventions"). */
export const PREKEY_CONTEXT = 'hotline/v1/prekey\n';

/** Default rotation period when the agreement sets none: 7 days. */
export const DEFAULT_PREKEY_ROTATION_MS = 7 * 24 * 3_600_000;

/** The agreement's rotation period (`prekeyRotationMs`), or the default. */
export function prekeyRotationMs(agreement: Pick<Agreement, 'prekeyRotationMs'>): number {
  return agreement.prekeyRotationMs ?? DEFAULT_PREKEY_ROTATION_MS;
}

/**
 * The longest a prekey may be in date: two rotation periods. It is the newest for one period, then
 * stays usable for one more, so that a device offline when its rotation fell due still gets
 * messages wrapped to a prekey and senders with a directory fetched before the rotation are not
 * refused.
 */
export function maxPrekeyLifetimeMs(rotationMs: number): number {
  return 2 * rotationMs;
}

/** A prekey with the secret of its box key, as only its own device holds it. */
export interface HeldPrekey {
  /** `keyIdOf(boxKey)`: the `keyId` of recipient entries wrapped to it. */
  keyId: string;
  signed: SignedPrekey;
  /** base64 X25519 secret key. */
  boxSecret: string;
}

/**
 * Make a new prekey for `device`, in date from `now` for {@link maxPrekeyLifetimeMs}, signed by the
 * device's certificate key.
 *
 * @example
 * const held = await createPrekey(device, { now: Date.now(), rotationMs: prekeyRotationMs(agreement) });
 */
export async function createPrekey(device: DeviceSecretFile, options: { now: number; rotationMs: number }): Promise<HeldPrekey> {
  const cert = device.certificate.cert;
  const kp = boxKeyPair();
  const prekey: PrekeyBody = {
    v: 1,
    party: cert.party,
    device: cert.device,
    signKey: cert.signKey,
    boxKey: toBase64(kp.publicKey),
    notBefore: options.now,
    notAfter: options.now + maxPrekeyLifetimeMs(options.rotationMs),
  };
  const signature = await ed25519Sign(fromBase64(device.signSecret, 32), signingBytes(PREKEY_CONTEXT, prekey));
  const signed = assertSchema(SignedPrekey, { prekey, signature: toBase64(signature) }, 'HL_ERR_PREKEY_MALFORMED');
  return { keyId: keyIdOf(kp.publicKey), signed, boxSecret: toBase64(kp.secretKey) };
}

/**
 * Verify a prekey against the certificate of the device it claims (which the caller has verified
 * against the agreement): schema, the same party, device and signKey, the device's signature, and a
 * lifetime of at most two rotation periods. Input is attacker-controlled; each failure has its code.
 * Whether it is in date now is the caller's question ({@link newestPrekey}).
 */
export async function verifyPrekey(value: unknown, cert: DeviceCertBody, rotationMs: number): Promise<PrekeyBody> {
  const signed = assertSchema(SignedPrekey, value, 'HL_ERR_PREKEY_MALFORMED');
  const p = signed.prekey;
  if (p.party !== cert.party || p.device !== cert.device || p.signKey !== cert.signKey) {
    throw new HotlineError('HL_ERR_PREKEY_WRONG_DEVICE', `prekey names ${p.party}/${p.device}, not the certificate of ${cert.party}/${cert.device}`);
  }
  const ok = await ed25519Verify(fromBase64(cert.signKey, 32), signingBytes(PREKEY_CONTEXT, p), fromBase64(signed.signature, 64));
  if (!ok) throw new HotlineError('HL_ERR_PREKEY_BAD_SIGNATURE', `prekey of ${p.party}/${p.device} is not signed by its certificate key`);
  fromBase64(p.boxKey, 32);
  if (p.notAfter <= p.notBefore || p.notAfter - p.notBefore > maxPrekeyLifetimeMs(rotationMs)) {
    throw new HotlineError('HL_ERR_PREKEY_VALIDITY', `prekey of ${p.party}/${p.device} is in date for ${p.notAfter - p.notBefore} ms; at most ${maxPrekeyLifetimeMs(rotationMs)} (two rotation periods)`);
  }
  return p;
}

/** Is `at` inside the prekey's `[notBefore, notAfter)`? */
export function prekeyInDate(p: Pick<PrekeyBody, 'notBefore' | 'notAfter'>, at: number): boolean {
  return at >= p.notBefore && at < p.notAfter;
}

/** The newest (latest `notBefore`) of `prekeys` in date at `at`, or undefined. */
export function newestPrekey<T extends Pick<PrekeyBody, 'notBefore' | 'notAfter'>>(prekeys: Iterable<T>, at: number): T | undefined {
  let best: T | undefined;
  for (const p of prekeys) if (prekeyInDate(p, at) && (!best || p.notBefore >= best.notBefore)) best = p;
  return best;
}

/** Whether a device holding `held` must make a new prekey at `at`: none in date, or the newest is a rotation period old. */
export function prekeyRotationDue(held: readonly Pick<HeldPrekey, 'signed'>[], at: number, rotationMs: number): boolean {
  const newest = newestPrekey(held.map((h) => h.signed.prekey), at);
  return !newest || at >= newest.notBefore + rotationMs;
}

/**
 * The prekeys whose secrets a device may delete now (PROTOCOL.md "When a prekey's secret is
 * deleted"): the relay's clock (`serverTime`) is past the prekey's `notAfter` plus `keepMs`, so the
 * relay accepts no more messages wrapped to it, and the relay holds none for this device still
 * unacknowledged (`pending`, keyIds). `keepMs` is 0 for an operator device and the retention
 * period for an archive. The newest prekey is never deleted.
 */
export function prekeysToDelete(held: readonly HeldPrekey[], options: { serverTime: number; pending: ReadonlySet<string>; keepMs: number }): HeldPrekey[] {
  return held.filter((h) => options.serverTime >= h.signed.prekey.notAfter + options.keepMs && !options.pending.has(h.keyId));
}

/**
 * The box key to wrap a message's content key to for `cert`'s device (PROTOCOL.md "Prekeys and
 * forward secrecy"): the newest of its verified prekeys in date at `at`, else the certificate's
 * long-term box key (no forward secrecy: see the guarantee).
 */
export function wrapKeyFor(cert: DeviceCertBody, prekeys: readonly PrekeyBody[], at: number): string {
  return newestPrekey(prekeys.filter((p) => p.signKey === cert.signKey), at)?.boxKey ?? cert.boxKey;
}
