import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import type { Locator, Page } from 'playwright-core';
import { connectConsole, enrolDevice, importKey, NO_CHECKPOINT_YET, openPage, SCREENSHOT_DIR, startNodeClient, startHarness, type Harness } from './harness.js';

/** Issue 10, the operator console on a watch floor: each test reproduces one of the problems found there. */
let hx: Harness;
beforeAll(async () => {
  hx = await startHarness();
});
afterAll(async () => {
  await hx?.close();
});

const consoleUrl = () => `${hx.server.url}/console/operator/`;

async function unlock(page: Page, passphrase: string): Promise<void> {
  await page.fill('#passphrase', passphrase);
  await page.click('#unlock');
}

/**
 * A banner's background colour. A banner is drawn anew when what it shows changes (its text, the
 * language): read from the banner in the page, never from one just taken out of it (which has no
 * computed style and reads '').
 */
async function background(banner: Locator): Promise<string> {
  let colour = '';
  await expect.poll(async () => (colour = await banner.evaluate((el) => (el.isConnected ? getComputedStyle(el).backgroundColor : '')))).not.toBe('');
  return colour;
}

describe('operator console on a watch floor', () => {
  it('two tabs: one holds the link, the other says so and can take it over; both show every FLASH with its text; closing a tab loses nothing', async () => {
    const pass = 'two tabs passphrase';
    const keyFile = await enrolDevice(hx, 'jp-mod', 'tabs');
    const context = await hx.browser.newContext({ locale: 'en-US' });
    const a = await openPage(context, consoleUrl(), [NO_CHECKPOINT_YET]);
    await importKey(a.page, keyFile, pass);
    await a.page.waitForSelector('#link-state[data-connected="true"]');
    const b = await openPage(context, consoleUrl(), [NO_CHECKPOINT_YET]);
    await unlock(b.page, pass);
    // The second tab does not fight the first for the link: it says where the link is.
    await b.page.waitForSelector('#elsewhere #take-over');
    expect(await b.page.getAttribute('#link-state', 'data-elsewhere')).toBe('true');
    expect(await b.page.isDisabled('#send')).toBe(true);

    const cn = await startNodeClient(hx, 'cn-mnd/op1');
    const first = (await cn.send({ to: 'jp-mod', precedence: 'FLASH', subject: 'first flash', body: 'seen in both tabs', lang: 'en' })).id;
    for (const p of [a.page, b.page]) {
      await p.locator(`.flash-banner[data-id="${first}"]`, { hasText: 'first flash' }).waitFor();
      await p.locator(`#inbox tr.msg[data-id="${first}"] .text p`, { hasText: 'seen in both tabs' }).waitFor();
    }
    expect(await a.page.getAttribute('#link-state', 'data-connected')).toBe('true');
    await b.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-en-second-tab.png'), fullPage: true });

    // The second tab takes the link over; the first now follows and still sees everything.
    await b.page.click('#take-over');
    await b.page.waitForSelector('#link-state[data-connected="true"]');
    await a.page.waitForSelector('#elsewhere #take-over');
    const second = (await cn.send({ to: 'jp-mod', precedence: 'FLASH', subject: 'second flash', body: 'after the takeover', lang: 'en' })).id;
    for (const p of [a.page, b.page]) await p.locator(`.flash-banner[data-id="${second}"]`, { hasText: 'second flash' }).waitFor();

    // The tab holding the link closes: the other takes it by itself, and no text is lost, even after a reload.
    await b.page.close();
    await a.page.waitForSelector('#link-state[data-connected="true"]');
    await a.page.waitForSelector('#elsewhere', { state: 'detached' });
    await a.page.reload();
    await unlock(a.page, pass);
    await a.page.waitForSelector('#link-state[data-connected="true"]');
    for (const [id, text] of [[first, 'seen in both tabs'], [second, 'after the takeover']] as const) {
      await a.page.locator(`#inbox tr.msg[data-id="${id}"] .text p`, { hasText: text }).waitFor();
    }
    expect(await a.page.locator('#inbox tr.msg .text.muted').count()).toBe(0);

    // Acknowledged from this tab: both banners go.
    for (const id of [first, second]) await a.page.click(`.flash-banner[data-id="${id}"] button.ack`);
    await a.page.waitForSelector('.flash-banner', { state: 'detached' });
    expect(a.errors).toEqual([]);
    expect(b.errors).toEqual([]);
    await cn.stop();
    await context.close();
  });

  it('an EXERCISE FLASH is unmistakable: "EXERCISE EXERCISE EXERCISE", its own colour and stripes on the banner and the row, in every language', async () => {
    const keyFile = await enrolDevice(hx, 'cn-mnd', 'ex1');
    const cn = await connectConsole(hx, 'zh-CN', keyFile, 'cn exercise passphrase');
    const jp = await startNodeClient(hx, 'jp-mod/op1');
    const drill = (await jp.send({ to: 'cn-mnd', precedence: 'FLASH', subject: 'drill', body: 'exercise traffic', lang: 'en', exercise: true })).id;
    const real = (await jp.send({ to: 'cn-mnd', precedence: 'FLASH', subject: 'real', body: 'real traffic', lang: 'en' })).id;
    const drillBanner = cn.page.locator(`.flash-banner[data-id="${drill}"]`);
    const realBanner = cn.page.locator(`.flash-banner[data-id="${real}"]`);
    await drillBanner.waitFor();
    await realBanner.waitFor();
    // The tab title counts what waits, by precedence; the header shows UTC and the date-time group.
    await expect.poll(() => cn.page.title()).toBe('(FLASH 2) 热线 — 值班员控制台');
    expect(await cn.page.textContent('#dtg')).toMatch(/^\d{6}Z (JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC) \d\d$/);
    expect(await cn.page.textContent('#utc-time')).toMatch(/^\d\d:\d\d:\d\d UTC$/);
    const look = (sel: string) =>
      cn.page.$eval(sel, (el) => {
        const s = getComputedStyle(el);
        return { color: s.backgroundColor, image: s.backgroundImage };
      });
    // Polled: a redraw replaces the row (and a banner whose content changed), and an element read
    // while it is being replaced has no computed style (an empty string), which is not the answer
    // either way.
    const image = (sel: string) => look(sel).then((l) => l.image);
    await expect.poll(() => image(`.flash-banner[data-id="${drill}"]`)).toContain('repeating-linear-gradient');
    await expect.poll(() => image(`.flash-banner[data-id="${real}"]`)).toBe('none');
    expect(await realBanner.textContent()).not.toContain('EXERCISE');
    await expect.poll(() => image(`#inbox tr.msg[data-id="${drill}"]`)).toContain('repeating-linear-gradient');
    await expect.poll(() => image(`#inbox tr.msg[data-id="${real}"]`)).toBe('none');
    for (const [lang, words] of [['zh', '演习'], ['ja', '演習'], ['en', 'EXERCISE']] as const) {
      await cn.page.selectOption('#language', lang);
      await expect.poll(() => drillBanner.locator('.exercise-words').textContent()).toContain('EXERCISE EXERCISE EXERCISE');
      expect(await drillBanner.textContent()).toContain(words);
      expect(await cn.page.locator(`#inbox tr.msg[data-id="${drill}"] .tag.exercise`).textContent()).toContain('EXERCISE');
      await cn.page.screenshot({ path: join(SCREENSHOT_DIR, `operator-${lang}-exercise.png`), fullPage: true });
    }
    expect(cn.errors).toEqual([]);
    await jp.stop();
    await cn.context.close();
  });

  it('IMMEDIATE has its own amber banner and shorter sound, announced politely; FLASH stays assertive; the Acknowledge button says which message', async () => {
    const keyFile = await enrolDevice(hx, 'cn-mnd', 'imm1');
    const cn = await connectConsole(hx, 'zh-CN', keyFile, 'cn immediate passphrase');
    const jp = await startNodeClient(hx, 'jp-mod/op1');
    const imm = (await jp.send({ to: 'cn-mnd', precedence: 'IMMEDIATE', subject: 'convoy moved', body: 'immediate traffic', lang: 'en' })).id;
    const banner = cn.page.locator(`.immediate-banner[data-id="${imm}"]`);
    await banner.waitFor();
    expect(await banner.getAttribute('role')).toBe('status');
    expect(await banner.getAttribute('aria-live')).toBe('polite');
    expect(await banner.textContent()).toContain('convoy moved');
    expect(await banner.textContent()).toContain('jp-mod/op1');
    await expect.poll(() => cn.page.evaluate(() => document.body.dataset.chimes)).toBe('1');
    // Its own sound, not the FLASH alarm.
    expect(await cn.page.evaluate(() => document.body.dataset.alarm ?? 'off')).toBe('off');
    const colour = await background(banner);
    const flash = (await jp.send({ to: 'cn-mnd', precedence: 'FLASH', subject: 'flash too', body: 'flash traffic', lang: 'en' })).id;
    const flashBanner = cn.page.locator(`.flash-banner[data-id="${flash}"]`);
    await flashBanner.waitFor();
    expect(await flashBanner.getAttribute('role')).toBe('alert');
    expect(await background(flashBanner)).not.toBe(colour);
    for (const [lang, word] of [['zh', '紧急'], ['ja', '緊急'], ['en', 'IMMEDIATE']] as const) {
      await cn.page.selectOption('#language', lang);
      await expect.poll(() => banner.textContent()).toContain(word);
      const label = (await banner.locator('button.ack').getAttribute('aria-label')) ?? '';
      expect(label).toContain('convoy moved');
      expect(label).toContain('jp-mod/op1');
      await cn.page.screenshot({ path: join(SCREENSHOT_DIR, `operator-${lang}-immediate.png`), fullPage: true });
    }
    await banner.locator('button.ack').click();
    await banner.waitFor({ state: 'detached' });
    expect(await flashBanner.count()).toBe(1);
    expect(cn.errors).toEqual([]);
    await jp.stop();
    await cn.context.close();
  });

  it('a FLASH or IMMEDIATE banner stays the same element when its row changes and nothing in it does (a screen reader announces an inserted alert again)', async () => {
    const keyFile = await enrolDevice(hx, 'cn-mnd', 'same1');
    const cn = await connectConsole(hx, 'en-US', keyFile, 'cn same banner passphrase');
    const jp = await startNodeClient(hx, 'jp-mod/op1');
    const kept: Locator[] = [];
    for (const [precedence, selector] of [['FLASH', '.flash-banner'], ['IMMEDIATE', '.immediate-banner']] as const) {
      const id = (await jp.send({ to: 'cn-mnd', precedence, subject: `${precedence} convoy`, body: 'banner traffic', lang: 'en' })).id;
      const banner = cn.page.locator(`${selector}[data-id="${id}"]`);
      await banner.filter({ hasText: `${precedence} convoy` }).waitFor();
      const shown = await banner.elementHandle();
      await shown!.evaluate((el: HTMLElement) => (el.dataset.probe = 'shown'));
      // A follow-up threads under the message: its row changes, its banner does not.
      const reply = (await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', subject: 'follow-up', body: 'more on the convoy', lang: 'en', replyTo: id })).id;
      await cn.page.locator(`#inbox tr.msg[data-id="${id}"] .thread li[data-id="${reply}"]`).waitFor();
      expect(await shown!.evaluate((el) => el.isConnected), `the ${precedence} banner shown first`).toBe(true);
      expect(await banner.getAttribute('data-probe')).toBe('shown');
      kept.push(banner);
    }
    // Still sounding and chimed once: the alarm follows the banners as before.
    expect(await cn.page.evaluate(() => document.body.dataset.alarm)).toBe('on');
    expect(await cn.page.evaluate(() => document.body.dataset.chimes)).toBe('1');
    // A kept banner's button still acknowledges its message.
    for (const banner of kept) {
      await banner.locator('button.ack').click();
      await banner.waitFor({ state: 'detached' });
    }
    await expect.poll(() => cn.page.evaluate(() => document.body.dataset.alarm)).toBe('off');
    expect(cn.errors).toEqual([]);
    await jp.stop();
    await cn.context.close();
  });

  it('compose: Enter in Subject sends nothing, a FLASH asks for confirmation, precedence returns to ROUTINE, the text keeps the language chosen for it', async () => {
    const keyFile = await enrolDevice(hx, 'jp-mod', 'compose1');
    await enrolDevice(hx, 'cn-mnd', 'compose-peer');
    const jp = await connectConsole(hx, 'en-US', keyFile, 'jp compose passphrase');
    await jp.page.click('#confirm-keys');
    await jp.page.waitForSelector('#peer-ok');
    const cn = await startNodeClient(hx, 'cn-mnd/compose-peer');
    const received: { subject?: string; lang: string }[] = [];
    cn.on('message', (m) => received.push({ ...(m.plaintext.subject === undefined ? {} : { subject: m.plaintext.subject }), lang: m.plaintext.lang }));

    // The language of the text defaults to the interface language.
    expect(await jp.page.inputValue('#text-lang')).toBe('en');
    await jp.page.selectOption('#precedence', 'FLASH');
    await jp.page.fill('#body', '国境付近で予定外の航空機の動き');
    await jp.page.fill('#subject', 'half-written');
    await jp.page.press('#subject', 'Enter');
    await jp.page.fill('#subject', 'unplanned aircraft');
    await jp.page.selectOption('#text-lang', 'ja');
    // Send asks first; Cancel sends nothing and keeps the draft.
    await jp.page.click('#send');
    await jp.page.waitForSelector('#flash-confirm');
    await jp.page.click('#cancel-flash');
    await jp.page.waitForSelector('#flash-confirm', { state: 'detached' });
    expect(await jp.page.inputValue('#body')).toBe('国境付近で予定外の航空機の動き');
    await jp.page.click('#send');
    await jp.page.click('#confirm-flash');
    await jp.page.waitForSelector('#outbox tr.msg[data-rung="delivered"]');
    await expect.poll(() => received.length).toBe(1);
    expect(received).toEqual([{ subject: 'unplanned aircraft', lang: 'ja' }]);
    expect(await jp.page.locator('#outbox tr.msg').count()).toBe(1);
    expect(await jp.page.inputValue('#precedence')).toBe('ROUTINE');
    expect(await jp.page.inputValue('#text-lang')).toBe('en');

    // A ROUTINE goes at once, without a confirmation; Enter had sent nothing.
    await jp.page.fill('#body', 'routine follow-up');
    await jp.page.click('#send');
    await expect.poll(() => received.length).toBe(2);
    expect(received[1]).toEqual({ lang: 'en' });
    await expect.poll(() => jp.page.locator('#outbox tr.msg').count()).toBe(2);
    expect(jp.errors).toEqual([]);
    await cn.stop();
    await jp.context.close();
  });
});
