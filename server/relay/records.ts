import type { Envelope, EnvelopeHeader, Precedence, SignedReceipt, SignedRefusal } from '../../shared/protocol/schemas.js';
import type { HotlineEvent, Rung } from '../../shared/protocol/frames.js';

/**
 * The relay's records: what it decides and what a store keeps for it. This file is the whole seam
 * between server/relay/ and server/store/: a store adapter imports these types from the relay and
 * nothing else (test/server/layering.test.ts checks it), so a second adapter (PostgreSQL) records
 * the same decisions without reaching into relay logic. Types only, and `deviceKey`.
 */

/** `party/device`: how the store and the relay name a device. */
export type DeviceKey = string;

export function deviceKey(ref: { party: string; device: string }): DeviceKey {
  return `${ref.party}/${ref.device}`;
}

/**
 * One audit log entry, before canonicalisation. Metadata, signed headers and signed receipts only:
 * never plaintext, ciphertext, keys or tokens (docs/design.md "Audit log"). Its content is decided by
 * the writer (server/relay/audit-entries.ts for what the relay accepts); the store only numbers,
 * chains and appends it.
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

/** An accepted envelope to write: the relay has verified it and chosen its mailboxes. */
export interface EnvelopeWrite {
  kind: 'envelope';
  envelope: Envelope;
  envelopeHash: string;
  acceptedAt: number;
  /** Delivery rank of its mailbox items: its precedence's. */
  rank: number;
  /** Devices whose mailbox gets it (the header's recipients). */
  mailboxes: DeviceKey[];
  /** Its audit entry, appended only if it is new. */
  audit: AuditEntry;
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
  /** Its audit entry, appended only if it is new. */
  audit: AuditEntry;
  /** Deadlines it closes and the events that follow, written only if it is new. */
  effects?: SideEffects;
}

/**
 * A verified refusal (PROTOCOL.md "Refusals"): stored once per (message, device), audited, with the
 * deadline closures it decides. Nothing goes to a mailbox: the `deadline.closed` events tell the
 * parties. A different refusal from the same device for the same message, or one from a device
 * that has already sent a receipt for it, is refused (`HL_ERR_REFUSAL_CONFLICT`) by the store.
 */
export interface RefusalWrite {
  kind: 'refusal';
  refusal: SignedRefusal;
  acceptedAt: number;
  /** Its audit entry, appended only if it is new. */
  audit: AuditEntry;
  /** Deadlines it closes and the events that follow, written only if it is new. */
  effects?: SideEffects;
}

/** A stored refusal, as the relay reads them to judge whether anyone can still answer a message. */
export interface StoredRefusal {
  party: string;
  device: string;
  code: string;
  acceptedAt: number;
}

/**
 * A deadline, link or audit event: stored, put in each listed mailbox, and appended (as is: it is
 * its own audit entry) to the audit log.
 */
export interface EventWrite {
  event: HotlineEvent;
  /** Delivery rank of its mailbox items. */
  rank: number;
  mailboxes: DeviceKey[];
}

/** One stored deadline. `level` counts the missed events already fired (0: none). */
export interface DeadlineRecord {
  messageId: string;
  from: string;
  to: string;
  precedence: Precedence;
  rung: Rung;
  acceptedAt: number;
  dueAt: number;
  level: number;
  /** When the next `deadline.missed` fires; meaningless once closed. */
  nextAt: number;
  closedAt?: number;
  /** Set when closed: whether the rung was reached after `dueAt`. */
  late?: boolean;
}

export type LinkStatus = 'unknown' | 'up' | 'down';

export interface LinkTestResult {
  messageId: string;
  sentAt: number;
  ok: boolean;
  answeredAt?: number;
  roundTripMs?: number;
  reason?: string;
  /** When the result was decided. */
  at: number;
}

/** A link test in flight. */
export interface PendingTest {
  messageId: string;
  from: string;
  to: string;
  sentAt: number;
  dueAt: number;
}

/** A party pair's link status (pairs are ordered: jp→cn working says nothing about cn→jp). */
export interface LinkPairRecord {
  from: string;
  to: string;
  status: LinkStatus;
  /** When the status last changed. */
  since?: number;
  last?: LinkTestResult;
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
  /** Audit entries of their own (no event, no mailbox): a receipt's `receipt.relayed`. */
  audit?: AuditEntry[];
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

export type Write = EnvelopeWrite | ReceiptWrite | RefusalWrite | EventsWrite | AckWrite;

/** A FLASH envelope or receipt (rank 0, server/relay/delivery.ts PRECEDENCE_RANK): what goes first at the commit. */
export function isFlashWrite(write: Write): boolean {
  return (write.kind === 'envelope' || write.kind === 'receipt') && write.rank === 0;
}

/**
 * The outcome of one write. `duplicate`: the same envelope (same id and hash) or the same receipt
 * (same message, kind and signer) is already stored; nothing was written and `acceptedAt` is the
 * stored time. `delivered` lists the mailbox items created, for pushing to connected devices.
 */
export type WriteResult =
  | { ok: true; status: 'new'; acceptedAt: number; delivered: { device: DeviceKey; item: MailboxItem }[] }
  | { ok: true; status: 'duplicate'; acceptedAt: number }
  | { ok: false; error: Error };
