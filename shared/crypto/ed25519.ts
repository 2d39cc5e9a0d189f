import nacl from 'tweetnacl';
import { nativeCrypto } from './native.js';
import { KeyCache } from './key-cache.js';
import { HotlineError } from '../errors.js';
import { concatBytes } from '../encoding/base64.js';

/**
 * Ed25519 (RFC 8032) through the platform: the native port in Node (./native.ts), WebCrypto in
 * browsers. tweetnacl
 * verifies about 116 signatures/s on our 2-core machine against ~8,900/s natively, so it is used
 * here only to derive a public key from a seed once per key. Secret keys are 32-byte seeds.
 *
 * The API is async because WebCrypto is; in Node the promise is already settled.
 *
 * @example
 * const kp = generateSigningKeyPair();
 * const sig = await ed25519Sign(kp.secretKey, utf8('hello'));
 * await ed25519Verify(kp.publicKey, utf8('hello'), sig); // true
 */
export interface SigningKeyPair {
  /** 32-byte Ed25519 public key. */
  publicKey: Uint8Array;
  /** 32-byte seed (RFC 8032 private key). */
  secretKey: Uint8Array;
}

// The DER prefix that turns a raw 32-byte seed into PKCS#8 (RFC 8410), for WebCrypto's import.
const PKCS8_PREFIX = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);

/** A fresh Ed25519 key pair from the platform's random source. */
export function generateSigningKeyPair(): SigningKeyPair {
  const seed = nacl.randomBytes(32);
  return { secretKey: seed, publicKey: signingPublicKeyFromSeed(seed) };
}

/** The public key of a 32-byte seed. */
export function signingPublicKeyFromSeed(seed: Uint8Array): Uint8Array {
  if (seed.length !== 32) throw new HotlineError('HL_ERR_KEY_INVALID', 'Ed25519 seed must be 32 bytes');
  return nacl.sign.keyPair.fromSeed(seed).publicKey;
}

const webPublic = new KeyCache<Promise<CryptoKey>>(4096);
const webPrivate = new WeakMap<Uint8Array, Promise<CryptoKey>>();

function webPublicKey(pub: Uint8Array): Promise<CryptoKey> {
  return webPublic.get(pub, () => crypto.subtle.importKey('raw', pub as BufferSource, { name: 'Ed25519' }, false, ['verify']));
}

function webPrivateKey(seed: Uint8Array): Promise<CryptoKey> {
  const hit = webPrivate.get(seed);
  if (hit) return hit;
  const key = crypto.subtle.importKey('pkcs8', concatBytes(PKCS8_PREFIX, seed) as BufferSource, { name: 'Ed25519' }, false, ['sign']);
  webPrivate.set(seed, key);
  return key;
}

/** Sign `message` with a 32-byte seed; returns the 64-byte signature. */
export async function ed25519Sign(secretKey: Uint8Array, message: Uint8Array): Promise<Uint8Array> {
  if (secretKey.length !== 32) throw new HotlineError('HL_ERR_KEY_INVALID', 'Ed25519 secret key must be a 32-byte seed');
  const native = nativeCrypto();
  return native ? native.ed25519Sign(secretKey, message) : webcryptoSign(secretKey, message);
}

/** The browser path of {@link ed25519Sign}, exported so that Node tests cover it too. */
export async function webcryptoSign(secretKey: Uint8Array, message: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, await webPrivateKey(secretKey), message as BufferSource));
}

/** The browser path of {@link ed25519Verify}, exported so that Node tests cover it too. */
export async function webcryptoVerify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    return await crypto.subtle.verify({ name: 'Ed25519' }, await webPublicKey(publicKey), signature as BufferSource, message as BufferSource);
  } catch {
    return false;
  }
}

/**
 * A signature check as {@link ed25519Verify} answers it: the relay hands its own to the envelope,
 * receipt and refusal checks (server/verify-pool.ts: several at once go to a worker thread).
 */
export type Ed25519Verifier = (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => Promise<boolean>;

/**
 * Verify an Ed25519 signature. Returns false for a wrong signature and for malformed keys or
 * signatures (all attacker-controlled), never throws for them.
 */
export async function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const native = nativeCrypto();
  return native ? native.ed25519Verify(publicKey, message, signature) : webcryptoVerify(publicKey, message, signature);
}
