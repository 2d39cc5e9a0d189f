import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { connectConsole, enrolDevice, SCREENSHOT_DIR, startNodeClient, startHarness, type Harness } from './harness.js';

/** Issue 10 item 9: the operator console from a 390 px phone to a 1280 px desk, in every language. */
let hx: Harness;
beforeAll(async () => {
  hx = await startHarness();
});
afterAll(async () => {
  await hx?.close();
});

describe('operator console layout', () => {
  it('at 390×844 nothing scrolls sideways in en, ja and zh with messages shown; at 1280 px the precedence badge stays out of the sender column and the text has a line of its own', async () => {
    const keyFile = await enrolDevice(hx, 'cn-mnd', 'layout1');
    const cn = await connectConsole(hx, 'en-US', keyFile, 'cn layout passphrase');
    const jp = await startNodeClient(hx, 'jp-mod/op1');
    const ids: string[] = [];
    for (const precedence of ['ROUTINE', 'PRIORITY', 'IMMEDIATE', 'FLASH'] as const) {
      ids.push((await jp.send({ to: 'cn-mnd', precedence, subject: `${precedence} subject`, body: `a ${precedence} body with a reasonably long line of text`, lang: 'en' })).id);
    }
    for (const id of ids) await cn.page.locator(`#inbox tr.msg[data-id="${id}"]`).waitFor();

    await cn.page.setViewportSize({ width: 390, height: 844 });
    for (const lang of ['en', 'ja', 'zh'] as const) {
      await cn.page.selectOption('#language', lang);
      await cn.page.locator(`#inbox tr.msg[data-id="${ids[0]}"]`).waitFor();
      await cn.page.screenshot({ path: join(SCREENSHOT_DIR, `operator-${lang}-390.png`), fullPage: true });
      expect({ lang, width: await cn.page.evaluate(() => document.documentElement.scrollWidth) }).toEqual({ lang, width: 390 });
      // The text stays readable: its column is not squeezed to a few characters a line.
      const text = await cn.page.locator(`#inbox tr.msg[data-id="${ids[0]}"] td`).nth(2).boundingBox();
      expect({ lang, readable: (text?.width ?? 0) >= 250 }).toEqual({ lang, readable: true });
    }

    await cn.page.setViewportSize({ width: 1280, height: 900 });
    for (const lang of ['en', 'ja', 'zh'] as const) {
      await cn.page.selectOption('#language', lang);
      await cn.page.locator(`#inbox tr.msg[data-id="${ids[0]}"]`).waitFor();
      for (const id of ids) {
        const row = cn.page.locator(`#inbox tr.msg[data-id="${id}"]`);
        const badge = await row.locator('.prec').boundingBox();
        const sender = await row.locator('td').nth(1).boundingBox();
        if (!badge || !sender) throw new Error(`row ${id} not laid out`);
        expect({ lang, id, overlap: badge.x + badge.width > sender.x }).toEqual({ lang, id, overlap: false });
        // The text has a line of its own across the row (it was 3.5rem wide at 1280 px).
        const text = await row.locator('td').nth(2).boundingBox();
        expect({ lang, id, readable: (text?.width ?? 0) >= 500 }).toEqual({ lang, id, readable: true });
      }
      await cn.page.screenshot({ path: join(SCREENSHOT_DIR, `operator-${lang}-1280.png`), fullPage: true });
    }
    expect(cn.errors).toEqual([]);
    await jp.stop();
    await cn.context.close();
  });
});
