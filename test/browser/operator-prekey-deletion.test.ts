import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { KeyStore, type DataCipher } from '../../client/console/key-store.js';
import { MemoryKeyValueStore } from '../../client/storage/kv.js';
import { SealedPrekeyStore } from '../../client/storage/sealed-prekey-store.js';
import { DEFAULT_PREKEY_ROTATION_MS } from '../../shared/crypto/prekey.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { NO_CHECKPOINT_YET, importKey, openPage, startHarness, storedValue, type Harness } from './harness.js';

/**
 * The operator console deletes a prekey's secret by PROTOCOL.md "When a prekey's secret is deleted":
 * not while the relay may still accept messages wrapped to it, and once the relay's clock is past its
 * `notAfter` and nothing wrapped to it waits in the mailbox. The relay runs on a manual clock, the
 * page on Playwright's (`context.clock`): both are moved by weeks, with no waiting.
 */

const R = DEFAULT_PREKEY_ROTATION_MS;
/** Slack for the page's clock, which runs on from where it is set while the test works. */
const M = 60 * 60_000;
const RECORD = 'prekeys/cn-mnd/op1';

let hx: Harness;
let clock: ManualClock;
beforeAll(async () => {
  // Ahead of the devices' certificates, which the harness makes now.
  clock = new ManualClock(Date.now() + 60_000);
  // Heartbeats run on the manual clock too: keep them out of the way of week-long jumps.
  hx = await startHarness({ clock, app: { heartbeatIntervalMs: 365 * 24 * 3_600_000 } });
});
afterAll(async () => {
  await hx?.close();
});

/** The console's prekeys as stored: its sealed record, opened with the data key. */
async function heldKeyIds(page: Page, cipher: DataCipher): Promise<string[]> {
  const kv = new MemoryKeyValueStore();
  const sealed = await storedValue(page, RECORD);
  if (sealed !== undefined) await kv.set(RECORD, sealed);
  return (await new SealedPrekeyStore(kv, cipher, RECORD).load()).map((h) => h.keyId);
}

const isPost = (path: string) => (r: { url(): string; request(): { method(): string } }) => r.url().endsWith(path) && r.request().method() === 'POST';

describe('operator console: deleting a prekey secret', () => {
  it('keeps it while the relay may accept messages wrapped to it, and deletes it once the relay’s clock is past its notAfter', async () => {
    const passphrase = 'cn prekey deletion passphrase';
    const context = await hx.browser.newContext({ locale: 'en-US' });
    try {
      await context.clock.install({ time: clock.now() });
      const { page, errors } = await openPage(context, `${hx.server.url}/console/operator/`, [NO_CHECKPOINT_YET]);
      const first = page.waitForResponse(isPost('/v1/prekeys'));
      await importKey(page, hx.keyFiles['cn-mnd/op1']!, passphrase);
      expect((await first).status()).toBe(201);
      await page.waitForSelector('#link-state[data-connected="true"]');

      const kv = new MemoryKeyValueStore();
      await kv.set('keystore/operator', (await storedValue(page, 'keystore/operator'))!);
      const cipher = (await new KeyStore(kv, 'operator').unlock(passphrase)).data;
      const [p1, ...none] = await heldKeyIds(page, cipher);
      expect(none).toEqual([]);

      // A rotation period on (the relay first, then the page): a new prekey is made and published;
      // the first is kept, since the relay accepts messages wrapped to it until its notAfter.
      clock.advance(R + M);
      const second = page.waitForResponse(isPost('/v1/prekeys'));
      await page.clock.fastForward(R + M);
      expect((await second).status()).toBe(201);
      const afterRotation = await heldKeyIds(page, cipher);
      expect(afterRotation).toHaveLength(2);
      expect(afterRotation[0]).toBe(p1);
      const p2 = afterRotation[1]!;

      // Past the first prekey's notAfter (two periods after it was made) by the relay's clock, and
      // not yet a period after the second: the console asks the relay, which holds nothing wrapped
      // to it, and deletes its secret; the second is kept.
      clock.advance(R - M / 2);
      const asked = page.waitForResponse((r) => r.url().endsWith('/v1/prekeys/pending'));
      await page.clock.fastForward(R - M / 2);
      const answer = (await (await asked).json()) as { serverTime: number; pending: string[] };
      expect(answer.pending).not.toContain(p1);
      await expect.poll(() => heldKeyIds(page, cipher), { timeout: 30_000 }).toEqual([p2]);
      // The relay's clock moves a moment before the page's: a request the console makes in between
      // carries a token the relay already sees as expired (an audit read of the checkpoint the
      // relay signed on its jump), or answers a login challenge that expired with the jump (CI saw
      // this once; the console logs in again), or fetches the directory with it (CI saw that once
      // too). Artefacts of the two jumps, not of prekeys; nothing else may fail.
      expect(errors.filter((e) => !/^HTTP 401 \S+\/v1\/(audit\/|auth\/login$|directory(\?|$))/.test(e))).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
