import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { dictionaries } from '../../client/console/common/i18n.js';
import { login } from '../helpers/ws-client.js';
import { enrolDevice, importKey, NO_CHECKPOINT_YET, openPage, SCREENSHOT_DIR, startHarness, startNodeClient, type Harness } from './harness.js';

/**
 * Issue 10, "untranslated in ja/zh": a whole watch on the operator console in Japanese and in
 * Chinese — messages of every precedence sent and received, acknowledged in time and late, a send
 * the relay refuses with its error code, link tests, an audit alarm, the peers panel — and then
 * every word a person can read or hear on the screen is checked: no raw code (HL_ERR_…, rung or
 * role ids), no English. A FLASH acknowledgement deadline short enough to miss in the test.
 */
let hx: Harness;
beforeAll(async () => {
  hx = await startHarness({ deadlines: { FLASH: { deliveredMs: 2_000, acknowledgedMs: 2_500 } } });
});
afterAll(async () => {
  await hx?.close();
});

interface Console {
  context: BrowserContext;
  page: Page;
  errors: string[];
  /** The next envelope this console sends is answered by the "relay" with this error code. */
  refuseNext(code: string): void;
}

/**
 * An operator console whose link runs through a WebSocket route: every frame passes unchanged,
 * except that one envelope can be refused as the relay refuses it (an `error` frame with a code).
 */
async function openConsole(locale: string, keyFile: string, passphrase: string): Promise<Console> {
  const context = await hx.browser.newContext({ locale, viewport: { width: 1280, height: 800 } });
  let refuse: string | undefined;
  await context.routeWebSocket(/\/v1\/link$/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((message) => {
      if (refuse !== undefined && typeof message === 'string') {
        const frame = JSON.parse(message) as { t: string; envelope?: { header: { id: string; linkTest?: boolean } } };
        if (frame.t === 'envelope' && !frame.envelope!.header.linkTest) {
          ws.send(JSON.stringify({ t: 'error', code: refuse, message: 'envelope too large for this relay', ref: frame.envelope!.header.id }));
          refuse = undefined;
          return;
        }
      }
      server.send(message);
    });
    server.onMessage((message) => ws.send(message));
  });
  const { page, errors } = await openPage(context, `${hx.server.url}/console/operator/`, [NO_CHECKPOINT_YET]);
  await importKey(page, keyFile, passphrase);
  await page.waitForSelector('#link-state[data-connected="true"]');
  return { context, page, errors, refuseNext: (code) => (refuse = code) };
}

/** Every text a person may read or hear: the page's text, its title, and the attributes read aloud or shown on hover. */
function shownText(page: Page): Promise<string> {
  return page.evaluate(() => {
    const app = document.getElementById('app')!;
    const attrs = Array.from(app.querySelectorAll('[aria-label], [title], [placeholder], [alt]')).flatMap((el) =>
      ['aria-label', 'title', 'placeholder', 'alt'].map((a) => el.getAttribute(a) ?? ''),
    );
    // innerText: what is rendered (a closed <select>'s options included, hidden elements not).
    return [document.title, app.innerText, ...Array.from(app.querySelectorAll('option')).map((o) => o.textContent ?? ''), ...attrs].join('\n');
  });
}

const RAW_IDS = ['sent', 'accepted', 'delivered', 'acknowledged', 'received', 'operator', 'auditor', 'archive', 'link.test', 'link.up', 'link.down', 'deadline.met', 'deadline.missed', 'audit.alarm'];

