import { beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import sodium from 'libsodium-wrappers';
import { expectedRecipients, keyCommitment, openEnvelope, sealEnvelope } from '../../../shared/crypto/envelope.js';
import { CONTEXT, keyIdOf, signingBytes } from '../../../shared/crypto/keys.js';
import { ed25519Verify } from '../../../shared/crypto/ed25519.js';
import { canonicalize } from '../../../shared/encoding/canonical-json.js';
import { fromBase64, toBase64 } from '../../../shared/encoding/base64.js';
import type { DeviceCertBody, EnvelopeHeader } from '../../../shared/protocol/schemas.js';
import { makeDeployment, type TestDeployment } from '../../helpers/fixtures.js';

// Interoperability with an independent NaCl implementation (libsodium, compiled to wasm), so that
// a client in another language built on libsodium can read and write Hotline envelopes.

let d: TestDeployment;
beforeAll(async () => {
  await sodium.ready;
  d = await makeDeployment();
});

const sha256hex = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('libsodium interoperability', () => {
  it('an envelope sealed here opens with libsodium, step by step as PROTOCOL.md describes', async () => {
    const directory = Object.values(d.devices).map((x) => x.certificate.cert);
    const env = await sealEnvelope({
      sender: d.devices.jpOp,
      to: 'cn-mnd',
      precedence: 'IMMEDIATE',
      seq: 3,
      sentAt: d.now,
      recipients: expectedRecipients(directory, d.devices.jpOp.certificate.cert, 'cn-mnd'),
      plaintext: { body: '緊急連絡 / 紧急联络', lang: 'ja' },
    });
    const h = env.header;
    // 1. Signature over "hotline/v1/envelope\n" ‖ JCS(header), verified by libsodium.
    const signed = new TextEncoder().encode(CONTEXT.envelope + canonicalize(h));
    expect(sodium.crypto_sign_verify_detached(fromBase64(env.signature), signed, fromBase64(d.devices.jpOp.certificate.cert.signKey))).toBe(true);
    // 2. Unwrap K with crypto_box_open_easy(wrappedKey, nonce, ephemeralKey, myBoxSecret).
    const mine = h.recipients.find((r) => r.device === 'cn-op-1')!;
    const k = sodium.crypto_box_open_easy(fromBase64(mine.wrappedKey), fromBase64(mine.nonce), fromBase64(h.ephemeralKey), fromBase64(d.devices.cnOp.boxSecret));
    // 3. Key commitment and ciphertext hash.
    expect(sha256hex(new Uint8Array([...new TextEncoder().encode('hotline/v1/key'), ...k]))).toBe(h.keyCommitment);
    const ct = fromBase64(env.ciphertext);
    expect(sha256hex(ct)).toBe(h.ciphertextHash);
    // 4. Decrypt: ciphertext = nonce(24) ‖ secretbox.
    const pt = sodium.crypto_secretbox_open_easy(ct.subarray(24), ct.subarray(0, 24), k);
    expect(JSON.parse(new TextDecoder().decode(pt))).toEqual({ body: '緊急連絡 / 紧急联络', lang: 'ja' });
  });

  it('an envelope built and signed with libsodium opens here', async () => {
    // A libsodium "device": its Ed25519 seed and X25519 secret are the ones certified for jp-op-1.
    const signKp = sodium.crypto_sign_seed_keypair(fromBase64(d.devices.jpOp.signSecret));
    expect(toBase64(signKp.publicKey)).toBe(d.devices.jpOp.certificate.cert.signKey);

    const k = sodium.crypto_secretbox_keygen();
    const nonce = sodium.randombytes_buf(24);
    const body = new TextEncoder().encode(JSON.stringify({ subject: '测试', body: '中文与日本語の往復', lang: 'zh' }));
    const ct = new Uint8Array([...nonce, ...sodium.crypto_secretbox_easy(body, nonce, k)]);
    const eph = sodium.crypto_box_keypair();
    const wrap = (cert: DeviceCertBody) => {
      const n = sodium.randombytes_buf(24);
      return {
        party: cert.party,
        device: cert.device,
        keyId: keyIdOf(fromBase64(cert.boxKey)),
        nonce: toBase64(n),
        wrappedKey: toBase64(sodium.crypto_box_easy(k, n, fromBase64(cert.boxKey), eph.privateKey)),
      };
    };
    const header: EnvelopeHeader = {
      v: 1,
      id: 'c'.repeat(32),
      from: { party: 'jp-mod', device: 'jp-op-1' },
      to: 'cn-mnd',
      precedence: 'ROUTINE',
      seq: 9,
      sentAt: d.now,
      ephemeralKey: toBase64(eph.publicKey),
      keyCommitment: keyCommitment(k),
      ciphertextHash: sha256hex(ct),
      recipients: [wrap(d.devices.cnOp.certificate.cert)],
    };
    const signature = sodium.crypto_sign_detached(new TextEncoder().encode(CONTEXT.envelope + canonicalize(header)), signKp.privateKey);
    const env = { header, signature: toBase64(signature), ciphertext: toBase64(ct) };
    const out = await openEnvelope(env, { device: d.devices.cnOp, senderCert: d.devices.jpOp.certificate.cert });
    expect(out.plaintext).toEqual({ subject: '测试', body: '中文与日本語の往復', lang: 'zh' });
  });

  it('signatures made by libsodium verify here (ours verify in libsodium: first test)', async () => {
    for (let i = 0; i < 10; i++) {
      const kp = sodium.crypto_sign_keypair();
      const msg = signingBytes(CONTEXT.receipt, { i, text: '確認' });
      const sig = sodium.crypto_sign_detached(msg, kp.privateKey);
      expect(await ed25519Verify(kp.publicKey, msg, sig)).toBe(true);
      sig[5]! ^= 4;
      expect(await ed25519Verify(kp.publicKey, msg, sig)).toBe(false);
    }
  });
});
