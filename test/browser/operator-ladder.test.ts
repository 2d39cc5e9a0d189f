import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectConsole, enrolDevice, startHarness, type Harness } from './harness.js';

/**
 * Issue 15, the response ladder in the console: the addressee's operator (in Chinese) answers with
 * the ladder's buttons, the sender's console (in Japanese) shows each verified answer on the row.
 */
let hx: Harness;
beforeAll(async () => {
  hx = await startHarness();
});
afterAll(async () => {
  await hx?.close();
});

describe('the response ladder in the operator console', () => {
  it('will comply, have complied and cannot comply (with its reason) clicked in zh are seen by the sender in ja', async () => {
    const cnKey = await enrolDevice(hx, 'cn-mnd', 'lad1');
    const jpKey = await enrolDevice(hx, 'jp-mod', 'lad1');
    const cn = await connectConsole(hx, 'zh-CN', cnKey, 'cn ladder passphrase');
    const jp = await connectConsole(hx, 'ja-JP', jpKey, 'jp ladder passphrase');
    for (const c of [cn, jp]) {
      await c.page.click('#confirm-keys');
      await c.page.waitForSelector('#peer-ok');
    }
    const send = async (body: string): Promise<string> => {
      await jp.page.selectOption('#precedence', 'PRIORITY');
      await jp.page.fill('#body', body);
      await jp.page.click('#send');
      const row = cn.page.locator('#inbox tr.msg', { hasText: body });
      await row.waitFor();
      return (await row.getAttribute('data-id'))!;
    };

    const first = await send('第一：演習区域を変更してください');
    const inFirst = cn.page.locator(`#inbox tr.msg[data-id="${first}"]`);
    const outFirst = jp.page.locator(`#outbox tr.msg[data-id="${first}"]`);
    expect(await inFirst.locator('button.will-comply').textContent()).toBe('将执行');
    await inFirst.locator('button.will-comply').click();
    // The sender sees the signed will-comply, and that it acknowledges.
    const will = outFirst.locator('.answer[data-answer="will-comply"]');
    await will.waitFor();
    expect(await will.textContent()).toBe('✔ 実施する（cn-mnd/lad1）');
    await jp.page.waitForSelector(`#outbox tr.msg[data-id="${first}"][data-rung="acknowledged"]`);
    // Answered here: the answer buttons go, have complied stays.
    await inFirst.locator('.answer[data-answer="will-comply"]').waitFor();
    expect(await inFirst.locator('button.will-comply').count()).toBe(0);
    await inFirst.locator('button.have-complied').click();
    const done = outFirst.locator('.answer[data-answer="have-complied"]');
    await done.waitFor();
    expect(await done.textContent()).toContain('実施済み');

    const second = await send('第二：直ちに連絡してください');
    const inSecond = cn.page.locator(`#inbox tr.msg[data-id="${second}"]`);
    // No reason picked: nothing is signed (a cannot-comply names its reason).
    await inSecond.locator('button.cannot-comply').click();
    expect(await cn.page.evaluate(() => document.activeElement?.className)).toBe('ladder-reason');
    await inSecond.locator('select.ladder-reason').selectOption('not-feasible');
    await inSecond.locator('button.cannot-comply').click();
    const mine = inSecond.locator('.answer[data-answer="cannot-comply"]');
    await mine.waitFor();
    expect(await mine.textContent()).toContain('无法执行：无法实现');
    const no = jp.page.locator(`#outbox tr.msg[data-id="${second}"] .answer[data-answer="cannot-comply"]`);
    await no.waitFor();
    expect(await no.textContent()).toContain('実施できない：実施不可能');
    // Cannot comply answered: neither have complied nor another answer is offered.
    expect(await inSecond.locator('button.ladder').count()).toBe(0);

    expect(cn.errors).toEqual([]);
    expect(jp.errors).toEqual([]);
    await cn.context.close();
    await jp.context.close();
  });
});
