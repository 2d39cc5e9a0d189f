import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LABELS } from '../helpers/deployment.js';
import { next } from '../helpers/events.js';
import { connectConsole, importKey, NO_CHECKPOINT_YET, openPage, startHarness, startNodeClient, type Harness } from './harness.js';

/**
 * Issue 15 in the operator console: "a label shown" (a banner on each message view and on its
 * print, in the interface language, and a picker in compose) and "an agreement missing a party's
 * signature refused" by the console, which pins the agreement by its signatures.
 */
describe('security labels in the operator console', () => {
  let hx: Harness;
  beforeAll(async () => {
    hx = await startHarness({ labels: LABELS });
  });
  afterAll(async () => {
    await hx?.close();
  });

  it('shows the banner on a received message and on its print, in zh; sends a label picked in compose', async () => {
    const cn = await connectConsole(hx, 'zh-CN', hx.keyFiles['cn-mnd/op1']!, 'cn labels passphrase');
    await cn.page.click('#confirm-keys');
    await cn.page.waitForSelector('#peer-ok');
    const jp = await startNodeClient(hx, 'jp-mod/op1');
    try {
      const { id } = await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: '演習区域の変更', lang: 'ja', label: { classification: 'RESTRICTED', caveats: ['HOTLINE-ONLY'] } });
      const row = cn.page.locator(`#inbox tr.msg[data-id="${id}"]`);
      await row.waitFor();
      const banner = row.locator('.label-banner');
      expect(await banner.getAttribute('data-label')).toBe('RESTRICTED // HOTLINE-ONLY');
      expect(await banner.textContent()).toContain('内部 // 仅限热线');
      await cn.page.evaluate(() => (window.print = () => undefined));
      await row.locator('button.print').click();
      expect(await cn.page.textContent('#print-sheet #print-label')).toContain('内部 // 仅限热线');

      // Compose: the classification picker names the agreement's labels in zh; the label goes in the signed header.
      expect(await cn.page.locator('#label-class option[value="RESTRICTED"]').textContent()).toBe('内部');
      const arrived = next(jp, 'message');
      await cn.page.selectOption('#precedence', 'ROUTINE');
      await cn.page.selectOption('#label-class', 'RESTRICTED');
      await cn.page.check('#compose-label input.label-caveat[value="HOTLINE-ONLY"]');
      await cn.page.fill('#body', '已收到');
      await cn.page.click('#send');
      const got = await arrived;
      expect(got.header.label).toEqual({ classification: 'RESTRICTED', caveats: ['HOTLINE-ONLY'] });
      const out = cn.page.locator(`#outbox tr.msg[data-id="${got.header.id}"] .label-banner`);
      expect(await out.getAttribute('data-label')).toBe('RESTRICTED // HOTLINE-ONLY');
      expect(cn.errors).toEqual([]);
    } finally {
      await jp.stop();
      await cn.context.close();
    }
  });

  it('names the label in ja and en too, on the message and on its print, as the agreement does', async () => {
    // Two operators of Japan, one console each: ja and en.
    const consoles = [
      { ...(await connectConsole(hx, 'ja-JP', hx.keyFiles['jp-mod/op1']!, 'jp labels ja')), want: 'セキュリティ区分: 取扱注意 // ホットライン限り', print: '取扱注意 // ホットライン限り' },
      { ...(await connectConsole(hx, 'en-US', hx.keyFiles['jp-mod/op2']!, 'jp labels en')), want: 'Security label: Restricted // Hotline only', print: 'Restricted // Hotline only' },
    ];
    const cn = await startNodeClient(hx, 'cn-mnd/op1');
    try {
      const { id } = await cn.send({ to: 'jp-mod', precedence: 'PRIORITY', body: '收到', lang: 'zh', label: { classification: 'RESTRICTED', caveats: ['HOTLINE-ONLY'] } });
      const unlabelled = await cn.send({ to: 'jp-mod', precedence: 'ROUTINE', body: '无标识', lang: 'zh' });
      for (const c of consoles) {
        const row = c.page.locator(`#inbox tr.msg[data-id="${id}"]`);
        await row.waitFor();
        const banner = row.locator('.label-banner');
        expect(await banner.getAttribute('data-label')).toBe('RESTRICTED // HOTLINE-ONLY');
        expect((await banner.textContent())?.trim()).toBe(c.want);
        await c.page.evaluate(() => (window.print = () => undefined));
        await row.locator('button.print').click();
        expect(await c.page.textContent('#print-sheet #print-label')).toContain(c.print);
        // A message without a label, where the agreement defines labels, says so.
        const plain = c.page.locator(`#inbox tr.msg[data-id="${unlabelled.id}"] .label-banner.unlabelled`);
        await plain.waitFor();
        expect(await plain.getAttribute('data-label')).toBe('');
        expect(c.errors).toEqual([]);
      }
    } finally {
      await cn.stop();
      for (const c of consoles) await c.context.close();
    }
  });

  it('the auditor console counts messages by label in the report, named in the interface language', async () => {
    const context = await hx.browser.newContext({ locale: 'ja-JP' });
    try {
      const { page, errors } = await openPage(context, `${hx.server.url}/console/auditor/`);
      await importKey(page, hx.keyFiles['jp-mod/audit1']!, 'auditor labels');
      await page.waitForSelector('#verify-result[data-ok="true"]');
      // The earlier tests of this file sent labelled messages both ways, and one without a label.
      const row = page.locator('#report-labels tr[data-label="RESTRICTED // HOTLINE-ONLY"]');
      expect((await row.locator('td[data-col="label"]').textContent())?.trim()).toBe('取扱注意 // ホットライン限り');
      expect(Number(await row.locator('td[data-col="sent"]').textContent())).toBeGreaterThanOrEqual(3);
      expect((await page.locator('#report-labels tr[data-label=""] td[data-col="label"]').textContent())?.trim()).toBe('（区分なし）');
      expect(errors).toEqual([]);
    } finally {
      await context.close();
    }
  });
});

