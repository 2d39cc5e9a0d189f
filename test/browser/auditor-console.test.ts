import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBase64 } from '../../shared/encoding/base64.js';
import { cosignCheckpoint } from '../../shared/audit/index.js';
import { login } from '../helpers/ws-client.js';
import { auditExport, exchangeMessage, importKey, openPage, SCREENSHOT_DIR, signCheckpoint, startHarness, type Harness } from './harness.js';

let hx: Harness;
beforeAll(async () => {
  hx = await startHarness();
});
afterAll(async () => {
  await hx?.close();
});


/** Ask the server for a checkpoint now and cosign it as the Japanese auditor, through the audit API. */
async function checkpointAndCosign(token: string): Promise<void> {
  const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const res = await fetch(`${hx.server.url}/v1/audit/checkpoints`, { method: 'POST', headers: auth, body: '{}' });
  expect([200, 201]).toContain(res.status);
  const { size, note } = (await res.json()) as { size: number; note: string };
  const auditor = hx.dep.devices['jp-mod/audit1']!;
  const cosigned = await cosignCheckpoint(note, { name: 'jp-mod/audit1', secretKey: fromBase64(auditor.signSecret, 32) }, Math.floor(Date.now() / 1000));
  const posted = await fetch(`${hx.server.url}/v1/audit/cosignatures`, { method: 'POST', headers: auth, body: JSON.stringify({ size, note: cosigned }) });
  expect(posted.status).toBe(201);
}

