import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgreementLabels } from '../../shared/protocol/schemas.js';
import { next } from '../helpers/events.js';
import { connectConsole, importKey, NO_CHECKPOINT_YET, openPage, startHarness, startNodeClient, type Harness } from './harness.js';

/**
 * Issue 15 in the operator console: "a label shown" (a banner on each message view and on its
 * print, in the interface language, and a picker in compose) and "an agreement missing a party's
 * signature refused" by the console, which pins the agreement by its signatures.
 */
const LABELS: AgreementLabels = {
  classifications: [
    { code: 'UNCLASSIFIED', names: { en: 'Unclassified', ja: '区分なし', zh: '非密' } },
    { code: 'RESTRICTED', names: { en: 'Restricted', ja: '取扱注意', zh: '内部' } },
  ],
  caveats: [{ code: 'HOTLINE-ONLY', names: { en: 'Hotline only', ja: 'ホットライン限り', zh: '仅限热线' } }],
};

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
});

describe('an agreement missing a party signature in the operator console', () => {
  let hx: Harness;
  beforeAll(async () => {
    // cn-mnd's root has not signed; the relay runs it only through the development flag.
    hx = await startHarness({ unsignedBy: ['cn-mnd'] });
  });
  afterAll(async () => {
    await hx?.close();
  });

  it('is refused: the console does not pin it, and says why', async () => {
    const context = await hx.browser.newContext({ locale: 'ja-JP' });
    try {
      const { page } = await openPage(context, `${hx.server.url}/console/operator/`, [NO_CHECKPOINT_YET]);
      await importKey(page, hx.keyFiles['jp-mod/op1']!, 'jp unsigned passphrase');
      const fatal = page.locator('#fatal');
      await fatal.waitFor();
      expect(await fatal.getAttribute('data-code')).toBe('HL_ERR_AGREEMENT_UNSIGNED');
      expect(await fatal.textContent()).toContain('署名');
      expect(await page.locator('#link-state[data-connected="true"]').count()).toBe(0);
    } finally {
      await context.close();
    }
  });
});
