import { describe, expect, it } from 'vitest';
import { checkRecipients, expectedRecipients, openEnvelope, sealEnvelope } from '../../../shared/crypto/envelope.js';
import { keyIdOf } from '../../../shared/crypto/keys.js';
import {
  createPrekey,
  DEFAULT_PREKEY_ROTATION_MS,
  newestPrekey,
  prekeyRotationDue,
  prekeyRotationMs,
  prekeysToDelete,
  verifyPrekey,
  wrapKeyFor,
} from '../../../shared/crypto/prekey.js';
import { fromBase64, toBase64 } from '../../../shared/encoding/base64.js';
import { ed25519Sign } from '../../../shared/crypto/ed25519.js';
import { signingBytes } from '../../../shared/crypto/keys.js';
import { PREKEY_CONTEXT } from '../../../shared/crypto/prekey.js';
import type { HotlineError } from '../../../shared/errors.js';
import { makeDeployment } from '../../helpers/fixtures.js';

const R = DEFAULT_PREKEY_ROTATION_MS;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as HotlineError).code;
  }
  return 'resolved';
}

describe('verifyPrekey', () => {
  it('accepts a prekey signed by its device and refuses forgeries with their codes', async () => {
    const d = await makeDeployment();
    const cn = d.devices.cnOp;
    const held = await createPrekey(cn, { now: d.now, rotationMs: R });
    const body = await verifyPrekey(held.signed, cn.certificate.cert, R);
    expect(body.notAfter - body.notBefore).toBe(2 * R);
    expect(held.keyId).toBe(keyIdOf(fromBase64(body.boxKey, 32)));

    // Another box key under the same signature: the signature no longer holds.
    const swapped = { ...held.signed, prekey: { ...held.signed.prekey, boxKey: toBase64(new Uint8Array(32).fill(9)) } };
    expect(await codeOf(verifyPrekey(swapped, cn.certificate.cert, R))).toBe('HL_ERR_PREKEY_BAD_SIGNATURE');
    // Signed by another device (jp-op-1) in the name of cn-op-1.
    const byJp = await createPrekey(d.devices.jpOp, { now: d.now, rotationMs: R });
    const claimed = { ...byJp.signed.prekey, party: 'cn-mnd', device: 'cn-op-1' };
    const forged = { prekey: claimed, signature: toBase64(await ed25519Sign(fromBase64(d.devices.jpOp.signSecret, 32), signingBytes(PREKEY_CONTEXT, claimed))) };
    expect(await codeOf(verifyPrekey(forged, cn.certificate.cert, R))).toBe('HL_ERR_PREKEY_WRONG_DEVICE');
    // A real prekey of another device presented as this one's.
    expect(await codeOf(verifyPrekey(byJp.signed, cn.certificate.cert, R))).toBe('HL_ERR_PREKEY_WRONG_DEVICE');
    // In date for longer than two rotation periods, even when properly signed.
    const long = { ...held.signed.prekey, notAfter: held.signed.prekey.notBefore + 2 * R + 1 };
    const longSigned = { prekey: long, signature: toBase64(await ed25519Sign(fromBase64(cn.signSecret, 32), signingBytes(PREKEY_CONTEXT, long))) };
    expect(await codeOf(verifyPrekey(longSigned, cn.certificate.cert, R))).toBe('HL_ERR_PREKEY_VALIDITY');
    expect(await codeOf(verifyPrekey({ prekey: {} }, cn.certificate.cert, R))).toBe('HL_ERR_PREKEY_MALFORMED');
  });
});