describe('an agreement missing a party signature in the consoles', () => {
  let hx: Harness;
  beforeAll(async () => {
    // cn-mnd's root has not signed; the relay runs it only through the development flag.
    hx = await startHarness({ unsignedBy: ['cn-mnd'] });
  });
  afterAll(async () => {
    await hx?.close();
  });

  /**
   * Import `key` into the console at `path` in `locale`: it must stop on a full-page
   * HL_ERR_AGREEMENT_UNSIGNED that says "signed" (`signed`) in that language, showing none of `absent`.
   */
  async function expectRefused(path: string, locale: string, key: string, signed: string, absent: string, expectedFailures: readonly RegExp[] = []): Promise<void> {
    const context = await hx.browser.newContext({ locale });
    try {
      const { page } = await openPage(context, `${hx.server.url}${path}`, expectedFailures);
      await importKey(page, hx.keyFiles[key]!, `${key} unsigned passphrase`);
      const fatal = page.locator('#fatal');
      await fatal.waitFor();
      expect(await fatal.getAttribute('data-code')).toBe('HL_ERR_AGREEMENT_UNSIGNED');
      expect(await fatal.textContent()).toContain(signed);
      expect(await page.locator(absent).count()).toBe(0);
    } finally {
      await context.close();
    }
  }

  it('is refused: the console does not pin it, and says why', async () => {
    await expectRefused('/console/operator/', 'ja-JP', 'jp-mod/op1', '署名', '#link-state[data-connected="true"]', [NO_CHECKPOINT_YET]);
  });

  it('is refused by the auditor console too, which shows no log of it', async () => {
    await expectRefused('/console/auditor/', 'zh-CN', 'jp-mod/audit1', '签署', '#verify-result, #report-table');
  });
});
