import { HotlineError } from '../../shared/errors.js';
import { checkRecipients, envelopeSignedBytes, expectedRecipients, SENT_AT_WINDOW_MS, sentAtInWindow, verifyCheckedEnvelope } from '../../shared/crypto/envelope.js';
import { checkReceiptReason, receiptSignedBytes, verifyCheckedReceipt } from '../../shared/crypto/receipt.js';
import { bytesEqual, fromBase64 } from '../../shared/encoding/base64.js';
import { canonicalBytes } from '../../shared/encoding/canonical-json.js';
import type { ClientFrame } from '../../shared/protocol/frames.js';
import { verifyCheckedRefusal } from '../../shared/crypto/refusal.js';
import type { Ed25519Verifier } from '../../shared/crypto/ed25519.js';
import { checkLabel } from '../../shared/protocol/labels.js';
import type { Agreement, DeviceCertBody, Envelope, SignedReceipt, SignedRefusal } from '../../shared/protocol/schemas.js';
import { envelopeMailboxes, receiptMailboxes } from './routing.js';
import type { EnvelopeWrite, ReceiptWrite, RefusalWrite, StoredMessage } from './records.js';
import { PRECEDENCE_RANK } from './delivery.js';
import { envelopeAcceptedEntry, receiptAcceptedEntry, refusalAcceptedEntry } from './audit-entries.js';

/** Who an envelope is wrapped for (PROTOCOL.md "Recipients"): auditors never get copies. */
const RECIPIENT_ROLES: readonly DeviceCertBody['role'][] = ['operator', 'archive'];

/** What admission reads of the device directory (server/directory.ts is one). */
export interface DirectoryView {
  /**
   * The valid certificate of a device now (with `signKey`, that certificate), or a HotlineError
   * saying why there is none (unknown, revoked, expired, not yet valid).
   */
  current(party: string, device: string, now: number, signKey?: string): DeviceCertBody;
  /** The bodies of the currently valid certificates of these parties and roles, in `party/device` order. */
  validBodies(now: number, parties: readonly string[], roles: readonly DeviceCertBody['role'][]): DeviceCertBody[];
  /** The keyIds of the device's prekeys in date at `now`; when any, its envelopes are wrapped to one of them. */
  prekeyIds?(cert: DeviceCertBody, now: number): readonly string[];
}

/** The authenticated device of a connection: the certificate its login was proved with. */
export interface Sender {
  party: string;
  device: string;
  signKey: string;
}

export interface AdmitContext {
  agreement: Agreement;
  directory: DirectoryView;
  now: number;
  sender: Sender;
  /**
   * The hash stored with message `id`, if it is stored: an identical envelope sent again is
   * answered `accepted` again however old its `sentAt` (a client that lost the first answer).
   */
  storedHash?: (id: string) => Promise<string | undefined>;
  /** The Ed25519 check (server/verify-pool.ts); by default node:crypto's on the event loop. */
  verify?: Ed25519Verifier;
  /** Runs each signature check (the shell times it for /metrics); by default it is just run. */
  timeVerify?: <T>(kind: 'envelope' | 'receipt' | 'refusal', run: () => Promise<T>) => Promise<T>;
}

const untimed = <T>(_kind: string, run: () => Promise<T>): Promise<T> => run();

/** The connection's device's certificate valid now: checked again at each frame, as it may have expired or been revoked since login. */
function currentCertificate(ctx: Pick<AdmitContext, 'directory' | 'now' | 'sender'>): DeviceCertBody {
  return ctx.directory.current(ctx.sender.party, ctx.sender.device, ctx.now, ctx.sender.signKey);
}

/** Only operators send envelopes and receipts; auditors read, archives only receive. */
function senderCertificate(ctx: AdmitContext): DeviceCertBody {
  const cert = currentCertificate(ctx);
  if (cert.role !== 'operator') {
    throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `${cert.party}/${cert.device} is an ${cert.role} device and may not send`);
  }
  return cert;
}

/**
 * A frame's signature check, started before its turn to be admitted: frames queued behind others
 * on a connection have their checks made in the signature thread meanwhile (server/plugins/link.ts),
 * several in one batch, while the event loop admits the frames ahead of them.
 */
export interface EarlyCheck {
  publicKey: Uint8Array;
  message: Uint8Array;
  signature: Uint8Array;
  result: Promise<boolean>;
}

/**
 * Start the signature check that admitting `frame` will make (envelopes and receipts), with the key
 * of the sender's certificate valid now: the same bytes as the admission's own check, through the
 * same functions (envelopeSignedBytes, receiptSignedBytes). Undefined where there is none to start
 * or the frame would be refused anyway (its admission then says why).
 */
export function startEarlyCheck(frame: ClientFrame, ctx: Pick<AdmitContext, 'directory' | 'now' | 'sender'>, verify: Ed25519Verifier): EarlyCheck | undefined {
  if (frame.t !== 'envelope' && frame.t !== 'receipt') return undefined;
  try {
    const publicKey = fromBase64(currentCertificate(ctx).signKey, 32);
    const signed = frame.t === 'envelope' ? frame.envelope : frame.receipt;
    const signature = fromBase64(signed.signature, 64);
    const message = frame.t === 'envelope' ? envelopeSignedBytes(canonicalBytes(frame.envelope.header)) : receiptSignedBytes(frame.receipt.receipt);
    return { publicKey, message, signature, result: verify(publicKey, message, signature) };
  } catch {
    return undefined;
  }
}

