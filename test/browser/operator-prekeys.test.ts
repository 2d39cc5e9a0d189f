import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HotlineClient, MemoryPrekeyStore } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { keyIdOf } from '../../shared/crypto/keys.js';
import { fromBase64, toBase64 } from '../../shared/encoding/base64.js';
import type { EnvelopeHeader } from '../../shared/protocol/schemas.js';
import { next } from '../helpers/events.js';
import nacl from 'tweetnacl';
import { KeyStore } from '../../client/console/key-store.js';
import { MemoryKeyValueStore } from '../../client/storage/kv.js';
import { SealedPrekeyStore } from '../../client/storage/sealed-prekey-store.js';
import { fetchWrapKeys, login } from '../helpers/ws-client.js';
import {
  NO_CHECKPOINT_YET,
  auditExport,
  auditorToken,
  connectConsole,
  dumpStorage,
  importKey,
  openPage,
  secretForms,
  startHarness,
  startNodeClient,
  storedValue,
  unlockConsole,
  type Harness,
} from './harness.js';

/**
 * What an operator console does with prekeys (PROTOCOL.md "Prekeys and forward secrecy",
 * "Fallback"): as a sender it verifies the recipients' prekeys in the browser and wraps to the
 * newest; as a recipient it publishes prekeys of its own, their secrets sealed in this browser's
 * storage like its other records, and opens what is wrapped to them, before and after a reload.
 */

let hx: Harness;
beforeAll(async () => {
  hx = await startHarness();
});
afterAll(async () => {
  await hx?.close();
});

const keyIdFor = (h: EnvelopeHeader, party: string, device: string) => h.recipients.find((r) => r.party === party && r.device === device)!.keyId;

/** The header of message `id` as the relay's audit log holds it. */
async function headerOf(id: string): Promise<EnvelopeHeader> {
  const entries = (await auditExport(hx, await auditorToken(hx))).entries;
  return entries.map((e) => e['header'] as EnvelopeHeader | undefined).find((h) => h?.id === id)!;
}

describe('operator console and prekeys', () => {
  it('wraps what it sends to the recipient’s newest prekey', async () => {
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
      expect(keyIdFor(sent, 'jp-mod', 'op1')).toBe(jpKey);

      expect(cn.errors).toEqual([]);
      await cn.context.close();
    } finally {
      await jp.stop();
    }
  });

  it('publishes a signed prekey of its own after unlocking, opens what is wrapped to it, and keeps its secret sealed over a reload', async () => {
    const passphrase = 'cn prekey console passphrase';
    const context = await hx.browser.newContext({ locale: 'en-US' });
    const jp = await startNodeClient(hx, 'jp-mod/op1');
    try {
      const { page, errors } = await openPage(context, `${hx.server.url}/console/operator/`, [NO_CHECKPOINT_YET]);
      const posted = page.waitForResponse((r) => r.url().endsWith('/v1/prekeys') && r.request().method() === 'POST');
      await importKey(page, hx.keyFiles['cn-mnd/op1']!, passphrase);
      expect((await posted).status()).toBe(201);
      await page.waitForSelector('#link-state[data-connected="true"]');

      // The relay's directory holds it, signed by the console's certificate key (the relay verified
      // it on POST), and it is not the certificate's box key.
      const wrapKeys = await fetchWrapKeys(hx.server.url, await login(hx.server.url, hx.dep.devices['jp-mod/op1']!, hx.dep.agreement));
      const boxKey = wrapKeys.get('cn-mnd/op1')!;
      const certBoxKey = hx.dep.devices['cn-mnd/op1']!.certificate.cert.boxKey;
      expect(boxKey).toBeDefined();
      expect(boxKey).not.toBe(certBoxKey);
      const prekeyId = keyIdOf(fromBase64(boxKey, 32));

      // A sender wraps to it; the console opens and shows the message.
      await jp.refreshDirectory();
      const first = await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'wrapped to the console prekey', lang: 'en' });
      await page.waitForSelector('#inbox tr.msg:has-text("wrapped to the console prekey")');
      expect(keyIdFor(await headerOf(first.id), 'cn-mnd', 'op1')).toBe(prekeyId);

      // Closed, then a message wrapped to the same prekey arrives in its mailbox; reopened and
      // unlocked, the console opens it with the secret it kept, and publishes no new prekey.
      await page.close();
      const second = await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'sent while the console was closed', lang: 'en' });
      expect(keyIdFor(await headerOf(second.id), 'cn-mnd', 'op1')).toBe(prekeyId);
      const again = await openPage(context, `${hx.server.url}/console/operator/`, [NO_CHECKPOINT_YET]);
      await unlockConsole(again.page, passphrase);
      await again.page.waitForSelector('#inbox tr.msg:has-text("sent while the console was closed")');
      await again.page.waitForSelector('#inbox tr.msg:has-text("wrapped to the console prekey")');
      expect((await fetchWrapKeys(hx.server.url, await login(hx.server.url, hx.dep.devices['jp-mod/op1']!, hx.dep.agreement))).get('cn-mnd/op1')).toBe(boxKey);

      // The secret is stored sealed under the key store's data key: opened with the passphrase it is
      // the published prekey's, and it shows nowhere in this origin's storage in clear.
      const kv = new MemoryKeyValueStore();
      for (const k of ['keystore/operator', 'prekeys/cn-mnd/op1']) {
        const v = await storedValue(again.page, k);
        expect(v, k).toBeDefined();
        await kv.set(k, v!);
      }
      const unlocked = await new KeyStore(kv, 'operator').unlock(passphrase);
      const held = await new SealedPrekeyStore(kv, unlocked.data, 'prekeys/cn-mnd/op1').load();
      const mine = held.find((h) => h.keyId === prekeyId)!;
      expect(toBase64(nacl.box.keyPair.fromSecretKey(fromBase64(mine.boxSecret, 32)).publicKey)).toBe(boxKey);
      const dump = await dumpStorage(again.page);
      for (const form of secretForms(held.map((h) => h.boxSecret))) expect(dump).not.toContain(form);
      expect(dump).not.toContain(boxKey);

      expect(errors).toEqual([]);
      expect(again.errors).toEqual([]);
    } finally {
      await jp.stop();
      await context.close();
    }
  });
});
