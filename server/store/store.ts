import type { DeviceCertificate, Envelope, Revocation, SignedReceipt } from '../../shared/protocol/schemas.js';

/** `party/device`: how the store and the relay name a device. */
export type DeviceKey = string;

export function deviceKey(ref: { party: string; device: string }): DeviceKey {
  return `${ref.party}/${ref.device}`;
}

/**
 * One audit log entry, before canonicalisation. Metadata, signed headers and signed receipts only:
 * never plaintext, ciphertext, keys or tokens (DESIGN.md "Audit log").
 */
export type AuditEntry = { type: string; at: number } & Record<string, unknown>;

/** Something handed to a device, in its mailbox order. */
export type MailboxItem =
  | { cursor: number; kind: 'envelope'; envelope: Envelope; acceptedAt: number }
  | { cursor: number; kind: 'receipt'; receipt: SignedReceipt; acceptedAt: number };

export interface StoredEnvelope {
  envelope: Envelope;
  envelopeHash: string;
  acceptedAt: number;
}

/** An accepted envelope to write: the relay has verified it and chosen its mailboxes. */
export interface EnvelopeWrite {
  kind: 'envelope';
  envelope: Envelope;
  envelopeHash: string;
  acceptedAt: number;
  /** Devices whose mailbox gets it (the header's recipients). */
  mailboxes: DeviceKey[];
}

/** A verified receipt to write, with the devices it is relayed to. */
export interface ReceiptWrite {
  kind: 'receipt';
  receipt: SignedReceipt;
  acceptedAt: number;
  mailboxes: DeviceKey[];
}

export type Write = EnvelopeWrite | ReceiptWrite;

/**
 * The outcome of one write. `duplicate`: the same envelope (same id and hash) or the same receipt
 * (same message, kind and signer) is already stored; nothing was written and `acceptedAt` is the
 * stored time. `delivered` lists the mailbox items created, for pushing to connected devices.
 */
export type WriteResult =
  | { ok: true; status: 'new'; acceptedAt: number; delivered: { device: DeviceKey; item: MailboxItem }[] }
  | { ok: true; status: 'duplicate'; acceptedAt: number }
  | { ok: false; error: Error };

/**
 * The storage port (DESIGN.md "Storage and scale"). Every state change appends its audit entry in
 * the same transaction. Async so that a networked adapter (PostgreSQL) fits the same shape.
 */
export interface Store {
  /** Cheap round trip for /readyz. */
  ping(): Promise<void>;

  /** Store a verified certificate (idempotent: false when that exact certificate was stored). */
  putDevice(certificate: DeviceCertificate, at: number): Promise<boolean>;
  /** Store a verified revocation (idempotent). */
  putRevocation(revocation: Revocation, at: number): Promise<boolean>;
  listDevices(): Promise<DeviceCertificate[]>;
  listRevocations(): Promise<Revocation[]>;

  getEnvelope(id: string): Promise<StoredEnvelope | undefined>;
  /**
   * Write a batch in one transaction (group commit). Each write is checked again inside the
   * transaction (replay, duplicate id) so that writes racing through the queue stay correct; a
   * refused write does not disturb the others.
   */
  commit(writes: readonly Write[]): Promise<WriteResult[]>;

  /** Un-acknowledged mailbox items of a device with cursor > `after`, in cursor order. */
  mailbox(device: DeviceKey, after: number, limit: number): Promise<MailboxItem[]>;
  /** Mark everything up to `cursor` handled; returns the device's acknowledged cursor. */
  ack(device: DeviceKey, cursor: number): Promise<number>;
  /** Highest acknowledged cursor of a device, 0 if none. */
  ackedCursor(device: DeviceKey): Promise<number>;

  /** Append one audit entry on its own (logins, server start/stop); returns its index. */
  appendAudit(entry: AuditEntry): Promise<number>;
  auditSize(): Promise<number>;
  /** Entries [from, to) as stored canonical JSON, with their leaf hashes. */
  auditEntries(from: number, to: number): Promise<{ idx: number; entry: string; leafHash: Uint8Array }[]>;

  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;

  close(): Promise<void>;
}
