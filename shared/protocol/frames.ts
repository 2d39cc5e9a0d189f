import { Type, type Static } from '@sinclair/typebox';
import { DeviceRef, Envelope, Hash256, Identifier, MessageId, Millis, Precedence, PublicKey, SignedReceipt, SignedRefusal } from './schemas.js';

/**
 * WebSocket frames. Every frame is one JSON text message with a `t` (type) member.
 *
 * Delivery model (PROTOCOL.md "Delivery order"): the server keeps one mailbox per device.
 * Everything it hands a device (envelopes, receipts, events) carries a `cursor`, a per-device
 * increasing integer (arrival order), and goes out by rank (precedence) first, then cursor. The
 * device sends `{t:'ack', cursor}` (or `cursors: [...]`) for exactly the items it has durably
 * processed; anything not acknowledged is delivered again on the next connection. Clients
 * de-duplicate by message id / receipt identity, so redelivery is harmless.
 */

// ----- client → server -----

export const SendEnvelopeFrame = Type.Object({ t: Type.Literal('envelope'), envelope: Envelope }, { additionalProperties: false });
export const SendReceiptFrame = Type.Object({ t: Type.Literal('receipt'), receipt: SignedReceipt }, { additionalProperties: false });
/** A device could not accept a message delivered to it (PROTOCOL.md "Refusals"). */
export const SendRefusalFrame = Type.Object({ t: Type.Literal('refusal'), refusal: SignedRefusal }, { additionalProperties: false });
/** Most cursors one ack frame may carry. */
export const MAX_ACK_CURSORS = 256;
/** Acknowledges exactly the item with `cursor`, or each of `cursors` (not "everything up to"). */
export const AckFrame = Type.Union([
  Type.Object({ t: Type.Literal('ack'), cursor: Millis }, { additionalProperties: false }),
  Type.Object({ t: Type.Literal('ack'), cursors: Type.Array(Millis, { minItems: 1, maxItems: MAX_ACK_CURSORS }) }, { additionalProperties: false }),
]);
export type AckFrame = Static<typeof AckFrame>;
export type SendEnvelopeFrame = Static<typeof SendEnvelopeFrame>;
export type SendReceiptFrame = Static<typeof SendReceiptFrame>;
export type SendRefusalFrame = Static<typeof SendRefusalFrame>;

export const ClientFrame = Type.Union([SendEnvelopeFrame, SendReceiptFrame, SendRefusalFrame, AckFrame]);
export type ClientFrame = Static<typeof ClientFrame>;
export const CLIENT_FRAME_TYPES = ['envelope', 'receipt', 'refusal', 'ack'] as const;

// ----- events (server → both parties' devices) -----

/**
 * A deadline's rung: `delivered` and `acknowledged` always; `answered` (a will-comply or a
 * cannot-comply) and `complied` (have-complied) when the agreement gives them a deadline.
 */
export const Rung = Type.Union([Type.Literal('delivered'), Type.Literal('acknowledged'), Type.Literal('answered'), Type.Literal('complied')]);
export type Rung = Static<typeof Rung>;

export const DeadlineMissedEvent = Type.Object(
  {
    type: Type.Literal('deadline.missed'),
    messageId: MessageId,
    from: Identifier,
    to: Identifier,
    precedence: Precedence,
    rung: Rung,
    dueAt: Millis,
    at: Millis,
    lateMs: Millis,
    /** 1 at the first miss, +1 at each reminder. */
    level: Type.Integer({ minimum: 1 }),
  },
  { additionalProperties: false },
);
export const DeadlineMetEvent = Type.Object(
  {
    type: Type.Literal('deadline.met'),
    messageId: MessageId,
    from: Identifier,
    to: Identifier,
    precedence: Precedence,
    rung: Rung,
    dueAt: Millis,
    at: Millis,
    late: Type.Boolean(),
    lateMs: Millis,
  },
  { additionalProperties: false },
);
/**
 * Why the relay closed a deadline that no receipt can reach any more: every addressee operator
 * device it was sealed to is revoked or no longer valid (`recipients-revoked`), or each of them is
 * revoked or has refused the message with a signed refusal, at least one has (`recipient-refused`);
 * or the addressee answered `cannot-comply`, which closes the `complied` rung (`cannot-comply`).
 */