/**
 * The verifier for a frame whose check was started early: that check's answer when asked about the
 * same key, bytes and signature (compared byte for byte, so the answer is node:crypto's for exactly
 * what is asked), else `verify`'s (the certificate changed meanwhile, or another check).
 */
export function withEarlyCheck(check: EarlyCheck | undefined, verify: Ed25519Verifier): Ed25519Verifier {
  if (!check) return verify;
  return (publicKey, message, signature) =>
    bytesEqual(publicKey, check.publicKey) && bytesEqual(signature, check.signature) && bytesEqual(message, check.message) ? check.result : verify(publicKey, message, signature);
}

/**
 * Every check an envelope passes before it is written (the replay check follows inside the
 * store's transaction). `env` has passed the frame schema, which is not checked again; the header
 * is canonicalised once, for the signature and the hash stored with it. Throws a HotlineError
 * naming the failure.
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
  const { hash } = await (ctx.timeVerify ?? untimed)('envelope', () => verifyCheckedEnvelope(env, cert, ctx.verify));
  if (!sentAtInWindow(h.sentAt, ctx.now) && (await ctx.storedHash?.(h.id)) !== hash) {
    const hours = SENT_AT_WINDOW_MS / 3_600_000;
    throw new HotlineError('HL_ERR_ENVELOPE_SENT_AT', `sentAt ${h.sentAt} is more than ${hours} h from the relay's clock (${ctx.now}, ms since the epoch): check the device clock; the client seals it again`, {
      detail: { sentAt: h.sentAt, now: ctx.now },
    });
  }
  const prekeyIds = ctx.directory.prekeyIds?.bind(ctx.directory);
  checkRecipients(h, expectedRecipients(ctx.directory.validBodies(ctx.now, [h.from.party, h.to], RECIPIENT_ROLES), h.from, h.to), prekeyIds && ((c) => prekeyIds(c, ctx.now)));
  checkLabel(ctx.agreement, h.label);
  return {
    kind: 'envelope',
    envelope: env,
    envelopeHash: hash,
    acceptedAt: ctx.now,
    rank: PRECEDENCE_RANK[h.precedence],
    mailboxes: envelopeMailboxes(h),
    audit: envelopeAcceptedEntry(env, hash, ctx.now),
  };
}

/**
 * Every check a receipt passes before it is written, against the stored message's header and the
 * hash stored with it (never the whole envelope, never a hash recomputed). `r` has passed the
 * frame schema.
 */
export async function admitReceipt(r: SignedReceipt, message: StoredMessage | undefined, ctx: AdmitContext): Promise<ReceiptWrite> {
  const body = r.receipt;
  const cert = senderCertificate(ctx);
  if (body.by.party !== cert.party || body.by.device !== cert.device) {
    throw new HotlineError('HL_ERR_RECEIPT_SENDER_MISMATCH', `this connection is ${cert.party}/${cert.device}; the receipt names another signer`);
  }
  if (!message) throw new HotlineError('HL_ERR_RECEIPT_UNKNOWN_MESSAGE', `no message ${body.messageId} is stored`);
  await (ctx.timeVerify ?? untimed)('receipt', () => verifyCheckedReceipt(r, cert, message, ctx.verify));
  // After the signature: the code then says what is wrong with a receipt its signer really sent.
  checkReceiptReason(body);
  const header = message.header;
  return {
    kind: 'receipt',
    receipt: r,
    acceptedAt: ctx.now,
    rank: PRECEDENCE_RANK[header.precedence],
    mailboxes: receiptMailboxes(ctx.directory.validBodies(ctx.now, [header.from.party, header.to], ['operator']), header, body),
    audit: receiptAcceptedEntry(r, ctx.now),
  };
}

/**
 * Every check a refusal passes before it is written (PROTOCOL.md "Refusals"): the connection's
 * device, with a certificate valid now, is a device the stored envelope was wrapped for (an
 * operator or an archive: the roles that receive), and signed it over the stored hash. Whether it
 * closes deadlines is the scheduler's decision; a conflicting refusal is refused by the store.
 */
export async function admitRefusal(r: SignedRefusal, message: StoredMessage | undefined, ctx: AdmitContext): Promise<RefusalWrite> {
  const body = r.refusal;
  const cert = currentCertificate(ctx);
  if (!RECIPIENT_ROLES.includes(cert.role)) {
    throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `${cert.party}/${cert.device} is a ${cert.role} device: it receives no messages to refuse`);
  }
  if (body.by.party !== cert.party || body.by.device !== cert.device) {
    throw new HotlineError('HL_ERR_REFUSAL_SENDER_MISMATCH', `this connection is ${cert.party}/${cert.device}; the refusal names another device`);
  }
  if (!message) throw new HotlineError('HL_ERR_REFUSAL_UNKNOWN_MESSAGE', `no message ${body.messageId} is stored`);
  await (ctx.timeVerify ?? untimed)('refusal', () => verifyCheckedRefusal(r, cert, message, ctx.verify));
  return { kind: 'refusal', refusal: r, acceptedAt: ctx.now, audit: refusalAcceptedEntry(r, ctx.now) };
}
