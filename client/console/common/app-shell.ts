/**
 * Register the consoles' app shell (client/console/shell-worker/sw.ts, served as `/console/sw.js`),
 * so that a console reloaded while the relay is down opens from the files kept in this browser.
 * Browsers offer service workers only in a secure context (HTTPS, or 127.0.0.1 / localhost): over
 * plain HTTP elsewhere the console works as before, without the shell. A failure to register costs
 * only the shell, never the console, so it is not reported.
 */
export function registerAppShell(): void {
  const container = (globalThis.navigator as { serviceWorker?: ServiceWorkerContainer } | undefined)?.serviceWorker;
  if (!container) return;
  container.register('/console/sw.js', { scope: '/console/' }).catch(() => undefined);
}
