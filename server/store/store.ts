import type { DeviceCertificate, Envelope, EnvelopeHeader, Revocation, SignedReceipt } from '../../shared/protocol/schemas.js';
import type { HotlineEvent } from '../../shared/protocol/frames.js';
import type { NodeRef } from '../../shared/audit/merkle.js';
import type { DeadlineRecord } from '../relay/deadlines.js';
import type { LinkPairRecord, PendingTest } from '../relay/link-test.js';

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

/**
 * Something handed to a device. `rank` and `cursor` give its delivery order (PROTOCOL.md
 * "Delivery order"); `json` is the stored JSON text of the envelope, signed receipt or event,
 * put into the frame as it is (it was checked before it was stored), never parsed again.
 * For an event, `acceptedAt` is the event's `at`.
 */
export interface MailboxItem {
  cursor: number;
  rank: number;
  kind: 'envelope' | 'receipt' | 'event';
  json: string;
  acceptedAt: number;
}

/** Where a backlog page starts: after this (rank, cursor), in (rank, cursor) order. */
export interface MailboxPosition {
  rank: number;
  cursor: number;
}

/** A stored message as a receipt is admitted against it: its header and the hash stored with it. */
export interface StoredMessage {
  header: EnvelopeHeader;
  envelopeHash: string;
}

/** A checkpoint the log key signed: the note as signed (log signature only), by tree size. */
export interface StoredCheckpoint {
  size: number;
  /** Hex RFC 9162 root hash. */
  rootHash: string;
  /** The C2SP signed note with the log's signature (cosignatures are stored beside it). */
  note: string;
  createdAt: number;
}

/** A party device's cosignature of a stored checkpoint: one signed-note signature line. */
export interface StoredCosignature {
  size: number;
  /** `party/device`, the note key name. */
  cosigner: string;
  /** base64 of the 4-byte key ID ‖ 8-byte timestamp ‖ 64-byte signature, as on the note line. */
  signature: string;
  at: number;
}

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
  /** Deadline rows (and a link test's verdict) to write with it, only if it is new. */
  effects?: SideEffects;
}

/** A verified receipt to write, with the devices it is relayed to. */
export interface ReceiptWrite {
  kind: 'receipt';
  receipt: SignedReceipt;
  acceptedAt: number;
  /** Delivery rank: the precedence rank of the message it answers. */
  rank: number;
  mailboxes: DeviceKey[];
  /** Deadlines it closes and the events that follow, written only if it is new. */
  effects?: SideEffects;
}

/** A deadline or link event: stored, put in each listed mailbox, and appended (as is) to the audit log. */
export interface EventWrite {
  event: HotlineEvent;
  mailboxes: DeviceKey[];
}

/**
 * Deadline and link-test state that changes with a write, in the same transaction (the decisions
 * are made by server/relay/deadlines.ts and link-test.ts; the store only records them).
 */
export interface SideEffects {
  /** Upserted by (messageId, rung). */
  deadlines?: DeadlineRecord[];
  /** Upserted by (from, to). */
  linkPairs?: LinkPairRecord[];
  /** Tests in flight; `done` ones are closed. */
  linkTests?: { test: PendingTest; done: boolean }[];
  events?: EventWrite[];
}

/** Side effects on their own: a deadline firing, a link test timing out. */
export interface EventsWrite extends SideEffects {
  kind: 'events';
  /** When the effects were decided (the server's clock). */
  acceptedAt: number;
}

/**
 * A device's acknowledgement of exactly these mailbox items, batched with the other writes (all
 * acks of a batch are one statement). Losing one in a crash only means redelivery, which clients
 * de-duplicate, but it costs no extra fsync to keep it durable. A cursor that is not the device's
 * is ignored.
 */
export interface AckWrite {
  kind: 'ack';
  device: DeviceKey;
  cursors: readonly number[];
  acceptedAt: number;
}

