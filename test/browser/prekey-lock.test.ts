import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { createPrekey, DEFAULT_PREKEY_ROTATION_MS, type HeldPrekey } from '../../shared/crypto/prekey.js';
import type { PrekeyMaintenance } from '../../client/prekeys.js';
import type { Agreement, DeviceSecretFile } from '../../shared/protocol/schemas.js';
import { makeDeployment, type TestDeployment } from '../helpers/fixtures.js';
import { launchChromium } from './harness.js';

/**
 * Two tabs of one operator console share its prekey record (PROTOCOL.md "When a prekey's secret is
 * deleted"): their rotations take turns under a Web Lock. Run in Chromium on the console's own parts
 * (PrekeyManager, SealedPrekeyStore over IndexedDB, navigator.locks), bundled into a page
 * (prekey-race-page.ts) opened in two tabs of one browser context: driving two full consoles into
 * a rotation at the same moment cannot be done deterministically (only the tab that holds the link
 * rotates, and its read and write of the record are a few milliseconds apart).
 */

const R = DEFAULT_PREKEY_ROTATION_MS;
/** A secure context (Web Locks need one); never reached: the test's route answers it. */
const ORIGIN = 'http://localhost:9';

interface RacePage {
  ready: boolean;
  result?: PrekeyMaintenance;
  error?: string;
  published: string[];
  hasWebLocks: boolean;
  seed(held: HeldPrekey[]): Promise<void>;
  held(): Promise<HeldPrekey[]>;
  start(device: DeviceSecretFile, agreement: Agreement, now: number, gated: boolean): Promise<void>;
  open(): void;
}
declare const prekeyRace: RacePage;

let browser: Browser;
let script: string;
let d: TestDeployment;
beforeAll(async () => {
  const { build } = await import('esbuild');
  const out = await build({
    entryPoints: [fileURLToPath(new URL('./prekey-race-page.ts', import.meta.url))],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: 'es2022',
    logLevel: 'silent',
  });
  script = out.outputFiles[0]!.text;
  d = await makeDeployment();
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

describe('two tabs of one console rotating its prekeys at the same moment', () => {
  it('the second waits for the first’s Web Lock and reads its prekey: every published prekey’s secret is kept', async () => {
    const context = await browser.newContext();
    try {
      await context.route(`${ORIGIN}/**`, (route) => route.fulfill({ contentType: 'text/html', body: `<!doctype html><title>prekey race</title><script>${script}</script>` }));
      const errors: string[] = [];
      const open = async (): Promise<Page> => {
        const page = await context.newPage();
        page.on('pageerror', (e) => errors.push(e.message));
        await page.goto(`${ORIGIN}/`);
        return page;
      };
      const [a, b] = [await open(), await open()];
      expect(await a.evaluate(() => prekeyRace.hasWebLocks)).toBe(true);

      // The record holds a prekey a rotation period old: both tabs find a rotation due.
      const p1 = await createPrekey(d.devices.cnOp, { now: d.now - R, rotationMs: R });
      await a.evaluate((held) => prekeyRace.seed(held), [p1]);
      const args = { device: d.devices.cnOp, agreement: d.agreement, now: d.now };

      // Tab A reads the record and stops there; tab B starts its run and gets as far as it can
      // (without the lock: it reads the same record, rotates and saves).
      await a.evaluate((x) => prekeyRace.start(x.device, x.agreement, x.now, true), args);
      await a.waitForFunction(() => prekeyRace.ready);
      await b.evaluate((x) => prekeyRace.start(x.device, x.agreement, x.now, false), args);
      await b.waitForFunction(() => prekeyRace.ready);
      await a.evaluate(() => prekeyRace.open());
      for (const p of [a, b]) await p.waitForFunction(() => prekeyRace.result !== undefined || prekeyRace.error !== undefined);

      const results = await Promise.all([a, b].map((p) => p.evaluate(() => ({ result: prekeyRace.result, error: prekeyRace.error, published: prekeyRace.published }))));
      expect(results.map((r) => r.error)).toEqual([undefined, undefined]);
      const held = await a.evaluate(() => prekeyRace.held());
      const heldBoxKeys = held.map((h) => h.signed.prekey.boxKey);
      // Whatever a tab published (a sender may wrap to it), its secret is in the record.
      const published = results.flatMap((r) => r.published);
      expect(published.length).toBeGreaterThan(0);
      for (const boxKey of published) expect(heldBoxKeys).toContain(boxKey);
      // Tab B read tab A's new prekey under the lock: nothing was due any more.
      const rotated = results.map((r) => r.result?.rotated).filter((k) => k !== undefined);
      expect(rotated).toHaveLength(1);
      expect(held.map((h) => h.keyId)).toEqual([p1.keyId, rotated[0]]);
      expect(errors).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
