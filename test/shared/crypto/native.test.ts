import { afterEach, describe, expect, it } from 'vitest';
import nacl from 'tweetnacl';
import { nativeCrypto, useNativeCrypto, type NativeCrypto } from '../../../shared/crypto/native.js';
import { ed25519Sign, ed25519Verify, signingPublicKeyFromSeed } from '../../../shared/crypto/ed25519.js';
import { box, boxKeyPair, boxOpen, boxPublicKey, x25519 } from '../../../shared/crypto/x25519.js';
import { sha256 } from '../../../shared/crypto/hash.js';
import { utf8 } from '../../../shared/encoding/base64.js';
import { keyImports, nodeCrypto } from '../../../server/node-crypto.js';

afterEach(() => useNativeCrypto(nodeCrypto));

/** The same inputs through shared/ with the port plugged in and without it. */
async function both<T>(f: () => Promise<T> | T): Promise<[T, T]> {
  useNativeCrypto(nodeCrypto);
  const native = await f();
  useNativeCrypto(undefined);
  const portable = await f();
  return [native, portable];
}

describe('the native crypto port', () => {
  it('is plugged in for the tests, as in every Node program', () => {
    expect(nativeCrypto()).toBe(nodeCrypto);
  });

  it('gives the same bytes as the browser paths (WebCrypto, tweetnacl, @noble/hashes)', async () => {
    const seed = nacl.randomBytes(32);
    const message = utf8('至急 — same bytes on every platform');
    const [sigN, sigP] = await both(() => ed25519Sign(seed, message));
    expect(sigN).toEqual(sigP);
    const pub = signingPublicKeyFromSeed(seed);
    expect(await both(() => ed25519Verify(pub, message, sigN))).toEqual([true, true]);
    expect(await both(() => ed25519Verify(pub, utf8('other'), sigN))).toEqual([false, false]);

    const a = nacl.randomBytes(32);
    const b = nacl.randomBytes(32);
    const [pubN, pubP] = await both(() => boxPublicKey(a));
    expect(pubN).toEqual(pubP);
    const [dhN, dhP] = await both(() => x25519(b, pubN));
    expect(dhN).toEqual(dhP);

    const parts = [utf8('a'), utf8('bc')];
    const [hN, hP] = await both(() => sha256(...parts));
    expect(hN).toEqual(hP);
  });

  it('opens without the port what was sealed with it, and the reverse', async () => {
    const nonce = nacl.randomBytes(24);
    const message = utf8('key');
    useNativeCrypto(nodeCrypto);
    const alice = boxKeyPair();
    useNativeCrypto(undefined);
    const bob = boxKeyPair();
    const sealed = await box(message, nonce, bob.publicKey, alice.secretKey);
    useNativeCrypto(nodeCrypto);
    expect(await boxOpen(sealed, nonce, alice.publicKey, bob.secretKey)).toEqual(message);
  });

  it('sends every hot path through the implementation plugged in', async () => {
    const calls: string[] = [];
    const spy = Object.fromEntries(
      Object.entries(nodeCrypto).map(([name, fn]) => [name, (...args: unknown[]) => (calls.push(name), (fn as (...a: unknown[]) => unknown)(...args))]),
    ) as unknown as NativeCrypto;
    useNativeCrypto(spy);
    const seed = nacl.randomBytes(32);
    await ed25519Verify(signingPublicKeyFromSeed(seed), utf8('m'), await ed25519Sign(seed, utf8('m')));
    const kp = boxKeyPair();
    await x25519(kp.secretKey, boxPublicKey(nacl.randomBytes(32)));
    sha256(utf8('x'));
    expect(new Set(calls)).toEqual(new Set(['ed25519Sign', 'ed25519Verify', 'x25519KeyPair', 'x25519PublicKey', 'x25519', 'sha256']));
  });

  it('takes raw keys in as JWK, never by the DER fallback (correct, but ~10× slower: most of sealing)', async () => {
    useNativeCrypto(nodeCrypto);
    const before = { ...keyImports };
    const seed = nacl.randomBytes(32);
    const signature = await ed25519Sign(seed, utf8('m'));
    expect(await ed25519Verify(signingPublicKeyFromSeed(seed), utf8('m'), signature)).toBe(true);
    const alice = boxKeyPair();
    const bob = boxKeyPair();
    const nonce = nacl.randomBytes(24);
    const sealed = await box(utf8('key'), nonce, bob.publicKey, alice.secretKey);
    expect(await boxOpen(sealed, nonce, alice.publicKey, bob.secretKey)).toEqual(utf8('key'));
    // Each of these keys is new to the caches: an Ed25519 seed and public key, two X25519 secrets
    // and the public keys they were used with.
    expect(keyImports.jwk - before.jwk).toBeGreaterThanOrEqual(6);
    expect(keyImports.der).toBe(before.der);
    // And the public half derived from a private key imported from `d` alone is the right one.
    expect(alice.publicKey).toEqual(nacl.scalarMult.base(alice.secretKey));
  });
});
