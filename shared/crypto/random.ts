import nacl from 'tweetnacl';
import { toHex } from '../encoding/base64.js';

/** Cryptographically secure random bytes (WebCrypto getRandomValues / Node crypto via tweetnacl). */
export function randomBytes(n: number): Uint8Array {
  return nacl.randomBytes(n);
}

/** A random 128-bit identifier as 32 lowercase hex characters (message ids, nonces). */
export function randomId(): string {
  return toHex(randomBytes(16));
}
