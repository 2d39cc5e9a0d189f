import { describe, expect, it } from 'vitest';
import nacl from 'tweetnacl';
import sodium from 'libsodium-wrappers';
import { box, boxKeyPair, boxOpen, boxPublicKey, x25519 } from '../../../shared/crypto/x25519.js';
import { fromHex, toHex } from '../../../shared/encoding/base64.js';

describe('x25519', () => {
  it('matches RFC 7748 §6.1 (Alice and Bob)', async () => {
    const aliceSk = fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const bobSk = fromHex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
    expect(toHex(boxPublicKey(aliceSk))).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    expect(toHex(boxPublicKey(bobSk))).toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
    expect(toHex(await x25519(aliceSk, boxPublicKey(bobSk)))).toBe(shared);
    expect(toHex(await x25519(bobSk, boxPublicKey(aliceSk)))).toBe(shared);
  });

  it('agrees with tweetnacl on random keys: public keys, scalar multiplication', async () => {
    for (let i = 0; i < 20; i++) {
      const a = nacl.box.keyPair();
      const b = boxKeyPair();
      expect(boxPublicKey(a.secretKey)).toEqual(a.publicKey);
      expect(nacl.box.keyPair.fromSecretKey(b.secretKey).publicKey).toEqual(b.publicKey);
      expect(await x25519(a.secretKey, b.publicKey)).toEqual(nacl.scalarMult(a.secretKey, b.publicKey));
    }
  });

  it('still computes NaCl’s answer for a low-order public key (OpenSSL refuses those)', async () => {
    const sk = nacl.randomBytes(32);
    expect(await x25519(sk, new Uint8Array(32))).toEqual(nacl.scalarMult(sk, new Uint8Array(32)));
  });
});

describe('box / boxOpen', () => {
  it('produces tweetnacl’s and libsodium’s bytes exactly, and opens theirs', async () => {
    await sodium.ready;
    for (let i = 0; i < 10; i++) {
      const me = nacl.box.keyPair();
      const them = nacl.box.keyPair();
      const nonce = nacl.randomBytes(24);
      const msg = nacl.randomBytes(32 + i);
      const ours = await box(msg, nonce, them.publicKey, me.secretKey);
      expect(ours).toEqual(nacl.box(msg, nonce, them.publicKey, me.secretKey));
      expect(ours).toEqual(sodium.crypto_box_easy(msg, nonce, them.publicKey, me.secretKey));
      expect(await boxOpen(nacl.box(msg, nonce, me.publicKey, them.secretKey), nonce, them.publicKey, me.secretKey)).toEqual(msg);
    }
  });

  it('returns null for a forged or mis-keyed box', async () => {
    const me = boxKeyPair();
    const them = boxKeyPair();
    const nonce = nacl.randomBytes(24);
    const c = await box(new Uint8Array(32), nonce, them.publicKey, me.secretKey);
    c[0]! ^= 1;
    expect(await boxOpen(c, nonce, me.publicKey, them.secretKey)).toBeNull();
    const other = boxKeyPair();
    expect(await boxOpen(await box(new Uint8Array(32), nonce, them.publicKey, me.secretKey), nonce, other.publicKey, them.secretKey)).toBeNull();
  });
});
