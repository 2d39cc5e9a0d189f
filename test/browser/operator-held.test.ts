import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { connectConsole, enrolDevice, SCREENSHOT_DIR, startHarness, startNodeClient, type Harness, unlockConsole } from './harness.js';
import { next } from '../helpers/events.js';

/**
 * Issue 10, problem 2: the peer enrols a device, then an operator sends. The console had not
 * fetched the directory since, so the relay refused the envelope (3 recipients, the directory has
 * 4), the reseal was refused as the new key is unconfirmed, and the message vanished. It must stay
 * in the outbox as held, go once the key is confirmed, and be discarded only on purpose.
 */
let hx: Harness;
beforeAll(async () => {
  hx = await startHarness();
});
afterAll(async () => {
  await hx?.close();
});

describe('a message that cannot be sealed as composed is held, never dropped', () => {
  it('peer key change mid-compose: held with the device named (en/ja/zh), kept over a reload, sent once the key is confirmed', async () => {
    const pass = 'jp held passphrase';
    const jp = await connectConsole(hx, 'en-US', await enrolDevice(hx, 'jp-mod', 'held1'), pass);
    await jp.page.click('#confirm-keys');
    await jp.page.waitForSelector('#peer-ok');
    await jp.page.fill('#subject', 'held subject');
    await jp.page.fill('#body', 'must not vanish');
    // Mid-compose, China enrols a device; this console has not fetched the directory since.
    await enrolDevice(hx, 'cn-mnd', 'newpeer');
    const cn = await startNodeClient(hx, 'cn-mnd/newpeer');
    await jp.page.click('#send');
    const row = jp.page.locator('#outbox tr.msg[data-rung="held"]');
    await row.waitFor();
    await expect.poll(() => row.locator('.held').textContent()).toContain('held: confirm the new key of cn-mnd/newpeer');
    expect(await row.locator('.text p').textContent()).toBe('must not vanish');
    const id = (await row.getAttribute('data-id'))!;
    for (const [lang, words] of [['ja', '保留'], ['zh', '暂扣']] as const) {
      await jp.page.selectOption('#language', lang);
      await expect.poll(() => jp.page.locator(`#outbox tr.msg[data-id="${id}"] .held`).textContent()).toContain(words);
      expect(await jp.page.locator(`#outbox tr.msg[data-id="${id}"] .held`).textContent()).toContain('cn-mnd/newpeer');
      await jp.page.screenshot({ path: join(SCREENSHOT_DIR, `operator-${lang}-held.png`), fullPage: true });
    }
    await jp.page.selectOption('#language', 'en');

    // Stored: a reload keeps it held.
    await jp.page.reload();
    await unlockConsole(jp.page, pass);
    await jp.page.locator(`#outbox tr.msg[data-id="${id}"][data-rung="held"]`).waitFor();

    // Confirming the new key seals it to every device and sends it by itself.
    const arrived = next(cn, 'message', (m) => m.header.id === id);
    await jp.page.click('#confirm-keys');
    await jp.page.waitForSelector('#peer-ok');
    expect((await arrived).plaintext.body).toBe('must not vanish');
    await jp.page.locator(`#outbox tr.msg[data-id="${id}"][data-rung="delivered"]`).waitFor();
    expect(await jp.page.locator('#outbox tr.msg').count()).toBe(1);
    expect(jp.errors).toEqual([]);
    await cn.stop();
    await jp.context.close();
  });

  it('a held message is discarded only after a confirmation, and stays gone after a reload', async () => {
    const pass = 'jp discard passphrase';
    const jp = await connectConsole(hx, 'en-US', await enrolDevice(hx, 'jp-mod', 'held2'), pass);
    await jp.page.click('#confirm-keys');
    await jp.page.waitForSelector('#peer-ok');
    await enrolDevice(hx, 'cn-mnd', 'newpeer2');
    await jp.page.fill('#body', 'to be discarded');
    await jp.page.click('#send');
    const row = jp.page.locator('#outbox tr.msg[data-rung="held"]');
    await row.waitFor();
    // Cancel keeps it.
    await row.locator('button.discard').click();
    // The question takes the focus on its safe answer.
    await expect.poll(() => jp.page.evaluate(() => document.activeElement?.id)).toBe('cancel-discard');
    // Held row and question fit a 390 px phone.
    await jp.page.setViewportSize({ width: 390, height: 844 });
    expect(await jp.page.evaluate(() => document.documentElement.scrollWidth)).toBe(390);
    await jp.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-en-held-discard-390.png'), fullPage: true });
    await jp.page.setViewportSize({ width: 1280, height: 900 });
    await jp.page.click('#cancel-discard');
    expect(await row.count()).toBe(1);
    await row.locator('button.discard').click();
    await jp.page.click('#confirm-discard');
    await row.waitFor({ state: 'detached' });
    await jp.page.reload();
    await unlockConsole(jp.page, pass);
    await jp.page.waitForSelector('#peer-warning');
    expect(await jp.page.locator('#outbox tr.msg').count()).toBe(0);
    expect(jp.errors).toEqual([]);
    await jp.context.close();
  });
});
