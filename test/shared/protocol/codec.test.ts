import { beforeAll, describe, expect, it } from 'vitest';
import { decodeClientFrame, decodeServerFrame, encodeFrame, encodeFrameBytes, MAX_FRAME_BYTES } from '../../../shared/protocol/codec.js';
import { signReceipt } from '../../../shared/crypto/receipt.js';
import type { Envelope, SignedReceipt } from '../../../shared/protocol/schemas.js';
import type { ClientFrame, ServerFrame } from '../../../shared/protocol/frames.js';
import { CN, JP, createDeployment } from '../../helpers/deployment.js';
import { seal } from '../../helpers/ws-client.js';

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return 'accepted';
};

let env: Envelope;
let receipt: SignedReceipt;

beforeAll(async () => {
  const dep = await createDeployment();
  const sender = dep.devices[`${JP}/op1`]!;
  env = await seal({ sender, to: CN, seq: 1, directory: Object.values(dep.devices).map((x) => x.certificate.cert), plaintext: { body: '至急 / 至急', lang: 'ja' } });
  receipt = await signReceipt(dep.devices[`${CN}/op1`]!, env.header, 'delivered', Date.now());
});

describe('decodeClientFrame', () => {
  it('decodes each client frame, from text or UTF-8 bytes, to the same typed value', () => {
    const frames: ClientFrame[] = [{ t: 'envelope', envelope: env }, { t: 'receipt', receipt }, { t: 'ack', cursor: 3 }, { t: 'ack', cursors: [3, 9] }];
    for (const frame of frames) {
      expect(decodeClientFrame(encodeFrame(frame))).toEqual(frame);
      expect(decodeClientFrame(encodeFrameBytes(frame))).toEqual(frame);
    }
  });

  it('checks size first, then UTF-8, JSON, the frame type and its schema, each with its code', () => {
    expect(code(() => decodeClientFrame('x'.repeat(MAX_FRAME_BYTES + 1)))).toBe('HL_ERR_INPUT_TOO_LARGE');
    // Counted in UTF-8 bytes, not UTF-16 units: 30,000 × 3 bytes is over the limit.
    expect(code(() => decodeClientFrame(`{"t":"ack","cursor":1,"x":"${'至'.repeat(30_000)}"}`))).toBe('HL_ERR_INPUT_TOO_LARGE');
    expect(code(() => decodeClientFrame(new Uint8Array(MAX_FRAME_BYTES + 1)))).toBe('HL_ERR_INPUT_TOO_LARGE');
    expect(code(() => decodeClientFrame(new Uint8Array([0x7b, 0xff, 0x7d])))).toBe('HL_ERR_INPUT_MALFORMED_JSON');
    expect(code(() => decodeClientFrame('{"t":'))).toBe('HL_ERR_INPUT_MALFORMED_JSON');
    expect(code(() => decodeClientFrame('[1]'))).toBe('HL_ERR_INPUT_UNKNOWN_FRAME');
    expect(code(() => decodeClientFrame('{"t":"toString"}'))).toBe('HL_ERR_INPUT_UNKNOWN_FRAME');
    expect(code(() => decodeClientFrame('{"t":"hello"}'))).toBe('HL_ERR_INPUT_UNKNOWN_FRAME');
    expect(code(() => decodeClientFrame('{"t":"ack","cursor":-1}'))).toBe('HL_ERR_INPUT_SCHEMA');
    expect(code(() => decodeClientFrame('{"t":"ack","cursor":1,"cursors":[2]}'))).toBe('HL_ERR_INPUT_SCHEMA');
    expect(code(() => decodeClientFrame(JSON.stringify({ t: 'ack', cursors: [] })))).toBe('HL_ERR_INPUT_SCHEMA');
    expect(code(() => decodeClientFrame(JSON.stringify({ t: 'ack', cursors: Array.from({ length: 257 }, (_, i) => i) })))).toBe('HL_ERR_INPUT_SCHEMA');
    expect(code(() => decodeClientFrame(JSON.stringify({ t: 'receipt', receipt: { ...receipt, signature: 1 } })))).toBe('HL_ERR_RECEIPT_MALFORMED');
  });

  it('names the refused message in detail.ref when it can be read, and only a short string', () => {
    const bad = { ...env, header: { ...env.header, seq: 0 } };
    try {
      decodeClientFrame(JSON.stringify({ t: 'envelope', envelope: bad }));
      expect.unreachable();
    } catch (e) {
      expect(e).toMatchObject({ code: 'HL_ERR_ENVELOPE_MALFORMED', detail: { ref: env.header.id } });
    }
    try {
      decodeClientFrame(JSON.stringify({ t: 'envelope', envelope: { ...bad, header: { ...bad.header, id: 'x'.repeat(65) } } }));
      expect.unreachable();
    } catch (e) {
      expect((e as { detail?: Record<string, unknown> }).detail?.['ref']).toBeUndefined();
    }
  });
});

describe('decodeServerFrame', () => {
  it('decodes a server frame and refuses one of another shape with HL_ERR_INPUT_SCHEMA', () => {
    const deliver: ServerFrame = { t: 'deliver', cursor: 1, envelope: env, acceptedAt: 5 };
    expect(decodeServerFrame(encodeFrame(deliver))).toEqual(deliver);
    expect(code(() => decodeServerFrame('{"t":"deliver","cursor":1}'))).toBe('HL_ERR_INPUT_SCHEMA');
  });
});
