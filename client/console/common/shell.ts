import { errorKey } from './error-text.js';
import { HotlineError } from '../../../shared/errors.js';
import { agreementHash, parseAgreement, verifyDeviceCertificate } from '../../../shared/crypto/keys.js';
import { verifyAgreementSignatures } from '../../../shared/crypto/agreement-signatures.js';
import type { Agreement, DeviceSecretFile } from '../../../shared/protocol/schemas.js';
import type { DataCipher } from '../key-store.js';
import type { KeyValueStore, RecordStore, RecordWrite } from '../../storage/kv.js';
import { h } from './dom.js';
import { LANGUAGES, language, setLanguage, t, type Language, type MessageKey } from './i18n.js';

/** The page header: title, a slot for status, the language picker and the lock button. */
export function pageHeader(titleKey: MessageKey, status: HTMLElement | null, onLock?: () => void): HTMLElement {
  const picker = h('select', { id: 'language', 'aria-label': t('language') });
  for (const [code, name] of Object.entries(LANGUAGES)) {
    const opt = h('option', { value: code }, name);
    if (code === language()) opt.selected = true;
    picker.appendChild(opt);
  }
  picker.addEventListener('change', () => setLanguage(picker.value as Language));
  return h(
    'header',
    { class: 'top' },
    h('h1', {}, t(titleKey)),
    status,
    h('div', { class: 'tools' }, h('label', {}, t('language'), ' ', picker), onLock ? h('button', { type: 'button', id: 'lock', class: 'secondary', onclick: onLock }, t('lock')) : null),
  );
}

/**
 * Sealed per-device console data (message text, confirmations, the pinned agreement) in the
 * key-value store, written through one chain so that writes never interleave.
 */
export class SealedRecord<T> {
  readonly #kv: KeyValueStore;
  readonly #cipher: DataCipher;
  readonly #key: string;
  #chain: Promise<unknown> = Promise.resolve();
  value: T;

  private constructor(kv: KeyValueStore, cipher: DataCipher, key: string, value: T) {
    this.#kv = kv;
    this.#cipher = cipher;
    this.#key = key;
    this.value = value;
  }

  #stored: (value: T) => unknown = (v) => v;

  /** `stored` picks what is sealed of the value (parts kept elsewhere are left out). */
  static async open<T>(kv: KeyValueStore, cipher: DataCipher, key: string, initial: () => T, stored?: (value: T) => unknown): Promise<SealedRecord<T>> {
    const text = await kv.get(key);
    const record = new SealedRecord(kv, cipher, key, text === undefined ? initial() : (cipher.open(text) as T));
    if (stored) record.#stored = stored;
    return record;
  }

  #channel: BroadcastChannel | undefined;

  /** Change the value in memory now and store it sealed (and tell the other tabs, see {@link share}). */
  save(mutate: (value: T) => void): Promise<void> {
    mutate(this.value);
    const snapshot = this.#cipher.seal(this.#stored(this.value));
    const run = this.#chain.then(() => this.#kv.set(this.#key, snapshot));
    this.#chain = run.catch(() => undefined);
    void run.then(() => this.#channel?.postMessage(snapshot), () => undefined);
    return run;
  }

  /**
   * Keep this value the same as in the other tabs of this console: each save here is posted to
   * them, sealed as it is stored (nothing in clear crosses the channel), and a save posted by
   * another tab becomes this value through `merge` (which puts back the parts `stored` left out),
   * then `changed` is called.
   */
  share(merge: (current: T, stored: unknown) => T, changed: () => void): void {
    this.#channel = openChannel(`hotline-sealed/${this.#key}`, (text) => {
      this.value = merge(this.value, this.#cipher.open(text));
      changed();
    });
  }
}

/** A BroadcastChannel whose string messages go to `receive`; undefined where there is none. */
function openChannel(name: string, receive: (text: string) => void): BroadcastChannel | undefined {
  const Channel = (globalThis as { BroadcastChannel?: typeof BroadcastChannel }).BroadcastChannel;
  if (!Channel) return undefined;
  const channel = new Channel(name);
  channel.addEventListener('message', (ev: MessageEvent<unknown>) => {
    if (typeof ev.data !== 'string') return;
    try {
      receive(ev.data);
    } catch {
      // Not sealed under this device's data key (another console's tab): not ours.
    }
  });
  return channel;
}

/**
 * Values by id, each sealed in a record of its own (IndexedDB's `console-notes` store), so that
 * saving one costs its own size. Records are stored under random keys: the ids (message ids) are
 * sealed inside with the value, and tabs never need to agree on a key.
 *
 * @example
 * const notes = await SealedNotes.open<MessageNote>(kv, unlocked.data, 'console/jp-mod/op1');
 * await notes.save(id, { acceptedAt });
 */