export const DeadlineClosedReason = Type.Union([Type.Literal('recipients-revoked'), Type.Literal('recipient-refused'), Type.Literal('cannot-comply')]);
/**
 * A deadline closed without its rung being reached, because the message cannot be delivered or
 * answered any more (PROTOCOL.md "Deadlines"): no alarm is left open on it.
 */
export const DeadlineClosedEvent = Type.Object(
  {
    type: Type.Literal('deadline.closed'),
    messageId: MessageId,
    from: Identifier,
    to: Identifier,
    precedence: Precedence,
    rung: Rung,
    dueAt: Millis,
    at: Millis,
    reason: DeadlineClosedReason,
    /** Human-readable detail (device names, never message text). */
    detail: Type.String({ maxLength: 500 }),
  },
  { additionalProperties: false },
);
export const LinkEvent = Type.Object(
  {
    type: Type.Union([Type.Literal('link.up'), Type.Literal('link.down'), Type.Literal('link.test')]),
    /** The party whose test agent sent the test message. */
    from: Identifier,
    to: Identifier,
    messageId: Type.Optional(MessageId),
    ok: Type.Boolean(),
    reason: Type.Optional(Type.String({ maxLength: 200 })),
    roundTripMs: Type.Optional(Millis),
    at: Millis,
    /**
     * `relay`: the state of the relay-to-relay link between `from`'s relay and `to`'s (PROTOCOL.md
     * "The relay-to-relay link"), not an operators' link test. Absent on link-test events.
     */
    scope: Type.Optional(Type.Literal('relay')),
  },
  { additionalProperties: false },
);
export const AuditAlarmEvent = Type.Object(
  {
    type: Type.Literal('audit.alarm'),
    party: Identifier,
    reason: Type.String({ maxLength: 500 }),
    at: Millis,
  },
  { additionalProperties: false },
);

/**
 * The addressee's relay has stored the message (two-relay deployments): the rung between
 * `accepted` and `delivered`. Sent by the sender's relay to its own party's operator devices.
 */
export const MessageRelayedEvent = Type.Object(
  {
    type: Type.Literal('message.relayed'),
    messageId: MessageId,
    envelopeHash: Hash256,
    from: Identifier,
    to: Identifier,
    precedence: Precedence,
    /** When the peer relay stored it (its clock, as it confirmed). */
    at: Millis,
  },
  { additionalProperties: false },
);
export type MessageRelayedEvent = Static<typeof MessageRelayedEvent>;

export const HotlineEvent = Type.Union([DeadlineMissedEvent, DeadlineMetEvent, DeadlineClosedEvent, LinkEvent, AuditAlarmEvent, MessageRelayedEvent]);
export type HotlineEvent = Static<typeof HotlineEvent>;
export type DeadlineMissedEvent = Static<typeof DeadlineMissedEvent>;
export type DeadlineMetEvent = Static<typeof DeadlineMetEvent>;
export type DeadlineClosedEvent = Static<typeof DeadlineClosedEvent>;
export type DeadlineClosedReason = Static<typeof DeadlineClosedReason>;
export type LinkEvent = Static<typeof LinkEvent>;

// ----- server → client -----