describe('auditor console', () => {
  it('verifies the log in the browser, follows a message through its rungs, reports deadlines, and names the first tampered entry', async () => {
    const messageId = await exchangeMessage(hx, 'FLASH', { exercise: false });
    const token = await login(hx.server.url, hx.dep.devices['jp-mod/audit1']!, hx.dep.agreement);
    await checkpointAndCosign(token);

    const context = await hx.browser.newContext({ locale: 'en-US' });
    const { page, errors } = await openPage(context, `${hx.server.url}/console/auditor/`);
    await importKey(page, hx.keyFiles['jp-mod/audit1']!, 'auditor passphrase one');
    // The console logs in with the auditor key, loads the export from the audit API and verifies
    // it before showing anything of it.
    await page.waitForSelector('#verify-result[data-ok="true"]');
    expect(await page.textContent('#loaded')).toContain('the server');
    await page.waitForSelector('#directory-table tbody tr');
    expect(await page.textContent('#directory-table')).toContain('cn-mnd/op1');
    const size = Number(/(\d+) entries/.exec((await page.textContent('#loaded'))!)![1]);
    expect(await page.textContent('#verify-result')).toContain(`${size} entries`);
    // "Verify again" runs the whole verification once more on the same export.
    await page.click('#verify-run');
    await page.waitForSelector('#verify-result[data-ok="true"]');
    // The checkpoint shows the log's signature and the auditor's cosignature, both verified.
    expect(await page.textContent('#checkpoint-table')).toContain(`✔ ${hx.dep.agreement.name}`);
    expect(await page.textContent('#checkpoint-table')).toContain('✔ jp-mod/audit1');

    // Deadline report: one FLASH message, delivered and acknowledged; the chart is drawn.
    const flash = (col: string) => page.textContent(`#report-table tr[data-precedence="FLASH"] td[data-col="${col}"]`);
    expect(await flash('sent')).toBe('1');
    expect(await flash('acknowledged')).toBe('1');
    expect(await page.locator('#report-chart rect').count()).toBeGreaterThan(0);

    // Browse by message and follow it: accepted → delivered → acknowledged.
    await page.fill('#filter-message', messageId.slice(0, 10));
    await page.click('#apply-filter');
    await page.waitForSelector('#entries tbody tr[data-type="envelope.accepted"]');
    expect(await page.locator('#entries tbody tr').count()).toBe(3);
    await page.click('#entries tbody tr[data-type="envelope.accepted"] button.follow');
    await page.waitForSelector('#trail-steps li[data-step="acknowledged"]');
    expect(await page.locator('#trail-steps li').evaluateAll((els) => els.map((e) => e.getAttribute('data-step')))).toEqual(['accepted', 'delivered', 'acknowledged']);
    // Browse by type.
    await page.fill('#filter-message', '');
    await page.selectOption('#filter-type', 'receipt.accepted');
    await page.click('#apply-filter');
    await expect.poll(() => page.locator('#entries tbody tr').count()).toBe(2);
    await page.screenshot({ path: join(SCREENSHOT_DIR, 'auditor-verified.png'), fullPage: true });

    // An export file with one byte of a middle entry changed (a digit of its time): the first
    // problem is named by its index.
    const exp = (await (await fetch(`${hx.server.url}/v1/audit/export`, { headers: { authorization: `Bearer ${token}` } })).json()) as { entries: string[] };
    const k = exp.entries.findIndex((e) => e.includes('"type":"receipt.accepted"'));
    expect(k).toBeGreaterThan(0);
    expect(k).toBeLessThan(exp.entries.length - 1);
    const tampered = exp.entries.slice();
    tampered[k] = tampered[k]!.replace(/"at":(\d+)/, (_m, n: string) => `"at":${Number(n) + 1}`);
    expect(tampered[k]).not.toBe(exp.entries[k]);
    const badPath = join(tmpdir(), `hotline-export-bad-${process.pid}.json`);
    writeFileSync(badPath, JSON.stringify({ ...exp, entries: tampered }));
    await page.setInputFiles('#export-file', badPath);
    const bad = await page.waitForSelector('#verify-result[data-ok="false"]');
    expect(await bad.getAttribute('data-index')).toBe(String(k));
    // Nothing of the failed file is shown: no log, no report, no checkpoints, only the failure.
    expect(await page.locator('#entries, #report-table, #checkpoint-table, #loaded').count()).toBe(0);
    await page.waitForSelector('#report-withheld');
    await page.screenshot({ path: join(SCREENSHOT_DIR, 'auditor-tampered.png'), fullPage: true });
    expect(errors).toEqual([]);
    await context.close();
  });

  it('"Cosign latest checkpoint" verifies and cosigns the newest checkpoint as this auditor; the cosignature shows in the list', async () => {
    await exchangeMessage(hx);
    const token = await login(hx.server.url, hx.dep.devices['jp-mod/audit1']!, hx.dep.agreement);
    const size = await signCheckpoint(hx, token);

    const context = await hx.browser.newContext({ locale: 'en-US' });
    const { page, errors } = await openPage(context, `${hx.server.url}/console/auditor/`);
    await importKey(page, hx.keyFiles['jp-mod/audit1']!, 'auditor passphrase two');
    const row = page.locator(`#checkpoint-table tr[data-size="${size}"]`);
    await row.waitFor();
    expect(await row.textContent()).not.toContain('jp-mod/audit1');

    await page.click('#cosign-run');
    const result = await page.waitForSelector('#cosign-result[data-status="cosigned"]');
    // The server may have signed a newer checkpoint meanwhile (the log grows with every login).
    const cosigned = Number(await result.getAttribute('data-size'));
    expect(cosigned).toBeGreaterThanOrEqual(size);
    await expect.poll(() => page.locator(`#checkpoint-table tr[data-size="${cosigned}"]`).textContent(), { timeout: 15_000 }).toContain('jp-mod/audit1');
    const stored = (await auditExport(hx, token)).checkpoints.find((n) => n.split('\n')[1] === String(cosigned));
    expect(stored).toContain('— jp-mod/audit1 ');
    // The cosignature verifies with the rest of the log.
    await page.click('#verify-run');
    await page.waitForSelector('#verify-result[data-ok="true"]');
    expect(await page.locator(`#checkpoint-table tr[data-size="${cosigned}"]`).textContent()).toContain('✔ jp-mod/audit1');
    await page.screenshot({ path: join(SCREENSHOT_DIR, 'auditor-cosigned.png'), fullPage: true });

    // The log grows; the next cosignature needs a consistency proof from the one cosigned here.
    await exchangeMessage(hx);
    const later = await signCheckpoint(hx, token);
    expect(later).toBeGreaterThan(cosigned);
    await page.click('#cosign-run');
    await expect
      .poll(async () => Number(await page.getAttribute('#cosign-result[data-status="cosigned"]', 'data-size', { timeout: 200 }).catch(() => 0)), { timeout: 15_000 })
      .toBeGreaterThanOrEqual(later);
    expect(errors).toEqual([]);
    await context.close();
  });
});
