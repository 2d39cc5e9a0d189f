import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import type { Page } from 'playwright-core';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { MemoryKeyValueStore } from '../../client/storage/kv.js';
import { KeyStore } from '../../client/console/key-store.js';
import type { OutboxEnvelope } from '../../client/storage/client-storage.js';
import { ROWS_SHOWN } from '../../client/console/operator/panels/messages-panel.js';
import { connectConsole, enrolDevice, NO_CHECKPOINT_YET, openPage, startHarness, startNodeClient, type Harness } from './harness.js';

let hx: Harness;
beforeAll(async () => {
  hx = await startHarness();
});
afterAll(async () => {
  await hx?.close();
});

const ROUTINE = 200;

describe('operator console under load', () => {
  it(`receives ${ROUTINE} ROUTINE then a FLASH: the FLASH banner and row show, the newest ${ROWS_SHOWN} rows in the page, and every ROUTINE row exactly once`, async () => {
    const cn = await connectConsole(hx, 'en-US', hx.keyFiles['cn-mnd/op1']!, 'cn load passphrase');
    const jp = await startNodeClient(hx, 'jp-mod/op1');
    const routine: string[] = [];
    for (let i = 0; i < ROUTINE; i++) routine.push((await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: `routine ${i}`, lang: 'en' })).id);
    const flash = (await jp.send({ to: 'cn-mnd', precedence: 'FLASH', subject: 'flash subject', body: 'the one that matters', lang: 'en' })).id;

    await cn.page.locator(`.flash-banner[data-id="${flash}"]`).waitFor({ timeout: 60_000 });
    expect(await cn.page.locator(`#inbox tr.msg[data-id="${flash}"] [data-precedence="FLASH"]`).count()).toBe(1);
    expect(await cn.page.evaluate(() => document.body.dataset.alarm)).toBe('on');
    // cn has sent nothing: its outbox says so, with no empty table header under it.
    expect(await cn.page.locator('#outbox p.muted', { hasText: 'Nothing yet.' }).isVisible()).toBe(true);
    expect(await cn.page.locator('#outbox table').isVisible()).toBe(false);

    // Every message has its row; the page holds the newest ROWS_SHOWN and the unacknowledged FLASH
    // (which overtook ROUTINE messages on the way, so it may be older than the newest hundred).
    const inbox = cn.page.locator('#inbox');
    await expect.poll(() => inbox.getAttribute('data-rows'), { timeout: 60_000 }).toBe(String(ROUTINE + 1));
    const rows = cn.page.locator('#inbox tr.msg');
    const shownIds = () => cn.page.$$eval('#inbox tr.msg', (trs) => trs.map((tr) => tr.getAttribute('data-id')));
    const newestRoutine = routine.slice(ROUTINE - ROWS_SHOWN).reverse();
    const firstShown = (await shownIds()).filter((id) => id !== flash);
    expect(firstShown.length).toBeGreaterThanOrEqual(ROWS_SHOWN - 1);
    expect(firstShown).toEqual(newestRoutine.slice(0, firstShown.length));
    expect(await shownIds()).toContain(flash);
    expect(await cn.page.locator('#inbox p.more').textContent()).toContain(`of ${ROUTINE + 1} messages.`);

    // A search reaches the rows past the window: "routine 13" is among the oldest (every word must
    // occur: routine 13, 113 and 130–139 match).
    await cn.page.fill('#find-text', 'routine 13');
    const matching = routine.filter((_, i) => String(i).includes('13'));
    await expect.poll(async () => (await cn.page.$$eval('#inbox tr.msg', (trs) => trs.filter((tr) => !(tr as HTMLElement).hidden).map((tr) => tr.getAttribute('data-id')))).sort()).toEqual([...matching].sort());
    await cn.page.fill('#find-text', '');
    await expect.poll(async () => (await shownIds()).filter((id) => id !== flash)).toEqual(firstShown);

    // "Show more" until every row is in the page: each message exactly once.
    for (let i = 0; i < 5 && (await rows.count()) < ROUTINE + 1; i++) {
      const before = await rows.count();
      await cn.page.click('#inbox button.show-more');
      await expect.poll(() => rows.count()).toBeGreaterThan(before);
    }
    expect(await rows.count()).toBe(ROUTINE + 1);
    expect(await cn.page.locator('#inbox p.more').isHidden()).toBe(true);
    const ids = await shownIds();
    expect(ids.filter((id) => id !== flash).sort()).toEqual([...routine].sort());
    expect(await cn.page.locator('#inbox tr.msg .text p', { hasText: 'routine 137' }).count()).toBe(1);
    expect(cn.errors).toEqual([]);
    await jp.stop();
    await cn.context.close();
  });

  it('migrates the single-record state of an earlier version: every outbox item is sent, every inbox record shown, and a reload keeps them', async () => {
    const key = 'jp-mod/op7';
    const keyFile = await enrolDevice(hx, 'jp-mod', 'op7');
    const passphrase = 'jp migration passphrase';

    // What an earlier console stored: the key record and the whole client state in one sealed
    // record, with two messages waiting in the outbox (sealed while offline) and one in the inbox.
    const offline = new MemoryStorage();
    const sender = new HotlineClient({ serverUrl: hx.server.url, agreement: hx.dep.agreement, device: hx.dep.devices[key]!, storage: offline, WebSocket });
    // Connected once for the directory, then offline: what is sent now waits in the outbox.
    await sender.start();
    await sender.stop();
    const waiting = [
      (await sender.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'waiting one', lang: 'en' })).id,
      (await sender.send({ to: 'cn-mnd', precedence: 'IMMEDIATE', body: 'waiting two', lang: 'en' })).id,
    ];
    const peerStorage = new MemoryStorage();
    const peer = new HotlineClient({ serverUrl: hx.server.url, agreement: hx.dep.agreement, device: hx.dep.devices['cn-mnd/op1']!, storage: peerStorage, WebSocket });
    await peer.start();
    await peer.stop();
    await peer.send({ to: 'jp-mod', precedence: 'PRIORITY', body: 'received earlier', lang: 'en' });
    const received = Object.values((await peerStorage.read('cn-mnd/op1')).outbox)[0] as OutboxEnvelope;
    const state = await offline.read(key);
    const legacy = {
      v: 1,
      device: key,
      lastSeq: state.lastSeq,
      outbox: Object.values(state.outbox),
      inbox: { [received.id]: { header: received.envelope.header, envelopeHash: 'earlier', receivedAt: Date.now() } },
      sent: {},
      peerSeq: { 'cn-mnd/op1': received.envelope.header.seq },
    };
    const kv = new MemoryKeyValueStore();
    const unlocked = await new KeyStore(kv, 'operator').importKeyFile(readFileSync(keyFile, 'utf8'), passphrase);
    await kv.set(`client-state/${key}`, unlocked.data.seal(legacy));

    const context = await hx.browser.newContext({ locale: 'en-US' });
    const { page, errors } = await openPage(context, `${hx.server.url}/console/operator/`, [NO_CHECKPOINT_YET]);
    await page.waitForSelector('#key-file');
    await page.evaluate(async (entries) => {
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        const req = indexedDB.open('hotline-console');
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
      const tx = db.transaction('kv', 'readwrite');
      for (const [k, v] of entries) tx.objectStore('kv').put(v, k);
      await new Promise((resolve) => (tx.oncomplete = resolve));
      db.close();
    }, [...kv.map.entries()]);
    await page.reload();
    await page.fill('#passphrase', passphrase);
    await page.click('#unlock');
    await page.waitForSelector('#link-state[data-connected="true"]');

    // Both waiting messages reach the relay; the received one is listed.
    for (const id of waiting) await page.waitForSelector(`#outbox tr.msg[data-id="${id}"]:not([data-rung="sent"])`);
    await page.waitForSelector(`#inbox tr.msg[data-id="${received.id}"]`);
    const stores = await storeSizes(page);
    expect(stores.legacy).toBe(0);
    expect(stores['state-inbox']).toBe(1);
    expect(stores['state-sent']).toBe(2);

    // A reload (sign out, unlock) keeps everything committed.
    await page.click('#sign-out');
    await page.fill('#passphrase', passphrase);
    await page.click('#unlock');
    await page.waitForSelector('#link-state[data-connected="true"]');
    await page.waitForSelector(`#inbox tr.msg[data-id="${received.id}"]`);
    for (const id of waiting) await page.waitForSelector(`#outbox tr.msg[data-id="${id}"]:not([data-rung="sent"])`);
    expect(await page.locator('#outbox tr.msg').count()).toBe(2);
    expect(errors).toEqual([]);
    await context.close();
  });
});

/** How many records each store holds, and whether the single-record state is still there. */
async function storeSizes(page: Page): Promise<Record<string, number>> {
  return page.evaluate(async () => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const req = indexedDB.open('hotline-console');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    const out: Record<string, number> = {};
    const count = (store: string, query?: IDBValidKey | IDBKeyRange) =>
      new Promise<number>((resolve, reject) => {
        const req = db.transaction(store, 'readonly').objectStore(store).count(query);
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
    for (const s of ['state-outbox', 'state-inbox', 'state-sent']) out[s] = await count(s);
    out.legacy = await count('kv', 'client-state/jp-mod/op7');
    db.close();
    return out;
  });
}
