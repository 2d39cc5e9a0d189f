import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import type { HotlineClient } from '../../client/hotline-client.js';
import { connectConsole, enrolDevice, SCREENSHOT_DIR, startHarness, startNodeClient, type Harness } from './harness.js';

/**
 * Issue 10, "Find" and "Print or save one message": the message lists sorted and filtered by
 * precedence, state and text, unacknowledged counts, replies (the envelope's `replyTo`) shown as a
 * thread under their message, and one message printed alone with its signed rungs. The FLASH
 * acknowledgement deadline is short enough to be overdue in the test.
 */
let hx: Harness;
beforeAll(async () => {
  hx = await startHarness({ deadlines: { FLASH: { deliveredMs: 2_000, acknowledgedMs: 3_000 } } });
});
afterAll(async () => {
  await hx?.close();
});

/** The ids of the inbox rows shown (not hidden by the filter), top to bottom. */
const shownInbox = (page: Page) => page.$$eval('#inbox tr.msg', (rows) => rows.filter((r) => !(r as HTMLElement).hidden && (r as HTMLElement).offsetParent !== null).map((r) => r.getAttribute('data-id')));

async function find(page: Page, what: { text?: string; precedence?: string; state?: string; sort?: string }): Promise<void> {
  if (what.text !== undefined) await page.fill('#find-text', what.text);
  if (what.precedence !== undefined) await page.selectOption('#find-precedence', what.precedence);
  if (what.state !== undefined) await page.selectOption('#find-state', what.state);
  if (what.sort !== undefined) await page.selectOption('#find-sort', what.sort);
}

