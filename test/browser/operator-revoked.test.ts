import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { revokeDevice } from '../../shared/crypto/keys.js';
import { next } from '../helpers/events.js';
import { connectConsole, enrolDevice, SCREENSHOT_DIR, startHarness, startNodeClient, unlockConsole, type Harness } from './harness.js';

/**
 * Issue 13, "sender revoked since": a message already in the console's inbox, and a receipt already
 * shown for one of its sent messages, both from a device revoked afterwards, stay readable and
 * valid and are labelled with the revocation's time once the console learns of it (its next
 * directory fetch: here, the reconnection after a reload).
 */
let hx: Harness;
beforeAll(async () => {
  hx = await startHarness();
});
afterAll(async () => {
  await hx?.close();
});

describe('revoked since', () => {
  it('labels a stored message and a shown receipt of a device revoked afterwards, in zh, and keeps them', async () => {
    await enrolDevice(hx, 'jp-mod', 'rev1');
    const passphrase = 'cn revoked passphrase';
    const cn = await connectConsole(hx, 'zh-CN', hx.keyFiles['cn-mnd/op1']!, passphrase);
    await cn.page.click('#confirm-keys');
    await cn.page.waitForSelector('#peer-ok');

    // jp-mod/rev1 writes to China; China writes back and rev1 acknowledges.
    const jp = await startNodeClient(hx, 'jp-mod/rev1');
    try {
      const { id: inId } = await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: '演習区域の変更', lang: 'ja' });
      const inRow = cn.page.locator(`#inbox tr.msg[data-id="${inId}"]`);
      await inRow.waitFor();
      expect(await inRow.locator('.revoked').count()).toBe(0);

      const arrived = next(jp, 'message');
      await cn.page.selectOption('#precedence', 'ROUTINE');
      await cn.page.fill('#body', '已收到，将按新区域执行');
      await cn.page.click('#send');
      const outId = (await arrived).header.id;
      const took = next(jp, 'receipt-accepted', (r) => r.messageId === outId && r.kind === 'acknowledged');
      await jp.acknowledge(outId);
      await took;
      const outRow = cn.page.locator(`#outbox tr.msg[data-id="${outId}"][data-rung="acknowledged"]`);
      await outRow.waitFor();
      expect(await outRow.locator('.receipt').textContent()).toContain('jp-mod/rev1');
      expect(await outRow.locator('.revoked').count()).toBe(0);
    } finally {
      await jp.stop();
    }

    // Japan revokes rev1; the console learns of it at its next directory fetch.
    const revokedAt = Date.now();
    const rev = await revokeDevice(hx.dep.parties['jp-mod']!, hx.dep.devices['jp-mod/rev1']!.certificate.cert, { at: revokedAt, reason: 'console lost' });
    const res = await fetch(`${hx.server.url}/v1/directory/revocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rev) });
    expect(res.status).toBe(201);
    await cn.page.reload();
    await unlockConsole(cn.page, passphrase);

    const inLabel = cn.page.locator('#inbox tr.msg .revoked');
    await inLabel.waitFor();
    expect(await inLabel.getAttribute('data-revoked-at')).toBe(String(revokedAt));
    expect(await inLabel.textContent()).toMatch(/^发送方自 .+ 起已吊销$/);
    // Still readable.
    expect(await cn.page.locator('#inbox tr.msg').first().textContent()).toContain('演習区域の変更');
    const outLabel = cn.page.locator('#outbox tr.msg[data-rung="acknowledged"] .revoked');
    await outLabel.waitFor();
    expect(await outLabel.getAttribute('data-revoked-at')).toBe(String(revokedAt));
    expect(await outLabel.textContent()).toMatch(/^签名者自 .+ 起已吊销$/);
    // The receipt is still shown as verified.
    expect(await cn.page.locator('#outbox tr.msg[data-rung="acknowledged"] .receipt[data-verified="true"]').count()).toBe(1);
    await cn.page.screenshot({ path: join(SCREENSHOT_DIR, 'operator-zh-revoked-since.png'), fullPage: true });
    expect(cn.errors).toEqual([]);
    await cn.context.close();
  });
});
