import { describe, expect, it } from 'vitest';
import nacl from 'tweetnacl';
import {
  ed25519Sign,
  ed25519Verify,
  generateSigningKeyPair,
  signingPublicKeyFromSeed,
  webcryptoSign,
  webcryptoVerify,
} from '../../../shared/crypto/ed25519.js';
import { fromHex, toHex, utf8 } from '../../../shared/encoding/base64.js';

// RFC 8032 §7.1 TEST 1, TEST 2 and TEST 3.
const RFC8032 = [
  {
    secret: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    public: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    message: '',
    signature: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  {
    secret: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    public: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    message: '72',
    signature: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
  {
    secret: 'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
    public: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
    message: 'af82',
    signature: '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
  },
];

describe('ed25519Sign / ed25519Verify', () => {
  for (const [i, v] of RFC8032.entries()) {
    it(`matches RFC 8032 §7.1 TEST ${i + 1} (native and WebCrypto paths)`, async () => {
      const seed = fromHex(v.secret);
      const msg = fromHex(v.message);
      expect(toHex(signingPublicKeyFromSeed(seed))).toBe(v.public);
      expect(toHex(await ed25519Sign(seed, msg))).toBe(v.signature);
      expect(toHex(await webcryptoSign(seed, msg))).toBe(v.signature);
      expect(await ed25519Verify(fromHex(v.public), msg, fromHex(v.signature))).toBe(true);
      expect(await webcryptoVerify(fromHex(v.public), msg, fromHex(v.signature))).toBe(true);
    });
  }

  it('cross-checks with tweetnacl on the same keys, both directions', async () => {
    for (let i = 0; i < 20; i++) {
      const kp = generateSigningKeyPair();
      const naclKp = nacl.sign.keyPair.fromSeed(kp.secretKey);
      expect(naclKp.publicKey).toEqual(kp.publicKey);
      const msg = utf8(`message ${i} 至急`);
      const ours = await ed25519Sign(kp.secretKey, msg);
      expect(ours).toEqual(nacl.sign.detached(msg, naclKp.secretKey));
      expect(nacl.sign.detached.verify(msg, ours, kp.publicKey)).toBe(true);
      expect(await ed25519Verify(kp.publicKey, msg, nacl.sign.detached(msg, naclKp.secretKey))).toBe(true);
    }
  });

  it('returns false (never throws) for a wrong message, flipped signature bit, bad key or bad lengths', async () => {
    const kp = generateSigningKeyPair();
    const msg = utf8('hello');
    const sig = await ed25519Sign(kp.secretKey, msg);
    expect(await ed25519Verify(kp.publicKey, utf8('hellO'), sig)).toBe(false);
    const flipped = sig.slice();
    flipped[10]! ^= 1;
    expect(await ed25519Verify(kp.publicKey, msg, flipped)).toBe(false);
    expect(await webcryptoVerify(kp.publicKey, msg, flipped)).toBe(false);
    expect(await ed25519Verify(new Uint8Array(32).fill(0xff), msg, sig)).toBe(false);
    expect(await ed25519Verify(kp.publicKey.subarray(0, 31), msg, sig)).toBe(false);
    expect(await ed25519Verify(kp.publicKey, msg, sig.subarray(0, 63))).toBe(false);
  });

  it('refuses a secret key that is not a 32-byte seed', async () => {
    await expect(ed25519Sign(new Uint8Array(64), utf8('x'))).rejects.toMatchObject({ code: 'HL_ERR_KEY_INVALID' });
  });
});
