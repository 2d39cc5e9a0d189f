import { Type, type Static } from '@sinclair/typebox';
import { HotlineError } from '../errors.js';
import { parseJson, checkerOf, schemaError } from './validate.js';
import { DeviceCertificate, DeviceRef, Envelope, Hash256, MessageId, Millis, ReceiptKind, RelayCertificate, Revocation, SignedPrekey, SignedReceipt, SignedRefusal } from './schemas.js';

/**
 * Frames of the relay-to-relay link (PROTOCOL.md "The relay-to-relay link"): one JSON text message
 * each, with a `t`. The handshake (`relay-hello`, `relay-auth`) comes first; every frame after it
 * carries `n`, the sender's frame number on this connection (1, 2, 3, …), and a frame whose `n` is
 * not above the last one received is refused as a replay.
 */

/** The subprotocol both relays offer and select. */
export const RELAY_LINK_PROTOCOL = 'hotline.relay.v1';
/** The path a relay serves its side of the link on. */
export const RELAY_LINK_PATH = '/v1/relay-link';
/** Largest relay-link frame (a directory of a few thousand devices, an envelope of 64 KiB). */
export const MAX_RELAY_FRAME_BYTES = 4 * 1024 * 1024;

const Challenge = Type.String({ pattern: '^[A-Za-z0-9+/]{43}=$' });
const FrameNo = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER });

export const RelayHelloFrame = Type.Object(
  { t: Type.Literal('relay-hello'), v: Type.Literal(1), agreement: Hash256, certificate: RelayCertificate, challenge: Challenge },
  { additionalProperties: false },
);
export const RelayAuthFrame = Type.Object(
  { t: Type.Literal('relay-auth'), signature: Type.String({ pattern: '^[A-Za-z0-9+/]{86}==$' }) },
  { additionalProperties: false },
);
export const RelayDirectoryFrame = Type.Object(
  {
    t: Type.Literal('relay-directory'),
    n: FrameNo,
    certificates: Type.Array(DeviceCertificate, { maxItems: 20_000 }),
    revocations: Type.Array(Revocation, { maxItems: 20_000 }),
    /**
     * The signed prekeys in date of the sender's own party's operator devices (PROTOCOL.md
     * "Prekeys between relays"); absent from a relay that forwards none.
     */
    prekeys: Type.Optional(Type.Array(SignedPrekey, { maxItems: 20_000 })),
  },
  { additionalProperties: false },
);
/**
 * The sender's drained watermark (PROTOCOL.md "Prekeys between relays"): every envelope it
 * accepted for the receiver's party before `at` (the sender's clock) is stored at the receiver and
 * confirmed.
 */
