import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { nativeCrypto } from './native.js';
import { concatBytes, toHex, utf8 } from '../encoding/base64.js';

/**
 * SHA-256, synchronous in Node and in the browser (the native port where plugged in, @noble/hashes
 * elsewhere).
 *
 * @example
 * toHex(sha256(utf8('abc'))) // 'ba7816bf…'
 */
export function sha256(...parts: Uint8Array[]): Uint8Array {
  const native = nativeCrypto();
  return native ? native.sha256(parts) : nobleSha256(parts.length === 1 ? parts[0]! : concatBytes(...parts));
}

/** Hex SHA-256 of a UTF-8 string or bytes. */
export function sha256Hex(data: Uint8Array | string): string {
  return toHex(sha256(typeof data === 'string' ? utf8(data) : data));
}
