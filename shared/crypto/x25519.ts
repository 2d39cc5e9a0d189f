import nacl from 'tweetnacl';
import { nativeCrypto } from './native.js';
import { concatBytes } from '../encoding/base64.js';
import { HotlineError } from '../errors.js';

/**
 * NaCl `box` (X25519 + XSalsa20-Poly1305), byte-identical to tweetnacl's and libsodium's
 * `crypto_box_easy`, with the X25519 scalar multiplication done natively (./native.ts in Node).
 *
 * Why: tweetnacl's pure-JS scalar multiplication costs 3–8 ms on this 2-core machine, and a
 * message needs one per recipient to seal and one to open; node:crypto's X25519 takes tens of
 * microseconds. As with Ed25519, tweetnacl keeps the rest (HSalsa20 and secretbox), so the bytes on
 * the wire do not change: box(m, n, pk, sk) = secretbox(m, n, HSalsa20(0, X25519(sk, pk))).
 * Browsers use WebCrypto's X25519 where available and fall back to tweetnacl.
 */

// The DER prefix that turns a raw 32-byte X25519 secret into PKCS#8 (RFC 8410), for WebCrypto.
const PKCS8_PREFIX = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);
const ZERO16 = new Uint8Array(16);
// "expand 32-byte k", the Salsa20 constant HSalsa20 uses in crypto_box_beforenm.
const SIGMA = new Uint8Array([101, 120, 112, 97, 110, 100, 32, 51, 50, 45, 98, 121, 116, 101, 32, 107]);

interface Lowlevel {
  crypto_core_hsalsa20(out: Uint8Array, inp: Uint8Array, k: Uint8Array, c: Uint8Array): number;
}
const lowlevel = (nacl as unknown as { lowlevel: Lowlevel }).lowlevel;

let webX25519: boolean | undefined;

/** X25519(sk, pk): the raw shared secret. Async because WebCrypto is. */
export async function x25519(secretKey: Uint8Array, publicKey: Uint8Array): Promise<Uint8Array> {
  if (secretKey.length !== 32 || publicKey.length !== 32) throw new HotlineError('HL_ERR_KEY_INVALID', 'X25519 keys are 32 bytes');
  const native = nativeCrypto();
  if (native) {
    try {
      return native.x25519(secretKey, publicKey);
    } catch {
      // OpenSSL (Node) refuses low-order points (all-zero output); NaCl computes them. Stay NaCl-compatible.
      return nacl.scalarMult(secretKey, publicKey);
    }
  }
  if (webX25519 !== false && globalThis.crypto?.subtle) {
    try {
      const priv = await crypto.subtle.importKey('pkcs8', concatBytes(PKCS8_PREFIX, secretKey) as BufferSource, { name: 'X25519' }, false, ['deriveBits']);
      const pub = await crypto.subtle.importKey('raw', publicKey as BufferSource, { name: 'X25519' }, false, []);
      const bits = await crypto.subtle.deriveBits({ name: 'X25519', public: pub } as unknown as AlgorithmIdentifier, priv, 256);
      webX25519 = true;
      return new Uint8Array(bits);
    } catch {
      // Not supported by this browser (or a low-order point): the pure-JS path below.
      webX25519 = webX25519 ?? false;
    }
  }
  return nacl.scalarMult(secretKey, publicKey);
}

/** crypto_box_beforenm: HSalsa20(0, X25519(sk, pk)). */
export async function boxBeforeNm(publicKey: Uint8Array, secretKey: Uint8Array): Promise<Uint8Array> {
  const shared = await x25519(secretKey, publicKey);
  const k = new Uint8Array(32);
  lowlevel.crypto_core_hsalsa20(k, ZERO16, shared, SIGMA);
  shared.fill(0);
  return k;
}

/** crypto_box_easy(message, nonce, theirPublic, mySecret), as tweetnacl's `nacl.box`. */
export async function box(message: Uint8Array, nonce: Uint8Array, publicKey: Uint8Array, secretKey: Uint8Array): Promise<Uint8Array> {
  const k = await boxBeforeNm(publicKey, secretKey);
  const out = nacl.secretbox(message, nonce, k);
  k.fill(0);
  return out;
}

/** crypto_box_open_easy, as tweetnacl's `nacl.box.open`; null when it does not authenticate. */
export async function boxOpen(ciphertext: Uint8Array, nonce: Uint8Array, publicKey: Uint8Array, secretKey: Uint8Array): Promise<Uint8Array | null> {
  const k = await boxBeforeNm(publicKey, secretKey);
  const out = nacl.secretbox.open(ciphertext, nonce, k);
  k.fill(0);
  return out;
}

/** A fresh X25519 key pair (made natively where the platform can). */
export function boxKeyPair(): { publicKey: Uint8Array; secretKey: Uint8Array } {
  const native = nativeCrypto();
  if (native) return native.x25519KeyPair();
  const secretKey = nacl.randomBytes(32);
  return { secretKey, publicKey: boxPublicKey(secretKey) };
}

/** The X25519 public key of a secret key. */
export function boxPublicKey(secretKey: Uint8Array): Uint8Array {
  if (secretKey.length !== 32) throw new HotlineError('HL_ERR_KEY_INVALID', 'X25519 secret key must be 32 bytes');
  const native = nativeCrypto();
  return native ? native.x25519PublicKey(secretKey) : nacl.box.keyPair.fromSecretKey(secretKey).publicKey;
}

/**
 * Drop a secret key from the native crypto's key cache and wipe it: for the per-message ephemeral key, whose
 * secret must not outlive the sealing (forward secrecy of the wrapped content keys).
 */
export function discardBoxSecret(secretKey: Uint8Array): void {
  nativeCrypto()?.x25519Forget(secretKey);
  secretKey.fill(0);
}
