import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectConsole, enrolDevice, startHarness, startNodeClient, type Harness } from './harness.js';

/**
 * Issue 15, message content in the operator console: jp (in Japanese) sends a catalogue entry with
 * free text and an attachment; cn (in Chinese) sees the entry in Chinese from its own agreement,
 * saves the attachment, and translates the message; jp sees the translation beside its original,
 * which stays marked authoritative.
 */
let hx: Harness;
beforeAll(async () => {
  hx = await startHarness({
    catalogue: [{ code: 'C12', text: { ja: '海上で事案発生、敵対意図なし。', zh: '海上发生事件，无敌对意图。', en: 'Incident at sea, no hostile intent.' } }],
  });
});
afterAll(async () => {
  await hx?.close();
});

describe('attachments, the catalogue and translations in the operator console', () => {
  it('a catalogue message with an attachment, shown in the reader\'s language, saved, and translated side by side', async () => {
    const cnKey = await enrolDevice(hx, 'cn-mnd', 'msg1');
    const jpKey = await enrolDevice(hx, 'jp-mod', 'msg1');
    const cn = await connectConsole(hx, 'zh-CN', cnKey, 'cn messages passphrase');
    const jp = await connectConsole(hx, 'ja-JP', jpKey, 'jp messages passphrase');
    for (const c of [cn, jp]) {
      await c.page.click('#confirm-keys');
      await c.page.waitForSelector('#peer-ok');
    }
    // The picker shows each entry in the interface language.
    expect(await jp.page.locator('#catalogue-code option[value="C12"]').textContent()).toBe('C12 — 海上で事案発生、敵対意図なし。');
    const bytes = Buffer.from('N 30°12′ E 123°45′\n');
    await jp.page.selectOption('#precedence', 'PRIORITY');
    await jp.page.selectOption('#catalogue-code', 'C12');
    await jp.page.fill('#body', '巡視船一隻が接近中。');
    await jp.page.setInputFiles('#attach', { name: '../position.txt', mimeType: 'text/plain', buffer: bytes });
    await jp.page.click('#send');

    const row = cn.page.locator('#inbox tr.msg', { hasText: '巡視船一隻が接近中。' });
    await row.waitFor();
    const id = (await row.getAttribute('data-id'))!;
    expect(await row.locator('.catalogue[data-code="C12"]').textContent()).toBe('目录 C12 海上发生事件，无敌对意图。');
    expect(await row.locator('.attachments li').textContent()).toContain('../position.txt（text/plain，');
    const download = cn.page.waitForEvent('download');
    await row.locator('button.save-attachment').click();
    const file = await download;
    // Saved under a safe name, the bytes as sent.
    expect(file.suggestedFilename()).toBe('position.txt');
    expect(readFileSync((await file.path())!)).toEqual(bytes);

    // cn translates it into Chinese; jp sees it beside its original.
    await row.locator('details.translate summary').click();
    await row.locator('select.translate-lang').selectOption('zh');
    await row.locator('textarea.translate-text').fill('一艘巡逻船正在接近。');
    await row.locator('button.send-translation').click();
    const original = jp.page.locator(`#outbox tr.msg[data-id="${id}"]`);
    await original.locator('.side-by-side .translation').waitFor();
    expect(await original.locator('.tag.authoritative').textContent()).toBe('原文（正本）');
    expect(await original.locator('.translation .translation-mark').textContent()).toBe(`${id.slice(0, 8)} の翻訳（zh、cn-mnd/msg1）：原文が正本です`);
    expect(await original.locator('.translation p').textContent()).toBe('一艘巡逻船正在接近。');
    // The translation is a message of its own too, marked as such.
    const own = jp.page.locator('#inbox tr.msg', { hasText: '一艘巡逻船正在接近。' });
    await own.locator('.translation-mark').waitFor();
    // And cn's row of the original shows it beside the original as well.
    await row.locator('.side-by-side .translation').waitFor();

    expect(cn.errors).toEqual([]);
    expect(jp.errors).toEqual([]);
    await cn.context.close();
    await jp.context.close();
  });

  it('a row redrawn while a translation is typed in it keeps the focus and the caret: the keys typed next go on into the same text', async () => {
    const cnKey = await enrolDevice(hx, 'cn-mnd', 'msg2');
    const cn = await connectConsole(hx, 'en-US', cnKey, 'cn focus passphrase');
    await cn.page.click('#confirm-keys');
    await cn.page.waitForSelector('#peer-ok');
    const jp = await startNodeClient(hx, 'jp-mod/op1');
    const { id } = await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'Patrol vessel approaching.', lang: 'en' });
    const row = cn.page.locator(`#inbox tr.msg[data-id="${id}"]`);
    await row.locator('details.translate summary').click();
    await row.locator('select.translate-lang').selectOption('ja');
    await row.locator('textarea.translate-text').click();
    await cn.page.keyboard.type('巡視船が');
    const before = await row.elementHandle();

    // jp translates its own message: it reaches cn and is drawn beside the original, in a new row.
    await jp.send({ to: '', precedence: 'ROUTINE', body: '一艘巡逻船正在接近。', lang: 'zh', translationOf: id });
    await row.locator('.side-by-side .translation').waitFor();
    expect(await before!.evaluate((el) => el.isConnected)).toBe(false);
    await cn.page.keyboard.type('接近中。');

    const area = row.locator('textarea.translate-text');
    expect(await area.inputValue()).toBe('巡視船が接近中。');
    expect(await area.evaluate((el) => el === document.activeElement)).toBe(true);
    expect(cn.errors).toEqual([]);
    await jp.stop();
    await cn.context.close();
  });
});
