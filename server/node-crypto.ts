import * as crypto from 'node:crypto';
import { createHash, createPrivateKey, createPublicKey, diffieHellman, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { KeyCache } from '../shared/crypto/key-cache.js';
import { useNativeCrypto, type NativeCrypto } from '../shared/crypto/native.js';
import { useNativeBase64, type NativeBase64 } from '../shared/encoding/base64.js';

/**
 * shared/'s native crypto port (shared/crypto/native.ts) on Node's OpenSSL: the one place Node's
 * crypto serves the hot paths. Ed25519 verifies about 8,900 signatures/s here against tweetnacl's
 * ~116, and an X25519 takes tens of microseconds against 3–8 ms in pure JS (one per recipient to
 * seal, one to open). The bytes are those of the pure-JS paths; test/shared/crypto checks both.
 *
 * Used by every Node program: the server (buildApp), the CLI, the bench and the tests. Browsers use
 * WebCrypto through shared/ itself.
 */

// DER prefixes that turn a raw 32-byte key into PKCS#8 / SPKI (RFC 8410), by algorithm OID.
const ED25519_PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED25519_SPKI = Buffer.from('302a300506032b6570032100', 'hex');
const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const X25519_SPKI = Buffer.from('302a300506032b656e032100', 'hex');

// Importing a raw key into OpenSSL costs more than the operation it serves (see KeyCache).
const signPublic = new KeyCache<KeyObject>(4096);
const signPrivate = new KeyCache<KeyObject>(64);
const boxPrivate = new KeyCache<KeyObject>(256);
const boxPublic = new KeyCache<KeyObject>(1024);

type Curve = 'Ed25519' | 'X25519';
const SPKI: Record<Curve, Buffer> = { Ed25519: ED25519_SPKI, X25519: X25519_SPKI };
const PKCS8: Record<Curve, Buffer> = { Ed25519: ED25519_PKCS8, X25519: X25519_PKCS8 };
/**
 * A JWK's `x` where only `d` is known. Node 20 requires the member to be a string but imports a
 * private OKP key from `d` alone (the public half is derived from it); should a later Node check
 * one against the other, the import throws and the DER import below serves instead.
 */
const UNKNOWN_X = 'A'.repeat(43);

// Raw keys go in as JWK, not DER: OpenSSL 3's DER decoders cost 594 µs per PKCS#8 private key and
// 170 µs per SPKI public key here, a JWK 55 µs and 14 µs (issue 9, docs/performance.md, twelfth
// session). Every message has a fresh ephemeral key pair: imported and exported as DER, it was
// most of the time of sealing, and of opening a copy.
/** How many raw keys went in by each way (tests: the DER fallback would be correct but slow). */
export const keyImports = { jwk: 0, der: 0 };

function publicKey(cache: KeyCache<KeyObject>, crv: Curve, raw: Uint8Array): KeyObject {
  return cache.get(raw, () => {
    try {
      const key = createPublicKey({ key: { kty: 'OKP', crv, x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
      keyImports.jwk++;
      return key;
    } catch {
      keyImports.der++;
      return createPublicKey({ key: Buffer.concat([SPKI[crv], raw]), format: 'der', type: 'spki' });
    }
  });
}

function privateKey(cache: KeyCache<KeyObject>, crv: Curve, raw: Uint8Array): KeyObject {
  return cache.get(raw, () => {
    try {
      const key = createPrivateKey({ key: { kty: 'OKP', crv, d: Buffer.from(raw).toString('base64url'), x: UNKNOWN_X }, format: 'jwk' });
      keyImports.jwk++;
      return key;
    } catch {
      keyImports.der++;
      return createPrivateKey({ key: Buffer.concat([PKCS8[crv], raw]), format: 'der', type: 'pkcs8' });
    }
  });
}

/**
 * `crypto.hash` (Node ≥ 20.12): a digest without a Hash object. Each Hash is a native object that
 * the young-generation GC must finalise, and the audit tree's hashing made dozens per message: a
 * third of every scavenge's pause went to such handles (issue 9, `--trace-gc-nvp`).
 */
const oneShotHash = (crypto as { hash?: (algorithm: string, data: Uint8Array, outputEncoding: 'buffer') => Buffer }).hash;

export const nodeCrypto: NativeCrypto = {
  ed25519Sign(seed, message) {
    return new Uint8Array(sign(null, message, privateKey(signPrivate, 'Ed25519', seed)));
  },
  ed25519Verify(key, message, signature) {
    if (key.length !== 32 || signature.length !== 64) return false;
    try {
      return verify(null, message, publicKey(signPublic, 'Ed25519', key), signature);
    } catch {
      // An invalid point encoding is a failed verification, not a crash.
      return false;
    }
  },
  x25519(secretKey, theirs) {
    return new Uint8Array(diffieHellman({ privateKey: privateKey(boxPrivate, 'X25519', secretKey), publicKey: publicKey(boxPublic, 'X25519', theirs) }));
  },
  x25519KeyPair() {
    // Random bytes, then the public key through the cached private key object (kept for the wraps
    // that follow, one per recipient). Not generateKeyPairSync + export('jwk'): on Node 20 a GC
    // during that export can collect the key's generation job, whose destructor waits on the lock
    // the export holds, and the process hangs for good (seen in `npm run bench` while sealing).
    const secretKey = new Uint8Array(randomBytes(32));
    return { secretKey, publicKey: nodeCrypto.x25519PublicKey(secretKey) };
  },
  x25519PublicKey(secretKey) {
    const { x } = createPublicKey(privateKey(boxPrivate, 'X25519', secretKey)).export({ format: 'jwk' });
    return new Uint8Array(Buffer.from(x!, 'base64url'));
  },
  x25519Forget(secretKey) {
    boxPrivate.delete(secretKey);
  },
  sha256(parts) {
    if (oneShotHash !== undefined) {
      const digest = oneShotHash('sha256', parts.length === 1 ? parts[0]! : Buffer.concat(parts), 'buffer');
      return new Uint8Array(digest.buffer, digest.byteOffset, digest.length);
    }
    const h = createHash('sha256');
    for (const p of parts) h.update(p);
    return new Uint8Array(h.digest());
  },
};

/** shared/'s base64 on Node's Buffer (shared/encoding/base64.ts NativeBase64). */
export const nodeBase64: NativeBase64 = {
  encode(bytes) {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  },
  decodeInto(text, out) {
    // Into the caller's array: Buffer.from(text, 'base64') may return a slice of Node's shared
    // pool, which a transfer to a worker or a `.buffer` read would take whole.
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength).write(text, 'base64');
  },
};

/** Plug {@link nodeCrypto} and {@link nodeBase64} into shared/ (idempotent): call once at the start of a Node program. */
export function useNodeCrypto(): void {
  useNativeCrypto(nodeCrypto);
  useNativeBase64(nodeBase64);
}
