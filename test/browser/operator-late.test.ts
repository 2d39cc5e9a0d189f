import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { connectConsole, enrolDevice, SCREENSHOT_DIR, startHarness, type Harness } from './harness.js';

/**
 * Issue 10, "late shown as on time": a FLASH delivered and acknowledged after its deadlines read
 * "期限内" / "按期完成" because the server's `late` flag was dropped. Deadlines short enough to
 * miss while the receiving console is not open yet.
 */
let hx: Harness;
beforeAll(async () => {
  hx = await startHarness({ deadlines: { FLASH: { deliveredMs: 1_500, acknowledgedMs: 3_000 } } });
});
afterAll(async () => {
  await hx?.close();
});

describe('late rungs', () => {
  it('a FLASH delivered and acknowledged after its deadlines is labelled late, with how late, in ja and zh', async () => {
    // Only these two devices run: while China's is closed, nothing of China's can take delivery.
    const jpKey = await enrolDevice(hx, 'jp-mod', 'late1');
    const jp = await connectConsole(hx, 'ja-JP', jpKey, 'jp late passphrase');
    await jp.page.click('#confirm-keys');
    await jp.page.waitForSelector('#peer-ok');
    await jp.page.selectOption('#precedence', 'FLASH');
    await jp.page.fill('#body', '期限を過ぎて届く');
    await jp.page.click('#send');
    await jp.page.click('#confirm-flash');
    // The delivery deadline passes with no Chinese device online.
    await jp.page.waitForSelector('#events li.ev-deadline-missed');

    const cn = await connectConsole(hx, 'zh-CN', hx.keyFiles['cn-mnd/op1']!, 'cn late passphrase');
    const row = cn.page.locator('#inbox tr.msg[data-rung="received"]');
    await row.waitFor();
    // The acknowledgement deadline (3 s after acceptance) is long past by now as well.
    await cn.page.waitForSelector('#inbox td.due.overdue');
    await cn.page.click('.flash-banner button.ack');
    const acked = cn.page.locator('#inbox tr.msg[data-rung="acknowledged"]');
    await acked.locator('.late').waitFor();
    expect(await acked.locator('td.rung').textContent()).toMatch(/逾期 \d+:\d\d/);
    await cn.page.waitForSelector('#events li.ev-deadline-late');
    expect(await cn.page.textContent('#events')).not.toContain('按期完成');

    const out = jp.page.locator('#outbox tr.msg[data-rung="acknowledged"]');
    await out.locator('li[data-rung="acknowledged"].late').waitFor();
    await out.locator('li[data-rung="delivered"].late').waitFor();
    expect(await out.locator('li[data-rung="delivered"]').textContent()).toMatch(/配達 ⚠ \d+:\d\d 遅延/);
    await jp.page.locator('#events li.ev-deadline-late', { hasText: '配達' }).waitFor();
    expect(await jp.page.textContent('#events')).not.toContain('期限内');
    await jp.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-ja-late.png'), fullPage: true });
    await cn.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-zh-late.png'), fullPage: true });
    expect(jp.errors).toEqual([]);
    expect(cn.errors).toEqual([]);
    await jp.context.close();
    await cn.context.close();
  });
});
