import type { Agreement, Role } from '../../../shared/protocol/schemas.js';
import { HotlineClient, type HotlineClientOptions, type WebSocketConstructorLike } from '../../hotline-client.js';
import { BrowserStorage } from '../../storage/browser-storage.js';
import { KeyStore, type UnlockedKey } from '../key-store.js';
import { openIndexedDb, type KeyValueStore, type RecordStore } from '../../storage/kv.js';
import { h, replace } from './dom.js';
import { initLanguage, onLanguageChange, type MessageKey } from './i18n.js';
import { fatalView, pageHeader, pinAgreement, SealedRecord } from './shell.js';
import { showUnlock } from './unlock-view.js';
import { registerAppShell } from './app-shell.js';

/** What a console runs once its device key is unlocked; it owns the page from then on. */
export type RunConsole = (root: HTMLElement, kv: KeyValueStore & RecordStore, unlocked: UnlockedKey) => Promise<void>;

/**
 * The start of both consoles: the interface language, the lock screen (redrawn when the language
 * changes), then `run` with the unlocked key; an error `run` cannot recover from (agreement
 * mismatch, certificate refused) becomes a full-page error.
 *
 * @example
 * void bootConsole('auditor', 'app_auditor', runConsole);
 */
export async function bootConsole(role: Extract<Role, 'operator' | 'auditor'>, titleKey: MessageKey, run: RunConsole): Promise<void> {
  initLanguage();
  registerAppShell();
  const root = document.getElementById('app')!;
  const kv = await openIndexedDb();
  const store = new KeyStore(kv, role);
  const showLock = () => {
    const body = h('main', {});
    replace(root, pageHeader(titleKey, null), body);
    return body;
  };
  const start = async (unlocked: UnlockedKey) => {
    offLang();
    try {
      await run(root, kv, unlocked);
    } catch (err) {
      replace(root, pageHeader(titleKey, null), fatalView(err));
    }
  };
  const offLang = onLanguageChange(() => void showUnlock(showLock(), store, [role]).then(start));
  void showUnlock(showLock(), store, [role]).then(start);
}

/** The unlocked device's session: its sealed console data, the pinned agreement, the client. */
export interface ConsoleSession<T> {
  data: SealedRecord<T>;
  agreement: Agreement;
  storage: BrowserStorage;
  client: HotlineClient;
}

export interface OpenSessionOptions<T> {
  /** The console data of a device seen for the first time. */
  initial: () => T;
  /** What of the data is sealed in its record (see {@link SealedRecord.open}). */
  stored?: (value: T) => unknown;
  /** The client's options beyond the server, agreement, device and storage, given the data. */
  client?: (data: SealedRecord<T>) => Partial<HotlineClientOptions>;
}

/**
 * Open the console data of the unlocked device (`console-data/party/device`), pin the agreement
 * in it (see {@link pinAgreement}) and make the client over this browser's storage; the client
 * is not started.
 */
export async function openSession<T extends { agreement?: Agreement }>(kv: KeyValueStore & RecordStore, unlocked: UnlockedKey, options: OpenSessionOptions<T>): Promise<ConsoleSession<T>> {
  const device = unlocked.device;
  const c = device.certificate.cert;
  const data = await SealedRecord.open<T>(kv, unlocked.data, `console-data/${c.party}/${c.device}`, options.initial, options.stored);
  const agreement = await pinAgreement(data.value.agreement, device, Date.now());
  if (!data.value.agreement) await data.save((d) => (d.agreement = agreement));
  const storage = new BrowserStorage(kv, unlocked.data);
  const client = new HotlineClient({
    serverUrl: location.origin,
    agreement,
    device,
    storage,
    WebSocket: WebSocket as unknown as WebSocketConstructorLike,
    ...options.client?.(data),
  });
  return { data, agreement, storage, client };
}
