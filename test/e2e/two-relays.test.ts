import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import type { HotlineClientEvents } from '../../client/events.js';
import { verifyReceipt } from '../../shared/crypto/receipt.js';
import { enrollDevice, revokeDevice } from '../../shared/crypto/keys.js';
import { verifyAuditExport } from '../../shared/audit/log-verify.js';
import type { DeviceSecretFile, EnvelopeHeader } from '../../shared/protocol/schemas.js';
import type { RunningServer } from '../../server/main.js';
import { fetchDirectory, login } from '../helpers/ws-client.js';
import { next } from '../helpers/events.js';
import { directoriesExchanged, eventually, makeTwoRelayDeployment, startRelayPair, type RelayPair } from '../helpers/two-relays.js';

const clients: HotlineClient[] = [];
let pair: RelayPair | undefined;

afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  await pair?.close();
  pair = undefined;
});

function client(device: DeviceSecretFile, server: RunningServer, options: { testAgent?: boolean; cosign?: boolean } = {}): HotlineClient {
  const c = new HotlineClient({ serverUrl: server.url, agreement: pair!.dep.agreement, device, storage: new MemoryStorage(), WebSocket, backoff: { initialMs: 20, maxMs: 200 }, ...options });
  clients.push(c);
  return c;
}

/** The order in which a sender's client saw the rungs of one message. */
function rungs(c: HotlineClient, id: () => string | undefined): string[] {
  const seen: string[] = [];
  const add = (rung: string) => !seen.includes(rung) && seen.push(rung);
  c.on('accepted', (a) => a.id === id() && add('accepted'));
  c.on('relayed', (r) => r.messageId === id() && add('relayed'));
  c.on('receipt', (r) => r.verified && r.receipt.receipt.messageId === id() && add(r.receipt.receipt.kind));
  return seen;
}

const relayLink = (type: 'link.up' | 'link.down') => (e: HotlineClientEvents['link']) => e.type === type && e.scope === 'relay';