describe('operator console: find, threads, print', () => {
  it('filters by precedence, state (unacknowledged, overdue) and text, sorts, counts what waits; a reply is threaded under its message both ways', async () => {
    const keyFile = await enrolDevice(hx, 'jp-mod', 'find1');
    const jp = await connectConsole(hx, 'en-US', keyFile, 'jp find passphrase');
    await jp.page.click('#confirm-keys');
    await jp.page.waitForSelector('#peer-ok');
    const cn: HotlineClient = await startNodeClient(hx, 'cn-mnd/op1');
    const got: { id: string; replyTo?: string }[] = [];
    cn.on('message', (m) => got.push({ id: m.header.id, ...(m.header.replyTo === undefined ? {} : { replyTo: m.header.replyTo }) }));

    const ids: Record<string, string> = {};
    const accepted = new Set<string>();
    cn.on('accepted', (a) => accepted.add(a.id));
    // Each accepted before the next is sent: the relay handles a FLASH before the ROUTINE frames
    // queued on its connection (PROTOCOL.md "Delivery order"), so only then is "newest" the order sent.
    for (const [precedence, subject] of [
      ['ROUTINE', 'weekly summary'],
      ['PRIORITY', 'radar outage'],
      ['IMMEDIATE', 'fuel report'],
      ['FLASH', 'convoy at the border'],
    ] as const) {
      const id = (await cn.send({ to: 'jp-mod', precedence, subject, body: `${subject}: details`, lang: 'en' })).id;
      ids[precedence] = id;
      await expect.poll(() => accepted.has(id), { timeout: 30_000 }).toBe(true);
    }
    for (const id of Object.values(ids)) await jp.page.locator(`#inbox tr.msg[data-id="${id}"]`).waitFor();
    // Newest first by default (polled: rows are drawn FLASH first and the rest a moment later, and a
    // receipt or deadline redraws a row; the order must settle to this).
    await expect.poll(() => shownInbox(jp.page), { timeout: 30_000 }).toEqual([ids.FLASH, ids.IMMEDIATE, ids.PRIORITY, ids.ROUTINE]);

    // What waits for acknowledgement, by precedence; acknowledging one takes it off.
    const count = (p: string) => jp.page.getAttribute(`#unread button[data-precedence="${p}"]`, 'data-n');
    await expect.poll(() => jp.page.getAttribute('#unread', 'data-total')).toBe('4');
    expect(await count('FLASH')).toBe('1');
    expect(await jp.page.textContent('#unread')).toContain('FLASH: 1');
    await jp.page.click(`#inbox tr.msg[data-id="${ids.ROUTINE}"] button.ack`);
    await jp.page.waitForSelector(`#inbox tr.msg[data-id="${ids.ROUTINE}"][data-rung="acknowledged"]`);
    await expect.poll(() => jp.page.getAttribute('#unread', 'data-total')).toBe('3');
    expect(await jp.page.locator('#unread button[data-precedence="ROUTINE"]').count()).toBe(0);

    // By precedence; by state; one click on a count shows just those.
    await find(jp.page, { precedence: 'PRIORITY' });
    expect(await shownInbox(jp.page)).toEqual([ids.PRIORITY]);
    expect(await jp.page.getAttribute('#find-shown', 'data-n')).toBe('1');
    await find(jp.page, { precedence: '', state: 'open' });
    expect(await shownInbox(jp.page)).toEqual([ids.FLASH, ids.IMMEDIATE, ids.PRIORITY]);
    await find(jp.page, { state: '' });
    await jp.page.click('#unread button[data-precedence="IMMEDIATE"]');
    expect(await shownInbox(jp.page)).toEqual([ids.IMMEDIATE]);
    expect(await jp.page.inputValue('#find-state')).toBe('open');
    // Overdue: the FLASH's acknowledgement deadline (3 s) passes; the others' are far off.
    await find(jp.page, { precedence: '', state: 'overdue' });
    await expect.poll(() => shownInbox(jp.page), { timeout: 15_000 }).toEqual([ids.FLASH]);
    // By text, every word, in sender, subject and text, any case.
    await find(jp.page, { state: '', text: 'RADAR details' });
    expect(await shownInbox(jp.page)).toEqual([ids.PRIORITY]);
    await find(jp.page, { text: 'cn-mnd/op1' });
    expect(await shownInbox(jp.page)).toHaveLength(4);
    await find(jp.page, { text: 'no such words' });
    expect(await shownInbox(jp.page)).toEqual([]);
    expect(await jp.page.textContent('#find-shown')).toBe('Showing 0 of 4 messages.');
    await find(jp.page, { text: '' });
    // Sorted most urgent first, then oldest first.
    await find(jp.page, { sort: 'precedence' });
    await expect.poll(() => shownInbox(jp.page)).toEqual([ids.FLASH, ids.IMMEDIATE, ids.PRIORITY, ids.ROUTINE]);
    await find(jp.page, { sort: 'oldest' });
    await expect.poll(() => shownInbox(jp.page)).toEqual([ids.ROUTINE, ids.PRIORITY, ids.IMMEDIATE, ids.FLASH]);
    await find(jp.page, { sort: 'newest' });

    // Reply to the FLASH: the form says so and goes to its sender's party; the envelope carries replyTo.
    await jp.page.click(`#inbox tr.msg[data-id="${ids.FLASH}"] button.reply`);
    expect(await jp.page.textContent('#replying-to')).toContain('convoy at the border');
    expect(await jp.page.evaluate(() => document.activeElement?.id)).toBe('body');
    await jp.page.fill('#subject', 'convoy: seen');
    await jp.page.fill('#body', 'we see it too');
    await jp.page.click('#send');
    await expect.poll(() => got.length).toBe(1);
    expect(got[0]!.replyTo).toBe(ids.FLASH);
    const reply = got[0]!.id;
    await jp.page.waitForSelector('#replying-to', { state: 'detached' });
    // Threaded under the FLASH; the reply's own row says what it answers.
    await jp.page.locator(`#inbox tr.msg[data-id="${ids.FLASH}"] .thread li[data-id="${reply}"]`, { hasText: 'convoy: seen' }).waitFor();
    expect(await jp.page.textContent(`#outbox tr.msg[data-id="${reply}"] .in-reply-to`)).toContain('convoy at the border');
    // China answers the reply: shown under it in the outbox, from China.
    await cn.acknowledge(reply);
    const answer = (await cn.send({ to: 'jp-mod', precedence: 'ROUTINE', subject: 'thanks', body: 'noted', lang: 'en', replyTo: reply })).id;
    await jp.page.locator(`#outbox tr.msg[data-id="${reply}"] .thread li[data-id="${answer}"]`, { hasText: 'from cn-mnd/op1' }).waitFor();
    expect(await jp.page.textContent(`#inbox tr.msg[data-id="${answer}"] .in-reply-to`)).toContain('convoy: seen');
    // Cancelling a reply sends a plain message.
    await jp.page.click(`#inbox tr.msg[data-id="${ids.PRIORITY}"] button.reply`);
    await jp.page.click('#reply-cancel');
    await jp.page.fill('#body', 'not a reply');
    await jp.page.click('#send');
    await expect.poll(() => got.length).toBe(2);
    expect(got[1]!.replyTo).toBeUndefined();
    await jp.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-en-find-thread.png'), fullPage: true });
    // The first screenful at 1280×800, as the README shows it (docs/operator-console.png).
    await jp.page.setViewportSize({ width: 1280, height: 800 });
    await jp.page.evaluate(() => window.scrollTo(0, 0));
    await jp.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-en-console.png') });

    // Print one message: only its sheet prints, with each rung's time and signer.
    await jp.page.waitForSelector(`#outbox tr.msg[data-id="${reply}"][data-rung="acknowledged"]`);
    await jp.page.evaluate(() => {
      const w = window as unknown as { printed: number };
      w.printed = 0;
      window.print = () => void w.printed++;
    });
    await jp.page.click(`#outbox tr.msg[data-id="${reply}"] button.print`);
    expect(await jp.page.evaluate(() => (window as unknown as { printed: number }).printed)).toBe(1);
    const sheet = jp.page.locator('#print-sheet');
    expect(await sheet.getAttribute('data-id')).toBe(reply);
    expect(await sheet.locator('#print-subject').textContent()).toBe('convoy: seen');
    expect(await sheet.locator('#print-text').textContent()).toBe('we see it too');
    const rung = (r: string) => sheet.locator(`#print-rungs li[data-rung="${r}"]`);
    expect(await rung('sent').textContent()).toContain('signed by jp-mod/find1');
    expect(await rung('accepted').textContent()).toContain('the relay');
    expect(await rung('delivered').textContent()).toMatch(/\d\d:\d\d:\d\d .* signed by cn-mnd\/op1/);
    expect(await rung('acknowledged').textContent()).toContain('signed by cn-mnd/op1');
    expect(await jp.page.isVisible('#print-sheet')).toBe(false);
    await jp.page.emulateMedia({ media: 'print' });
    expect(await jp.page.isVisible('#print-sheet')).toBe(true);
    for (const sel of ['#app', '#inbox', '#outbox', 'header.top']) expect(await jp.page.isVisible(sel), sel).toBe(false);
    await jp.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-message-print-en.png') });
    const pdf = await jp.page.pdf({ path: join(SCREENSHOT_DIR, 'operator-message-en.pdf'), format: 'A4' });
    expect(pdf.subarray(0, 5).toString()).toBe('%PDF-');
    await jp.page.emulateMedia({ media: 'screen' });
    // A received message prints its own rungs: received and acknowledged here.
    await jp.page.click(`#inbox tr.msg[data-id="${ids.ROUTINE}"] button.print`);
    expect(await sheet.getAttribute('data-id')).toBe(ids.ROUTINE);
    expect(await rung('received').textContent()).toContain('signed by jp-mod/find1');
    expect(await rung('acknowledged').textContent()).toContain('signed by jp-mod/find1');

    // The find bar and the sheet speak the interface language.
    await jp.page.selectOption('#language', 'zh');
    await expect.poll(() => jp.page.textContent('#find')).toContain('等待确认');
    await jp.page.click(`#outbox tr.msg[data-id="${reply}"] button.print`);
    expect(await rung('delivered').textContent()).toContain('签名者 cn-mnd/op1');
    await jp.page.selectOption('#language', 'en');

    expect(jp.errors).toEqual([]);
    await cn.stop();
    await jp.context.close();
  });
});
