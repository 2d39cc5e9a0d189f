import { HotlineError } from '../errors.js';
import { fromBase64, toBase64 } from '../encoding/base64.js';
import { assertSchema } from '../protocol/validate.js';
import { SignedReceipt, type CannotComplyReason, type DeviceCertBody, type DeviceSecretFile, type EnvelopeHeader, type ReceiptBody, type ReceiptKind } from '../protocol/schemas.js';
import { ed25519Sign, ed25519Verify, type Ed25519Verifier } from './ed25519.js';
import { CONTEXT, signingBytes } from './keys.js';
import { envelopeHash } from './envelope.js';

/**
 * The rule a new receipt keeps beyond its schema (PROTOCOL.md "Receipts"): a `cannot-comply` names
 * its reason (`HL_ERR_RECEIPT_REASON_REQUIRED`) and no other kind has one
 * (`HL_ERR_RECEIPT_REASON_UNEXPECTED`). Checked when signing and by the relay that admits the
 * receipt, not when verifying one already stored: logs kept before the rule may hold a
 * `cannot-comply` without a reason, and they still verify.
 *
 * @example
 * checkReceiptReason({ ...body, kind: 'cannot-comply' }); // throws HL_ERR_RECEIPT_REASON_REQUIRED
 */
export function checkReceiptReason(body: Pick<ReceiptBody, 'kind' | 'reason' | 'messageId'>): void {
  if (body.kind === 'cannot-comply' && body.reason === undefined) {
    throw new HotlineError('HL_ERR_RECEIPT_REASON_REQUIRED', `a cannot-comply receipt for ${body.messageId} must name its reason (no-authority, not-feasible, not-understood, declined or other)`);
  }
  if (body.kind !== 'cannot-comply' && body.reason !== undefined) {
    throw new HotlineError('HL_ERR_RECEIPT_REASON_UNEXPECTED', `a ${body.kind} receipt for ${body.messageId} has no reason; only cannot-comply names one`);
  }
}

/** The bytes a receipt's signature covers (one place: see envelopeSignedBytes). */
export function receiptSignedBytes(body: ReceiptBody): Uint8Array {
  return signingBytes(CONTEXT.receipt, body);
}

/**
 * Sign a receipt for an envelope: the rung (`delivered`, `acknowledged`, ...) this device reached,
 * bound to the envelope's header hash. Non-repudiable by design (docs/design.md "Trust model").
 * A `cannot-comply` needs its `reason` (see {@link checkReceiptReason}).
 *
 * @example
 * const r = await signReceipt(device, header, 'acknowledged', Date.now());
 * const no = await signReceipt(device, header, 'cannot-comply', Date.now(), undefined, 'not-feasible');
 */
export async function signReceipt(
  device: DeviceSecretFile,
  header: EnvelopeHeader,
  kind: ReceiptKind,
  at: number,
  /** The header's hash when the caller has it (from `openEnvelope`), saving a canonicalisation. */
  hash: string = envelopeHash(header),
  reason?: CannotComplyReason,
): Promise<SignedReceipt> {
  const me = device.certificate.cert;
  const receipt = {
    v: 1 as const,
    messageId: header.id,
    envelopeHash: hash,
    kind,
    ...(reason === undefined ? {} : { reason }),
    by: { party: me.party, device: me.device },
    at,
  };
  checkReceiptReason(receipt);
  const signature = await ed25519Sign(fromBase64(device.signSecret, 32), receiptSignedBytes(receipt));
  return assertSchema(SignedReceipt, { receipt, signature: toBase64(signature) }, 'HL_ERR_RECEIPT_MALFORMED');
}

/** A message a receipt may answer: its header and its known hash (stored, or from verifyEnvelope). */
export interface KnownMessage {
  header: EnvelopeHeader;
  envelopeHash: string;
}

/**
 * Verify a receipt against its signer's certificate (already verified against the agreement) and,
 * when given, the message it claims to answer: a header (its hash is computed) or a
 * {@link KnownMessage} (its hash is trusted as the caller's own). Input is attacker-controlled.
 */
export async function verifyReceipt(value: unknown, signerCert: DeviceCertBody, message?: EnvelopeHeader | KnownMessage): Promise<SignedReceipt> {
  const r = assertSchema(SignedReceipt, value, 'HL_ERR_RECEIPT_MALFORMED');
  const known = message === undefined || 'envelopeHash' in message ? message : { header: message, envelopeHash: envelopeHash(message) };
  return verifyCheckedReceipt(r, signerCert, known);
}

/**
 * {@link verifyReceipt} for a receipt that has already passed the SignedReceipt schema (inside a
 * frame from `decodeClientFrame`), against a message whose hash is known.
 */
export async function verifyCheckedReceipt(r: SignedReceipt, signerCert: DeviceCertBody, message?: KnownMessage, verify: Ed25519Verifier = ed25519Verify): Promise<SignedReceipt> {
  const body = r.receipt;
  if (body.by.party !== signerCert.party || body.by.device !== signerCert.device) {
    throw new HotlineError('HL_ERR_RECEIPT_SENDER_MISMATCH', 'receipt names a different device than the certificate');
  }
  const ok = await verify(fromBase64(signerCert.signKey, 32), receiptSignedBytes(body), fromBase64(r.signature, 64));
  if (!ok) throw new HotlineError('HL_ERR_RECEIPT_BAD_SIGNATURE', `receipt for ${body.messageId} does not verify`);
  if (message) {
    const header = message.header;
    if (header.id !== body.messageId) throw new HotlineError('HL_ERR_RECEIPT_UNKNOWN_MESSAGE', 'receipt names another message');
    if (message.envelopeHash !== body.envelopeHash) {
      throw new HotlineError('HL_ERR_RECEIPT_HASH_MISMATCH', `receipt for ${body.messageId} is bound to a different envelope`);
    }
    // Only the addressee party answers a message; the sender's own devices and archives do not.
    if (body.by.party !== header.to) {
      throw new HotlineError('HL_ERR_RECEIPT_NOT_RECIPIENT', `${body.by.party} is not the addressee of ${body.messageId}`);
    }
    if (!header.recipients.some((x) => x.party === body.by.party && x.device === body.by.device)) {
      throw new HotlineError('HL_ERR_RECEIPT_NOT_RECIPIENT', `${body.by.party}/${body.by.device} is not a recipient of ${body.messageId}`);
    }
  }
  return r;
}