describe('rotation and deletion rules', () => {
  it('rotates once the newest is a period old, wraps to the newest, and deletes only what can no longer be needed', async () => {
    const d = await makeDeployment();
    const cn = d.devices.cnOp;
    const t0 = d.now;
    expect(prekeyRotationMs(d.agreement)).toBe(R);
    expect(prekeyRotationMs({ prekeyRotationMs: 60_000 })).toBe(60_000);
    expect(prekeyRotationDue([], t0, R)).toBe(true);
    const k1 = await createPrekey(cn, { now: t0, rotationMs: R });
    expect(prekeyRotationDue([k1], t0 + R - 1, R)).toBe(false);
    expect(prekeyRotationDue([k1], t0 + R, R)).toBe(true);
    const k2 = await createPrekey(cn, { now: t0 + R, rotationMs: R });
    const bodies = [k1.signed.prekey, k2.signed.prekey];
    expect(newestPrekey(bodies, t0 + R)).toBe(k2.signed.prekey);
    expect(wrapKeyFor(cn.certificate.cert, bodies, t0 + R - 1)).toBe(k1.signed.prekey.boxKey);
    expect(wrapKeyFor(cn.certificate.cert, bodies, t0 + R)).toBe(k2.signed.prekey.boxKey);
    // No prekey in date: the certificate's box key (no forward secrecy).
    expect(wrapKeyFor(cn.certificate.cert, bodies, t0 + 4 * R)).toBe(cn.certificate.cert.boxKey);
    expect(wrapKeyFor(cn.certificate.cert, [], t0)).toBe(cn.certificate.cert.boxKey);

    const none = new Set<string>();
    // k1 is in date until t0 + 2R: kept until the relay's clock is there.
    expect(prekeysToDelete([k1], { serverTime: t0 + 2 * R - 1, pending: none, keepMs: 0 })).toEqual([]);
    expect(prekeysToDelete([k1], { serverTime: t0 + 2 * R, pending: none, keepMs: 0 })).toEqual([k1]);
    // A message wrapped to it still waiting in the mailbox keeps it.
    expect(prekeysToDelete([k1], { serverTime: t0 + 3 * R, pending: new Set([k1.keyId]), keepMs: 0 })).toEqual([]);
    // An archive keeps it for its retention beyond that.
    expect(prekeysToDelete([k1], { serverTime: t0 + 2 * R + 30 * R, pending: none, keepMs: 31 * R })).toEqual([]);
    expect(prekeysToDelete([k1], { serverTime: t0 + 2 * R + 31 * R, pending: none, keepMs: 31 * R })).toEqual([k1]);
  });
});

describe('envelopes wrapped to prekeys', () => {
  it('opens with the prekey secret, and an old prekey secret (with the device key) cannot open what is wrapped to the next', async () => {
    const d = await makeDeployment();
    const cn = d.devices.cnOp;
    const k1 = await createPrekey(cn, { now: d.now, rotationMs: R });
    const k2 = await createPrekey(cn, { now: d.now + R, rotationMs: R });
    const recipients = expectedRecipients(
      Object.values(d.devices).map((x) => x.certificate.cert),
      d.devices.jpOp.certificate.cert,
      'cn-mnd',
    );
    const seal = (boxKey: string, seq: number) =>
      sealEnvelope({
        sender: d.devices.jpOp,
        to: 'cn-mnd',
        precedence: 'FLASH',
        seq,
        sentAt: d.now,
        recipients,
        wrapKeys: new Map([['cn-mnd/cn-op-1', boxKey]]),
        plaintext: { body: '至急', lang: 'zh' },
      });
    const before = await seal(k1.signed.prekey.boxKey, 1);
    const after = await seal(k2.signed.prekey.boxKey, 2);
    const senderCert = d.devices.jpOp.certificate.cert;
    expect(before.header.recipients.find((r) => r.device === 'cn-op-1')!.keyId).toBe(k1.keyId);

    // What was wrapped to k1 opens with k1's secret.
    expect((await openEnvelope(before, { device: cn, senderCert, prekeys: [k1] })).plaintext.body).toBe('至急');
    // What was wrapped to k2 does not open with k1's secret, not even with the device's own long-term key file.
    expect(await codeOf(openEnvelope(after, { device: cn, senderCert, prekeys: [k1] }))).toBe('HL_ERR_PREKEY_SECRET_GONE');
    // ...nor by trying k1's secret as if it were the key (the wrapped key is boxed to k2 alone).
    const k1AsDevice = { ...cn, boxSecret: k1.boxSecret, certificate: { ...cn.certificate, cert: { ...cn.certificate.cert, boxKey: k2.signed.prekey.boxKey } } };
    expect(await codeOf(openEnvelope(after, { device: k1AsDevice, senderCert }))).toBe('HL_ERR_ENVELOPE_UNWRAP_FAILED');
    expect((await openEnvelope(after, { device: cn, senderCert, prekeys: [k2] })).plaintext.body).toBe('至急');

    // The relay's check: with prekeys in date, the entry must name one of them; without, the certificate's key.
    const expected = recipients;
    expect(() => checkRecipients(after.header, expected, (c) => (c.device === 'cn-op-1' ? [k1.keyId, k2.keyId] : []))).not.toThrow();
    expect(() => checkRecipients(after.header, expected, (c) => (c.device === 'cn-op-1' ? [k1.keyId] : []))).toThrow(expect.objectContaining({ code: 'HL_ERR_ENVELOPE_RECIPIENTS' }));
    expect(() => checkRecipients(after.header, expected)).toThrow(expect.objectContaining({ code: 'HL_ERR_ENVELOPE_RECIPIENTS' }));
    const fallback = await seal(cn.certificate.cert.boxKey, 3);
    expect(() => checkRecipients(fallback.header, expected)).not.toThrow();
    expect(() => checkRecipients(fallback.header, expected, (c) => (c.device === 'cn-op-1' ? [k2.keyId] : []))).toThrow(expect.objectContaining({ code: 'HL_ERR_ENVELOPE_RECIPIENTS' }));
  });
});
