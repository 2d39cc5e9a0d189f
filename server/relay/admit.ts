import { HotlineError } from '../../shared/errors.js';
import { checkRecipients, envelopeHash, expectedRecipients, verifyEnvelope } from '../../shared/crypto/envelope.js';
import { verifyReceipt } from '../../shared/crypto/receipt.js';
import type { Agreement, DeviceCertBody, Envelope, EnvelopeHeader, SignedReceipt } from '../../shared/protocol/schemas.js';
import type { TokenClaims } from '../tokens.js';
import type { Directory } from '../directory.js';
import { envelopeMailboxes, receiptMailboxes } from './routing.js';
import type { EnvelopeWrite, ReceiptWrite } from '../store/store.js';

export interface AdmitContext {
  agreement: Agreement;
  directory: Directory;
  now: number;
  /** The authenticated device of the connection. */
  sender: TokenClaims;
}

/** Only operators send envelopes and receipts; auditors read, archives only receive. */
function senderCertificate(ctx: AdmitContext): DeviceCertBody {
  // The certificate is checked again at each frame: it may have expired or been revoked since login.
  const cert = ctx.directory.current(ctx.sender.party, ctx.sender.device, ctx.now, ctx.sender.signKey);
  if (cert.role !== 'operator') {
    throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `${cert.party}/${cert.device} is a ${cert.role} device and may not send`);
  }
  return cert;
}

/**
 * Every check an envelope passes before it is written (the replay check follows inside the
 * store's transaction). `env` has passed the frame schema. Throws a HotlineError naming the failure.
 */
export async function admitEnvelope(env: Envelope, ctx: AdmitContext): Promise<EnvelopeWrite> {
  const h = env.header;
  const cert = senderCertificate(ctx);
  if (h.from.party !== cert.party || h.from.device !== cert.device) {
    throw new HotlineError('HL_ERR_ENVELOPE_SENDER_MISMATCH', `this connection is ${cert.party}/${cert.device}; the envelope claims another sender`);
  }
  if (!ctx.agreement.parties.some((p) => p.id === h.to)) {
    throw new HotlineError('HL_ERR_ENVELOPE_UNKNOWN_PARTY', `${h.to} is not a party of the agreement`);
  }
  if (h.to === cert.party) throw new HotlineError('HL_ERR_ENVELOPE_UNKNOWN_PARTY', 'a message goes to another party, not to one’s own');
  await verifyEnvelope(env, cert);
  checkRecipients(h, expectedRecipients(ctx.directory.validBodies(ctx.now, [h.from.party, h.to]), h.from, h.to));
  return { kind: 'envelope', envelope: env, envelopeHash: envelopeHash(h), acceptedAt: ctx.now, mailboxes: envelopeMailboxes(h) };
}

/** Every check a receipt passes before it is written. `header` is the stored envelope's header, if any. */
export async function admitReceipt(r: SignedReceipt, header: EnvelopeHeader | undefined, ctx: AdmitContext): Promise<ReceiptWrite> {
  const body = r.receipt;
  const cert = senderCertificate(ctx);
  if (body.by.party !== cert.party || body.by.device !== cert.device) {
    throw new HotlineError('HL_ERR_RECEIPT_SENDER_MISMATCH', `this connection is ${cert.party}/${cert.device}; the receipt names another signer`);
  }
  if (!header) throw new HotlineError('HL_ERR_RECEIPT_UNKNOWN_MESSAGE', `no message ${body.messageId} is stored`);
  await verifyReceipt(r, cert, header);
  return { kind: 'receipt', receipt: r, acceptedAt: ctx.now, mailboxes: receiptMailboxes(ctx.directory.validBodies(ctx.now, [header.from.party, header.to]), header, body) };
}
