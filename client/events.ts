import type { HotlineError, HotlineErrorCode } from '../shared/errors.js';
import type { RevokedSinceChange } from './revoked-since.js';
import type { DeviceCertBody, DeviceRef, EnvelopeHeader, Plaintext, SignedReceipt } from '../shared/protocol/schemas.js';
import type { DeadlineClosedEvent, DeadlineMetEvent, DeadlineMissedEvent, HotlineEvent, LinkEvent, MessageRelayedEvent, OperatorNotice } from '../shared/protocol/frames.js';

/** An audit alarm raised here: the `audit.alarm` event with the error code that caused it. */
export type AuditAlarm = Extract<HotlineEvent, { type: 'audit.alarm' }> & { code: HotlineErrorCode };

/** A checkpoint gossiped in a peer's link test that verified and agrees with everything seen here. */
export interface CheckpointGossipEvent {
  from: DeviceRef;
  size: number;
  /** base64 root hash. */
  root: string;
  /** True if this device had already seen this size (with the same root); false if it is new here. */
  known: boolean;
  at: number;
}

export interface MessageEvent {
  header: EnvelopeHeader;
  plaintext: Plaintext;
  envelopeHash: string;
  acceptedAt: number;
  /**
   * Set when the sender's certificate has been revoked since the relay accepted this message: the
   * revocation's signed time. The message verified against the certificate valid at acceptance
   * and is shown with "sender revoked since <time>".
   */
  senderRevokedAt?: number;
}

export interface ReceiptEvent {
  receipt: SignedReceipt;
  /** Signed by a device whose certificate chains to the pinned agreement (and, when the message is known here, bound to its header). */
  verified: boolean;
  /** Whether the receipt was checked against the message header this device holds. */
  headerChecked: boolean;
  /** Set when the signer's certificate has been revoked since the relay accepted this receipt (the revocation's time). */
  signerRevokedAt?: number;
  error?: HotlineError;
}

export interface RefusedEvent {
  code: string;
  message: string;
  ref?: string;
}

export interface HotlineClientEvents {
  /** Logged in (at start, and at each renewal of the token before it expires). */
  session: { role: string; expiresAt: number };
  /** The link is up (the relay's `hello`), at `url`: the relay URL in use (one of several, docs/failover.md). */
  connected: { serverTime: number; lastCursor: number; url: string };
  /**
   * The link is down, or an attempt failed, at `url`. `retryInMs`: when the next attempt is, at
   * `nextUrl` (another node of the relay when several URLs are given); absent when the client gave up.
   */
  disconnected: { code: number; reason: string; url: string; retryInMs?: number; nextUrl?: string };
  message: MessageEvent;
  receipt: ReceiptEvent;
  accepted: { id: string; envelopeHash: string; at: number };
  'receipt-accepted': { messageId: string; kind: string; at: number };
  /** The relay stored this device's refusal of message `messageId` (PROTOCOL.md "Refusals"). */
  'refusal-accepted': { messageId: string; at: number };
  /** Every event frame: deadline, link and audit events. The typed events below follow it. */
  event: HotlineEvent;
  /** A deadline passed before its rung was reached (level 1), or a reminder of it (level 2, 3, …). */
  'deadline.missed': DeadlineMissedEvent;
  /** A missed deadline's rung was reached at last (`late: true`). */
  'deadline.met': DeadlineMetEvent;
  /**
   * The relay closed a deadline no receipt can reach any more (every addressee operator it was
   * sealed to revoked, or refused it): why, in `reason` and `detail`.
   */
  'deadline.closed': DeadlineClosedEvent;
  /**
   * Two-relay deployments: the addressee's relay has stored a message of this party (the rung
   * between `accepted` and `delivered`), as the sender's relay reports it.
   */
  relayed: MessageRelayedEvent;
  /** A link test's result (`link.test`) or a change of the link's state (`link.up`, `link.down`). */
  link: LinkEvent;
  /** This device, as test agent, sent a link test to `to`. */
  'link-test-sent': { id: string; to: string; at: number };
  /** This device cosigned the checkpoint of `size` after checking it (and the proof from `from`). */
  cosigned: { size: number; from?: number; at: number };
  /** A peer's link test carried a checkpoint that verified and agreed with this device's (now remembered). */
  'checkpoint-gossip': CheckpointGossipEvent;
  /**
   * A directory fetch brought revocations of devices whose messages (or receipts) were already
   * stored here: they stay readable and valid, now labelled "sender revoked since <time>" (the
   * stored records carry `senderRevokedAt` / `signersRevokedAt`).
   */
  'revoked-since': RevokedSinceChange;
  /** The directory was fetched and verified again (at each connection, after a refusal, on demand): the valid certificates now. */
  directory: { certificates: DeviceCertBody[]; fetchedAt: number };
  /**
   * A checkpoint failed its checks here (bad signature, inconsistent proof, two roots for one
   * size): raised locally first (also as an `event`), then reported to the server.
   */
  'audit.alarm': AuditAlarm;
  /**
   * Message `id` could not be sealed as composed: the approval of its recipients named these
   * devices (`party/device`). It stays in the outbox, held, until released or discarded.
   */
  held: { id: string; devices: string[] };
  refused: RefusedEvent;
  /**
   * Something the relay's operators must know now (`store.corrupt`: the relay's database was found
   * damaged; it refuses every write until restored). Sent at once to every open link, and after the
   * hello of each new one while it lasts.
   */
  notice: OperatorNotice;
  /**
   * This device made and published a new prekey (`rotated`, its keyId) or deleted the secrets of old
   * ones (`deleted`): PROTOCOL.md "Prekeys and forward secrecy".
   */
  prekeys: { rotated?: string; deleted: string[] };
  error: HotlineError;
}


/** Emits one of the client's events: the facade's `emit`, handed to each part of the client. */
export type EmitEvent = <K extends keyof HotlineClientEvents>(event: K, payload: HotlineClientEvents[K]) => void;
