import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { DeviceSecretFile } from '../../shared/protocol/schemas.js';
import { tempDir } from '../helpers/deployment.js';
import { fetchDirectory, login } from '../helpers/ws-client.js';
import { startRelayPair, type RelayPair } from '../helpers/two-relays.js';
import { importKey, launchChromium, NO_CHECKPOINT_YET, openPage, SCREENSHOT_DIR } from './harness.js';

/**
 * Issue 11, the consoles against two sovereign relays: each ministry's operator loads the console
 * from its own relay and logs in there. A Japanese operator's FLASH to China climbs accepted →
 * relayed (China's relay stored it while no Chinese console was open) → delivered → acknowledged;
 * then the line between the relays is cut (a proxy that stops forwarding) and both consoles show
 * the hotline's line down, with its reason, apart from their own link to their relay, and up
 * again when it returns (issue 10: the sender's ladder shows `relayed` with its time).
 */
let pair: RelayPair;
let browser: Browser;
const dir = tempDir('hotline-two-relays-console-');
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  pair = await startRelayPair();
  browser = await launchChromium();
});
afterAll(async () => {
  for (const c of contexts) await c.close();
  await browser?.close();
  await pair?.close();
  dir.remove();
});

/** Each relay has the other party's operator in its directory (sent over the relay link; no client-visible event). */
async function directoriesExchanged(): Promise<void> {
  const { dep } = pair;
  const jpToken = await login(pair.jp.url, dep.devices.jpAud, dep.agreement);
  const cnToken = await login(pair.cn.url, dep.devices.cnAud, dep.agreement);
  const end = Date.now() + 20_000;
  for (let i = 0; i < 400 && Date.now() < end; i++) {
    const [atJp, atCn] = await Promise.all([fetchDirectory(pair.jp.url, jpToken), fetchDirectory(pair.cn.url, cnToken)]);
    if (atJp.some((c) => c.device === 'cn-op-1') && atCn.some((c) => c.device === 'jp-op-1')) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the relays did not exchange their directories within 20 s');
}

/** An operator console loaded from `relayUrl`, its key imported, connected to that relay. */
async function openConsole(relayUrl: string, device: DeviceSecretFile, locale: string, timezoneId: string): Promise<{ page: Page; errors: string[]; context: BrowserContext }> {
  const file = join(dir.path, `${device.certificate.cert.device}.key`);
  writeFileSync(file, JSON.stringify(device), { mode: 0o600 });
  const context = await browser.newContext({ locale, timezoneId, viewport: { width: 1280, height: 900 } });
  contexts.push(context);
  const opened = await openPage(context, `${relayUrl}/console/operator/`, [NO_CHECKPOINT_YET]);
  await importKey(opened.page, file, `${device.certificate.cert.device} passphrase`);
  await opened.page.waitForSelector('#link-state[data-connected="true"]');
  return { ...opened, context };
}

/** A further tab of a console whose key this browser holds: unlocked, the link held by the first tab. */
async function unlockTab(page: Page, passphrase: string): Promise<void> {
  await page.fill('#passphrase', passphrase);
  await page.click('#unlock');
  await page.waitForSelector('#elsewhere #take-over');
}

const shot = (page: Page, name: string) => page.screenshot({ path: join(SCREENSHOT_DIR, name), fullPage: true });

describe('operator consoles, one relay per ministry', () => {
  it('a FLASH from Tokyo: accepted, relayed, delivered, acknowledged on the sender’s ladder; the line cut and restored is shown on both sides (a second tab too), apart from each console’s own link, and on a locked console; what was sent meanwhile waits unrelayed; printed with the relayed rung', async () => {
    await directoriesExchanged();
    const { dep } = pair;
    const jp = await openConsole(pair.jp.url, dep.devices.jpOp, 'ja-JP', 'Asia/Tokyo');
    const jpLine = jp.page.locator('.line-state[data-peer="cn-mnd"]');
    await jp.page.locator('.line-state[data-peer="cn-mnd"][data-status="up"]').waitFor();
    expect(await jpLine.textContent()).toBe('cn-mnd との回線: 正常');

    await jp.page.click('#confirm-keys');
    await jp.page.waitForSelector('#peer-ok');
    await jp.page.selectOption('#precedence', 'FLASH');
    await jp.page.fill('#subject', '演習区域の変更');
    await jp.page.fill('#body', '至急：本日一四〇〇時、演習区域を変更する。');
    await jp.page.click('#send');
    await jp.page.click('#confirm-flash');
    const sentRow = jp.page.locator('#outbox tr.msg').first();
    await sentRow.waitFor();
    const id = (await sentRow.getAttribute('data-id'))!;
    const row = jp.page.locator(`#outbox tr.msg[data-id="${id}"]`);

    // No Chinese console is open: China's relay stores the FLASH, and the sender sees it relayed.
    await row.and(jp.page.locator('[data-rung="relayed"]')).waitFor();
    expect(await row.locator('.rung-label').textContent()).toBe('中継済み');
    const relayedRung = row.locator('li[data-rung="relayed"]');
    expect(await relayedRung.getAttribute('class')).toContain('done');
    expect(await relayedRung.locator('time').textContent()).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/);
    expect(await row.locator('li[data-rung="delivered"]').getAttribute('class')).not.toContain('done');
    await jp.page.locator('#events li.ev-relayed', { hasText: id.slice(0, 8) }).waitFor();
    await shot(jp.page, 'two-relays-ja-jp-relayed.png');

    // The Chinese operator opens the console at China's relay: the FLASH banner, then the acknowledgement.
    const cn = await openConsole(pair.cn.url, dep.devices.cnOp, 'zh-CN', 'Asia/Shanghai');
    const banner = cn.page.locator(`.flash-banner[data-id="${id}"]`);
    await banner.waitFor();
    expect(await banner.textContent()).toContain('演習区域の変更');
    expect(await banner.textContent()).toContain('jp-mod/jp-op-1');
    await cn.page.locator('.line-state[data-peer="jp-mod"][data-status="up"]').waitFor();
    await shot(cn.page, 'two-relays-zh-cn-flash.png');
    await banner.locator('button.ack').click();
    await banner.waitFor({ state: 'detached' });

    // The sender's ladder: every rung done, each with its time, in order.
    const done = jp.page.locator(`#outbox tr.msg[data-id="${id}"][data-rung="acknowledged"]`);
    await done.waitFor();
    expect(await done.locator('li').evaluateAll((els) => els.map((e) => e.getAttribute('data-rung')))).toEqual(['sent', 'accepted', 'relayed', 'delivered', 'acknowledged']);
    expect(await done.locator('li.done').count()).toBe(5);
    const times = await done.locator('li time').evaluateAll((els) => els.map((e) => [e.parentElement!.getAttribute('data-rung'), Date.parse(e.getAttribute('datetime')!)] as const));
    expect(times.map(([rung]) => rung)).toEqual(['sent', 'accepted', 'relayed', 'delivered', 'acknowledged']);
    const at = times.map(([, t]) => t);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    expect(await done.locator('li[data-rung="relayed"]').textContent()).toContain('中継済み');
    await jp.page.selectOption('#language', 'zh');
    await done.locator('li[data-rung="relayed"]', { hasText: '已中转' }).waitFor();
    await jp.page.selectOption('#language', 'en');
    await done.locator('li[data-rung="relayed"]', { hasText: 'relayed' }).waitFor();
    await jp.page.selectOption('#language', 'ja');
    // The lists are redrawn in the new language: shoot once the row is back, in Japanese.
    await done.locator('li[data-rung="relayed"]', { hasText: '中継済み' }).waitFor();
    await shot(jp.page, 'two-relays-ja-jp-acknowledged.png');
    // Printed, the relayed rung says whose relay stored it, and when.
    await jp.page.evaluate(() => {
      window.print = () => undefined;
    });
    await done.locator('button.print').click();
    const printed = jp.page.locator('#print-sheet #print-rungs li[data-rung="relayed"][data-reached="true"]');
    expect(await printed.textContent()).toContain('cn-mnd の中継サーバーが保管');
    expect(await jp.page.locator('#print-sheet #print-rungs li').evaluateAll((els) => els.map((e) => e.getAttribute('data-rung')))).toEqual(['sent', 'accepted', 'relayed', 'delivered', 'acknowledged']);
    await jp.page.evaluate(() => window.dispatchEvent(new Event('afterprint')));

    // A second tab of the Japanese console: it has no link of its own (one per device), and is
    // told the line's state by the tab that has.
    const jp2 = await openPage(jp.context, `${pair.jp.url}/console/operator/`, [NO_CHECKPOINT_YET]);
    await unlockTab(jp2.page, `${dep.devices.jpOp.certificate.cert.device} passphrase`);
    await jp2.page.locator('.line-state[data-peer="cn-mnd"][data-status="up"]').waitFor();

    // The line between the relays is cut: both consoles say so, with why, while still connected to their own relay.
    pair.toCn.cut();
    pair.toJp.cut();
    const jpDown = jp.page.locator('.line-down[data-peer="cn-mnd"]');
    const cnDown = cn.page.locator('.line-down[data-peer="jp-mod"]');
    await jpDown.waitFor({ timeout: 30_000 });
    await cnDown.waitFor({ timeout: 30_000 });
    await jp2.page.locator('.line-down[data-peer="cn-mnd"]').waitFor();
    expect(await jp2.page.getAttribute('#link-state', 'data-elsewhere')).toBe('true');
    for (const [page, peer] of [
      [jp.page, 'cn-mnd'],
      [cn.page, 'jp-mod'],
    ] as const) {
      expect(await page.getAttribute(`.line-state[data-peer="${peer}"]`, 'data-status')).toBe('down');
      // This console's own link to its relay is up: the line is another thing, and said to be.
      expect(await page.getAttribute('#link-state', 'data-connected')).toBe('true');
      expect(await page.locator('#link-down').count()).toBe(0);
      expect(await page.getAttribute(`.line-down[data-peer="${peer}"]`, 'data-reason')).toMatch(/\S/);
    }
    expect(await jpDown.locator('[role="alert"]').textContent()).toBe('cn-mnd とのホットライン回線が断');
    expect(await jpDown.textContent()).toMatch(/中継サーバー/);
    expect(await jpLine.textContent()).toBe('cn-mnd との回線: 断');
    expect(await cnDown.locator('[role="alert"]').textContent()).toBe('与 jp-mod 的热线线路中断');
    expect(await cnDown.textContent()).toMatch(/中继服务器/);
    // No English on the Japanese and Chinese screens' line banners (the relay's words are kept in the title only).
    for (const text of [await jpDown.textContent(), await cnDown.textContent()]) expect(text!.replace(/[a-z]+-[a-z]+|UTC/g, '')).not.toMatch(/[A-Za-z]{3,}/);
    await jp.page.locator('#events li.ev-line-down').first().waitFor();
    await cn.page.locator('#events li.ev-line-down').first().waitFor();
    await shot(jp.page, 'two-relays-ja-jp-line-down.png');
    await shot(cn.page, 'two-relays-zh-cn-line-down.png');
    await jp.page.selectOption('#language', 'zh');
    await cn.page.selectOption('#language', 'ja');
    await jp.page.locator('.line-down[data-peer="cn-mnd"] [role="alert"]', { hasText: '与 cn-mnd 的热线线路中断' }).waitFor();
    await cn.page.locator('.line-down[data-peer="jp-mod"] [role="alert"]', { hasText: 'jp-mod とのホットライン回線が断' }).waitFor();
    await shot(jp.page, 'two-relays-zh-jp-line-down.png');
    await shot(cn.page, 'two-relays-ja-cn-line-down.png');

    // The Chinese console locked: its lock screen shows the line down too.
    await cn.page.click('#lock');
    const onLock = cn.page.locator('#lock-screen #lock-line .line-down[data-peer="jp-mod"]');
    await onLock.locator('[role="alert"]', { hasText: 'jp-mod とのホットライン回線が断' }).waitFor();
    await shot(cn.page, 'two-relays-ja-cn-locked-line-down.png');

    // Sent while the line is down: accepted by Japan's relay, and shown as not relayed yet.
    await jp.page.fill('#subject', '回線断中の通報');
    await jp.page.fill('#body', '回線が復旧したら届くこと。');
    await jp.page.click('#send');
    const waiting = jp.page.locator('#outbox tr.msg[data-rung="accepted"]');
    await waiting.waitFor();
    const waitingId = (await waiting.getAttribute('data-id'))!;
    expect(await waiting.locator('li[data-rung="relayed"]').getAttribute('class')).not.toContain('done');
    expect(await waiting.locator('li[data-rung="relayed"] time').count()).toBe(0);

    // Restored: up on both sides, the banners gone, and what waited goes through, once.
    pair.toCn.restore();
    pair.toJp.restore();
    await jp.page.locator('.line-state[data-peer="cn-mnd"][data-status="up"]').waitFor({ timeout: 30_000 });
    // (Behind its lock screen: attached, not visible.)
    await cn.page.locator('.line-state[data-peer="jp-mod"][data-status="up"]').waitFor({ state: 'attached', timeout: 30_000 });
    expect(await jp.page.locator('.line-down').count()).toBe(0);
    expect(await cn.page.locator('.line-down').count()).toBe(0);
    // Locked, the Chinese console saw the line come back; unlocked, it shows what arrived.
    await onLock.waitFor({ state: 'detached' });
    await cn.page.fill('#passphrase', `${dep.devices.cnOp.certificate.cert.device} passphrase`);
    await cn.page.click('#unlock');
    await cn.page.waitForSelector('#lock-screen', { state: 'hidden' });
    const through = jp.page.locator(`#outbox tr.msg[data-id="${waitingId}"][data-rung="delivered"]`);
    await through.waitFor({ timeout: 30_000 });
    await through.locator('li[data-rung="relayed"].done time').waitFor();
    await cn.page.locator(`#inbox tr.msg[data-id="${waitingId}"]`, { hasText: '回線断中の通報' }).waitFor();
    expect(await cn.page.locator(`#inbox tr.msg[data-id="${waitingId}"]`).count()).toBe(1);
    await jp2.page.locator('.line-state[data-peer="cn-mnd"][data-status="up"]').waitFor();
    expect(await jp2.page.locator('.line-down').count()).toBe(0);
    await jp.page.locator('#events li.ev-line-up').first().waitFor();
    await cn.page.locator('#events li.ev-line-up').first().waitFor();
    await shot(jp.page, 'two-relays-zh-jp-line-up.png');
    await shot(cn.page, 'two-relays-ja-cn-line-up.png');
    expect(jp.errors).toEqual([]);
    expect(jp2.errors).toEqual([]);
    expect(cn.errors).toEqual([]);
  });
});