export type Write = EnvelopeWrite | ReceiptWrite | EventsWrite | AckWrite;

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
  /** The header and hash of a stored message, without reading its ciphertext (receipt admission). */
  getMessage(id: string): Promise<StoredMessage | undefined>;
  /**
   * Write a batch in one transaction (group commit). Each write is checked again inside the
   * transaction (replay, duplicate id) so that writes racing through the queue stay correct; a
   * refused write does not disturb the others.
   */
  commit(writes: readonly Write[]): Promise<WriteResult[]>;

  /**
   * One page of a device's un-acknowledged mailbox items with cursor ≤ `upTo`, in (rank, cursor)
   * order, starting after `after` (keyset paging: each page costs the same whatever the backlog).
   */
  mailbox(device: DeviceKey, options: { after?: MailboxPosition; upTo: number; limit: number }): Promise<MailboxItem[]>;
  /** Highest cursor in any mailbox (0 if none): a connection's backlog snapshot. */
  maxCursor(): Promise<number>;
  /** Mark exactly these items of the device handled; returns the device's highest acknowledged cursor. */
  ack(device: DeviceKey, cursors: readonly number[]): Promise<number>;
  /** Highest acknowledged cursor of a device, 0 if none. */
  ackedCursor(device: DeviceKey): Promise<number>;
  /** Highest envelope `seq` accepted from this device (0 if none). */
  lastSeq(device: DeviceKey): Promise<number>;

  /**
   * Append one audit entry on its own (logins, server start/stop); returns its index. Every append
   * (here and in `commit`) also stores, in the same transaction, the hash of each complete subtree
   * of the Merkle tree that the new leaf closes (amortised one node per entry).
   */
  appendAudit(entry: AuditEntry): Promise<number>;
  /** The log's size: the highest entry index + 1 (an index lookup, not a count). */
  auditSize(): Promise<number>;
  /** Entries [from, to) as stored canonical JSON, with their leaf hashes (an index range). */
  auditEntries(from: number, to: number): Promise<{ idx: number; entry: string; leafHash: Uint8Array }[]>;

  /**
   * Stored hashes of complete subtrees of the log's tree (level 0: leaf hashes), in the order
   * asked. A missing one fails with HL_ERR_AUDIT_LEAF_MISMATCH.
   */
  auditNodes(refs: readonly NodeRef[]): Promise<Uint8Array[]>;
  /**
   * The start-up check of the stored nodes, reading O(log n) rows: every level holds exactly the
   * index range the log's size implies (nothing missing at the ends, no stray row beyond), and the
   * newest node of each level is the hash of its two children. Returns what is wrong, if anything.
   */
  checkAuditTree(): Promise<string | undefined>;
  /**
   * The full check, one bounded slice at a time: each node of `level` with index in [from, to)
   * exists and is the hash of its two children. Returns what is wrong, if anything.
   */
  checkAuditNodes(level: number, from: number, to: number): Promise<string | undefined>;
  /** Recompute every node from the stored leaf hashes, in one transaction; returns the log size. */
  rebuildAuditTree(): Promise<number>;

  /** Store a checkpoint (idempotent by size: false when one of that size is stored already). */
  putCheckpoint(checkpoint: StoredCheckpoint): Promise<boolean>;
  /** Checkpoints in size order; with `after`, only those of a larger size. */
  listCheckpoints(after?: number): Promise<StoredCheckpoint[]>;
  /** The checkpoint of `size`, or the largest one when `size` is undefined. */
  getCheckpoint(size?: number): Promise<StoredCheckpoint | undefined>;
  /** Store a verified cosignature (one per checkpoint and cosigner; a newer one replaces it). */
  putCosignature(cosignature: StoredCosignature): Promise<void>;
  /** Cosignatures of one checkpoint, or of all when `size` is undefined. */
  listCosignatures(size?: number): Promise<StoredCosignature[]>;

  /** Deadlines not yet closed (for the scheduler at start). */
  loadDeadlines(): Promise<DeadlineRecord[]>;
  /** Every pair's link-test state, and the tests still in flight. */
  loadLinkTests(): Promise<{ pairs: LinkPairRecord[]; pending: PendingTest[] }>;

  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;

  /**
   * The database's own consistency check (SQLite `PRAGMA quick_check`): undefined when sound, else
   * what it found. Run at start, before anything is served from the store.
   */
  checkIntegrity(): Promise<string | undefined>;
  close(): Promise<void>;
}
