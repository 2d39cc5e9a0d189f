import nacl from 'tweetnacl';
import { HotlineError } from '../../shared/errors.js';
import { fromBase64, fromUtf8, toBase64, utf8 } from '../../shared/encoding/base64.js';
import { parseDeviceSecret } from '../../shared/crypto/keys.js';
import { parseJson } from '../../shared/protocol/validate.js';
import type { DeviceSecretFile, Role } from '../../shared/protocol/schemas.js';
import type { KeyValueStore } from '../storage/kv.js';

/**
 * The browser consoles' key store. A device key file is imported once and kept encrypted under a
 * passphrase: PBKDF2-SHA-256 (WebCrypto, ≥ 600,000 iterations as OWASP recommends for it, random
 * 16-byte salt) gives a 32-byte key, and tweetnacl's secretbox (XSalsa20-Poly1305) seals the file.
 * The clear key file never reaches storage or the network. The sealed box also holds a random
 * data key with which everything else the console stores (client state, message text) is sealed.
 *
 * @example
 * const store = new KeyStore(await openIndexedDb(), 'operator');
 * await store.importKeyFile(await file.text(), passphrase);
 * const { device, data } = await store.unlock(passphrase); // HL_ERR_KEYSTORE_PASSPHRASE if wrong
 */

/** The PBKDF2 work factor; records asking for less are refused (a downgrade by whoever can write storage). */
export const PBKDF2_ITERATIONS = 600_000;
export const MIN_PASSPHRASE_LENGTH = 8;

/** What is stored, in clear: only public facts (who the key belongs to) and the sealed box. */
export interface KeyStoreRecord {
  type: 'hotline-console-key';
  v: 1;
  label: { party: string; device: string; role: Role };
  kdf: { name: 'PBKDF2-SHA-256'; iterations: number; salt: string };
  nonce: string;
  box: string;
}

/** What the box holds. */
interface SealedContents {
  device: DeviceSecretFile;
  dataKey: string;
}

/** Seals and opens JSON values with the data key (secretbox, a fresh random nonce each time). */
export class DataCipher {
  readonly #key: Uint8Array;

  constructor(key: Uint8Array) {
    if (key.length !== nacl.secretbox.keyLength) throw new HotlineError('HL_ERR_KEY_INVALID', 'data key must be 32 bytes');
    this.#key = key;
  }

  seal(value: unknown): string {
    const nonce = nacl.randomBytes(nacl.secretbox.nonceLength);
    const box = nacl.secretbox(utf8(JSON.stringify(value)), nonce, this.#key);
    return JSON.stringify({ v: 1, nonce: toBase64(nonce), box: toBase64(box) });
  }

  /** Open a sealed value; anything altered or sealed under another key is HL_ERR_KEYSTORE_PASSPHRASE. */
  open(text: string): unknown {
    const rec = parseJson(text) as { v?: unknown; nonce?: unknown; box?: unknown };
    if (rec.v !== 1 || typeof rec.nonce !== 'string' || typeof rec.box !== 'string') {
      throw new HotlineError('HL_ERR_KEYSTORE_PASSPHRASE', 'stored data is not sealed by this console');
    }
    const clear = nacl.secretbox.open(fromBase64(rec.box), fromBase64(rec.nonce, nacl.secretbox.nonceLength), this.#key);
    if (!clear) throw new HotlineError('HL_ERR_KEYSTORE_PASSPHRASE', 'stored data does not open with this key');
    return parseJson(fromUtf8(clear));
  }
}

export interface UnlockedKey {
  device: DeviceSecretFile;
  /** Seals the console's other stored data. */
  data: DataCipher;
}

/** PBKDF2-SHA-256 through WebCrypto (Node ≥ 20 and every current browser have it). */
export async function derivePassphraseKey(passphrase: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  const material = await crypto.subtle.importKey('raw', utf8(passphrase.normalize('NFC')) as BufferSource, 'PBKDF2', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt: salt as BufferSource, iterations }, material, 256);
  return new Uint8Array(bits);
}

export class KeyStore {
  readonly #kv: KeyValueStore;
  readonly #name: string;

  /** `slot` keeps the operator's and the auditor's keys apart on one origin. */
  constructor(kv: KeyValueStore, slot: string) {
    this.#kv = kv;
    this.#name = `keystore/${slot}`;
  }

