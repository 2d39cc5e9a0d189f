import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { connectConsole, enrolDevice, importKey, NO_CHECKPOINT_YET, openPage, SCREENSHOT_DIR, startHarness, startNodeClient, type Harness, unlockConsole } from './harness.js';
import { next } from '../helpers/events.js';

/**
 * Issue 10, the sender's view and drafts: a reload loses no half-written message; the sender sees
 * when each rung was reached and an overdue FLASH as a banner (problem 5: it was a red cell and an
 * event citing an id shown nowhere else); local time beside UTC. FLASH deadlines short enough to
 * miss while no Chinese device is online.
 */
let hx: Harness;
beforeAll(async () => {
  hx = await startHarness({ deadlines: { FLASH: { deliveredMs: 1_500, acknowledgedMs: 3_000 } } });
});
afterAll(async () => {
  await hx?.close();
});

describe("the sender's view", () => {
  it('a draft survives a reload (stored sealed, not in clear) and is cleared once sent; local time shows beside UTC in Tokyo', async () => {
    const pass = 'jp draft passphrase';
    const context = await hx.browser.newContext({ locale: 'ja-JP', timezoneId: 'Asia/Tokyo' });
    const { page, errors } = await openPage(context, `${hx.server.url}/console/operator/`, [NO_CHECKPOINT_YET]);
    await importKey(page, await enrolDevice(hx, 'jp-mod', 'draft1'), pass);
    await page.waitForSelector('#link-state[data-connected="true"]');
    // Tokyo is UTC+9: the header shows local time with its zone beside UTC.
    expect(await page.textContent('#local-time')).toMatch(/^現地 \d\d:\d\d:\d\d UTC\+09:00$/);
    // Both read from one drawing of the clock, so that an hour cannot turn between them.
    const [utc, local] = await page.$eval('#utc-clock', (el) => [Number(el.querySelector('#utc-time')!.textContent!.slice(0, 2)), Number(el.querySelector('#local-time')!.textContent!.slice(3, 5))]);
    expect((utc + 9) % 24).toBe(local);

    await page.selectOption('#precedence', 'IMMEDIATE');
    await page.fill('#subject', '下書きの件名');
    await page.fill('#body', 'draftbody-unique-7f3a 再読み込みで消えない');
    await page.check('#exercise');
    await page.waitForSelector('#compose[data-draft="saved"]');
    // Sealed like every stored text: the words are nowhere in the origin's storage in clear.
    const dump = await page.evaluate(async () => {
      const out: string[] = [];
      for (const info of await indexedDB.databases()) {
        const db = await new Promise<IDBDatabase>((resolve, reject) => {
          const req = indexedDB.open(info.name!);
          req.onsuccess = () => resolve(req.result);
          req.onerror = () => reject(req.error);
        });
        for (const name of Array.from(db.objectStoreNames)) {
          const all = await new Promise<unknown[]>((resolve, reject) => {
            const req = db.transaction(name, 'readonly').objectStore(name).getAll();
            req.onsuccess = () => resolve(req.result as unknown[]);
            req.onerror = () => reject(req.error);
          });
          out.push(JSON.stringify(all));
        }
        db.close();
      }
      for (let i = 0; i < localStorage.length; i++) out.push(localStorage.getItem(localStorage.key(i)!) ?? '');
      return out.join('\n');
    });
    expect(dump).not.toContain('draftbody-unique-7f3a');

    await page.reload();
    await unlockConsole(page, pass);
    expect(await page.inputValue('#body')).toBe('draftbody-unique-7f3a 再読み込みで消えない');
    expect(await page.inputValue('#subject')).toBe('下書きの件名');
    expect(await page.inputValue('#precedence')).toBe('IMMEDIATE');
    expect(await page.isChecked('#exercise')).toBe(true);
    expect(await page.textContent('#draft-restored')).toBe('下書きを復元しました');

    // Sent: the fields clear, and a reload brings nothing back.
    await page.click('#confirm-keys');
    await page.waitForSelector('#peer-ok');
    await page.click('#send');
    await page.waitForSelector('#compose[data-draft="cleared"]');
    expect(await page.inputValue('#body')).toBe('');
    await page.locator('#outbox tr.msg').first().waitFor();
    expect(await page.locator('#draft-restored').count()).toBe(0);
    await page.reload();
    await unlockConsole(page, pass);
    expect(await page.inputValue('#body')).toBe('');
    expect(await page.inputValue('#subject')).toBe('');
    expect(await page.inputValue('#precedence')).toBe('ROUTINE');
    expect(errors).toEqual([]);
    await context.close();
  });

  it('an overdue FLASH is a banner on the sender side too, with its subject and the id Events cite; each rung shows when it was reached, late ones how late (zh, ja, en)', async () => {
    const jp = await connectConsole(hx, 'zh-CN', await enrolDevice(hx, 'jp-mod', 'sender1'), 'jp sender passphrase');
    // No local time beside UTC when the browser's zone is UTC.
    expect(await jp.page.locator('#local-time').count()).toBe(0);
    await jp.page.click('#confirm-keys');
    await jp.page.waitForSelector('#peer-ok');
    await jp.page.selectOption('#precedence', 'FLASH');
    await jp.page.fill('#subject', 'overdue subject');
    await jp.page.fill('#body', 'nobody in China is online');
    await jp.page.click('#send');
    await jp.page.click('#confirm-flash');
    const row = jp.page.locator('#outbox tr.msg[data-rung="accepted"]');
    await row.waitFor();
    const id = (await row.getAttribute('data-id'))!;
    const short = id.slice(0, 8);
    expect(await row.locator('.msg-id').textContent()).toContain(short);
    expect(await row.locator('li[data-rung="accepted"] time').textContent()).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);

    // The delivery deadline passes: a banner, not only a red cell and an Events line.
    const banner = jp.page.locator(`.sender-overdue[data-id="${id}"]`);
    await banner.and(jp.page.locator('[data-rung="delivered"]')).waitFor();
    expect(await banner.getAttribute('role')).toBe('alert');
    expect(await banner.textContent()).toContain('overdue subject');
    expect(await banner.textContent()).toContain(short);
    expect(await banner.textContent()).toMatch(/发往 cn-mnd 的 FLASH 已超时：未送达/);
    await jp.page.locator('#events li.ev-deadline-missed', { hasText: short }).waitFor();
    await jp.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-zh-sender-overdue.png'), fullPage: true });
    // Banner and rung times fit a 390 px phone.
    await jp.page.setViewportSize({ width: 390, height: 844 });
    expect(await jp.page.evaluate(() => document.documentElement.scrollWidth)).toBe(390);
    await jp.page.setViewportSize({ width: 1280, height: 900 });
    await jp.page.selectOption('#language', 'ja');
    // Waits on the banner drawn again in Japanese (a locator's wait, 30 s): an expect.poll gives up
    // after 1 s, less than a redraw of the page can take on a loaded machine (the 1-in-5 failure).
    await banner.filter({ hasText: '期限超過：未配達' }).waitFor();

    // China comes online: delivered (late), and now the acknowledgement is overdue.
    const cn = await startNodeClient(hx, 'cn-mnd/op1');
    await banner.and(jp.page.locator('[data-rung="acknowledged"]')).waitFor();
    await banner.filter({ hasText: '未確認' }).waitFor();
    const acked = next(cn, 'receipt-accepted', (r) => r.messageId === id && r.kind === 'acknowledged');
    await cn.acknowledge(id);
    await acked;
    await banner.waitFor({ state: 'detached' });
    const done = jp.page.locator(`#outbox tr.msg[data-id="${id}"][data-rung="acknowledged"]`);
    await done.locator('li[data-rung="acknowledged"].late').waitFor();
    await done.locator('li[data-rung="delivered"].late').waitFor();
    await jp.page.selectOption('#language', 'en');
    for (const rung of ['accepted', 'delivered', 'acknowledged']) {
      expect(await done.locator(`li[data-rung="${rung}"] time`).textContent(), rung).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
    }
    expect(await done.locator('li[data-rung="delivered"]').textContent()).toMatch(/delivered ⚠ late by \d\d:\d\d/);
    // However little late, never "late by 00:00".
    expect(await done.locator('li.late').allTextContents()).not.toContainEqual(expect.stringContaining('late by 00:00'));
    const times = await done.locator('li time').evaluateAll((els) => els.map((e) => Date.parse(e.getAttribute('datetime')!)));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    await jp.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-en-sender-rungs.png'), fullPage: true });
    expect(jp.errors).toEqual([]);
    await cn.stop();
    await jp.context.close();
  });
});
