import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../server/main.js';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { revokeDevice } from '../../shared/crypto/keys.js';
import type { HotlineEvent } from '../../shared/protocol/frames.js';
import type { DeviceSecretFile } from '../../shared/protocol/schemas.js';
import type { StatusResponse } from '../../server/plugins/status.js';
import { initialConsoleData, inboxRow, sentRow } from '../../client/console/operator/model.js';
import { eventText as cliEventText, revokedSinceLines } from '../../client/cli/link.js';
import { makeDeployment, type TestDeployment } from '../helpers/fixtures.js';
import { next } from '../helpers/events.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { call, login } from '../helpers/ws-client.js';

const MIN = 60_000;
/** Heartbeats run on the manual clock too: keep them out of the way of hour-long jumps. */
const QUIET = { heartbeatIntervalMs: 365 * 24 * 60 * MIN };

let d: TestDeployment;
let clock: ManualClock;
let server: RunningServer;
let dir: string;
const clients: HotlineClient[] = [];

beforeEach(async () => {
  d = await makeDeployment();
  clock = new ManualClock(d.now + 1000);
  dir = mkdtempSync(join(tmpdir(), 'hotline-revocation-'));
  server = await startServer({ agreement: d.agreement, dataDir: join(dir, 'server'), host: '127.0.0.1', port: 0, logLevel: 'silent', clock, app: QUIET });
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

function client(device: DeviceSecretFile, storage = new MemoryStorage()): HotlineClient {
  const c = new HotlineClient({ serverUrl: server.url, agreement: d.agreement, device, storage, WebSocket, clock, backoff: { initialMs: 20, maxMs: 200 } });
  clients.push(c);
  return c;
}

async function revoke(device: DeviceSecretFile, party: TestDeployment['jp'], at: number): Promise<void> {
  const rev = await revokeDevice(party, device.certificate.cert, { at, reason: 'device lost' });
  const res = await call(server.url, 'POST', '/v1/directory/revocations', rev);
  expect(res.status).toBe(201);
}

async function status(device: DeviceSecretFile): Promise<StatusResponse> {
  const r = await call(server.url, 'GET', '/v1/status', undefined, await login(server.url, device, d.agreement));
  expect(r.status).toBe(200);
  return r.body as StatusResponse;
}

describe('revocation is about the time of acceptance', () => {
  it('a message accepted before its sender was revoked is readable, marked "revoked since", acknowledgeable, and leaves no deadline open', async () => {
    const jp = client(d.devices.jpOp);
    await jp.start();
    const accepted = next(jp, 'accepted');
    const { id } = await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: '演習区域の変更について', lang: 'ja' });
    await accepted;
    await jp.stop();

    clock.advance(MIN);
    const revokedAt = clock.now();
    await revoke(d.devices.jpOp, d.jp, revokedAt);
    clock.advance(MIN);

    // The sender's colleague watches the answers; the addressee connects only now.
    const jp2 = client(d.devices.jpOp2);
    const seenAtJp2: HotlineEvent[] = [];
    jp2.on('event', (e) => seenAtJp2.push(e));
    await jp2.start();
    const cnStorage = new MemoryStorage();
    const cn = client(d.devices.cnOp, cnStorage);
    const seenAtCn: HotlineEvent[] = [];
    cn.on('event', (e) => seenAtCn.push(e));
    const refused: string[] = [];
    cn.on('error', (e) => refused.push(e.code));
    const arrived = next(cn, 'message');
    await cn.start();
    const m = await arrived;
    expect(m.header.id).toBe(id);
    expect(m.plaintext.body).toBe('演習区域の変更について');
    expect(m.senderRevokedAt).toBe(revokedAt);
    // Stored with the message: the operator console's row shows "sender revoked since" from it.
    const row = inboxRow(id, (await cnStorage.read('cn-mnd/cn-op-1')).inbox[id]!, initialConsoleData(), d.agreement, { party: 'cn-mnd' });
    expect(row?.senderRevokedAt).toBe(revokedAt);
    expect(refused).toEqual([]);

    const acked = next(jp2, 'receipt', (r) => r.receipt.receipt.kind === 'acknowledged' && r.receipt.receipt.messageId === id);
    const relayTook = next(cn, 'receipt-accepted', (r) => r.messageId === id && r.kind === 'acknowledged');
    await cn.acknowledge(id);
    await relayTook;
    expect((await acked).verified).toBe(true);

    // Nothing of this message is left waiting at the relay, and hours later no alarm fires.
    expect((await status(d.devices.cnOp)).waiting.filter((w) => w.messageId === id)).toEqual([]);
    clock.advance(48 * 60 * MIN);
    const marker = next(cn, 'message');
    const jp2Sent = next(jp2, 'accepted');
    await jp2.send({ to: 'cn-mnd', precedence: 'FLASH', body: 'marker', lang: 'en' });
    await jp2Sent;
    await marker;
    expect([...seenAtJp2, ...seenAtCn].filter((e) => e.type === 'deadline.missed')).toEqual([]);
  });

  it('a message accepted after the revocation’s signed time is refused by the recipient, whose signed refusal closes its deadlines: both sides are told why, no alarm stays', async () => {
    const jp = client(d.devices.jpOp);
    await jp.start();
    const accepted = next(jp, 'accepted');
    const { id } = await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'after the fact', lang: 'en' });
    const at = (await accepted).at;
    await jp.stop();
    // The party declares the key compromised since before that message was accepted.
    await revoke(d.devices.jpOp, d.jp, at - 1);

    // The sender's colleague watches; the addressee connects only now.
    const jp2 = client(d.devices.jpOp2);
    const closedAtJp2 = next(jp2, 'deadline.closed', (e) => e.messageId === id && e.rung === 'acknowledged');
    await jp2.start();
    const cnStorage = new MemoryStorage();
    const cn = client(d.devices.cnOp, cnStorage);
    const refused = next(cn, 'error', (e) => e.message.includes(id));
    const relayTook = next(cn, 'refusal-accepted', (r) => r.messageId === id);
    const closedAtCn = next(cn, 'deadline.closed', (e) => e.messageId === id && e.rung === 'acknowledged');
    const messages: string[] = [];
    cn.on('message', (m) => messages.push(m.header.id));
    await cn.start();
    expect((await refused).code).toBe('HL_ERR_CERT_UNKNOWN_DEVICE');
    expect(messages).toEqual([]);
    await relayTook;
    // Sent from the outbox and gone from it once the relay stored it.
    expect(Object.keys((await cnStorage.read('cn-mnd/cn-op-1')).outbox)).toEqual([]);

    // Both sides are told that nobody will answer it, and why.
    for (const e of [await closedAtJp2, await closedAtCn]) {
      expect(e).toMatchObject({ reason: 'recipient-refused', from: 'jp-mod', to: 'cn-mnd', precedence: 'ROUTINE' });
      expect(e.detail).toContain('cn-mnd/cn-op-1 (HL_ERR_CERT_UNKNOWN_DEVICE)');
    }
    expect(cliEventText(await closedAtJp2, 'jp-mod')).toContain("can no longer be reached (refused by cn-mnd's device)");
    expect((await status(d.devices.cnOp)).waiting.filter((w) => w.messageId === id)).toEqual([]);
    expect((await status(d.devices.jpOp2)).sent.filter((w) => w.messageId === id)).toEqual([]);

    // Two days on, no alarm has fired on it at either side.
    const seen: HotlineEvent[] = [];
    jp2.on('event', (e) => seen.push(e));
    cn.on('event', (e) => seen.push(e));
    clock.advance(48 * 60 * MIN);
    const marker = next(cn, 'message');
    const jp2Sent = next(jp2, 'accepted');
    await jp2.send({ to: 'cn-mnd', precedence: 'FLASH', body: 'marker', lang: 'en' });
    await jp2Sent;
    await marker;
    expect(seen.filter((e) => e.type === 'deadline.missed' && e.messageId === id)).toEqual([]);
  });

  it('a message and receipts stored before their sender was revoked stay readable and valid, and are labelled "revoked since" once the revocation arrives', async () => {
    const jpStorage = new MemoryStorage();
    const jp = client(d.devices.jpOp, jpStorage);
    const cn = client(d.devices.cnOp);
    await jp.start();
    await cn.start();
    // M1 jp → cn, delivered and acknowledged by cn-op-1; M2 cn → jp, stored in jp's inbox.
    const m1Arrived = next(cn, 'message');
    const { id: m1 } = await jp.send({ to: 'cn-mnd', precedence: 'PRIORITY', body: 'M1', lang: 'en' });
    await m1Arrived;
    const acked = next(jp, 'receipt', (r) => r.receipt.receipt.messageId === m1 && r.receipt.receipt.kind === 'acknowledged');
    await cn.acknowledge(m1);
    expect((await acked).signerRevokedAt).toBeUndefined();
    const m2Arrived = next(jp, 'message');
    const { id: m2 } = await cn.send({ to: 'jp-mod', precedence: 'IMMEDIATE', body: 'M2', lang: 'zh' });
    expect((await m2Arrived).senderRevokedAt).toBeUndefined();
    await cn.stop();

    // cn-op-1 is revoked later; jp learns of it at its next directory fetch.
    clock.advance(MIN);
    const revokedAt = clock.now();
    await revoke(d.devices.cnOp, d.cn, revokedAt);
    const labelled = next(jp, 'revoked-since');
    await jp.refreshDirectory();
    const change = await labelled;
    expect(change.messages).toEqual([{ id: m2, from: 'cn-mnd/cn-op-1', revokedAt }]);
    expect(change.receipts).toEqual([{ messageId: m1, by: 'cn-mnd/cn-op-1', revokedAt }]);
    const state = await jpStorage.read('jp-mod/jp-op-1');
    expect(state.inbox[m2]?.senderRevokedAt).toBe(revokedAt);
    expect(state.sent[m1]?.signersRevokedAt).toEqual({ 'cn-mnd/cn-op-1': revokedAt });
    // The receipts themselves are kept: M1 is still acknowledged.
    expect(state.sent[m1]?.receipts.map((r) => r.kind).sort()).toEqual(['acknowledged', 'delivered']);
    expect(await jp.revokedLabels()).toEqual(change);
    // What the console and the CLI show from it.
    expect(inboxRow(m2, state.inbox[m2]!, initialConsoleData(), d.agreement, { party: 'jp-mod' })?.senderRevokedAt).toBe(revokedAt);
    expect(sentRow(m1, state.sent[m1]!, initialConsoleData(), d.agreement)?.receipts.every((r) => r.signerRevokedAt === revokedAt)).toBe(true);
    expect(revokedSinceLines(change).map((l) => l.text)).toEqual([
      `! sender revoked since ${new Date(revokedAt).toISOString()}: message ${m2} from cn-mnd/cn-op-1 stays readable (accepted while its certificate was valid)`,
      `! signer revoked since ${new Date(revokedAt).toISOString()}: receipts by cn-mnd/cn-op-1 for ${m1} stay valid (signed before the revocation)`,
    ]);

    // Still answerable: jp acknowledges M2, and the relay takes the receipt.
    const took = next(jp, 'receipt-accepted', (r) => r.messageId === m2 && r.kind === 'acknowledged');
    await jp.acknowledge(m2);
    await took;
    // Labelled once: a later fetch changes nothing.
    let again = 0;
    jp.on('revoked-since', () => again++);
    await jp.refreshDirectory();
    expect(again).toBe(0);
  });

  it('a revocation backdated to before a stored message was accepted labels it too (the compromise it declares covers it)', async () => {
    const cnStorage = new MemoryStorage();
    const jp = client(d.devices.jpOp);
    const cn = client(d.devices.cnOp, cnStorage);
    await jp.start();
    await cn.start();
    const arrived = next(cn, 'message');
    const { id } = await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'before the news', lang: 'en' });
    const acceptedAt = (await arrived).acceptedAt;
    await jp.stop();
    // The party declares the key compromised since a minute before that message was accepted.
    await revoke(d.devices.jpOp, d.jp, acceptedAt - MIN);
    const labelled = next(cn, 'revoked-since');
    await cn.refreshDirectory();
    expect((await labelled).messages).toEqual([{ id, from: 'jp-mod/jp-op-1', revokedAt: acceptedAt - MIN }]);
    expect((await cnStorage.read('cn-mnd/cn-op-1')).inbox[id]?.senderRevokedAt).toBe(acceptedAt - MIN);
  });
});