export class SealedNotes<V> {
  readonly #kv: RecordStore;
  readonly #cipher: DataCipher;
  readonly #scope: string;
  readonly #keys = new Map<string, string>();
  #chain: Promise<unknown> = Promise.resolve();
  readonly values = new Map<string, V>();

  private constructor(kv: RecordStore, cipher: DataCipher, scope: string) {
    this.#kv = kv;
    this.#cipher = cipher;
    this.#scope = scope;
  }

  static async open<V>(kv: RecordStore, cipher: DataCipher, scope: string): Promise<SealedNotes<V>> {
    const notes = new SealedNotes<V>(kv, cipher, scope);
    for (const [key, text] of await kv.records(scope, 'console-notes')) {
      const { id, v } = cipher.open(text) as { id: string; v: V };
      notes.values.set(id, v);
      notes.#keys.set(id, String(key));
    }
    return notes;
  }

  #channel: BroadcastChannel | undefined;

  /** Set the values of some ids in memory now and store them sealed, in one transaction. */
  save(entries: readonly [string, V][]): Promise<void> {
    const writes: RecordWrite[] = entries.map(([id, v]) => {
      this.values.set(id, v);
      let key = this.#keys.get(id);
      if (key === undefined) this.#keys.set(id, (key = crypto.randomUUID()));
      return { store: 'console-notes', key, value: this.#cipher.seal({ id, v }) };
    });
    const run = this.#chain.then(() => this.#kv.writeRecords(this.#scope, writes));
    this.#chain = run.catch(() => undefined);
    void run.then(() => this.#channel?.postMessage(JSON.stringify(writes.map((w) => [w.key, w.value]))), () => undefined);
    return run;
  }

  /**
   * Keep these values the same as in the other tabs of this console: what a tab saves is posted
   * to the others, sealed as stored, and `changed` is called here with the ids it set.
   */
  share(changed: (ids: string[]) => void): void {
    this.#channel = openChannel(`hotline-notes/${this.#scope}`, (text) => {
      const ids: string[] = [];
      for (const [key, sealed] of JSON.parse(text) as [string, string][]) {
        const { id, v } = this.#cipher.open(sealed) as { id: string; v: V };
        this.values.set(id, v);
        this.#keys.set(id, key);
        ids.push(id);
      }
      changed(ids);
    });
  }
}

/**
 * The agreement this console uses, pinned by its signatures rather than on first use: the server's
 * copy is taken only when every party's root has signed it (HL_ERR_AGREEMENT_UNSIGNED,
 * HL_ERR_AGREEMENT_BAD_SIGNATURE) and this device's certificate chains to it, so its own party's
 * root, the one that certified this device, has signed that very agreement; a relay cannot make one
 * up. Once pinned, a different server copy is refused with HL_ERR_AGREEMENT_MISMATCH. The pinned
 * copy is sealed, so no one without the passphrase can swap it in storage.
 */
export async function pinAgreement(pinned: Agreement | undefined, device: DeviceSecretFile, now: number): Promise<Agreement> {
  let res: Response;
  try {
    res = await fetch('/v1/agreement');
    if (!res.ok) throw new HotlineError('HL_ERR_CLIENT_UNREACHABLE', `GET /v1/agreement: HTTP ${res.status}`);
  } catch (cause) {
    if (!pinned) throw new HotlineError('HL_ERR_CLIENT_UNREACHABLE', 'the server cannot be reached', { cause });
    // The relay is down (a console reloaded from its service worker's cache, issue 10): go on
    // with the pinned copy, its chain to this device checked again; the client compares it with
    // the server's copy before every connection, so a mismatch still stops it once the relay is back.
    return checkPinnable(parseAgreement(pinned), device, now);
  }
  const remote = parseAgreement(await res.json());
  if (pinned && agreementHash(parseAgreement(pinned)) !== agreementHash(remote)) {
    throw new HotlineError('HL_ERR_AGREEMENT_MISMATCH', 'the server runs another agreement than the one this console pinned');
  }
  return checkPinnable(remote, device, now);
}

/** Signed by every party's root, and this device's certificate chains to it. */
async function checkPinnable(agreement: Agreement, device: DeviceSecretFile, now: number): Promise<Agreement> {
  await verifyAgreementSignatures(agreement);
  await verifyDeviceCertificate(agreement, device.certificate, { now });
  return agreement;
}

/** A full-page error (agreement mismatch, certificate refused): nothing else can go on. */
export function fatalView(err: unknown): HTMLElement {
  const code = err instanceof HotlineError ? err.code : 'HL_ERR_INTERNAL';
  // Said in the interface language; the code is kept for support, off the screen.
  return h('div', { class: 'card fatal', role: 'alert', id: 'fatal', 'data-code': code }, h('h2', {}, t('fatal_title')), h('p', {}, t(errorKey(code))));
}
