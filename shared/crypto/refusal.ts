import { HotlineError } from '../errors.js';
import { fromBase64, toBase64 } from '../encoding/base64.js';
import { assertSchema } from '../protocol/validate.js';
import { SignedRefusal, type DeviceCertBody, type DeviceSecretFile, type EnvelopeHeader } from '../protocol/schemas.js';
import { ed25519Sign, ed25519Verify, type Ed25519Verifier } from './ed25519.js';
import { CONTEXT, signingBytes } from './keys.js';

/**
 * Sign a refusal of a delivered message (PROTOCOL.md "Refusals"): this device could not accept it
 * (`code` says why), bound to the header hash as delivered. The header may be unverified (that is
 * usually why it is refused): only its id and hash are taken.
 *
 * @example
 * const r = await signRefusal(device, header.id, envelopeHash(header), 'HL_ERR_CERT_UNKNOWN_DEVICE', Date.now());
 */
export async function signRefusal(device: DeviceSecretFile, messageId: string, envelopeHash: string, code: string, at: number): Promise<SignedRefusal> {
  const me = device.certificate.cert;
  const refusal = { v: 1 as const, messageId, envelopeHash, code, by: { party: me.party, device: me.device }, at };
  const signature = await ed25519Sign(fromBase64(device.signSecret, 32), signingBytes(CONTEXT.refusal, refusal));
  return assertSchema(SignedRefusal, { refusal, signature: toBase64(signature) }, 'HL_ERR_REFUSAL_MALFORMED');
}

/** The message a refusal names: its stored header and the hash stored with it. */
export interface RefusedMessage {
  header: EnvelopeHeader;
  envelopeHash: string;
}

/**
 * Verify a refusal (already past the SignedRefusal schema) against its signer's certificate and,
 * when given, the stored message it names: the signer must be a device the envelope was wrapped
 * for, and the hash must be the stored one. Input is attacker-controlled.
 */
export async function verifyCheckedRefusal(r: SignedRefusal, signerCert: DeviceCertBody, message?: RefusedMessage, verify: Ed25519Verifier = ed25519Verify): Promise<SignedRefusal> {
  const body = r.refusal;
  if (body.by.party !== signerCert.party || body.by.device !== signerCert.device) {
    throw new HotlineError('HL_ERR_REFUSAL_SENDER_MISMATCH', 'the refusal names a different device than the certificate');
  }
  const ok = await verify(fromBase64(signerCert.signKey, 32), signingBytes(CONTEXT.refusal, body), fromBase64(r.signature, 64));
  if (!ok) throw new HotlineError('HL_ERR_REFUSAL_BAD_SIGNATURE', `the refusal of ${body.messageId} does not verify`);
  if (message) {
    if (message.header.id !== body.messageId) throw new HotlineError('HL_ERR_REFUSAL_UNKNOWN_MESSAGE', 'the refusal names another message');
    if (message.envelopeHash !== body.envelopeHash) {
      throw new HotlineError('HL_ERR_REFUSAL_HASH_MISMATCH', `the refusal of ${body.messageId} is bound to a different envelope than the one stored`);
    }
    if (!message.header.recipients.some((x) => x.party === body.by.party && x.device === body.by.device)) {
      throw new HotlineError('HL_ERR_REFUSAL_NOT_RECIPIENT', `${body.by.party}/${body.by.device} is not a device ${body.messageId} was wrapped for`);
    }
  }
  return r;
}

/** {@link verifyCheckedRefusal} for a value not yet checked against the schema (an audit export). */
export async function verifyRefusal(value: unknown, signerCert: DeviceCertBody, message?: RefusedMessage): Promise<SignedRefusal> {
  return verifyCheckedRefusal(assertSchema(SignedRefusal, value, 'HL_ERR_REFUSAL_MALFORMED'), signerCert, message);
}