export const HelloFrame = Type.Object(
  {
    t: Type.Literal('hello'),
    device: DeviceRef,
    serverTime: Millis,
    lastCursor: Millis,
    /** Highest `seq` the server has accepted from this device: a client that lost its state
     * (a restored backup, a new browser) continues above it instead of being refused as a replay. */
    lastSeq: Millis,
  },
  { additionalProperties: false },
);
/** Answer to a sent envelope: it is on disk. */
export const AcceptedFrame = Type.Object(
  { t: Type.Literal('accepted'), id: MessageId, envelopeHash: Hash256, at: Millis },
  { additionalProperties: false },
);
/** Answer to a sent refusal: it is on disk (sent again for a refusal already stored). */
export const RefusalAcceptedFrame = Type.Object(
  { t: Type.Literal('refusal-accepted'), messageId: MessageId, at: Millis },
  { additionalProperties: false },
);
/** Answer to a sent receipt: it is on disk. */
export const ReceiptAcceptedFrame = Type.Object(
  { t: Type.Literal('receipt-accepted'), messageId: MessageId, kind: Type.String(), at: Millis },
  { additionalProperties: false },
);
export const DeliverFrame = Type.Object(
  { t: Type.Literal('deliver'), cursor: Millis, envelope: Envelope, acceptedAt: Millis },
  { additionalProperties: false },
);
export const ReceiptFrame = Type.Object(
  { t: Type.Literal('receipt'), cursor: Millis, receipt: SignedReceipt, acceptedAt: Millis },
  { additionalProperties: false },
);
export const EventFrame = Type.Object({ t: Type.Literal('event'), cursor: Millis, event: HotlineEvent }, { additionalProperties: false });
/** A refusal. `ref` names what was refused (a message id) when known. The connection stays open
 * unless the error is about the connection itself (then a close with the code's ws close code follows). */
export const ErrorFrame = Type.Object(
  {
    t: Type.Literal('error'),
    code: Type.String(),
    message: Type.String(),
    ref: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);

/**
 * Something the relay's operators must know now, sent to every open link (not a mailbox item: it
 * has no cursor and is not acknowledged, because it is sent exactly when the store cannot write).
 * `store.corrupt`: the database was found damaged at run time; the relay refuses every write
 * (envelopes, receipts, logins) until the data directory is restored, and reads go on.
 */
export const OperatorNotice = Type.Object(
  {
    type: Type.Literal('store.corrupt'),
    /** The store's own words (SQLite code and message): no data, no secrets. */
    reason: Type.String({ maxLength: 1000 }),
    at: Millis,
  },
  { additionalProperties: false },
);
export type OperatorNotice = Static<typeof OperatorNotice>;
export const NoticeFrame = Type.Object({ t: Type.Literal('notice'), notice: OperatorNotice }, { additionalProperties: false });

/**
 * The directory changed: a certificate was revoked (posted to this relay, or passed on by a peer
 * relay). Sent at once to every open link, whatever its device; not stored, no cursor, not
 * acknowledged (PROTOCOL.md "Directory changes"). It names the revoked certificate only: the
 * client fetches `GET /v1/directory` and verifies the signed revocation there, as at connect.
 */
export const DirectoryChangedFrame = Type.Object(
  {
    t: Type.Literal('directory-changed'),
    revocation: Type.Object({ party: Identifier, device: Identifier, signKey: PublicKey, at: Millis }, { additionalProperties: false }),
  },
  { additionalProperties: false },
);
export type DirectoryChangedFrame = Static<typeof DirectoryChangedFrame>;

export const ServerFrame = Type.Union([HelloFrame, AcceptedFrame, ReceiptAcceptedFrame, RefusalAcceptedFrame, DeliverFrame, ReceiptFrame, EventFrame, ErrorFrame, NoticeFrame, DirectoryChangedFrame]);
export type ServerFrame = Static<typeof ServerFrame>;
export type DeliverFrame = Static<typeof DeliverFrame>;
export type ReceiptFrame = Static<typeof ReceiptFrame>;
export type EventFrame = Static<typeof EventFrame>;
export type ErrorFrame = Static<typeof ErrorFrame>;
export type AcceptedFrame = Static<typeof AcceptedFrame>;
