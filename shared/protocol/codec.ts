import { HotlineError, type HotlineErrorCode } from '../errors.js';
import { checkerOf, parseJson, schemaError } from './validate.js';
import { AckFrame, CLIENT_FRAME_TYPES, SendEnvelopeFrame, SendReceiptFrame, SendRefusalFrame, ServerFrame, type ClientFrame } from './frames.js';

/**
 * Largest frame a peer may send, in UTF-8 bytes; a larger one is refused with
 * HL_ERR_INPUT_TOO_LARGE before anything is decoded.
 */
export const MAX_FRAME_BYTES = 64 * 1024;

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/** The schema and refusal code of each client frame type: one check per frame, nothing repeated later. */
const CLIENT_SCHEMAS = {
  envelope: { schema: SendEnvelopeFrame, code: 'HL_ERR_ENVELOPE_MALFORMED' },
  receipt: { schema: SendReceiptFrame, code: 'HL_ERR_RECEIPT_MALFORMED' },
  refusal: { schema: SendRefusalFrame, code: 'HL_ERR_REFUSAL_MALFORMED' },
  ack: { schema: AckFrame, code: 'HL_ERR_INPUT_SCHEMA' },
} as const satisfies Record<ClientFrame['t'], { schema: unknown; code: HotlineErrorCode }>;

/** UTF-8 length of a string, counted without encoding it. */
function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/**
 * Size first, then UTF-8: the text of a frame, or HL_ERR_INPUT_TOO_LARGE /
 * HL_ERR_INPUT_MALFORMED_JSON. A string is measured as the UTF-8 it came as.
 */
function frameText(data: string | Uint8Array, maxBytes: number): string {
  if (typeof data === 'string') {
    // Cheap bound first: UTF-8 takes at least one byte and at most three per UTF-16 unit.
    if (data.length > maxBytes || (data.length * 3 > maxBytes && utf8Length(data) > maxBytes)) {
      throw new HotlineError('HL_ERR_INPUT_TOO_LARGE', `frames are limited to ${maxBytes} bytes`);
    }
    return data;
  }
  if (data.byteLength > maxBytes) throw new HotlineError('HL_ERR_INPUT_TOO_LARGE', `frames are limited to ${maxBytes} bytes`);
  try {
    return decoder.decode(data);
  } catch (cause) {
    throw new HotlineError('HL_ERR_INPUT_MALFORMED_JSON', 'frame is not UTF-8', { cause });
  }
}

/** A short string a refusal may echo back as `ref` (attacker-controlled: nothing else is). */
function shortString(value: unknown): string | undefined {
  return typeof value === 'string' && value.length <= 64 ? value : undefined;
}

/** The message id a refused envelope or receipt frame names, for the error frame's `ref`. */
function refOf(t: string, value: Record<string, unknown>): string | undefined {
  const inner = (v: unknown, key: string): unknown => (typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[key] : undefined);
  if (t === 'envelope') return shortString(inner(inner(value.envelope, 'header'), 'id'));
  if (t === 'receipt') return shortString(inner(inner(value.receipt, 'receipt'), 'messageId'));
  if (t === 'refusal') return shortString(inner(inner(value.refusal, 'refusal'), 'messageId'));
  return undefined;
}

/**
 * Decode one frame from a device (attacker-controlled): size limit, UTF-8, JSON, frame type,
 * then the frame's schema, which includes the envelope or receipt schema, so that nothing on the
 * path checks them again. Throws a HotlineError: HL_ERR_INPUT_TOO_LARGE, HL_ERR_INPUT_MALFORMED_JSON,
 * HL_ERR_INPUT_UNKNOWN_FRAME, or the frame type's schema code with `detail.ref` naming the message
 * when one can be read.
 *
 * @example
 * const frame = decodeClientFrame('{"t":"ack","cursor":12}'); // { t: 'ack', cursor: 12 }
 */
export function decodeClientFrame(data: string | Uint8Array, maxBytes = MAX_FRAME_BYTES): ClientFrame {
  const value = parseJson(frameText(data, maxBytes));
  const t = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as { t?: unknown }).t : undefined;
  if (typeof t !== 'string' || !(CLIENT_FRAME_TYPES as readonly string[]).includes(t)) {
    throw new HotlineError('HL_ERR_INPUT_UNKNOWN_FRAME', `unknown frame; known: ${CLIENT_FRAME_TYPES.join(', ')}`);
  }
  const { schema, code } = CLIENT_SCHEMAS[t as ClientFrame['t']];
  const check = checkerOf(schema);
  if (check.Check(value)) return value as ClientFrame;
  const ref = refOf(t, value as Record<string, unknown>);
  throw schemaError(check, value, code, ref === undefined ? {} : { ref });
}

/**
 * Decode one frame from the server: the same steps against the server frame union (a client
 * trusts the relay no more than it must: envelopes and receipts inside are verified after).
 */
export function decodeServerFrame(data: string | Uint8Array, maxBytes = 2 * MAX_FRAME_BYTES): ServerFrame {
  const value = parseJson(frameText(data, maxBytes));
  const check = checkerOf(ServerFrame);
  if (check.Check(value)) return value;
  throw schemaError(check, value, 'HL_ERR_INPUT_SCHEMA');
}

/** Serialize a frame: one JSON text message. */
export function encodeFrame(frame: ClientFrame | ServerFrame): string {
  return JSON.stringify(frame);
}

/** UTF-8 bytes of {@link encodeFrame}, for transports that send bytes. */
export function encodeFrameBytes(frame: ClientFrame | ServerFrame): Uint8Array {
  return encoder.encode(encodeFrame(frame));
}
