import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HotlineClient, MemoryPrekeyStore } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { keyIdOf } from '../../shared/crypto/keys.js';
import { fromBase64 } from '../../shared/encoding/base64.js';
import type { EnvelopeHeader } from '../../shared/protocol/schemas.js';
import { next } from '../helpers/events.js';
import { auditExport, auditorToken, connectConsole, startHarness, type Harness } from './harness.js';

/**
 * What an operator console does with prekeys (PROTOCOL.md "Prekeys and forward secrecy",
 * "Fallback"): as a sender it verifies the recipients' prekeys in the browser and wraps to the
 * newest; it publishes none itself, so what it receives is wrapped to its certificate's key.
 */

let hx: Harness;
beforeAll(async () => {
  hx = await startHarness();
});
afterAll(async () => {
  await hx?.close();
});

describe('operator console and prekeys', () => {
  it('wraps what it sends to the recipient’s newest prekey, and receives on its certificate key (it publishes none)', async () => {
    const jp = new HotlineClient({ serverUrl: hx.server.url, agreement: hx.dep.agreement, device: hx.dep.devices['jp-mod/op1']!, storage: new MemoryStorage(), WebSocket, prekeys: { store: new MemoryPrekeyStore() } });
    try {
      const published = next(jp, 'prekeys', (p) => p.rotated !== undefined);
      await jp.start();
      const jpKey = (await published).rotated!;

      // The console connects after the prekey is published: its directory has it.
      const cn = await connectConsole(hx, 'en-US', hx.keyFiles['cn-mnd/op1']!, 'cn console passphrase');
      await cn.page.click('#confirm-keys');
      await cn.page.waitForSelector('#peer-ok');
      const arrived = next(jp, 'message', (m) => m.plaintext.body === 'from the console');
      await cn.page.selectOption('#precedence', 'ROUTINE');
      await cn.page.fill('#body', 'from the console');
      await cn.page.click('#send');
      const sent = (await arrived).header;
      const keyIdFor = (h: EnvelopeHeader, party: string, device: string) => h.recipients.find((r) => r.party === party && r.device === device)!.keyId;
      expect(keyIdFor(sent, 'jp-mod', 'op1')).toBe(jpKey);

      // The other way: the console holds no prekey, so its copy is wrapped to its certificate key, and it opens it.
      await jp.refreshDirectory();
      const { id } = await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'to the console', lang: 'en' });
      await cn.page.waitForSelector(`#inbox tr.msg:has-text("to the console")`);
      const entries = (await auditExport(hx, await auditorToken(hx))).entries;
      const header = entries.map((e) => e['header'] as EnvelopeHeader | undefined).find((h) => h?.id === id)!;
      expect(keyIdFor(header, 'cn-mnd', 'op1')).toBe(keyIdOf(fromBase64(hx.dep.devices['cn-mnd/op1']!.certificate.cert.boxKey, 32)));
      expect(cn.errors).toEqual([]);
      await cn.context.close();
    } finally {
      await jp.stop();
    }
  });
});
