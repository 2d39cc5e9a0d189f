import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startServer, type RunningServer } from '../../server/main.js';
import type { Clock } from '../../server/clock.js';
import type { AppOptions } from '../../server/app.js';
import { amendAgreement, createDeployment, tempDir, type Deployment } from '../helpers/deployment.js';
import { enrollDevice } from '../../shared/crypto/keys.js';
import type { AgreementLabels, CatalogueEntry, DeadlineTable, Precedence, Role } from '../../shared/protocol/schemas.js';
import { login } from '../helpers/ws-client.js';
import WebSocket from 'ws';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { next } from '../helpers/events.js';

/** Debian's Chromium, headless, nothing that reaches the network on its own. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

export const SCREENSHOT_DIR = 'test-results';

/**
 * The operator console cosigns on connecting; before the server has signed its first checkpoint
 * `GET /v1/audit/checkpoint/latest` answers 404 (HL_ERR_NOT_FOUND), which is no error.
 */
export const NO_CHECKPOINT_YET = /\/v1\/audit\/checkpoint\/latest$/;

export interface Harness {
  server: RunningServer;
  dep: Deployment;
  browser: Browser;
  /** Where each device's key file was written (`party/device` → path). */
  keyFiles: Record<string, string>;
  /** Where key files are written. */
  keyDir: string;
  /** The server's data directory. */
  dataDir: string;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** Deadlines in place of the defaults (e.g. a FLASH delivery deadline short enough to miss in a test). */
  deadlines?: Partial<DeadlineTable>;
  /** Security labels in the agreement (PROTOCOL.md "Security labels"). */
  labels?: AgreementLabels;
  /**
   * Parties whose root does NOT sign the agreement: the relay then runs with
   * `allowUnsignedAgreement` (development only), so that a console's own refusal can be tested.
   */
  unsignedBy?: readonly string[];
  /** The agreement's catalogue of pre-agreed messages (PROTOCOL.md "Catalogue"). */
  catalogue?: CatalogueEntry[];
  /** The relay's clock (e.g. a ManualClock, to move it by weeks beside the page's `context.clock`). */
  clock?: Clock;
  /** The relay's app options (e.g. heartbeats out of the way of a clock moved by weeks). */
  app?: AppOptions;
}

/** Debian's Chromium, headless (see CHROMIUM_ARGS), and the screenshot directory made. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) throw new Error(`Chromium not found at ${CHROMIUM_PATH}: apt-get install -y chromium`);
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  return browser;
}

/** A fresh deployment, its key files on disk, the server on 127.0.0.1:0, every device enrolled, and Chromium. */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  if (!existsSync(CHROMIUM_PATH)) throw new Error(`Chromium not found at ${CHROMIUM_PATH}: apt-get install -y chromium`);
  const made = await createDeployment();
  // The audit log signs checkpoints under the agreement's name, which must be a note key name
  // (no spaces); the shared test deployment's name has spaces.
  // Changed, so signed again by the roots (all of them unless told otherwise).
  const signers = Object.values(made.parties).filter((p) => !options.unsignedBy?.includes(p.party.id));
  const changes = {
    name: 'jp-cn.hotline.test',
    deadlines: { ...made.agreement.deadlines, ...options.deadlines },
    ...(options.labels ? { labels: options.labels } : {}),
    ...(options.catalogue ? { catalogue: options.catalogue } : {}),
  };
  const dep: Deployment = { ...made, agreement: await amendAgreement(made, changes, signers) };
  const allowUnsignedAgreement = options.unsignedBy !== undefined && options.unsignedBy.length > 0;
  const dir = tempDir('hotline-browser-');
  const keyFiles: Record<string, string> = {};
  for (const [key, secret] of Object.entries(dep.devices)) {
    const path = join(dir.path, `${key.replace('/', '-')}.key`);
    writeFileSync(path, JSON.stringify(secret, null, 2), { mode: 0o600 });
    keyFiles[key] = path;
  }
  const dataDir = join(dir.path, 'data');
  const server = await startServer({ agreement: dep.agreement, logSecret: dep.logSecret, dataDir, host: '127.0.0.1', port: 0, logLevel: allowUnsignedAgreement ? 'error' : 'warn', allowUnsignedAgreement, ...(options.clock ? { clock: options.clock } : {}), ...(options.app ? { app: options.app } : {}) });
  for (const secret of Object.values(dep.devices)) {
    const res = await fetch(`${server.url}/v1/directory/devices`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(secret.certificate),
    });
    if (res.status !== 201) throw new Error(`enrolment failed: HTTP ${res.status} ${await res.text()}`);
  }
  const browser = await launchChromium();
  const hx: Harness = {
    server,
    dep,
    browser,
    keyFiles,
    keyDir: dir.path,
    dataDir,
    async close() {
      await browser.close();
      await hx.server.close();
      dir.remove();
    },
  };
  return hx;
}

