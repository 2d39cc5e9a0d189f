import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { buildAuditReport } from '../../shared/audit/report.js';
import { auditorToken, exchangeMessage, importKey, openPage, SCREENSHOT_DIR, startHarness, type Harness } from './harness.js';

/**
 * The auditor console as an auditor's workstation (issue 10, problem 13): a report only from a
 * verified log, paging over all of it, downloads and print, in every language.
 */

let hx: Harness;
beforeAll(async () => {
  hx = await startHarness();
});
afterAll(async () => {
  await hx?.close();
});

/** The server's export exactly as the audit API gives it (text and parsed). */
async function serverExport(): Promise<{ text: string; value: { entries: string[] } & Record<string, unknown> }> {
  const res = await fetch(`${hx.server.url}/v1/audit/export`, { headers: { authorization: `Bearer ${await auditorToken(hx)}` } });
  expect(res.status).toBe(200);
  const text = await res.text();
  return { text, value: JSON.parse(text) as { entries: string[] } & Record<string, unknown> };
}

/** A file for the console's file input, made in memory. */
function file(name: string, text: string): { name: string; mimeType: string; buffer: Buffer } {
  return { name, mimeType: 'application/json', buffer: Buffer.from(text) };
}

/** An auditor console in `locale`, unlocked, with the server's log loaded and verified. */
async function openAuditor(locale: string, passphrase: string): Promise<{ page: Page; errors: string[]; close(): Promise<void> }> {
  const context = await hx.browser.newContext({ locale });
  const { page, errors } = await openPage(context, `${hx.server.url}/console/auditor/`);
  await importKey(page, hx.keyFiles['jp-mod/audit1']!, passphrase);
  await page.waitForSelector('#verify-result[data-ok="true"]');
  return { page, errors, close: () => context.close() };
}

const flashCount = (page: Page) => page.locator('#report-table tr[data-precedence="FLASH"] td').nth(1).textContent();

describe('auditor console: the report only from verified data', () => {
  it('a tampered export that would change the FLASH count shows the failure and no report; stale notices go on every load; a file that is not an export is refused in plain words', async () => {
    await exchangeMessage(hx);
    await exchangeMessage(hx);
    const { page, errors, close } = await openAuditor('en-US', 'auditor report one');
    const good = await serverExport();
    const flash = good.value.entries.filter((e) => e.includes('"type":"envelope.accepted"') && e.includes('"precedence":"FLASH"')).length;
    expect(flash).toBeGreaterThanOrEqual(2);
    expect(await flashCount(page)).toBe(String(flash));

    // A cosignature notice from this session: it must not outlive the next load.
    await page.click('#cosign-run');
    await page.waitForSelector('#cosign-result[data-status="cosigned"]');

    // One FLASH entry rewritten as ROUTINE: a report read from this file would count one FLASH fewer.
    const k = good.value.entries.findIndex((e) => e.includes('"type":"envelope.accepted"') && e.includes('"precedence":"FLASH"'));
    const entries = good.value.entries.slice();
    entries[k] = entries[k]!.replace('"precedence":"FLASH"', '"precedence":"ROUTINE"');
    expect(buildAuditReport(entries).rows.find((r) => r.precedence === 'FLASH')!.sent).toBe(flash - 1);
    await page.setInputFiles('#export-file', file('tampered.json', JSON.stringify({ ...good.value, entries })));
    const failed = await page.waitForSelector('#verify-result[data-ok="false"]');
    expect(await failed.getAttribute('data-index')).toBe(String(k));
    expect(await failed.textContent()).toContain('Verification FAILED');
    expect(await failed.textContent()).toContain(`entry ${k}`);
    // No report, no log, no checkpoints, no "loaded" line and no cosignature notice: only the failure.
    await page.waitForSelector('#report-withheld');
    expect(await page.locator('#report-table, #report-chart, #entries, #checkpoint-table, #loaded, #cosign-result').count()).toBe(0);
    await page.screenshot({ path: join(SCREENSHOT_DIR, 'auditor-report-tampered.png'), fullPage: true });

    // A device key file is JSON but no export; a picture is not even JSON. Both refused, nothing "loaded".
    await page.setInputFiles('#export-file', { name: 'audit1.key', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(hx.dep.devices['jp-mod/audit1'])) });
    await page.waitForSelector('#load-refused[data-reason="file_not_export"]');
    expect(await page.textContent('#load-refused')).toContain('not a Hotline audit log export');
    expect(await page.locator('#verify-result, #report-withheld, #loaded').count()).toBe(0);
    expect(await page.textContent('#app')).not.toMatch(/0 entries/);
    await page.setInputFiles('#export-file', { name: 'photo.png', mimeType: 'image/png', buffer: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a]) });
    await page.waitForSelector('#load-refused[data-reason="file_not_json"]');

    // The untouched file verifies and shows the full count again; the refusal is gone.
    await page.setInputFiles('#export-file', file('good.json', good.text));
    await page.waitForSelector('#verify-result[data-ok="true"]');
    expect(await page.textContent('#loaded')).toContain('a file');
    expect(await flashCount(page)).toBe(String(flash));
    expect(await page.locator('#load-refused').count()).toBe(0);
    expect(errors).toEqual([]);
    await close();
  });
});