  /** The stored record's public label, or undefined when no key was imported. */
  async label(): Promise<KeyStoreRecord['label'] | undefined> {
    return (await this.#record())?.label;
  }

  /**
   * Validate a device key file (its secrets must match its certificate) and store it sealed under
   * `passphrase`, replacing any key in this slot. Returns the unlocked key.
   */
  async importKeyFile(text: string, passphrase: string, options: { roles?: readonly Role[] } = {}): Promise<UnlockedKey> {
    if (passphrase.normalize('NFC').length < MIN_PASSPHRASE_LENGTH) {
      throw new HotlineError('HL_ERR_KEYSTORE_PASSPHRASE', `the passphrase must have at least ${MIN_PASSPHRASE_LENGTH} characters`);
    }
    let device: DeviceSecretFile;
    try {
      device = parseDeviceSecret(parseJson(text));
    } catch (cause) {
      throw new HotlineError('HL_ERR_KEY_INVALID', 'this is not a Hotline device key file', { cause });
    }
    const c = device.certificate.cert;
    if (options.roles && !options.roles.includes(c.role)) {
      throw new HotlineError('HL_ERR_CERT_WRONG_ROLE', `${c.party}/${c.device} is an ${c.role} key; this console needs ${options.roles.join(' or ')}`);
    }
    const salt = nacl.randomBytes(16);
    const key = await derivePassphraseKey(passphrase, salt, PBKDF2_ITERATIONS);
    const dataKey = nacl.randomBytes(32);
    const nonce = nacl.randomBytes(nacl.secretbox.nonceLength);
    const contents: SealedContents = { device, dataKey: toBase64(dataKey) };
    const box = nacl.secretbox(utf8(JSON.stringify(contents)), nonce, key);
    const record: KeyStoreRecord = {
      type: 'hotline-console-key',
      v: 1,
      label: { party: c.party, device: c.device, role: c.role },
      kdf: { name: 'PBKDF2-SHA-256', iterations: PBKDF2_ITERATIONS, salt: toBase64(salt) },
      nonce: toBase64(nonce),
      box: toBase64(box),
    };
    await this.#kv.set(this.#name, JSON.stringify(record));
    return { device, data: new DataCipher(dataKey) };
  }

  /** Open the stored key with the passphrase; wrong passphrase (or altered record) → HL_ERR_KEYSTORE_PASSPHRASE. */
  async unlock(passphrase: string): Promise<UnlockedKey> {
    const record = await this.#record();
    if (!record) throw new HotlineError('HL_ERR_USAGE', 'no key has been imported in this browser yet');
    const key = await derivePassphraseKey(passphrase, fromBase64(record.kdf.salt), record.kdf.iterations);
    const clear = nacl.secretbox.open(fromBase64(record.box), fromBase64(record.nonce, nacl.secretbox.nonceLength), key);
    if (!clear) throw new HotlineError('HL_ERR_KEYSTORE_PASSPHRASE', 'wrong passphrase');
    const contents = parseJson(fromUtf8(clear)) as SealedContents;
    const device = parseDeviceSecret(contents.device);
    const c = device.certificate.cert;
    if (c.party !== record.label.party || c.device !== record.label.device || c.role !== record.label.role) {
      throw new HotlineError('HL_ERR_KEY_INVALID', 'the stored label does not match the sealed key');
    }
    return { device, data: new DataCipher(fromBase64(contents.dataKey, 32)) };
  }

  /** Delete the stored key (the device key file itself is needed to import it again). */
  async forget(): Promise<void> {
    await this.#kv.delete(this.#name);
  }

  async #record(): Promise<KeyStoreRecord | undefined> {
    const text = await this.#kv.get(this.#name);
    if (text === undefined) return undefined;
    const r = parseJson(text) as Partial<KeyStoreRecord>;
    if (
      r.type !== 'hotline-console-key' ||
      r.v !== 1 ||
      !r.label ||
      r.kdf?.name !== 'PBKDF2-SHA-256' ||
      typeof r.kdf.salt !== 'string' ||
      typeof r.nonce !== 'string' ||
      typeof r.box !== 'string'
    ) {
      throw new HotlineError('HL_ERR_KEY_INVALID', 'the stored key record is not one this console wrote');
    }
    if (!Number.isSafeInteger(r.kdf.iterations) || r.kdf.iterations < PBKDF2_ITERATIONS) {
      throw new HotlineError('HL_ERR_KEY_INVALID', `the stored key record asks for ${String(r.kdf.iterations)} PBKDF2 iterations, fewer than ${PBKDF2_ITERATIONS}`);
    }
    return r as KeyStoreRecord;
  }
}
