import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import {
  auditExport,
  auditorToken,
  connectConsole,
  dumpStorage,
  enrolDevice,
  importKey,
  loginCount,
  NO_CHECKPOINT_YET,
  openPage,
  SCREENSHOT_DIR,
  secretForms,
  signCheckpoint,
  startHarness,
  type Harness,
} from './harness.js';

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
    const jp = await openPage(jpContext, `${hx.server.url}/console/operator/`, [NO_CHECKPOINT_YET]);
    const cn = await openPage(cnContext, `${hx.server.url}/console/operator/`, [NO_CHECKPOINT_YET]);

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
    // A FLASH goes only after its confirmation.
    await jp.page.click('#confirm-flash');
    await jp.page.waitForSelector('#outbox tr.msg[data-rung="delivered"]');

    // China: the FLASH banner and the audible alarm until acknowledged.
    // A locator, not an element handle: the banner is redrawn as events arrive.
    const banner = cn.page.locator('.flash-banner');
    await banner.waitFor();
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
    const { page, errors } = await openPage(context, `${hx.server.url}/console/operator/`, [NO_CHECKPOINT_YET]);
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

  it('logs in once per connection, cosigns the checkpoint, and the test-agent switch runs a link test seen on both consoles', async () => {
    const token = await auditorToken(hx);
    const jpKey = await enrolDevice(hx, 'jp-mod', 'op3');
    const cnKey = await enrolDevice(hx, 'cn-mnd', 'op3');
    await signCheckpoint(hx, token);
    const jp = await connectConsole(hx, 'en-US', jpKey, 'jp agent passphrase');
    const cn = await connectConsole(hx, 'en-US', cnKey, 'cn answer passphrase');

    // The link status comes from GET /v1/status through the client's own session: one login each.
    for (const c of [jp, cn]) {
      await c.page.waitForSelector('[data-pair="jp-mod>cn-mnd"]');
      // Every party witnesses the log: the checkpoint is verified and cosigned on connecting.
      await c.page.waitForSelector('#cosign-state[data-size]');
    }
    expect(await loginCount(hx, token, 'jp-mod', 'op3')).toBe(1);
    expect(await loginCount(hx, token, 'cn-mnd', 'op3')).toBe(1);
    const size = Number(await jp.page.getAttribute('#cosign-state', 'data-size'));
    const note = (await auditExport(hx, token)).checkpoints.find((n) => n.split('\n')[1] === String(size));
    expect(note).toContain('— jp-mod/op3 ');
    expect(await cn.page.getAttribute('#cosign-state', 'data-size')).toBeTruthy();

    // Off by default; switched on, Japan's console sends a link test, China's answers it, and
    // the server's verdict (with the round trip) shows on both consoles.
    expect(await jp.page.isChecked('#test-agent')).toBe(false);
    await jp.page.check('#test-agent');
    await jp.page.waitForSelector('#test-sent');
    for (const c of [jp, cn]) {
      await c.page.waitForSelector('#link-result[data-ok="true"][data-rtt]');
      await c.page.waitForSelector('[data-pair="jp-mod>cn-mnd"][data-status="up"]');
      expect(await c.page.textContent('#link-test')).toMatch(/passed, round trip \d+ ms/);
    }
    // A link test is no message: neither inbox nor outbox shows it.
    expect(await cn.page.locator('#inbox tr.msg').count()).toBe(0);
    expect(await jp.page.locator('#outbox tr.msg').count()).toBe(0);
    await jp.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-jp-test-agent.png'), fullPage: true });
    await cn.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-cn-link-test.png'), fullPage: true });

    // The switch is remembered for this device (sealed): after locking and unlocking it is still
    // on. That is a second connection, and so exactly a second login.
    await jp.page.click('#lock');
    await jp.page.fill('#passphrase', 'jp agent passphrase');
    await jp.page.click('#unlock');
    await jp.page.waitForSelector('#link-state[data-connected="true"]');
    expect(await jp.page.isChecked('#test-agent')).toBe(true);
    await jp.page.waitForSelector('#test-sent');
    await jp.page.waitForSelector('[data-pair="jp-mod>cn-mnd"]');
    expect(await loginCount(hx, token, 'jp-mod', 'op3')).toBe(2);
    expect(jp.errors).toEqual([]);
    expect(cn.errors).toEqual([]);
    await jp.context.close();
    await cn.context.close();
  });

  it('a new peer device key blocks sending with the warning until it is confirmed, and nothing is sealed to it before', async () => {
    const jpKey = await enrolDevice(hx, 'jp-mod', 'op4');
    const cnKey = await enrolDevice(hx, 'cn-mnd', 'op4');
    const jp = await connectConsole(hx, 'en-US', jpKey, 'jp passphrase four');
    const cn = await connectConsole(hx, 'en-US', cnKey, 'cn passphrase four');
    for (const c of [jp, cn]) {
      await c.page.click('#confirm-keys');
      await c.page.waitForSelector('#peer-ok');
    }

    // China's administrator enrols another operator device mid-watch.
    await enrolDevice(hx, 'cn-mnd', 'op5');
    // Japan's message was sealed for the directory it knew: the server refuses it, the client
    // fetches the directory again, the console sees an unconfirmed key and the reseal is refused.
    await jp.page.fill('#body', 'first, before the new key is confirmed');
    await jp.page.click('#send');
    await jp.page.waitForSelector('#peer-warning[data-trust="changed"]');
    expect(await jp.page.isDisabled('#send')).toBe(true);
    await jp.page.waitForSelector('#send-blocked');
    expect(await jp.page.locator('#peers li.unconfirmed b').allTextContents()).toEqual(['cn-mnd/op5']);
    await jp.page.waitForSelector('#events li.ev-error[data-code="HL_ERR_ENVELOPE_RECIPIENTS"]');
    await expect.poll(() => jp.page.locator('#outbox tr.msg').count(), { timeout: 15_000 }).toBe(0);
    await jp.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-jp-peer-changed.png'), fullPage: true });

    // Confirmed after comparing fingerprints: sending works again.
    await jp.page.click('#confirm-keys');
    await jp.page.waitForSelector('#peer-ok');
    await jp.page.fill('#body', 'second, after confirming');
    await jp.page.click('#send');
    await jp.page.waitForSelector('#outbox tr.msg[data-rung="delivered"]');
    // Had the first been resealed to the new key, it would have reached China before the second.
    await cn.page.waitForSelector('#inbox tr.msg');
    expect(await cn.page.locator('#inbox tr.msg .text p').allTextContents()).toEqual(['second, after confirming']);
    expect(jp.errors).toEqual([]);
    expect(cn.errors).toEqual([]);
    await jp.context.close();
    await cn.context.close();
  });

  it('a checkpoint that does not verify raises a red audit alarm that stays until dismissed', async () => {
    const token = await auditorToken(hx);
    await signCheckpoint(hx, token);
    const context = await hx.browser.newContext({ locale: 'en-US' });
    // The server (here: the network in between) shows this console a checkpoint whose root was changed.
    await context.route('**/v1/audit/checkpoint/latest', async (route) => {
      const res = await route.fetch();
      const body = (await res.json()) as { size: number; note: string };
      const lines = body.note.split('\n');
      lines[2] = Buffer.alloc(32, 7).toString('base64');
      await route.fulfill({ response: res, json: { ...body, note: lines.join('\n') } });
    });
    const { page, errors } = await openPage(context, `${hx.server.url}/console/operator/`, [NO_CHECKPOINT_YET]);
    await importKey(page, await enrolDevice(hx, 'jp-mod', 'op6'), 'jp passphrase six');
    await page.waitForSelector('#link-state[data-connected="true"]');
    // Raised here, and reported to the server, which relays it to this party's consoles.
    const banner = await page.waitForSelector('#audit-alarm[data-count="2"]');
    expect(await banner.textContent()).toContain('the audit log shown to this console is inconsistent');
    expect(await banner.textContent()).toContain('does not verify');
    expect(await page.locator('#cosign-state[data-size]').count()).toBe(0);
    await page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-jp-audit-alarm.png'), fullPage: true });

    // It stays across a lock and unlock (the tampering has stopped: no new alarm is raised).
    await context.unroute('**/v1/audit/checkpoint/latest');
    await page.click('#lock');
    await page.fill('#passphrase', 'jp passphrase six');
    await page.click('#unlock');
    await page.waitForSelector('#link-state[data-connected="true"]');
    await page.waitForSelector('#cosign-state[data-size]');
    expect(await page.getAttribute('#audit-alarm', 'data-count')).toBe('2');
    await page.click('#dismiss-alarm');
    await page.waitForSelector('#audit-alarm', { state: 'detached' });
    expect(errors).toEqual([]);
    await context.close();
  });
});