/**
 * Start the harness's server again after `hx.server.close()` (a relay restart): same data
 * directory, same agreement and log key, and the same port, so that the browser's origin (its
 * storage, its service worker) is the same one.
 */
export async function restartServer(hx: Harness): Promise<void> {
  const port = Number(new URL(hx.server.url).port);
  hx.server = await startServer({ agreement: hx.dep.agreement, logSecret: hx.dep.logSecret, dataDir: hx.dataDir, host: '127.0.0.1', port, logLevel: 'warn' });
}

/**
 * A page that records its errors: uncaught exceptions, console errors (CSP violations among them)
 * and failed requests, except those matching `expectedFailures` (e.g. probing an API the server
 * may not offer yet). The browser's own "Failed to load resource" line is left to the response check.
 */
export async function openPage(context: BrowserContext, url: string, expectedFailures: readonly RegExp[] = []): Promise<{ page: Page; errors: string[] }> {
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(`console: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !expectedFailures.some((re) => re.test(r.url()))) errors.push(`HTTP ${r.status()} ${r.url()}`);
  });
  await page.goto(url);
  return { page, errors };
}

/** Import a key file through the console's form and wait until the console is past the lock screen. */
export async function importKey(page: Page, keyFile: string, passphrase: string): Promise<void> {
  await page.setInputFiles('#key-file', keyFile);
  await page.fill('#new-passphrase', passphrase);
  await page.fill('#new-passphrase-again', passphrase);
  await page.click('#import');
}

/** Unlock a console page whose key is already stored in this browser, and wait for its link. */
export async function unlockConsole(page: Page, passphrase: string): Promise<void> {
  await page.fill('#passphrase', passphrase);
  await page.click('#unlock');
  await page.waitForSelector('#link-state[data-connected="true"]');
}

/** A fresh browser context with one operator console unlocked (its key imported) and connected. */
export async function connectConsole(hx: Harness, locale: string, keyFile: string, passphrase: string): Promise<{ context: BrowserContext; page: Page; errors: string[] }> {
  const context = await hx.browser.newContext({ locale });
  const { page, errors } = await openPage(context, `${hx.server.url}/console/operator/`, [NO_CHECKPOINT_YET]);
  await importKey(page, keyFile, passphrase);
  await page.waitForSelector('#link-state[data-connected="true"]');
  return { context, page, errors };
}

/** A started Node HotlineClient for `party/device` of the harness's deployment (state in memory): a peer that floods a console. */
export async function startNodeClient(hx: Harness, key: string): Promise<HotlineClient> {
  const client = new HotlineClient({ serverUrl: hx.server.url, agreement: hx.dep.agreement, device: hx.dep.devices[key]!, storage: new MemoryStorage(), WebSocket });
  await client.start();
  return client;
}

/** Everything the page's origin keeps: every IndexedDB value and every localStorage item, as one string. */
export async function dumpStorage(page: Page): Promise<string> {
  return page.evaluate(async () => {
    const out: string[] = [];
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i)!;
      out.push(k, localStorage.getItem(k) ?? '');
    }
    for (const info of await indexedDB.databases()) {
      if (!info.name) continue;
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        const req = indexedDB.open(info.name!);
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
      for (const storeName of Array.from(db.objectStoreNames)) {
        const tx = db.transaction(storeName, 'readonly');
        const store = tx.objectStore(storeName);
        const [keys, values] = await Promise.all(
          [store.getAllKeys(), store.getAll()].map(
            (req) => new Promise<unknown[]>((resolve, reject) => {
              req.onsuccess = () => resolve(req.result as unknown[]);
              req.onerror = () => reject(req.error);
            }),
          ),
        );
        out.push(...keys!.map(String), ...values!.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))));
      }
      db.close();
    }
    return out.join('\n');
  });
}

/** One value of the console's key-value store (IndexedDB `hotline-console`, store `kv`), as stored. */
export function storedValue(page: Page, key: string): Promise<string | undefined> {
  return page.evaluate(
    (k) =>
      new Promise<string | undefined>((resolve, reject) => {
        const open = indexedDB.open('hotline-console');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const req = open.result.transaction('kv', 'readonly').objectStore('kv').get(k);
          req.onerror = () => reject(req.error);
          req.onsuccess = () => {
            open.result.close();
            resolve(req.result as string | undefined);
          };
        };
      }),
    key,
  );
}

/** Forms in which a secret key could sit in clear: base64, hex, raw bytes as latin-1, a JSON byte array. */
export function secretForms(base64Secrets: readonly string[]): string[] {
  const out: string[] = [];
  for (const b64 of base64Secrets) {
    const bytes = Buffer.from(b64, 'base64');
    out.push(b64, bytes.toString('hex'), bytes.toString('latin1'), Array.from(bytes).join(','));
  }
  return out;
}

/**
 * Enrol one more device of `party` now (as an administrator would, mid-watch): its certificate is
 * posted to the directory and its key file written. Returns the key file's path.
 */
export async function enrolDevice(hx: Harness, party: string, device: string, role: Role = 'operator'): Promise<string> {
  const secret = await enrollDevice(hx.dep.parties[party]!, { device, role, now: Date.now() });
  const res = await fetch(`${hx.server.url}/v1/directory/devices`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(secret.certificate),
  });
  if (res.status !== 201) throw new Error(`enrolment failed: HTTP ${res.status} ${await res.text()}`);
  const key = `${party}/${device}`;
  const path = join(hx.keyDir, `${party}-${device}.key`);
  writeFileSync(path, JSON.stringify(secret, null, 2), { mode: 0o600 });
  hx.dep.devices[key] = secret;
  hx.keyFiles[key] = path;
  return path;
}

/** An auditor's token (Japan's), for reading the audit API from the test. */
export function auditorToken(hx: Harness): Promise<string> {
  return login(hx.server.url, hx.dep.devices['jp-mod/audit1']!, hx.dep.agreement);
}

/** Ask the server to sign a checkpoint now; returns its size. */
export async function signCheckpoint(hx: Harness, token: string): Promise<number> {
  const res = await fetch(`${hx.server.url}/v1/audit/checkpoints`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}' });
  if (res.status !== 200 && res.status !== 201) throw new Error(`checkpoint: HTTP ${res.status} ${await res.text()}`);
  return ((await res.json()) as { size: number }).size;
}

/** The audit log's entries (parsed) and checkpoint notes, from the server's export. */
export async function auditExport(hx: Harness, token: string): Promise<{ entries: Record<string, unknown>[]; checkpoints: string[] }> {
  const res = await fetch(`${hx.server.url}/v1/audit/export`, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`export: HTTP ${res.status}`);
  const exp = (await res.json()) as { entries: string[]; checkpoints: string[] };
  return { entries: exp.entries.map((e) => JSON.parse(e) as Record<string, unknown>), checkpoints: exp.checkpoints };
}

/** How many `login` entries the audit log holds for one device. */
export async function loginCount(hx: Harness, token: string, party: string, device: string): Promise<number> {
  const { entries } = await auditExport(hx, token);
  return entries.filter((e) => e.type === 'login' && e.party === party && e.device === device).length;
}

/** One message from Japan (FLASH unless told), delivered and acknowledged by China, through two Node clients; returns its id. */
export async function exchangeMessage(hx: Harness, precedence: Precedence = 'FLASH', options: { exercise?: boolean } = {}): Promise<string> {
  const [jp, cn] = await Promise.all([startNodeClient(hx, 'jp-mod/op1'), startNodeClient(hx, 'cn-mnd/op1')]);
  try {
    // Matched by id, not the first 'message': delivery is at least once, and an earlier test's
    // message can come again first (it failed once in CI after acks began to ride the next commit).
    const arrivedIds = new Set<string>();
    const waiting = new Map<string, () => void>();
    cn.on('message', (m) => {
      arrivedIds.add(m.header.id);
      waiting.get(m.header.id)?.();
    });
    const acked = next(jp, 'receipt', (r) => r.receipt.receipt.kind === 'acknowledged' && r.verified);
    // An exercise unless told otherwise; the deadline report counts exercises apart from traffic.
    const { id } = await jp.send({ to: 'cn-mnd', precedence, subject: '演習', body: '至急', ...(options.exercise === false ? {} : { exercise: true }) });
    await new Promise<void>((resolve) => (arrivedIds.has(id) ? resolve() : waiting.set(id, resolve)));
    await cn.acknowledge(id);
    await acked;
    return id;
  } finally {
    await Promise.all([jp.stop(), cn.stop()]);
  }
}
