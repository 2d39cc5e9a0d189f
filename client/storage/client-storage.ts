import type { DeviceCertificate, Envelope, EnvelopeHeader, Precedence, ReceiptBody, ReceiptKind, Revocation, SignedReceipt } from '../../shared/protocol/schemas.js';
import type { Plaintext } from '../../shared/protocol/schemas.js';

/** What the caller asked to send; kept until the envelope is accepted so that it can be resealed. */
export interface SendDraft {
  to: string;
  precedence: Precedence;
  plaintext: Plaintext;
  exercise?: boolean;
  replyTo?: string;
  /** A link-test message (the test agent's). */
  linkTest?: boolean;
}

/** An envelope waiting for the server's `accepted`. */
export interface OutboxEnvelope {
  kind: 'envelope';
  id: string;
  draft: SendDraft;
  envelope: Envelope;
  composedAt: number;
  /** How many times it was resealed after HL_ERR_ENVELOPE_RECIPIENTS (at most once). */
  resealed: number;
}

/** A signed receipt waiting for the server's `receipt-accepted`. */
export interface OutboxReceipt {
  kind: 'receipt';
  messageId: string;
  receiptKind: ReceiptKind;
  receipt: SignedReceipt;
}

export type OutboxItem = OutboxEnvelope | OutboxReceipt;

/** A message this device received, verified and decrypted; remembered to de-duplicate redeliveries. */
export interface InboxRecord {
  header: EnvelopeHeader;
  envelopeHash: string;
  receivedAt: number;
  acknowledgedAt?: number;
}

/** A message this device sent, with the receipts seen for it. */
export interface SentRecord {
  header: EnvelopeHeader;
  envelopeHash: string;
  acceptedAt?: number;
  receipts: ReceiptBody[];
}

/** The last directory fetched (public data), so that a message can be sealed while offline. */
export interface CachedDirectory {
  certificates: DeviceCertificate[];
  revocations: Revocation[];
  fetchedAt: number;
}

/**
 * Everything a client keeps between runs. Public data, and the drafts of unsent messages (so that
 * they can be resealed): the storage must be as private as the device key file (the file adapter
 * writes it 0600).
 */
export interface ClientState {
  v: 1;
  /** `party/device` this state belongs to. */
  device: string;
  /** Last `seq` allocated; allocated durably before sealing so that a crash never reuses one. */
  lastSeq: number;
  outbox: OutboxItem[];
  inbox: Record<string, InboxRecord>;
  sent: Record<string, SentRecord>;
  /** Highest seq seen per sending device (`party/device`), to refuse replays. */
  peerSeq: Record<string, number>;
  directory?: CachedDirectory;
  /** What this device knows of the audit log's checkpoints (for cosigning). */
  audit?: AuditMemory;
}

/**
 * The checkpoints this device has seen and the last one it cosigned (root hashes in base64): a
 * later checkpoint must be consistent with the cosigned one, and one size must have one root.
 */
export interface AuditMemory {
  cosigned?: { size: number; root: string; at: number };
  /** Tree size → root of every checkpoint seen (the newest few hundred), from the server and gossiped by peers. */
  seen: Record<string, string>;
  /** The newest checkpoint note this device verified from the server (signed C2SP note), gossiped in its link tests. */
  note?: string;
}

/**
 * The port behind which a client keeps its state: a JSON file in Node, IndexedDB or localStorage
 * in a browser. `update` is an atomic read-modify-write against the latest stored state (another
 * process on the same device file may have written in between): either the whole mutation is
 * stored or none of it.
 *
 * @example
 * const seq = await storage.update((s) => ++s.lastSeq);
 */
export interface ClientStorage {
  /** The stored state, or a fresh one for `device` if nothing is stored yet. */
  read(device: string): Promise<ClientState>;
  /** Apply `mutate` to the latest state and store the result durably before resolving. */
  update<T>(device: string, mutate: (state: ClientState) => T): Promise<T>;
}

/** Bound on remembered inbox and sent records (the oldest are dropped first). */
export const MAX_RECORDS = 5000;

export function initialState(device: string): ClientState {
  return { v: 1, device, lastSeq: 0, outbox: [], inbox: {}, sent: {}, peerSeq: {} };
}

/** Drop the oldest records beyond {@link MAX_RECORDS} (object keys keep insertion order). */
export function pruneState(state: ClientState, max = MAX_RECORDS): void {
  for (const map of [state.inbox, state.sent]) {
    const keys = Object.keys(map);
    for (let i = 0; i < keys.length - max; i++) delete map[keys[i]!];
  }
}
