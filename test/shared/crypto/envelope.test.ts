import { beforeAll, describe, expect, it } from 'vitest';
import nacl from 'tweetnacl';
import {
  MAX_ENVELOPE_BYTES,
  checkRecipients,
  checkReplay,
  REPLAY_WINDOW,
  envelopeHash,
  expectedRecipients,
  keyCommitment,
  openEnvelope,
  parseEnvelopeText,
  sealEnvelope,
  sealEnvelopeWithHash,
  verifyEnvelope,
  type ReplayGuard,
} from '../../../shared/crypto/envelope.js';
import { signReceipt, verifyReceipt } from '../../../shared/crypto/receipt.js';
import { CONTEXT, enrollDevice, keyIdOf, signingBytes } from '../../../shared/crypto/keys.js';
import { ed25519Sign } from '../../../shared/crypto/ed25519.js';
import { sha256 } from '../../../shared/crypto/hash.js';
import { fromBase64, toBase64, toHex } from '../../../shared/encoding/base64.js';
import type { DeviceCertBody, Envelope, EnvelopeHeader } from '../../../shared/protocol/schemas.js';
import { makeDeployment, type TestDeployment } from '../../helpers/fixtures.js';

let d: TestDeployment;
let directory: DeviceCertBody[];
const JA = '至急：本日一四〇〇時、演習区域を変更する。確認されたし。';
const ZH = '紧急：今天十四时起变更演习区域，请确认。';

async function sealFromJp(overrides: Partial<Parameters<typeof sealEnvelope>[0]> = {}): Promise<Envelope> {
  const from = d.devices.jpOp.certificate.cert;
  return sealEnvelope({
    sender: d.devices.jpOp,
    to: 'cn-mnd',
    precedence: 'FLASH',
    seq: 1,
    sentAt: d.now,
    recipients: expectedRecipients(directory, from, 'cn-mnd'),
    plaintext: { subject: '演習', body: JA, lang: 'ja' },
    ...overrides,
  });
}

beforeAll(async () => {
  d = await makeDeployment();
  directory = Object.values(d.devices).map((x) => x.certificate.cert);
});