export const RelayDrainedFrame = Type.Object({ t: Type.Literal('relay-drained'), n: FrameNo, at: Millis }, { additionalProperties: false });
export const RelayEnvelopeFrame = Type.Object(
  { t: Type.Literal('relay-envelope'), n: FrameNo, envelope: Envelope, acceptedAt: Millis },
  { additionalProperties: false },
);
export const RelayStoredFrame = Type.Object(
  { t: Type.Literal('relay-stored'), n: FrameNo, id: MessageId, envelopeHash: Hash256, at: Millis },
  { additionalProperties: false },
);
export const RelayReceiptFrame = Type.Object(
  { t: Type.Literal('relay-receipt'), n: FrameNo, receipt: SignedReceipt, acceptedAt: Millis },
  { additionalProperties: false },
);
export const RelayReceiptStoredFrame = Type.Object(
  { t: Type.Literal('relay-receipt-stored'), n: FrameNo, messageId: MessageId, kind: ReceiptKind, by: DeviceRef, at: Millis },
  { additionalProperties: false },
);
/** A refusal a device of the sending relay's party signed for a message of the receiver's party. */
export const RelayRefusalFrame = Type.Object(
  { t: Type.Literal('relay-refusal'), n: FrameNo, refusal: SignedRefusal, acceptedAt: Millis },
  { additionalProperties: false },
);
/** That refusal is committed at the receiving relay (`at`: its first storing time). */
export const RelayRefusalStoredFrame = Type.Object(
  { t: Type.Literal('relay-refusal-stored'), n: FrameNo, messageId: MessageId, by: DeviceRef, at: Millis },
  { additionalProperties: false },
);
export const RelayPingFrame = Type.Object({ t: Type.Literal('relay-ping'), n: FrameNo, at: Millis }, { additionalProperties: false });
export const RelayPongFrame = Type.Object({ t: Type.Literal('relay-pong'), n: FrameNo, at: Millis }, { additionalProperties: false });
const CheckpointNote = Type.String({ minLength: 1, maxLength: 16_384 });
/** The witness's state: the size of the peer's checkpoint it last cosigned (0: none yet). */
export const RelayWitnessStateFrame = Type.Object(
  { t: Type.Literal('relay-witness-state'), n: FrameNo, size: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }) },
  { additionalProperties: false },
);
/** The log owner's newest checkpoint, with a consistency proof from `from` (the witness's state) to `size`. */
export const RelayCheckpointFrame = Type.Object(
  {
    t: Type.Literal('relay-checkpoint'),
    n: FrameNo,
    size: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
    note: CheckpointNote,
    from: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
    proof: Type.Array(Hash256, { maxItems: 128 }),
  },
  { additionalProperties: false },
);
/** The witness's answer: the same note with its cosignature/v1 line added. */
export const RelayCosignatureFrame = Type.Object(
  { t: Type.Literal('relay-cosignature'), n: FrameNo, size: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }), note: CheckpointNote },
  { additionalProperties: false },
);
export const RelayErrorFrame = Type.Object(
  {
    t: Type.Literal('relay-error'),
    n: Type.Optional(FrameNo),
    code: Type.String({ maxLength: 64 }),
    message: Type.String({ maxLength: 500 }),
    ref: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);

export const RelayFrame = Type.Union([
  RelayHelloFrame,
  RelayAuthFrame,
  RelayDirectoryFrame,
  RelayDrainedFrame,
  RelayEnvelopeFrame,
  RelayStoredFrame,
  RelayReceiptFrame,
  RelayReceiptStoredFrame,
  RelayRefusalFrame,
  RelayRefusalStoredFrame,
  RelayPingFrame,
  RelayPongFrame,
  RelayWitnessStateFrame,
  RelayCheckpointFrame,
  RelayCosignatureFrame,
  RelayErrorFrame,
]);
export type RelayFrame = Static<typeof RelayFrame>;
export type RelayHelloFrame = Static<typeof RelayHelloFrame>;

const SCHEMAS: Record<RelayFrame['t'], (typeof RelayFrame)['anyOf'][number]> = {
  'relay-hello': RelayHelloFrame,
  'relay-auth': RelayAuthFrame,
  'relay-directory': RelayDirectoryFrame,
  'relay-drained': RelayDrainedFrame,
  'relay-envelope': RelayEnvelopeFrame,
  'relay-stored': RelayStoredFrame,
  'relay-receipt': RelayReceiptFrame,
  'relay-receipt-stored': RelayReceiptStoredFrame,
  'relay-refusal': RelayRefusalFrame,
  'relay-refusal-stored': RelayRefusalStoredFrame,
  'relay-ping': RelayPingFrame,
  'relay-pong': RelayPongFrame,
  'relay-witness-state': RelayWitnessStateFrame,
  'relay-checkpoint': RelayCheckpointFrame,
  'relay-cosignature': RelayCosignatureFrame,
  'relay-error': RelayErrorFrame,
};

/**
 * Decode one frame from a peer relay (attacker-controlled until the handshake, and checked after
 * it as well): JSON, a known `t`, then its schema. The size limit is the WebSocket's (maxPayload).
 */
export function decodeRelayFrame(text: string): RelayFrame {
  const value = parseJson(text);
  const t = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as { t?: unknown }).t : undefined;
  if (typeof t !== 'string' || !Object.hasOwn(SCHEMAS, t)) {
    throw new HotlineError('HL_ERR_INPUT_UNKNOWN_FRAME', `unknown relay frame; known: ${Object.keys(SCHEMAS).join(', ')}`);
  }
  const check = checkerOf(SCHEMAS[t as RelayFrame['t']]);
  if (check.Check(value)) return value as RelayFrame;
  throw schemaError(check, value, 'HL_ERR_INPUT_SCHEMA');
}

/** What each relay signs in `relay-auth` (after the context line `hotline/v1/relay-link\n`). */
export interface RelayAuthStatement {
  v: 1;
  agreement: string;
  party: string;
  relay: string;
  peer: string;
  /** The peer's challenge, being answered. */
  challenge: string;
  /** The signer's own challenge, binding both directions of the handshake to this connection. */
  ownChallenge: string;
}

