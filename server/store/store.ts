import type { DeviceCertificate, Envelope, Revocation, SignedPrekey } from '../../shared/protocol/schemas.js';
import type { NodeRef } from '../../shared/audit/merkle.js';
import type {
  AuditEntry,
  DeadlineRecord,
  DeviceKey,
  EventsWrite,
  LinkPairRecord,
  MailboxItem,
  MailboxPosition,
  PendingTest,
  SideEffects,
  StoredMessage,
  StoredRefusal,
  Write,
  WriteResult,
} from '../relay/records.js';

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

/** An envelope or receipt stored here that a peer relay has not yet confirmed (the relay-to-relay link). */
export interface RelayOutgoing {
  /** Its position in its table: pages of `relayOutgoing` go on after the last one read. */
  pos: number;
  /** The stored JSON of the envelope or signed receipt. */
  json: string;
  acceptedAt: number;
}

/**
 * A peer relay's confirmation that it stored an envelope (ref: message id), a receipt (ref:
 * `messageId/kind/party/device`) or a refusal (ref: `messageId/party/device`).
 */
export interface RelayMark {
  kind: 'envelope' | 'receipt' | 'refusal';
  ref: string;
  /** The peer relay's party. */
  peer: string;
  at: number;
}

/** An event as the events table holds it (the escalation's intake reads them in id order). */
export interface StoredEventRow {
  id: number;
  /** The event's JSON as stored. */
  event: string;
  at: number;
}

/** A notification of one event to one hook (server/escalation/), queued for delivery. */
export interface EscalationRow {
  hook: string;
  eventId: number;
  event: string;
  createdAt: number;
  nextAt: number;
}

/** A queued notification claimed for an attempt (ClaimedEscalation.attempts counts this one). */
export interface ClaimedEscalation {
  hook: string;
  eventId: number;
  event: string;
  createdAt: number;
  attempts: number;
}

/** The meta key of the escalation's intake cursor (the last event id read). */
export const ESCALATION_CURSOR_KEY = 'escalation_cursor';

/** An escalations row as both adapters read it. */
export function escalationFromRow(r: { hook: string; event_id: number; event: string; created_at: number; attempts: number }): ClaimedEscalation {
  return { hook: r.hook, eventId: r.event_id, event: r.event, createdAt: r.created_at, attempts: r.attempts };
}

/** An attempt's outcome: done at `doneAt` (answered, or given up), or tried again at `nextAt`. */
export type EscalationSettled = { outcome: string } & ({ doneAt: number } | { nextAt: number });

/** The done_at, next_at and outcome columns of a settled notification (both adapters). */
export function settledColumns(s: EscalationSettled): [number | null, number | null, string] {
  return ['doneAt' in s ? s.doneAt : null, 'nextAt' in s ? s.nextAt : null, s.outcome.slice(0, 500)];
}

/**
 * The storage port (docs/design.md "Storage"). Every state change appends its audit entry in
 * the same transaction. Async so that a networked adapter (PostgreSQL) fits the same shape.
 */
export interface Store {
  /** Cheap round trip for /readyz. */
  ping(): Promise<void>;

  /**
   * Store a verified certificate and append its audit entry (idempotent: false, and nothing
   * appended, when that exact certificate was stored).
   */
  putDevice(certificate: DeviceCertificate, at: number, audit: AuditEntry): Promise<boolean>;
  /** Store a verified revocation and append its audit entry (idempotent, like putDevice). */
  putRevocation(revocation: Revocation, at: number, audit: AuditEntry): Promise<boolean>;
  listDevices(): Promise<DeviceCertificate[]>;
  listRevocations(): Promise<Revocation[]>;
  /**
   * Store a device's signed prekey, verified by the caller (idempotent: false when that box key is
   * stored already). Not an audit entry: a prekey is public and the envelope headers name its keyId.
   */
  putPrekey(signed: SignedPrekey, at: number): Promise<boolean>;
  /** The stored prekeys still in date at `now` (`notAfter > now`). */
  listPrekeys(now: number): Promise<SignedPrekey[]>;

  getEnvelope(id: string): Promise<StoredEnvelope | undefined>;
  /** The header and hash of a stored message, without reading its ciphertext (receipt admission). */
  getMessage(id: string): Promise<StoredMessage | undefined>;
  /**
   * Write a batch in one transaction (group commit). Each write is checked again inside the
   * transaction (replay, duplicate id) so that writes racing through the queue stay correct; a
   * refused write does not disturb the others.
   *
   * `visible`, if the store calls it, is called once, with the batch's results, as soon as its
   * transaction is done and before it is known durable (SQLite: between the COMMIT and the WAL's
   * fsync). The relay forwards what the batch stored then, so that the addressee works while the
   * disk flushes; its answers to the writers ("accepted") still wait for the promise, which resolves
   * once the writes are durable (PROTOCOL.md "Delivery before durability"). A store that does not
   * call it (PostgreSQL) leaves the queue to call it with the promise's results.
   */
  commit(writes: readonly Write[], visible?: (results: readonly WriteResult[]) => void): Promise<WriteResult[]>;
  /**
   * Whether `commit` may be called again before an earlier call has resolved (server/store/write-queue.ts
   * commits a FLASH batch beside the one in progress): each call's transaction is done, in call
   * order, before the call returns, and each call resolves once its writes are durable. Absent: one
   * commit at a time.
   */
  readonly commitsOverlap?: boolean;

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

  /** The refusals stored for a message (PROTOCOL.md "Refusals"), in acceptance order. */
  refusalsOf(messageId: string): Promise<StoredRefusal[]>;

