import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../server/main.js';
import { HotlineClient } from '../../client/hotline-client.js';
import { FileStorage } from '../../client/storage/file-storage.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import type { ClientStorage } from '../../client/storage/client-storage.js';
import { verifyReceipt } from '../../shared/crypto/receipt.js';
import type { DeviceSecretFile } from '../../shared/protocol/schemas.js';
import { makeDeployment, type TestDeployment } from '../helpers/fixtures.js';
import { next } from '../helpers/events.js';

let d: TestDeployment;
let server: RunningServer;
let dir: string;
const clients: HotlineClient[] = [];

beforeEach(async () => {
  d = await makeDeployment(Date.now() - 60_000);
  dir = mkdtempSync(join(tmpdir(), 'hotline-e2e-'));
  server = await startServer({ agreement: d.agreement, dataDir: join(dir, 'server'), host: '127.0.0.1', port: 0, logLevel: 'silent' });
  // Archive devices never log in; their certificates are registered the way `device enroll --server` does.
  for (const dev of Object.values(d.devices)) {
    const res = await fetch(`${server.url}/v1/directory/devices`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(dev.certificate) });
    expect(res.status).toBe(201);
  }
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

function client(device: DeviceSecretFile, storage: ClientStorage = new MemoryStorage()): HotlineClient {
  const c = new HotlineClient({ serverUrl: server.url, agreement: d.agreement, device, storage, WebSocket, backoff: { initialMs: 20, maxMs: 200 } });
  clients.push(c);
  return c;
}


describe('two real clients through a real server', () => {
  it('FLASH in Japanese and in Chinese: delivered, text intact, delivered and acknowledged receipts verified at the sender', async () => {
    const jp = client(d.devices.jpOp);
    const cn = client(d.devices.cnOp);
    await Promise.all([jp.start(), cn.start()]);

    for (const [from, to, body, lang] of [
      [jp, cn, '至急：明朝〇六〇〇、東シナ海における演習の件につき確認されたい。🇯🇵', 'ja'],
      [cn, jp, '紧急：请确认收到关于东海演习的通知。「测试」', 'zh'],
    ] as const) {
      const arrived = next(to, 'message');
      const delivered = next(from, 'receipt', (r) => r.receipt.receipt.kind === 'delivered');
      const { id } = await from.send({ to: to.me.party, precedence: 'FLASH', body, lang, subject: '演習' });
      const m = await arrived;
      expect(m.header.id).toBe(id);
      expect(m.header.precedence).toBe('FLASH');
      expect(m.plaintext).toEqual({ body, lang, subject: '演習' });
      const dr = await delivered;
      expect(dr).toMatchObject({ verified: true, headerChecked: true });
      expect(dr.receipt.receipt).toMatchObject({ messageId: id, by: { party: to.me.party, device: to.me.device } });

      const acked = next(from, 'receipt', (r) => r.receipt.receipt.kind === 'acknowledged');
      await to.acknowledge(id);
      const ar = await acked;
      expect(ar.verified).toBe(true);
      // The sender can prove it to a third party: the receipt verifies against the header it sent.
      await verifyReceipt(ar.receipt, to === cn ? d.devices.cnOp.certificate.cert : d.devices.jpOp.certificate.cert, m.header);
    }
  });

  it('a colleague on the same watch and the archive see the message; only the addressee’s operator answers', async () => {
    const jp = client(d.devices.jpOp);
    const jp2 = client(d.devices.jpOp2);
    const cnArc = client(d.devices.cnArc);
    const cn = client(d.devices.cnOp);
    await Promise.all([jp.start(), jp2.start(), cnArc.start(), cn.start()]);
    const atColleague = next(jp2, 'message');
    const atArchive = next(cnArc, 'message');
    const colleagueSeesReceipt = next(jp2, 'receipt', (r) => r.receipt.receipt.kind === 'delivered');
    const { id } = await jp.send({ to: 'cn-mnd', precedence: 'IMMEDIATE', body: '会合の件', lang: 'ja' });
    expect((await atColleague).header.id).toBe(id);
    expect((await atArchive).plaintext.body).toBe('会合の件');
    const r = await colleagueSeesReceipt;
    expect(r).toMatchObject({ verified: true });
    expect(r.receipt.receipt.by).toEqual({ party: 'cn-mnd', device: 'cn-op-1' });
  });

  it('an offline recipient gets the message once when it connects, and not again after a restart', async () => {
    const jp = client(d.devices.jpOp);
    await jp.start();
    const accepted = next(jp, 'accepted');
    const { id } = await jp.send({ to: 'cn-mnd', precedence: 'PRIORITY', body: '離線中の受信者へ', lang: 'ja' });
    await accepted;
    const delivered = next(jp, 'receipt', (r) => r.receipt.receipt.kind === 'delivered' && r.receipt.receipt.messageId === id);

    const storage = new MemoryStorage();
    const cn = client(d.devices.cnOp, storage);
    const seen: string[] = [];
    cn.on('message', (m) => seen.push(m.header.id));
    const first = next(cn, 'message');
    await cn.start();
    expect((await first).plaintext.body).toBe('離線中の受信者へ');
    expect((await delivered).verified).toBe(true);
    await cn.stop();

    // Reconnect on the same storage, and send a second message to know when the mailbox is drained.
    const again = client(d.devices.cnOp, storage);
    again.on('message', (m) => seen.push(m.header.id));
    await again.start();
    const marker = next(again, 'message');
    const { id: id2 } = await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'marker', lang: 'en' });
    await marker;
    expect(seen).toEqual([id, id2]);
  });

  it('the sender’s outbox survives its own restart: composed while stopped, sent by the next client on the same state file, received once', async () => {
    const path = join(dir, 'jp-op-1.state.json');
    const first = client(d.devices.jpOp, new FileStorage(path));
    await first.start(); // fetches and stores the directory
    await first.stop();
    const { id } = await first.send({ to: 'cn-mnd', precedence: 'FLASH', body: '再起動後に送信', lang: 'ja' });
    expect((await new FileStorage(path).read('jp-mod/jp-op-1')).outbox).toEqual({ [`e:${id}`]: expect.anything() });

    const cn = client(d.devices.cnOp);
    const ids: string[] = [];
    cn.on('message', (m) => ids.push(m.header.id));
    await cn.start();

    const second = client(d.devices.jpOp, new FileStorage(path));
    const accepted = next(second, 'accepted', (a) => a.id === id);
    const delivered = next(second, 'receipt', (r) => r.receipt.receipt.messageId === id);
    await second.start();
    await accepted;
    expect((await delivered).verified).toBe(true);
    expect((await new FileStorage(path).read('jp-mod/jp-op-1')).outbox).toEqual({});
    expect(ids).toEqual([id]);
  });

  it('a device that lost its state continues above the last seq the server accepted (hello.lastSeq)', async () => {
    const cn = client(d.devices.cnOp);
    await cn.start();
    const before = client(d.devices.jpOp);
    await before.start();
    for (const body of ['一', '二', '三']) {
      const { id } = await before.send({ to: 'cn-mnd', precedence: 'ROUTINE', body, lang: 'ja' });
      await next(before, 'accepted', (a) => a.id === id);
    }
    await before.stop();

    // A fresh state (a new machine, a restored old copy): its own counter starts again at 0.
    const after = client(d.devices.jpOp, new MemoryStorage());
    const refused: string[] = [];
    after.on('refused', (r) => refused.push(r.code));
    await after.start();
    // Listening before the send: the relay hands the addressee its copy before it answers the sender.
    const arrived = next(cn, 'message', (m) => m.plaintext.body === '四');
    const { id } = await after.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: '四', lang: 'ja' });
    await next(after, 'accepted', (a) => a.id === id);
    expect(refused).toEqual([]);
    const got = await arrived;
    expect(got.header.id).toBe(id);
    expect(got.header.seq).toBe(4);
  });

  it('refuses to log in to a server that runs another agreement', async () => {
    const other = await makeDeployment(Date.now() - 60_000);
    const c = new HotlineClient({ serverUrl: server.url, agreement: other.agreement, device: other.devices.jpOp, storage: new MemoryStorage(), WebSocket });
    clients.push(c);
    await expect(c.start()).rejects.toMatchObject({ code: 'HL_ERR_AGREEMENT_MISMATCH' });
  });
});
