import { randomBytes, scryptSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import nacl from 'tweetnacl';
import { HotlineError } from '../../shared/errors.js';
import { fromBase64, fromUtf8, toBase64, utf8 } from '../../shared/encoding/base64.js';
import type { Io } from './common.js';

/**
 * Key files at rest (README "Keys at rest", PROTOCOL.md "Key files sealed with a passphrase"): a
 * party root file or a device key file may be sealed with a passphrase, as the browser consoles
 * seal their keys. scrypt derives a 32-byte key from the passphrase; NaCl secretbox
 * (XSalsa20-Poly1305) seals the whole plain file (its JSON) under it. The public part stays
 * readable beside it (the party's public part, or the device's certificate), so that `device
 * register`, `device revoke` and `agreement create` need no passphrase.
 */
export const SEALED_KEY_TYPE = 'hotline-sealed-key';

export interface SealedKeyFile {
  type: typeof SEALED_KEY_TYPE;
  v: 1;
  /** The `type` of the plain file inside. */
  contains: 'hotline-party-secret' | 'hotline-device';
  party?: unknown;
  certificate?: unknown;
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  nonce: string;
  box: string;
}

/** scrypt cost: N = 2^17, r = 8 (128 MiB, a few hundred ms), as recommended for files at rest. */
const KDF = { N: 1 << 17, r: 8, p: 1 } as const;

function derive(passphrase: string, kdf: SealedKeyFile['kdf']): Uint8Array {
  const salt = fromBase64(kdf.salt, 16);
  return scryptSync(passphrase.normalize('NFC'), salt, 32, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * kdf.N * kdf.r + (1 << 20) });
}

/** Seal a plain party root or device key file. */
export function sealKeyFile(plain: { type: 'hotline-party-secret'; party: unknown } | { type: 'hotline-device'; certificate: unknown }, passphrase: string): SealedKeyFile {
  const kdf = { name: 'scrypt' as const, ...KDF, salt: toBase64(randomBytes(16)) };
  const nonce = randomBytes(nacl.secretbox.nonceLength);
  const box = nacl.secretbox(utf8(JSON.stringify(plain)), nonce, derive(passphrase, kdf));
  return {
    type: SEALED_KEY_TYPE,
    v: 1,
    contains: plain.type,
    ...(plain.type === 'hotline-party-secret' ? { party: plain.party } : { certificate: plain.certificate }),
    kdf,
    nonce: toBase64(nonce),
    box: toBase64(box),
  };
}

export function isSealedKeyFile(value: unknown): value is SealedKeyFile {
  return typeof value === 'object' && value !== null && (value as { type?: unknown }).type === SEALED_KEY_TYPE;
}

/** The passphrase from --passphrase-file, HOTLINE_PASSPHRASE_FILE or HOTLINE_PASSPHRASE, if any. */
export function passphraseOf(io: Io): string | undefined {
  const file = io.passphraseFile ?? (io.env.HOTLINE_PASSPHRASE_FILE || undefined);
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (cause) {
      throw new HotlineError('HL_ERR_USAGE', `cannot read the passphrase file ${file} (${(cause as NodeJS.ErrnoException).code ?? 'error'})`, { cause });
    }
    // The first line, without its line ending: `echo … > file` works.
    const first = text.split(/\r?\n/)[0] ?? '';
    if (first === '') throw new HotlineError('HL_ERR_USAGE', `the passphrase file ${file} is empty`);
    return first;
  }
  return io.env.HOTLINE_PASSPHRASE || undefined;
}

/** Open a sealed key file with the passphrase the command was given; a plain file is returned as it is. */
export function unsealKeyFile(path: string, value: unknown, io: Io): unknown {
  if (!isSealedKeyFile(value)) return value;
  const passphrase = passphraseOf(io);
  if (passphrase === undefined) {
    throw new HotlineError('HL_ERR_USAGE', `${path} is sealed with a passphrase: give --passphrase-file FILE, or set HOTLINE_PASSPHRASE_FILE or HOTLINE_PASSPHRASE`);
  }
  let opened: Uint8Array | null;
  try {
    if (value.kdf?.name !== 'scrypt') throw new Error('unknown kdf');
    opened = nacl.secretbox.open(fromBase64(value.box), fromBase64(value.nonce, nacl.secretbox.nonceLength), derive(passphrase, value.kdf));
  } catch {
    opened = null;
  }
  if (opened === null) throw new HotlineError('HL_ERR_KEY_PASSPHRASE', `${path}: wrong passphrase (or the file is damaged)`);
  return JSON.parse(fromUtf8(opened)) as unknown;
}