describe('sealEnvelope / openEnvelope', () => {
  it('round-trips Japanese and Chinese text for every recipient device', async () => {
    const env = await sealFromJp({ plaintext: { subject: '紧急', body: `${JA}\n${ZH}\u{20BB7}`, lang: 'ja' } });
    const senderCert = d.devices.jpOp.certificate.cert;
    for (const device of [d.devices.cnOp, d.devices.cnArc, d.devices.jpOp2, d.devices.jpArc]) {
      const wire = JSON.parse(JSON.stringify(env));
      const { plaintext, header } = await openEnvelope(wire, { device, senderCert });
      expect(plaintext.body).toBe(`${JA}\n${ZH}\u{20BB7}`);
      expect(plaintext.subject).toBe('紧急');
      expect(header.id).toBe(env.header.id);
    }
  });

  it('wraps for exactly the addressee operators and archives and the sender party’s other operators and archives', async () => {
    const env = await sealFromJp();
    const names = env.header.recipients.map((r) => `${r.party}/${r.device}`).sort();
    expect(names).toEqual(['cn-mnd/cn-archive', 'cn-mnd/cn-op-1', 'jp-mod/jp-archive', 'jp-mod/jp-op-2']);
    // Auditors hold no message keys; only the archive device of their ministry does.
    await expect(openEnvelope(env, { device: d.devices.cnAud, senderCert: d.devices.jpOp.certificate.cert })).rejects.toMatchObject({
      code: 'HL_ERR_ENVELOPE_NOT_FOR_ME',
    });
  });

  it('signs a header whose commitment and ciphertext hash match what it carries', async () => {
    const env = await sealFromJp();
    expect(env.header.ciphertextHash).toBe(toHex(sha256(fromBase64(env.ciphertext))));
    expect(env.header.keyCommitment).toMatch(/^[0-9a-f]{64}$/);
    expect(envelopeHash(env.header)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('sealEnvelopeWithHash gives the hash every recipient computes, from the bytes its signature is over', async () => {
    const from = d.devices.jpOp.certificate.cert;
    const { envelope, hash } = await sealEnvelopeWithHash({
      sender: d.devices.jpOp,
      to: 'cn-mnd',
      precedence: 'IMMEDIATE',
      seq: 7,
      sentAt: d.now,
      recipients: expectedRecipients(directory, from, 'cn-mnd'),
      plaintext: { body: ZH, lang: 'zh' },
      replyTo: 'a'.repeat(32),
    });
    expect(hash).toBe(envelopeHash(envelope.header));
    const wire = JSON.parse(JSON.stringify(envelope));
    expect((await verifyEnvelope(wire, from)).hash).toBe(hash);
    expect((await openEnvelope(wire, { device: d.devices.cnOp, senderCert: from })).envelopeHash).toBe(hash);
  });
});

describe('tampering is refused with a specific code', () => {
  const senderCert = () => d.devices.jpOp.certificate.cert;
  const open = (env: unknown) => openEnvelope(env, { device: d.devices.cnOp, senderCert: senderCert() });

  const headerChanges: [string, (h: EnvelopeHeader) => void][] = [
    ['id', (h) => (h.id = 'f'.repeat(32))],
    ['to', (h) => (h.to = 'jp-mod')],
    ['precedence', (h) => (h.precedence = 'ROUTINE')],
    ['seq', (h) => (h.seq += 1)],
    ['sentAt', (h) => (h.sentAt += 1)],
    ['ephemeralKey', (h) => (h.ephemeralKey = toBase64(nacl.box.keyPair().publicKey))],
    ['keyCommitment', (h) => (h.keyCommitment = '0'.repeat(64))],
    ['ciphertextHash', (h) => (h.ciphertextHash = '0'.repeat(64))],
    ['a wrapped key', (h) => (h.recipients[0]!.wrappedKey = toBase64(new Uint8Array(48)))],
    ['a recipient nonce', (h) => (h.recipients[0]!.nonce = toBase64(new Uint8Array(24)))],
    ['a recipient keyId', (h) => (h.recipients[0]!.keyId = '0'.repeat(16))],
    ['a recipient removed', (h) => void h.recipients.pop()],
    ['replyTo added', (h) => (h.replyTo = 'a'.repeat(32))],
    ['exercise marking added', (h) => (h.exercise = true)],
  ];
  for (const [name, change] of headerChanges) {
    it(`header field: ${name} → HL_ERR_ENVELOPE_BAD_SIGNATURE`, async () => {
      const env = structuredClone(await sealFromJp());
      change(env.header);
      await expect(open(env)).rejects.toMatchObject({ code: 'HL_ERR_ENVELOPE_BAD_SIGNATURE' });
    });
  }

  it('header field: from → HL_ERR_ENVELOPE_SENDER_MISMATCH', async () => {
    const env = structuredClone(await sealFromJp());
    env.header.from.device = 'jp-op-2';
    await expect(open(env)).rejects.toMatchObject({ code: 'HL_ERR_ENVELOPE_SENDER_MISMATCH' });
  });

  it('ciphertext: one flipped byte → HL_ERR_ENVELOPE_CIPHERTEXT_HASH', async () => {
    const env = structuredClone(await sealFromJp());
    const ct = fromBase64(env.ciphertext);
    ct[ct.length - 1]! ^= 1;
    env.ciphertext = toBase64(ct);
    await expect(open(env)).rejects.toMatchObject({ code: 'HL_ERR_ENVELOPE_CIPHERTEXT_HASH' });
  });

  it('signature: one flipped bit → HL_ERR_ENVELOPE_BAD_SIGNATURE', async () => {
    const env = structuredClone(await sealFromJp());
    const sig = fromBase64(env.signature);
    sig[0]! ^= 1;
    env.signature = toBase64(sig);
    await expect(open(env)).rejects.toMatchObject({ code: 'HL_ERR_ENVELOPE_BAD_SIGNATURE' });
  });

  it('a signature by another device → HL_ERR_ENVELOPE_BAD_SIGNATURE', async () => {
    const env = structuredClone(await sealFromJp());
    env.signature = toBase64(await ed25519Sign(fromBase64(d.devices.jpOp2.signSecret), signingBytes(CONTEXT.envelope, env.header)));
    await expect(open(env)).rejects.toMatchObject({ code: 'HL_ERR_ENVELOPE_BAD_SIGNATURE' });
  });

  it('malformed shapes → HL_ERR_ENVELOPE_MALFORMED, oversized text → HL_ERR_ENVELOPE_TOO_LARGE before parsing', async () => {
    await expect(open({ header: {}, signature: 'x', ciphertext: '' })).rejects.toMatchObject({ code: 'HL_ERR_ENVELOPE_MALFORMED' });
    const env = await sealFromJp();
    await expect(open({ ...env, extra: true })).rejects.toMatchObject({ code: 'HL_ERR_ENVELOPE_MALFORMED' });
    expect(() => parseEnvelopeText('{'.repeat(MAX_ENVELOPE_BYTES + 1))).toThrow(expect.objectContaining({ code: 'HL_ERR_ENVELOPE_TOO_LARGE' }));
    // Bytes, not UTF-16 units: 30,000 three-byte characters are 90,000 bytes in 30,002 units.
    expect(() => parseEnvelopeText(`"${'演'.repeat(30_000)}"`)).toThrow(expect.objectContaining({ code: 'HL_ERR_ENVELOPE_TOO_LARGE' }));
    expect(() => parseEnvelopeText('{"header":')).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_MALFORMED_JSON' }));
  });

  it('a message too large to send is refused at sealing with HL_ERR_ENVELOPE_TOO_LARGE', async () => {
    await expect(sealFromJp({ plaintext: { body: '至'.repeat(20_000), lang: 'ja' } })).rejects.toMatchObject({ code: 'HL_ERR_ENVELOPE_TOO_LARGE' });
    await expect(sealFromJp({ plaintext: { body: 'x', lang: 'ja', extra: 1 } as never })).rejects.toMatchObject({
      code: 'HL_ERR_ENVELOPE_PLAINTEXT_INVALID',
    });
  });
});

describe('key commitment', () => {
  it('catches a malicious sender that wraps different content keys for different recipients', async () => {
    // The sender builds and signs an envelope by hand: the addressee gets K1 (the committed key),
    // the addressee's archive gets K2, so the archive would see a different plaintext.
    const sender = d.devices.jpOp;
    const k1 = nacl.randomBytes(32);
    const k2 = nacl.randomBytes(32);
    const nonce = nacl.randomBytes(24);
    const boxed = nacl.secretbox(new TextEncoder().encode(JSON.stringify({ body: 'stand down', lang: 'en' })), nonce, k1);
    const ciphertext = new Uint8Array([...nonce, ...boxed]);
    const eph = nacl.box.keyPair();
    const wrap = (cert: DeviceCertBody, key: Uint8Array) => {
      const n = nacl.randomBytes(24);
      return {
        party: cert.party,
        device: cert.device,
        keyId: keyIdOf(fromBase64(cert.boxKey)),
        nonce: toBase64(n),
        wrappedKey: toBase64(nacl.box(key, n, fromBase64(cert.boxKey), eph.secretKey)),
      };
    };
    const header: EnvelopeHeader = {
      v: 1,
      id: 'b'.repeat(32),
      from: { party: 'jp-mod', device: 'jp-op-1' },
      to: 'cn-mnd',
      precedence: 'FLASH',
      seq: 7,
      sentAt: d.now,
      ephemeralKey: toBase64(eph.publicKey),
      keyCommitment: keyCommitment(k1),
      ciphertextHash: toHex(sha256(ciphertext)),
      recipients: [wrap(d.devices.cnOp.certificate.cert, k1), wrap(d.devices.cnArc.certificate.cert, k2)],
    };
    const env = {
      header,
      signature: toBase64(await ed25519Sign(fromBase64(sender.signSecret), signingBytes(CONTEXT.envelope, header))),
      ciphertext: toBase64(ciphertext),
    };
    const senderCert = sender.certificate.cert;
    await expect(openEnvelope(env, { device: d.devices.cnOp, senderCert })).resolves.toMatchObject({ plaintext: { body: 'stand down' } });
    await expect(openEnvelope(env, { device: d.devices.cnArc, senderCert })).rejects.toMatchObject({ code: 'HL_ERR_ENVELOPE_KEY_COMMITMENT' });
  });

  it('refuses a wrapped key that does not open with HL_ERR_ENVELOPE_UNWRAP_FAILED (signed by the sender)', async () => {
    const env = structuredClone(await sealFromJp());
    const mine = env.header.recipients.find((r) => r.device === 'cn-op-1')!;
    mine.wrappedKey = toBase64(nacl.randomBytes(48));
    env.signature = toBase64(await ed25519Sign(fromBase64(d.devices.jpOp.signSecret), signingBytes(CONTEXT.envelope, env.header)));
    await expect(openEnvelope(env, { device: d.devices.cnOp, senderCert: d.devices.jpOp.certificate.cert })).rejects.toMatchObject({
      code: 'HL_ERR_ENVELOPE_UNWRAP_FAILED',
    });
  });
});

describe('re-addressing and replay', () => {
  it('a recipient cannot re-address a signed envelope to another party or send it as its own', async () => {
    const env = structuredClone(await sealFromJp());
    // cn-mnd's operator tries to present jp-mod's signed message as addressed elsewhere…
    env.header.to = 'jp-mod';
    await expect(verifyEnvelope(env, d.devices.jpOp.certificate.cert)).rejects.toMatchObject({ code: 'HL_ERR_ENVELOPE_BAD_SIGNATURE' });
    // …or to forward it unchanged as if it came from its own device: the server checks `from`
    // against the authenticated device's certificate.
    await expect(verifyEnvelope(await sealFromJp(), d.devices.cnOp.certificate.cert)).rejects.toMatchObject({
      code: 'HL_ERR_ENVELOPE_SENDER_MISMATCH',
    });
  });

  it('checkReplay: a replayed (device, seq) and a reused id are refused; the same envelope again is a duplicate', async () => {
    const stored = new Map<string, string>();
    const seqs = new Map<string, number>();
    const used = new Set<string>();
    const guard: ReplayGuard = {
      lastSeq: (p, dev) => seqs.get(`${p}/${dev}`) ?? 0,
      seqUsed: (p, dev, seq) => used.has(`${p}/${dev}/${seq}`),
      hashOf: (id) => stored.get(id),
    };
    const accept = (h: EnvelopeHeader) => {
      const r = checkReplay(h, guard);
      stored.set(h.id, envelopeHash(h));
      used.add(`${h.from.party}/${h.from.device}/${h.seq}`);
      seqs.set(`${h.from.party}/${h.from.device}`, Math.max(h.seq, guard.lastSeq(h.from.party, h.from.device)));
      return r;
    };
    const first = await sealFromJp({ seq: 5 });
    expect(accept(first.header)).toBe('new');
    expect(accept(first.header)).toBe('duplicate');
    expect(checkReplay(first.header, guard, envelopeHash(first.header))).toBe('duplicate');
    const sameSeq = await sealFromJp({ seq: 5 });
    expect(() => accept(sameSeq.header)).toThrow(expect.objectContaining({ code: 'HL_ERR_ENVELOPE_REPLAY' }));
    const reusedId = await sealFromJp({ seq: 6, id: first.header.id });
    expect(() => accept(reusedId.header)).toThrow(expect.objectContaining({ code: 'HL_ERR_ENVELOPE_DUPLICATE_ID' }));
    expect(accept((await sealFromJp({ seq: 6 })).header)).toBe('new');
    // A lower seq not yet used is inside the window: a FLASH may overtake the ROUTINE before it.
    expect(accept((await sealFromJp({ seq: 4 })).header)).toBe('new');
    const seq4again = (await sealFromJp({ seq: 4 })).header;
    expect(() => accept(seq4again)).toThrow(expect.objectContaining({ code: 'HL_ERR_ENVELOPE_REPLAY' }));
    // Once the highest is REPLAY_WINDOW above, an unused seq is refused all the same.
    expect(accept((await sealFromJp({ seq: 6 + REPLAY_WINDOW })).header)).toBe('new');
    const belowWindow = (await sealFromJp({ seq: 6 })).header;
    expect(() => accept(belowWindow)).toThrow(expect.objectContaining({ code: 'HL_ERR_ENVELOPE_REPLAY' }));
    expect(accept((await sealFromJp({ seq: 7 })).header)).toBe('new');
  });
});

describe('checkRecipients', () => {
  it('accepts the expected set and refuses a missing archive, an extra device or a stale box key', async () => {
    const from = d.devices.jpOp.certificate.cert;
    const expected = expectedRecipients(directory, from, 'cn-mnd');
    const env = await sealFromJp();
    expect(() => checkRecipients(env.header, expected)).not.toThrow();

    const noArchive = await sealFromJp({ recipients: expected.filter((c) => c.role !== 'archive') });
    expect(() => checkRecipients(noArchive.header, expected)).toThrow(expect.objectContaining({ code: 'HL_ERR_ENVELOPE_RECIPIENTS' }));

    const extra = await sealFromJp({ recipients: [...expected, d.devices.cnAud.certificate.cert] });
    expect(() => checkRecipients(extra.header, expected)).toThrow(expect.objectContaining({ code: 'HL_ERR_ENVELOPE_RECIPIENTS' }));

    // One device twice in place of another: the count is right, the set is not.
    const first = env.header.recipients[0]!;
    const twice = { ...env.header, recipients: env.header.recipients.map((r, i) => (i === 1 ? first : r)) };
    expect(env.header.recipients.length).toBeGreaterThan(1);
    expect(() => checkRecipients(twice, expected)).toThrow(expect.objectContaining({ code: 'HL_ERR_ENVELOPE_RECIPIENTS', message: expect.stringContaining('listed twice') }));

    const reEnrolled = await enrollDevice(d.cn, { device: 'cn-op-1', role: 'operator', now: d.now });
    const newer = expected.map((c) => (c.device === 'cn-op-1' ? reEnrolled.certificate.cert : c));
    expect(() => checkRecipients(env.header, newer)).toThrow(expect.objectContaining({ code: 'HL_ERR_ENVELOPE_RECIPIENTS' }));
  });
});

describe('signReceipt / verifyReceipt', () => {
  it('binds a receipt to the envelope header hash and the signing device', async () => {
    const env = await sealFromJp();
    const cnCert = d.devices.cnOp.certificate.cert;
    const r = await signReceipt(d.devices.cnOp, env.header, 'acknowledged', d.now + 5000);
    expect(r.receipt).toMatchObject({ messageId: env.header.id, envelopeHash: envelopeHash(env.header), kind: 'acknowledged' });
    await expect(verifyReceipt(JSON.parse(JSON.stringify(r)), cnCert, env.header)).resolves.toBeDefined();

    const other = await sealFromJp({ seq: 2 });
    await expect(verifyReceipt(r, cnCert, { ...other.header, id: env.header.id })).rejects.toMatchObject({ code: 'HL_ERR_RECEIPT_HASH_MISMATCH' });
    await expect(verifyReceipt(r, cnCert, other.header)).rejects.toMatchObject({ code: 'HL_ERR_RECEIPT_UNKNOWN_MESSAGE' });
    await expect(verifyReceipt(r, d.devices.jpOp.certificate.cert, env.header)).rejects.toMatchObject({ code: 'HL_ERR_RECEIPT_SENDER_MISMATCH' });

    const forged = structuredClone(r);
    forged.receipt.at += 1;
    await expect(verifyReceipt(forged, cnCert, env.header)).rejects.toMatchObject({ code: 'HL_ERR_RECEIPT_BAD_SIGNATURE' });

    // The sender's own colleague cannot "acknowledge" on the addressee's behalf.
    const selfAck = await signReceipt(d.devices.jpOp2, env.header, 'acknowledged', d.now);
    await expect(verifyReceipt(selfAck, d.devices.jpOp2.certificate.cert, env.header)).rejects.toMatchObject({ code: 'HL_ERR_RECEIPT_NOT_RECIPIENT' });
    await expect(verifyReceipt({ receipt: {}, signature: '' }, cnCert)).rejects.toMatchObject({ code: 'HL_ERR_RECEIPT_MALFORMED' });
  });
});
