import type { DeviceCertificate, Envelope, Revocation, SignedReceipt, SignedRefusal } from '../../shared/protocol/schemas.js';
import type { AuditEntry } from './records.js';

/**
 * The content of the audit entries of what the server accepts (DESIGN.md "Audit log"): decided
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

/** A certificate enrolled (it chains to the agreement, which is what an auditor checks). */
export function deviceEnrolledEntry(certificate: DeviceCertificate, at: number): AuditEntry {
  return { type: 'device.enrolled', at, certificate };
}

/** A revocation stored. */
export function deviceRevokedEntry(revocation: Revocation, at: number): AuditEntry {
  return { type: 'device.revoked', at, revocation };
}