  /** Deadlines not yet closed (for the scheduler at start). */
  loadDeadlines(): Promise<DeadlineRecord[]>;
  /** Every pair's link-test state, and the tests still in flight. */
  loadLinkTests(): Promise<{ pairs: LinkPairRecord[]; pending: PendingTest[] }>;

  /**
   * Relay-to-relay link: envelopes sent by `local`'s devices to `peer` (kind `envelope`),
   * receipts signed by `local`'s devices for messages from `peer` (kind `receipt`), or refusals
   * signed by `local`'s devices of messages from `peer` (kind `refusal`), that `peer`'s relay has
   * not confirmed, with position above `after`, in acceptance order.
   */
  relayOutgoing(options: { kind: RelayMark['kind']; local: string; peer: string; after: number; limit: number }): Promise<RelayOutgoing[]>;
  /**
   * Record a peer relay's confirmations, and (only if one of them is new) the events and audit entries that follow,
   * in one transaction; returns the mailbox items created.
   */
  markRelayed(marks: readonly RelayMark[], events?: EventsWrite): Promise<{ device: DeviceKey; item: MailboxItem }[]>;
  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;

  // ----- escalation (server/escalation/, docs/escalation.md) -----
  /** Events stored after `afterId`, oldest first, at most `limit`. */
  eventsAfter(afterId: number, limit: number): Promise<StoredEventRow[]>;
  /** The highest event id stored (0 when none). */
  lastEventId(): Promise<number>;
  /**
   * Queue notifications and move the intake cursor (meta `escalation_cursor`) from `from` to `to`,
   * in one transaction. False, with nothing written, when the cursor is no longer `from` (another
   * node took these events first); `from` undefined: the cursor is not set yet.
   */
  queueEscalations(from: number | undefined, to: number, rows: readonly EscalationRow[]): Promise<boolean>;
  /**
   * Claim up to `limit` notifications not done whose next try is due at `now`: each has its
   * attempts counted and its next try moved to `leaseUntil`, so no other node sends it meanwhile
   * (a node that dies mid-attempt leaves it to be tried again once the lease ends).
   */
  claimEscalations(now: number, leaseUntil: number, limit: number): Promise<ClaimedEscalation[]>;
  /** An attempt's outcome: done at `doneAt` (answered, or given up), or tried again at `nextAt`. */
  settleEscalation(hook: string, eventId: number, settled: EscalationSettled): Promise<void>;
  /** The earliest next try of a notification not done. */
  nextEscalationAt(): Promise<number | undefined>;

  /**
   * The database's own consistency check (SQLite `PRAGMA quick_check`): undefined when sound, else
   * what it found. Run at start, before anything is served from the store.
   */
  checkIntegrity(): Promise<string | undefined>;
  close(): Promise<void>;
}

/** The listening connection of one node (ClusterStore.listenMailboxes). */
export interface MailboxListening {
  /** Whether it listens now (it reopens by itself after a loss). */
  readonly listening: boolean;
  /** The database server's process id of the connection while it listens. */
  readonly pid: number | undefined;
  close(): Promise<void>;
}

/**
 * A row of the device directory, by its key, as a notification names it (several nodes on one
 * database, docs/postgresql.md "The device directory"): a stored certificate or revocation.
 */
export interface DirectoryRowKey {
  kind: 'device' | 'revocation';
  party: string;
  device: string;
  signKey: string;
}

/** What the listening connection of a node hears, committed by any node (ClusterStore.listenMailboxes). */
export interface ClusterListenHandlers {
  /** These devices got new mailbox items. */
  devices(keys: DeviceKey[]): void;
  /** A certificate or revocation was stored; undefined when the notification could not be read (read the whole directory). */
  directory(key: DirectoryRowKey | undefined): void;
  /** The listener listens again after a loss: notifications sent meanwhile are lost, read what they would have named. */
  restored(): void;
  lost(err: Error): void;
}

/**
 * What several nodes of one relay on one database need beyond the Store port (PostgreSQL only:
 * README "Running on PostgreSQL", docs/postgresql.md). A store that has these makes the relay run
 * as one of several nodes: new mailbox items reach the node holding a device's link by a
 * notification, and so do enrolments and revocations every node's directory; due deadlines and
 * link tests are fired from the database by one node at a time, and periodic checkpoints are
 * signed by one node per interval.
 */
export interface ClusterStore {
  /**
   * Hear which devices got new mailbox items and which directory rows were stored (committed by any
   * node); `restored` after each reconnect of the listener.
   */
  listenMailboxes(handlers: ClusterListenHandlers): Promise<MailboxListening>;
  /** The stored certificate or revocation a directory notification names, or undefined. */
  directoryRow(key: DirectoryRowKey): Promise<DeviceCertificate | Revocation | undefined>;
  /** Unacknowledged items of `device` with cursor above `after`, in cursor order. */
  liveMailbox(device: DeviceKey, after: number, limit: number): Promise<MailboxItem[]>;
  /** Earliest `next_at` of an open deadline or `due_at` of a link test in flight. */
  nextDue(): Promise<number | undefined>;
  /** The open deadlines of a message as stored now. */
  openDeadlinesOf(messageId: string): Promise<DeadlineRecord[]>;
  /** Fire what is due at `now` (once across the nodes): `compute` makes the writes from the due rows, written in the same transaction. */
  fireDue(
    now: number,
    compute: (due: { deadlines: DeadlineRecord[]; tests: PendingTest[]; pairs: LinkPairRecord[] }) => SideEffects | undefined,
  ): Promise<{ device: DeviceKey; item: MailboxItem }[]>;
  /** Run `fn` holding a database-wide lock (one node at a time). */
  exclusive<T>(purpose: 'checkpoint', fn: () => Promise<T>): Promise<T>;
}
