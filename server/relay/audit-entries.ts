import type { DeviceCertificate, Envelope, Revocation, SignedReceipt, SignedRefusal } from '../../shared/protocol/schemas.js';
import type { AuditEntry } from './records.js';
import { receiptHash, refusalHash } from '../../shared/audit/reconcile.js';

/**
 * The content of the audit entries of what the server accepts (docs/design.md "Audit log", PROTOCOL.md "Audit entries"): decided
 * here, once, so that every store adapter appends the same entries (a store only numbers, chains
 * and appends them). Deadline, link and audit events are their own entries, as they are.
 */

/** An accepted envelope: the signed header and signature, never the ciphertext. */
export function envelopeAcceptedEntry(envelope: Envelope, envelopeHash: string, acceptedAt: number): AuditEntry {
  return { type: 'envelope.accepted', at: acceptedAt, envelopeHash, header: envelope.header, signature: envelope.signature };
}

/** An accepted receipt: the signed receipt as it is. */
export function receiptAcceptedEntry(receipt: SignedReceipt, acceptedAt: number): AuditEntry {
  return { type: 'receipt.accepted', at: acceptedAt, receipt };
}

/** An accepted refusal: the signed refusal as it is (its code names why; never message text). */
export function refusalAcceptedEntry(refusal: SignedRefusal, acceptedAt: number): AuditEntry {
  return { type: 'refusal.accepted', at: acceptedAt, refusal };
}

/**
 * A receipt this relay forwarded was stored by the peer relay (two relays): what `hotline audit
 * verify` reconciles against the peer's log, as `message.relayed` for an envelope.
 */
export function receiptRelayedEntry(receipt: SignedReceipt, from: string, to: string, at: number): AuditEntry {
  const b = receipt.receipt;
  return { type: 'receipt.relayed', at, messageId: b.messageId, kind: b.kind, by: b.by, receiptHash: receiptHash(receipt), from, to };
}

/**
 * A refusal this relay forwarded was stored by the peer relay (two relays): reconciled against
 * the peer's log like `receipt.relayed`.
 */
export function refusalRelayedEntry(refusal: SignedRefusal, from: string, to: string, at: number): AuditEntry {
  const b = refusal.refusal;
  return { type: 'refusal.relayed', at, messageId: b.messageId, by: b.by, refusalHash: refusalHash(refusal), from, to };
}

/** A certificate enrolled (it chains to the agreement, which is what an auditor checks). */
export function deviceEnrolledEntry(certificate: DeviceCertificate, at: number): AuditEntry {
  return { type: 'device.enrolled', at, certificate };
}

/** A revocation stored. */
export function deviceRevokedEntry(revocation: Revocation, at: number): AuditEntry {
  return { type: 'device.revoked', at, revocation };
}
