/**
 * The consoles' app shell (issue 10): a service worker that keeps the consoles' own files (pages,
 * bundles, style sheet) so that a console reloaded while the relay is down still opens, unlocks
 * from this browser's sealed storage and shows "link down, reconnecting" instead of the browser's
 * error page. Served as `/console/sw.js`, so its scope is `/console/`.
 *
 * Network first: while the relay answers, every file comes from it (and the copy kept here is
 * refreshed), so a new version of the console is never held back by the cache. Only when the
 * relay cannot be reached, or takes longer than {@link NETWORK_TIMEOUT_MS}, is the kept copy
 * used. Nothing else is touched: the API (`/v1/…`) and the WebSocket always go to the network,
 * and nothing of what the consoles keep (keys, messages) is ever in this cache.
 */

/** The few parts of the service-worker scope used here (the project's TypeScript has the DOM lib only). */
interface ShellScope {
  readonly location: Location;
  readonly clients: { claim(): Promise<void> };
  skipWaiting(): Promise<void>;
  addEventListener(type: 'install' | 'activate', listener: (ev: ExtendableEventLike) => void): void;
  addEventListener(type: 'fetch', listener: (ev: FetchEventLike) => void): void;
}
interface ExtendableEventLike {
  waitUntil(p: Promise<unknown>): void;
}
interface FetchEventLike extends ExtendableEventLike {
  readonly request: Request;
  respondWith(r: Promise<Response>): void;
}

const worker = globalThis as unknown as ShellScope;

/** Bump when the list below changes: the old cache is then dropped at activation. */
const CACHE = 'hotline-console-shell-v1';
const SHELL: readonly string[] = [
  '/console/',
  '/console/operator/',
  '/console/auditor/',
  '/console/assets/operator.js',
  '/console/assets/auditor.js',
  '/console/assets/style.css',
];
/** A relay that neither answers nor refuses (a cut cable) is given this long before the kept copy is used. */
const NETWORK_TIMEOUT_MS = 4000;

worker.addEventListener('install', (ev) => {
  ev.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL))
      .then(() => worker.skipWaiting()),
  );
});

worker.addEventListener('activate', (ev) => {
  ev.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith('hotline-console-') && n !== CACHE).map((n) => caches.delete(n))))
      // Take the open consoles at once: the tab that registered the worker is covered by its first reload.
      .then(() => worker.clients.claim()),
  );
});

worker.addEventListener('fetch', (ev) => {
  const req = ev.request;
  const url = new URL(req.url);
  if (req.method !== 'GET' || url.origin !== worker.location.origin || !SHELL.includes(url.pathname)) return;
  ev.respondWith(networkFirst(req, url.pathname));
});

async function networkFirst(req: Request, path: string): Promise<Response> {
  const cache = await caches.open(CACHE);
  const network = fetch(req).then(async (res) => {
    if (res.ok) await cache.put(path, res.clone());
    return res;
  });
  // Settled here whichever wins the race below: a late failure is no unhandled rejection.
  network.catch(() => undefined);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const slow = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), NETWORK_TIMEOUT_MS)));
  try {
    const first = await Promise.race([network, slow]);
    if (first) return first;
  } catch {
    // Unreachable: the kept copy below.
  } finally {
    clearTimeout(timer);
  }
  const kept = await cache.match(path);
  if (kept) return kept;
  return network;
}