describe('two sovereign relays', () => {
  it('a FLASH from a Japanese operator crosses both relays: accepted, relayed, delivered, acknowledged, both receipts verified at the sender', async () => {
    pair = await startRelayPair();
    await directoriesExchanged(pair);
    const { dep } = pair;
    const jp = client(dep.devices.jpOp, pair.jp);
    const cn = client(dep.devices.cnOp, pair.cn);
    await Promise.all([jp.start(), cn.start()]);

    const sent: { id?: string } = {};
    const order = rungs(jp, () => sent.id);
    const arrived = next(cn, 'message');
    const acknowledged = next(jp, 'receipt', (r) => r.receipt.receipt.kind === 'acknowledged');
    const delivered = next(jp, 'receipt', (r) => r.receipt.receipt.kind === 'delivered');
    const body = '至急：本日一四〇〇時、演習区域を変更する。/ 紧急：今天十四时起变更演习区域。';
    const { id } = await jp.send({ to: 'cn-mnd', precedence: 'FLASH', body, lang: 'ja', subject: '演習' });
    sent.id = id;
    const m = await arrived;
    expect(m.header.id).toBe(id);
    expect(m.plaintext.body).toBe(body);
    await cn.acknowledge(id);
    const receipts = [await delivered, await acknowledged];
    for (const r of receipts) {
      expect(r.verified).toBe(true);
      expect(r.headerChecked).toBe(true);
      // Checked here once more, against the certificate and the header the sender sealed.
      await expect(verifyReceipt(r.receipt, dep.devices.cnOp.certificate.cert, m.header as EnvelopeHeader)).resolves.toBeDefined();
    }
    expect(order).toEqual(['accepted', 'relayed', 'delivered', 'acknowledged']);

    // And back, in Chinese, from the Chinese operator's own relay.
    const back: { id?: string } = {};
    const backOrder = rungs(cn, () => back.id);
    const arrivedJp = next(jp, 'message');
    const deliveredCn = next(cn, 'receipt', (r) => r.receipt.receipt.kind === 'delivered' && r.verified);
    back.id = (await cn.send({ to: 'jp-mod', precedence: 'FLASH', body: '收到，明白。', lang: 'zh' })).id;
    expect((await arrivedJp).plaintext.body).toBe('收到，明白。');
    await deliveredCn;
    expect(backOrder.slice(0, 3)).toEqual(['accepted', 'relayed', 'delivered']);

    // Each relay fills only its own party's mailboxes: the other party's devices fetch elsewhere.
    for (const [server, foreign] of [
      [pair.jp, ['cn-mnd/cn-op-1', 'cn-mnd/cn-archive', 'cn-mnd/cn-audit-1']],
      [pair.cn, ['jp-mod/jp-op-1', 'jp-mod/jp-op-2', 'jp-mod/jp-archive', 'jp-mod/jp-audit-1']],
    ] as const) {
      const upTo = await server.store.maxCursor();
      for (const device of foreign) expect(await server.store.mailbox(device, { upTo, limit: 10 }), device).toEqual([]);
    }
  });

  it('what a relay had not yet forwarded when it was restarted goes after the restart, once', async () => {
    pair = await startRelayPair();
    await directoriesExchanged(pair);
    const { dep } = pair;
    const jp = client(dep.devices.jpOp, pair.jp);
    const cn = client(dep.devices.cnOp, pair.cn);
    await Promise.all([jp.start(), cn.start()]);
    const down = next(jp, 'link', relayLink('link.down'));
    pair.toCn.cut();
    pair.toJp.cut();
    await down;
    const sent: string[] = [];
    for (const body of ['一', '二']) {
      const a = next(jp, 'accepted');
      sent.push((await jp.send({ to: 'cn-mnd', precedence: 'PRIORITY', body, lang: 'ja' })).id);
      await a;
    }
    // The relay of jp-mod stops with both unconfirmed, and starts again on the same database.
    await pair.restart('jp');
    const counts = new Map<string, number>();
    cn.on('message', (m) => counts.set(m.header.id, (counts.get(m.header.id) ?? 0) + 1));
    const both = Promise.all(sent.map((id) => next(jp, 'relayed', (r) => r.messageId === id)));
    const delivered = Promise.all(sent.map((id) => next(jp, 'receipt', (r) => r.verified && r.receipt.receipt.messageId === id)));
    pair.toCn.restore();
    pair.toJp.restore();
    await both;
    await delivered;
    expect([...counts.keys()].sort()).toEqual([...sent].sort());
    expect([...counts.values()]).toEqual([1, 1]);
  });

  it('the operators’ link test crosses both relays and is judged good on both sides', async () => {
    pair = await startRelayPair();
    await directoriesExchanged(pair);
    const { dep } = pair;
    const cn = client(dep.devices.cnOp, pair.cn);
    await cn.start();
    const jp = client(dep.devices.jpOp, pair.jp, { testAgent: true });
    const judged = (e: HotlineClientEvents['link']) => e.type === 'link.test' && e.scope === undefined && e.from === 'jp-mod';
    const atJp = next(jp, 'link', judged);
    const atCn = next(cn, 'link', judged);
    await jp.start();
    // The sending relay judged it by the answer that came back over the relay link; the
    // addressee's relay by the answer its own operator gave.
    expect(await atJp).toMatchObject({ to: 'cn-mnd', ok: true });
    expect(await atCn).toMatchObject({ to: 'cn-mnd', ok: true });
  });

  it('each relay signs its checkpoints with its own log key: its operators cosign them, and a link test from the other side raises no alarm', async () => {
    pair = await startRelayPair({ withLogKeys: true });
    await directoriesExchanged(pair);
    const { dep } = pair;
    const cn = client(dep.devices.cnOp, pair.cn, { cosign: true });
    const alarms: unknown[] = [];
    cn.on('audit.alarm', (a) => alarms.push(a));
    await cn.start();
    const cosigned = await cn.cosignLatest();
    expect(cosigned.status).toBe('cosigned');
    // The Japanese test agent gossips its own relay's checkpoint: another log, not compared here.
    const jp = client(dep.devices.jpOp, pair.jp, { cosign: true, testAgent: true });
    jp.on('audit.alarm', (a) => alarms.push(a));
    const judged = next(jp, 'link', (e) => e.type === 'link.test' && e.ok);
    await jp.start();
    await judged;
    await cn.stop();
    await jp.stop();
    expect(alarms).toEqual([]);
    // An auditor of cn-mnd verifies its own relay's export, checkpoints and cosignature included.
    const token = await login(pair.cn.url, dep.devices.cnAud, dep.agreement);
    const exp = await (await fetch(`${pair.cn.url}/v1/audit/export`, { headers: { authorization: `Bearer ${token}` } })).json();
    const verified = await verifyAuditExport(dep.agreement, exp);
    expect(verified.ok, JSON.stringify(verified.problem ?? verified)).toBe(true);
    expect(verified.checkpoints).toBeGreaterThan(0);
    expect(verified.cosigners).toContain('cn-mnd/cn-op-1');
  });

  it('a device the other party enrols at its own relay gets the next message, and once revoked no longer, with nothing lost or refused', async () => {
    pair = await startRelayPair();
    await directoriesExchanged(pair);
    const { dep } = pair;
    const jp = client(dep.devices.jpOp, pair.jp);
    const cn = client(dep.devices.cnOp, pair.cn);
    await Promise.all([jp.start(), cn.start()]);
    const refused: unknown[] = [];
    jp.on('refused', (r) => refused.push(r));
    const first = next(cn, 'message');
    await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'before', lang: 'ja' });
    await first;

    const cnOp2 = await enrollDevice(dep.cn, { device: 'cn-op-2', role: 'operator', now: dep.now });
    const res = await fetch(`${pair.cn.url}/v1/directory/devices`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(cnOp2.certificate) });
    expect(res.status).toBe(201);
    const jpToken = await login(pair.jp.url, dep.devices.jpAud, dep.agreement);
    await eventually(async () => (await fetchDirectory(pair!.jp.url, jpToken)).some((c) => c.device === 'cn-op-2'), 'cn-op-2 at the relay of jp-mod');
    const cn2 = client(cnOp2, pair.cn);
    await cn2.start();
    const toNew = next(cn2, 'message');
    const toOld = next(cn, 'message');
    // jp's client sealed its directory before cn-op-2 existed: its relay refuses the old recipient
    // set, the client fetches the directory again and seals once more (PROTOCOL.md "Recipients").
    const { id } = await jp.send({ to: 'cn-mnd', precedence: 'IMMEDIATE', body: 'after', lang: 'ja' });
    const m = await toNew;
    expect(m.header.id).toBe(id);
    expect(m.plaintext.body).toBe('after');
    expect(m.header.recipients.map((r) => r.device)).toContain('cn-op-2');
    expect((await toOld).header.id).toBe(id);
    expect(refused).toEqual([]);

    // Revoked at its own relay: the next message is no longer sealed to it, and still goes.
    const rev = await revokeDevice(dep.cn, cnOp2.certificate.cert, { at: Date.now(), reason: 'console lost' });
    const revRes = await fetch(`${pair.cn.url}/v1/directory/revocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rev) });
    expect(revRes.status).toBe(201);
    await eventually(async () => !(await fetchDirectory(pair!.jp.url, jpToken)).some((c) => c.device === 'cn-op-2'), 'cn-op-2 revoked at the relay of jp-mod');
    const third = next(cn, 'message');
    const { id: id3 } = await jp.send({ to: 'cn-mnd', precedence: 'IMMEDIATE', body: 'revoked', lang: 'ja' });
    const m3 = await third;
    expect(m3.header.id).toBe(id3);
    expect(m3.header.recipients.map((r) => r.device)).not.toContain('cn-op-2');
    expect(refused).toEqual([]);
  });

  it('while the link is cut, messages sent both ways wait at their home relay; each arrives exactly once when it returns; both sides see link down and up, and the FLASH delivered-deadline fires on the sending side', async () => {
    // A FLASH must be delivered within 1.5 s here, so that its deadline falls inside the cut.
    const dep = await makeTwoRelayDeployment(Date.now() - 60_000, { FLASH: { deliveredMs: 1_500, acknowledgedMs: 600_000 } });
    pair = await startRelayPair({ dep });
    await directoriesExchanged(pair);
    const jp = client(dep.devices.jpOp, pair.jp);
    const cn = client(dep.devices.cnOp, pair.cn);
    // The link came up before these devices were enrolled (directoriesExchanged proves it is up).
    await Promise.all([jp.start(), cn.start()]);

    const down = [next(jp, 'link', relayLink('link.down')), next(cn, 'link', relayLink('link.down'))] as const;
    pair.toCn.cut();
    pair.toJp.cut();
    const [jpDown, cnDown] = await Promise.all(down);
    expect(jpDown).toMatchObject({ from: 'jp-mod', to: 'cn-mnd', ok: false });
    expect(jpDown.reason).toMatch(/heartbeat|closed|unreachable/);
    expect(cnDown).toMatchObject({ from: 'cn-mnd', to: 'jp-mod', ok: false });
    // The status view says so too, with the reason, for a console that missed the event.
    expect((await jp.status()).relayLinks).toEqual([{ peer: 'cn-mnd', status: 'down', since: jpDown.at, reason: jpDown.reason }]);

    const received = { jp: new Map<string, number>(), cn: new Map<string, number>() };
    jp.on('message', (m) => received.jp.set(m.header.id, (received.jp.get(m.header.id) ?? 0) + 1));
    cn.on('message', (m) => received.cn.set(m.header.id, (received.cn.get(m.header.id) ?? 0) + 1));
    const relayedAtJp: string[] = [];
    jp.on('relayed', (r) => relayedAtJp.push(r.messageId));
    const sent = { jp: [] as string[], cn: [] as string[] };
    // Listened for from before the send: the deadline falls 1.5 s after acceptance.
    const missedFlash = next(jp, 'deadline.missed', (e) => e.messageId === sent.jp[0]);
    for (let i = 0; i < 3; i++) {
      const a = next(jp, 'accepted');
      sent.jp.push((await jp.send({ to: 'cn-mnd', precedence: i === 0 ? 'FLASH' : 'ROUTINE', body: `jp ${i}`, lang: 'ja' })).id);
      await a;
      const b = next(cn, 'accepted');
      sent.cn.push((await cn.send({ to: 'jp-mod', precedence: 'IMMEDIATE', body: `cn ${i}`, lang: 'zh' })).id);
      await b;
    }
    expect(relayedAtJp).toEqual([]);
    expect(received.cn.size + received.jp.size).toBe(0);
    // The sending side keeps the FLASH's deadline while the other relay cannot be reached.
    const missed = await missedFlash;
    expect(missed).toMatchObject({ from: 'jp-mod', to: 'cn-mnd', precedence: 'FLASH', rung: 'delivered', level: 1 });
    expect(relayedAtJp).toEqual([]);

    const upAgain = [next(jp, 'link', relayLink('link.up')), next(cn, 'link', relayLink('link.up'))];
    const allIn = Promise.all([
      ...sent.jp.map((id) => next(jp, 'receipt', (r) => r.verified && r.receipt.receipt.messageId === id)),
      ...sent.cn.map((id) => next(cn, 'receipt', (r) => r.verified && r.receipt.receipt.messageId === id)),
    ]);
    pair.toCn.restore();
    pair.toJp.restore();
    await Promise.all(upAgain);
    expect((await cn.status()).relayLinks).toMatchObject([{ peer: 'jp-mod', status: 'up' }]);
    await allIn;
    expect([...received.cn.keys()].sort()).toEqual([...sent.jp].sort());
    expect([...received.jp.keys()].sort()).toEqual([...sent.cn].sort());
    expect([...received.cn.values(), ...received.jp.values()].every((n) => n === 1)).toBe(true);
    // Exactly once at the relays too: one acceptance per message in each relay's log.
    for (const [server, ids] of [
      [pair.cn, sent.jp],
      [pair.jp, sent.cn],
    ] as const) {
      const size = await server.store.auditSize();
      const entries = (await server.store.auditEntries(0, size)).map((e) => JSON.parse(e.entry) as { type: string; header?: { id: string } });
      for (const id of ids) expect(entries.filter((e) => e.type === 'envelope.accepted' && e.header?.id === id)).toHaveLength(1);
    }
  });
});
