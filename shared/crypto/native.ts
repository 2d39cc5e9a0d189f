/**
 * The port for a platform's native crypto: the hot paths (Ed25519, X25519, SHA-256) that Node's
 * OpenSSL does about 75× faster than the pure-JS code. shared/ must run in Node and in browsers and
 * so imports no Node module; a Node program plugs its implementation in at start
 * (server/node-crypto.ts, with `useNativeCrypto(nodeCrypto)`). Without one, shared/ uses WebCrypto
 * and tweetnacl / @noble/hashes, as in a browser. Every implementation gives the same bytes: only
 * the speed differs.
 */
export interface NativeCrypto {
  /** The 64-byte Ed25519 signature of `message` by a 32-byte seed. */
  ed25519Sign(seed: Uint8Array, message: Uint8Array): Uint8Array;
  /** Whether the signature holds; false (never a throw) for malformed keys or signatures too. */
  ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean;
  /** The raw X25519 shared secret; throws where the platform refuses the point (low order). */
  x25519(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array;
  /** A fresh X25519 key pair. */
  x25519KeyPair(): { publicKey: Uint8Array; secretKey: Uint8Array };
  /** The X25519 public key of a secret key. */
  x25519PublicKey(secretKey: Uint8Array): Uint8Array;
  /** Drop whatever the implementation keeps of this secret (a per-message ephemeral key). */
  x25519Forget(secretKey: Uint8Array): void;
  /** SHA-256 of the concatenation of `parts`. */
  sha256(parts: readonly Uint8Array[]): Uint8Array;
}

let installed: NativeCrypto | undefined;

/** Plug in the platform's native crypto (once, at start; later calls replace it). */
export function useNativeCrypto(impl: NativeCrypto | undefined): void {
  installed = impl;
}

/** The native crypto plugged in, or undefined (browsers, and Node programs that did not). */
export function nativeCrypto(): NativeCrypto | undefined {
  return installed;
}
