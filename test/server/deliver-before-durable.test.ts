import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { signReceipt } from '../../shared/crypto/receipt.js';
import type { Precedence } from '../../shared/protocol/schemas.js';
import { DATABASE_FILE } from '../../server/main.js';
import { CN, JP } from '../helpers/deployment.js';
import { slowDisk } from '../helpers/slow-disk.js';
import { onCleanup, startTestServer } from '../helpers/test-server.js';
import { seal } from '../helpers/ws-client.js';
import { next } from '../helpers/events.js';
import WebSocket from 'ws';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('delivery before durability (PROTOCOL.md "Delivery before durability")', () => {
  for (const precedence of ['FLASH', 'ROUTINE'] as const satisfies readonly Precedence[]) {
    it(`${precedence}: the addressee gets the message and the sender its receipt while the relay's fsyncs are pending; "accepted" and "receipt-accepted" wait for them; the receipt closes the deadline`, async () => {
      const s = await startTestServer();
      const jp = await s.connect(`${JP}/op1`);
      const cn = await s.connect(`${CN}/op1`);
      const env = await seal({
        sender: s.dep.devices[`${JP}/op1`]!,
        to: CN,
        seq: 1,
        precedence,
        directory: await s.directory(),
        plaintext: { body: 'before the disk', lang: 'en' },
        sentAt: s.now(),
      });
      const id = env.header.id;
      const disk = slowDisk();

      jp.send({ t: 'envelope', envelope: env });
      await cn.waitForType('deliver', (f) => f.envelope.header.id === id);
      const receipt = await signReceipt(s.dep.devices[`${CN}/op1`]!, env.header, 'delivered', s.now());
      cn.send({ t: 'receipt', receipt });
      if (precedence === 'ROUTINE') {
        // One ROUTINE batch at a time (WriteQueue): the receipt's waits for the envelope's fsync.
        await jp.sync();
        expect(jp.ofType('accepted')).toEqual([]);
        disk.release();
        expect(await jp.waitForType('accepted', (f) => f.id === id)).toMatchObject({ id });
      }
      // A FLASH's receipt commits beside the envelope's pending fsync.
      await jp.waitForType('receipt', (f) => f.receipt.receipt.messageId === id);
      // The receipt's signer has not been answered (nor, for a FLASH, the envelope's sender): the
      // transactions are done, not known durable.
      await jp.sync();
      await cn.sync();
      if (precedence === 'FLASH') expect(jp.ofType('accepted')).toEqual([]);
      expect(cn.ofType('receipt-accepted')).toEqual([]);

      disk.release();
      if (precedence === 'FLASH') expect(await jp.waitForType('accepted', (f) => f.id === id)).toMatchObject({ id });
      expect(await cn.waitForType('receipt-accepted', (f) => f.messageId === id)).toMatchObject({ messageId: id, kind: 'delivered' });
      // The deadlines the envelope opened were adopted before its fsync ended, so the receipt that
      // came back meanwhile closed its rung (in memory and in the store), and nothing is left due.
      const db = new Database(join(s.dataDir, DATABASE_FILE), { readonly: true });
      onCleanup(() => {
        db.close();
      });
      const rows = db.prepare('SELECT rung, closed_at FROM deadlines WHERE message_id = ? ORDER BY rung').all(id) as { rung: string; closed_at: number | null }[];
      expect(rows.find((r) => r.rung === 'delivered')?.closed_at).toEqual(expect.any(Number));
      expect(rows.find((r) => r.rung === 'acknowledged')?.closed_at).toBeNull();
    });
  }

  it('a HotlineClient that gets the receipt before its `accepted` checks it against the message it sealed, keeps it, and adds the acceptance after', async () => {
    const s = await startTestServer();
    const storage = new MemoryStorage();
    const jp = new HotlineClient({ serverUrl: s.url, agreement: s.dep.agreement, device: s.dep.devices[`${JP}/op1`]!, storage, WebSocket });
    onCleanup(() => jp.stop());
    await jp.start();
    const cn = await s.connect(`${CN}/op1`);
    const disk = slowDisk();

    const receiptSeen = next(jp, 'receipt');
    const accepted = next(jp, 'accepted');
    const { id } = await jp.send({ to: CN, precedence: 'FLASH', body: 'receipt first', lang: 'en' });
    const deliver = await cn.waitForType('deliver', (f) => f.envelope.header.id === id);
    cn.send({ t: 'receipt', receipt: await signReceipt(s.dep.devices[`${CN}/op1`]!, deliver.envelope.header, 'delivered', s.now()) });
    const r = await receiptSeen;
    expect(r).toMatchObject({ verified: true, headerChecked: true });
    const before = await storage.read(`${JP}/op1`);
    expect(before.outbox[`e:${id}`]).toBeDefined();
    expect(before.sent[id]?.acceptedAt).toBeUndefined();
    expect(before.sent[id]?.receipts.map((x) => x.kind)).toEqual(['delivered']);

    disk.release();
    expect(await accepted).toMatchObject({ id });
    const after = await storage.read(`${JP}/op1`);
    expect(after.outbox[`e:${id}`]).toBeUndefined();
    expect(after.sent[id]?.acceptedAt).toEqual(expect.any(Number));
    expect(after.sent[id]?.receipts.map((x) => x.kind)).toEqual(['delivered']);
  });
});
