import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { dumpStorage, importKey, openPage, SCREENSHOT_DIR, secretForms, startHarness, type Harness } from './harness.js';

let hx: Harness;
beforeAll(async () => {
  hx = await startHarness();
});
afterAll(async () => {
  await hx?.close();
});

const JP_PASS = 'jp watch officer passphrase';
const CN_PASS = '中国值班员的口令 2026';
const BODY = '至急：本日14時、国境付近で予定外の航空機の動きを確認。意図を確認されたい。';
const SUBJECT = '予定外の航空機の動き';

describe('operator console', () => {
  it('serves the consoles with a strict Content-Security-Policy and redirects / to the index', async () => {
    const root = await fetch(`${hx.server.url}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/console/');
    const page = await fetch(`${hx.server.url}/console/operator/`);
    expect(page.status).toBe(200);
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    expect(await page.text()).not.toMatch(/<script>(?!<\/script>)/);
    const js = await fetch(`${hx.server.url}/console/assets/operator.js`);
    expect(js.headers.get('content-type')).toMatch(/javascript/);
    expect((await fetch(`${hx.server.url}/console/assets/nope.js`)).status).toBe(404);
  });

  it('FLASH from Japan: China sees the alert and acknowledges; Japan sees "acknowledged" with the verified signed receipt', async () => {
    const jpContext = await hx.browser.newContext({ locale: 'ja-JP' });
    const cnContext = await hx.browser.newContext({ locale: 'zh-CN' });
    const jp = await openPage(jpContext, `${hx.server.url}/console/operator/`);
    const cn = await openPage(cnContext, `${hx.server.url}/console/operator/`);

    // Each side imports its own key file under its own passphrase and connects.
    await importKey(jp.page, hx.keyFiles['jp-mod/op1']!, JP_PASS);
    await importKey(cn.page, hx.keyFiles['cn-mnd/op1']!, CN_PASS);
    for (const p of [jp.page, cn.page]) {
      await p.waitForSelector('#link-state[data-connected="true"]');
      // The interface follows the browser language; the peers' fingerprints wait for confirmation.
      await p.waitForSelector('#peer-warning[data-trust="unconfirmed"]');
      expect(await p.isDisabled('#send')).toBe(true);
      await p.click('#confirm-keys');
      await p.waitForSelector('#peer-ok');
    }
    // The link's state per pair comes from GET /v1/status: no test has run yet.
    await jp.page.waitForSelector('[data-pair="jp-mod>cn-mnd"][data-status="unknown"]');
    expect(await jp.page.textContent('#link-test')).toContain('回線試験はまだありません');
    expect(await jp.page.textContent('#compose h2')).toBe('作成');
    expect(await cn.page.textContent('#compose h2')).toBe('撰写');

    // Japan sends a FLASH message in Japanese.
    await jp.page.selectOption('#precedence', 'FLASH');
    await jp.page.fill('#subject', SUBJECT);
    await jp.page.fill('#body', BODY);
    await jp.page.click('#send');
    await jp.page.waitForSelector('#outbox tr.msg[data-rung="delivered"]');

    // China: the FLASH banner and the audible alarm until acknowledged.
    const banner = await cn.page.waitForSelector('.flash-banner');
    expect(await banner.isVisible()).toBe(true);
    expect(await banner.textContent()).toContain('jp-mod/op1');
    await expect.poll(() => cn.page.evaluate(() => Number(document.body.dataset.beeps ?? 0))).toBeGreaterThan(0);
    expect(await cn.page.evaluate(() => document.body.dataset.alarm)).toBe('on');
    const row = cn.page.locator('#inbox tr.msg[data-rung="received"]');
    await expect.poll(() => row.count()).toBe(1);
    expect(await row.locator('.text p').textContent()).toBe(BODY);
    expect(await row.locator('[data-precedence="FLASH"]').count()).toBe(1);
    expect(await row.locator('td.due').textContent()).toMatch(/剩余 0?9:\d\d/);
    await cn.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-cn-flash-alert.png'), fullPage: true });

    await cn.page.click('.flash-banner button.ack');
    await cn.page.waitForSelector('.flash-banner', { state: 'detached' });
    await cn.page.waitForSelector('#inbox tr.msg[data-rung="acknowledged"]');
    expect(await cn.page.evaluate(() => document.body.dataset.alarm)).toBe('off');

    // Japan: acknowledged, with China's signed receipt verified in the browser.
    const acked = await jp.page.waitForSelector('#outbox tr.msg[data-rung="acknowledged"]');
    expect(await acked.$eval('.receipt[data-verified="true"]', (el) => el.textContent)).toContain('cn-mnd/op1');
    expect(await acked.$eval('td.due', (el) => el.textContent)).toBe('—');
    await jp.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-jp-acknowledged.png'), fullPage: true });

    // Nothing of the message text or of the keys is stored in clear on either side.
    const jpStored = await dumpStorage(jp.page);
    const cnStored = await dumpStorage(cn.page);
    expect(jpStored).toContain('hotline-console-key');
    for (const [stored, key] of [[jpStored, 'jp-mod/op1'], [cnStored, 'cn-mnd/op1']] as const) {
      expect(stored).not.toContain(BODY);
      expect(stored).not.toContain(SUBJECT);
      const d = hx.dep.devices[key]!;
      for (const form of secretForms([d.signSecret, d.boxSecret])) expect(stored).not.toContain(form);
    }
    expect(jp.errors).toEqual([]);
    expect(cn.errors).toEqual([]);
    await jpContext.close();
    await cnContext.close();
  });

  it('key store: a wrong passphrase is refused, the right one unlocks, nothing secret is stored in clear', async () => {
    const context = await hx.browser.newContext({ locale: 'en-US' });
    const { page, errors } = await openPage(context, `${hx.server.url}/console/operator/`);
    await importKey(page, hx.keyFiles['jp-mod/op2']!, 'the right passphrase');
    await page.waitForSelector('#link-state[data-connected="true"]');

    // Lock: the page reloads and only the sealed record remains.
    await page.click('#lock');
    await page.waitForSelector('#unlock-form');
    expect(await page.textContent('#unlock-form')).toContain('jp-mod/op2');
    const stored = await dumpStorage(page);
    const d = hx.dep.devices['jp-mod/op2']!;
    for (const form of secretForms([d.signSecret, d.boxSecret])) expect(stored).not.toContain(form);
    expect(stored).not.toContain('the right passphrase');

    await page.fill('#passphrase', 'the wrong passphrase');
    await page.click('#unlock');
    await expect.poll(() => page.textContent('#unlock-error')).toBe('Wrong passphrase.');
    expect(await page.isVisible('#link-state')).toBe(false);

    await page.fill('#passphrase', 'the right passphrase');
    await page.click('#unlock');
    await page.waitForSelector('#link-state[data-connected="true"]');

    // The interface language is the user's choice.
    await page.selectOption('#language', 'zh');
    await expect.poll(() => page.textContent('#compose h2')).toBe('撰写');
    await page.selectOption('#language', 'en');
    await expect.poll(() => page.textContent('#compose h2')).toBe('Compose');
    expect(errors).toEqual([]);
    await context.close();
  });
});