describe('operator console: everything in the interface language', () => {
  it('in ja and zh no raw code and no English reaches the screen through a whole watch: every precedence both ways, late, refused, link tests, audit alarm, peers', async () => {
    const jpKey = await enrolDevice(hx, 'jp-mod', 'lang1');
    const cnKey = await enrolDevice(hx, 'cn-mnd', 'lang1');
    const jp = await openConsole('ja-JP', jpKey, 'jp language passphrase');
    const cn = await openConsole('zh-CN', cnKey, 'cn language passphrase');
    for (const c of [jp, cn]) {
      await c.page.click('#confirm-keys');
      await c.page.waitForSelector('#peer-ok');
    }
    const jpNode = await startNodeClient(hx, 'jp-mod/op1');
    const cnNode = await startNodeClient(hx, 'cn-mnd/op1');
    // The Node peers acknowledge what the consoles send them (and nothing else: the consoles answer the rest).
    for (const node of [jpNode, cnNode]) node.on('message', (m) => void (m.header.from.device === 'lang1' ? node.acknowledge(m.header.id).catch(() => undefined) : undefined));

    // Received: one message of each precedence, one an exercise, texts in the receiver's language.
    const received = new Map<Console, string[]>();
    for (const [node, to, c, words] of [
      [cnNode, 'jp-mod', jp, ['至急', '緊急連絡', '優先連絡', '定時連絡']],
      [jpNode, 'cn-mnd', cn, ['特急', '紧急通报', '优先通报', '例行通报']],
    ] as const) {
      const ids: string[] = [];
      for (const [i, precedence] of (['FLASH', 'IMMEDIATE', 'PRIORITY', 'ROUTINE'] as const).entries()) {
        ids.push((await node.send({ to, precedence, subject: words[i]!, body: `${words[i]!}の本文`, lang: to === 'jp-mod' ? 'ja' : 'zh', ...(precedence === 'PRIORITY' ? { exercise: true } : {}) })).id);
      }
      received.set(c, ids);
      for (const id of ids) await c.page.locator(`#inbox tr.msg[data-id="${id}"]`).waitFor();
    }
    for (const c of [jp, cn]) {
      const [flash, immediate] = received.get(c)!;
      // IMMEDIATE acknowledged in time; the FLASH only after its deadline passed: late, with how late.
      await c.page.click(`.immediate-banner[data-id="${immediate}"] button.ack`);
      await c.page.locator('#events li.ev-deadline-missed', { hasText: flash!.slice(0, 8) }).waitFor();
      await c.page.click(`.flash-banner[data-id="${flash}"] button.ack`);
      await c.page.locator(`#inbox tr.msg[data-id="${flash}"] .late`).waitFor();
      await c.page.waitForSelector('#events li.ev-deadline-late');
    }

    // Sent from each console: a PRIORITY in reply to the ROUTINE received (threaded under it),
    // delivered and acknowledged by the peer, and one the relay refuses.
    for (const [c, text] of [
      [jp, '航空機の動きについて'],
      [cn, '关于飞机动向'],
    ] as const) {
      const routine = received.get(c)![3]!;
      await c.page.click(`#inbox tr.msg[data-id="${routine}"] button.reply`);
      await c.page.waitForSelector('#replying-to');
      await c.page.selectOption('#precedence', 'PRIORITY');
      await c.page.fill('#subject', text);
      await c.page.fill('#body', text);
      await c.page.click('#send');
      await c.page.waitForSelector('#outbox tr.msg[data-rung="acknowledged"] .receipt');
      await c.page.waitForSelector(`#inbox tr.msg[data-id="${routine}"] .thread li`);
      await c.page.waitForSelector('#outbox tr.msg .in-reply-to');
      c.refuseNext('HL_ERR_ENVELOPE_TOO_LARGE');
      await c.page.fill('#body', text.repeat(3));
      await c.page.click('#send');
      await c.page.waitForSelector('#events li.ev-error[data-code="HL_ERR_ENVELOPE_TOO_LARGE"]');
    }

    // Link tests both ways, and an audit alarm each party's cosigner reported through the server.
    await Promise.all([jpNode.sendLinkTests(), cnNode.sendLinkTests()]);
    for (const [key, c] of [['jp-mod/op1', jp], ['cn-mnd/op1', cn]] as const) {
      const token = await login(hx.server.url, hx.dep.devices[key]!, hx.dep.agreement);
      const res = await fetch(`${hx.server.url}/v1/audit/alarms`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ code: 'HL_ERR_AUDIT_EQUIVOCATION', reason: 'two roots for size 7' }),
      });
      expect(res.status).toBe(201);
      await c.page.waitForSelector('#audit-alarm');
      await c.page.waitForSelector('#events li.ev-alarm');
      await c.page.waitForSelector('#events li.ev-link');
    }

    // Words that are data, the same in every language: party and device names, the agreement's
    // name, precedence names, EXERCISE, UTC and the date-time group's month, each language's own
    // name in the picker; hex ids and fingerprints.
    const data = new Set([hx.dep.agreement.name, 'FLASH', 'IMMEDIATE', 'PRIORITY', 'ROUTINE', 'EXERCISE', 'English', 'UTC', 'JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC']);
    for (const key of Object.keys(hx.dep.devices)) data.add(key).add(key.split('/')[0]!).add(key.split('/')[1]!);
    const english = Object.values(dictionaries().en)
      .flatMap((text) => text.split(/\{\w+\}/))
      .map((x) => x.trim())
      .filter((x) => /[A-Za-z]{3}/.test(x) && !data.has(x));
    for (const [c, lang] of [
      [jp, 'ja'],
      [cn, 'zh'],
    ] as const) {
      await c.page.locator('#events li').first().waitFor();
      // What shows only on demand: the find bar's count while filtering, and a message's print sheet.
      await c.page.fill('#find-text', 'no such message');
      await c.page.waitForSelector('#find-shown:not(:empty)');
      const filtered = await c.page.textContent('#find-shown');
      await c.page.fill('#find-text', '');
      await c.page.evaluate(() => (window.print = () => undefined));
      await c.page.click('#outbox tr.msg[data-rung="acknowledged"] button.print');
      const sheet = await c.page.textContent('#print-sheet');
      const shown = [await shownText(c.page), filtered, sheet].join('\n');
      expect(shown).not.toMatch(/HL_ERR_/);
      // The ministry names from the agreement are in English: the party ids stand for them.
      for (const party of hx.dep.agreement.parties) expect(shown).not.toContain(party.name);
      // The date-time group (DDHHMMZ) is the same in every language.
      let rest = shown.replace(/\b\d{6}Z\b/g, ' ');
      for (const word of [...data].sort((a, b) => b.length - a.length)) rest = rest.split(word).join(' ');
      for (const phrase of english) expect(rest.includes(phrase), `English "${phrase}" on the ${lang} screen`).toBe(false);
      for (const id of RAW_IDS) expect(rest.split(/[^A-Za-z.]+/), `raw id "${id}" on the ${lang} screen`).not.toContain(id);
      const words = rest.split(/[^A-Za-z0-9]+/).filter((w) => /[A-Za-z]/.test(w) && !/^[0-9a-f]+$/.test(w));
      expect(words, `Latin words on the ${lang} screen`).toEqual([]);
      await c.page.screenshot({ path: join(SCREENSHOT_DIR, `operator-${lang}.png`) });
    }

    // The same watch in English: every line has its words (none is left empty or raw).
    await jp.page.selectOption('#language', 'en');
    await jp.page.locator('#events li.ev-error', { hasText: 'too large' }).waitFor();
    expect(await jp.page.textContent('#events li.ev-alarm')).toContain('jp-mod/op1 · a checkpoint is malformed or contradicts another');
    expect(await jp.page.textContent('#events')).not.toMatch(/HL_ERR_|link\.test/);
    await jp.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-en.png') });

    expect(jp.errors).toEqual([]);
    expect(cn.errors).toEqual([]);
    await Promise.all([jpNode.stop(), cnNode.stop()]);
    await jp.context.close();
    await cn.context.close();
  });
});
