import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../server/main.js';
import { envelopeHash } from '../../shared/crypto/envelope.js';
import { enrollDevice } from '../../shared/crypto/keys.js';
import { signRefusal } from '../../shared/crypto/refusal.js';
import { reconcileAuditExports } from '../../shared/audit/reconcile.js';
import { verifyAuditExport } from '../../shared/audit/log-verify.js';
import type { HotlineEvent } from '../../shared/protocol/frames.js';
import type { DeviceSecretFile, Envelope } from '../../shared/protocol/schemas.js';
import { directoriesExchanged, eventually, makeTwoRelayDeployment, startRelayPair, type RelayPair, type TwoRelayDeployment } from '../helpers/two-relays.js';
import { fakeRelay } from '../helpers/fake-relay.js';
import { call, fetchDirectory, LinkClient, login, seal } from '../helpers/ws-client.js';

/**
 * Refusals cross the relay-to-relay link (PROTOCOL.md "Refusals", "The relay-to-relay link"): the
 * addressee's relay forwards each refusal it accepted; the sender's relay checks it again, stores
 * and audits it, and closes its own deadlines by the same rule.
 */

type Closed = Extract<HotlineEvent, { type: 'deadline.closed' }>;

const links: LinkClient[] = [];
let pair: RelayPair | undefined;
let lone: { server: RunningServer; dir: string } | undefined;

afterEach(async () => {
  for (const l of links.splice(0)) await l.close();
  await pair?.close();
  pair = undefined;
  if (lone) {
    await lone.server.close();
    rmSync(lone.dir, { recursive: true, force: true });
    lone = undefined;
  }
});

async function connect(server: RunningServer, dep: TwoRelayDeployment, device: DeviceSecretFile): Promise<LinkClient> {
  const l = await LinkClient.open(server.url, await login(server.url, device, dep.agreement));
  links.push(l);
  return l;
}

/** jp-op-1 seals a PRIORITY message to cn-mnd with the directory of its own relay, and sends it there. */
async function send(server: RunningServer, dep: TwoRelayDeployment, jp: LinkClient, seq: number): Promise<Envelope> {
  const directory = await fetchDirectory(server.url, await login(server.url, dep.devices.jpOp, dep.agreement));
  const env = await seal({ sender: dep.devices.jpOp, to: 'cn-mnd', seq, directory, precedence: 'PRIORITY', plaintext: { body: 'exercise area', lang: 'en' } });
  expect(env.header.recipients.map((r) => `${r.party}/${r.device}`)).toContain('cn-mnd/cn-op-1');
  jp.send({ t: 'envelope', envelope: env });
  await jp.waitForType('accepted', (f) => f.id === env.header.id);
  return env;
}

async function openRungs(server: RunningServer, dep: TwoRelayDeployment, id: string): Promise<string[]> {
  const r = await call(server.url, 'GET', '/v1/status', undefined, await login(server.url, dep.devices.jpOp, dep.agreement));
  expect(r.status).toBe(200);
  return (r.body.sent as { messageId: string; rung: string }[])
    .filter((w) => w.messageId === id)
    .map((w) => w.rung)
    .sort();
}

/** The types of the audit entries of one relay that concern message `id`, in log order. */
async function auditOf(server: RunningServer, id: string): Promise<string[]> {
  const entries = await server.store.auditEntries(0, await server.store.auditSize());
  return entries
    .map((e) => JSON.parse(e.entry) as { type: string; messageId?: string; header?: { id: string }; receipt?: { receipt: { messageId: string } }; refusal?: { refusal: { messageId: string } } })
    .filter((e) => (e.messageId ?? e.header?.id ?? e.receipt?.receipt.messageId ?? e.refusal?.refusal.messageId) === id)
    .map((e) => e.type);
}

/** Both `deadline.closed` events of `id` (one per rung) as `c` received them. */
async function closedBoth(c: LinkClient, id: string): Promise<Closed[]> {
  const out: Closed[] = [];
  for (const rung of ['delivered', 'acknowledged'] as const) {
    const f = await c.waitFor((x) => x.t === 'event' && x.event.type === 'deadline.closed' && x.event.messageId === id && x.event.rung === rung, `deadline.closed ${rung}`);
    out.push((f as { event: Closed }).event);
  }
  return out;
}

const closedEvents = (c: LinkClient, id: string) => c.frames.filter((f) => f.t === 'event' && f.event.type === 'deadline.closed' && f.event.messageId === id);

describe('a refusal crosses the relay-to-relay link', () => {
  it('the recipient on relay B refuses a message from a sender on relay A: A closes its deadlines (recipient-refused), its operator and auditor are told; both logs reconcile the refusal', async () => {
    pair = await startRelayPair();
    await directoriesExchanged(pair);
    const { dep } = pair;
    const jp = await connect(pair.jp, dep, dep.devices.jpOp);
    const jpAud = await connect(pair.jp, dep, dep.devices.jpAud);
    const cn = await connect(pair.cn, dep, dep.devices.cnOp);
    const env = await send(pair.jp, dep, jp, 1);
    const id = env.header.id;
    await cn.waitForType('deliver', (f) => f.envelope.header.id === id);
    await jp.waitFor((f) => f.t === 'event' && f.event.type === 'message.relayed' && f.event.messageId === id, 'message.relayed');
    expect(await openRungs(pair.jp, dep, id)).toEqual(['acknowledged', 'delivered']);

    cn.send({ t: 'refusal', refusal: await signRefusal(dep.devices.cnOp, id, envelopeHash(env.header), 'HL_ERR_CERT_UNKNOWN_DEVICE', Date.now()) });
    await cn.waitForType('refusal-accepted', (f) => f.messageId === id);
    // The sender's relay, which never saw the refusal from a device, closes its own deadlines.
    for (const c of [jp, jpAud]) {
      for (const e of await closedBoth(c, id)) {
        expect(e).toMatchObject({ reason: 'recipient-refused', from: 'jp-mod', to: 'cn-mnd', precedence: 'PRIORITY' });
        expect(e.detail).toContain('cn-mnd/cn-op-1 (HL_ERR_CERT_UNKNOWN_DEVICE)');
      }
    }
    expect(await openRungs(pair.jp, dep, id)).toEqual([]);
    expect(await auditOf(pair.jp, id)).toEqual(['envelope.accepted', 'message.relayed', 'refusal.accepted', 'deadline.closed', 'deadline.closed']);
    // The addressee's relay records that the sender's relay confirmed it (once).
    await eventually(async () => (await auditOf(pair!.cn, id)).includes('refusal.relayed'), 'refusal.relayed at the relay of cn-mnd');
    expect((await auditOf(pair.cn, id)).filter((t) => t === 'refusal.relayed')).toHaveLength(1);

    // `hotline audit verify A.json B.json`: the refusal is in both logs with the same hash.
    const exp = async (server: RunningServer, dev: DeviceSecretFile) => {
      const r = await call(server.url, 'GET', '/v1/audit/export', undefined, await login(server.url, dev, dep.agreement));
      expect(r.status).toBe(200);
      return r.body as { entries: string[] };
    };
    const [jpLog, cnLog] = [await exp(pair.jp, dep.devices.jpAud), await exp(pair.cn, dep.devices.cnAud)];
    // The sender's log verifies on its own: the forwarded refusal's signature and message are checked there too.
    expect((await verifyAuditExport(dep.agreement, jpLog)).problem).toBeUndefined();
    const ok = reconcileAuditExports(dep.agreement, jpLog, cnLog, { parties: ['jp-mod', 'cn-mnd'] });
    expect(ok.findings).toEqual([]);
    expect(ok).toMatchObject({ ok: true, refusals: 1 });
    // A sender's log from which the forwarded refusal was removed is named.
    const cut = { ...jpLog, entries: jpLog.entries.filter((e) => !e.includes('"refusal.accepted"')) };
    const bad = reconcileAuditExports(dep.agreement, cut, cnLog, { parties: ['jp-mod', 'cn-mnd'] });
    expect(bad.ok).toBe(false);
    expect(bad.findings).toEqual([expect.objectContaining({ kind: 'refusal', problem: 'missing', side: 'jp-mod', messageId: id, refusal: { by: 'cn-mnd/cn-op-1' } })]);
  });

  it('a refusal accepted while the link is down, and the addressee relay restarted, goes when the link returns: once, and applied once', async () => {
    pair = await startRelayPair();
    await directoriesExchanged(pair);
    const { dep } = pair;
    const jp = await connect(pair.jp, dep, dep.devices.jpOp);
    const cn = await connect(pair.cn, dep, dep.devices.cnOp);
    const env = await send(pair.jp, dep, jp, 1);
    const id = env.header.id;
    await cn.waitForType('deliver', (f) => f.envelope.header.id === id);
    await jp.waitFor((f) => f.t === 'event' && f.event.type === 'message.relayed' && f.event.messageId === id, 'message.relayed');

    const down = jp.waitFor((f) => f.t === 'event' && f.event.type === 'link.down' && f.event.scope === 'relay', 'link.down', 20_000);
    pair.toCn.cut();
    pair.toJp.cut();
    await down;
    cn.send({ t: 'refusal', refusal: await signRefusal(dep.devices.cnOp, id, envelopeHash(env.header), 'HL_ERR_ENVELOPE_BAD_SIGNATURE', Date.now()) });
    await cn.waitForType('refusal-accepted', (f) => f.messageId === id);
    // The addressee's relay closed its own deadlines at once; the sender's cannot know yet.
    expect(await auditOf(pair.cn, id)).toEqual(['envelope.accepted', 'refusal.accepted', 'deadline.closed', 'deadline.closed']);
    expect(await openRungs(pair.jp, dep, id)).toEqual(['acknowledged', 'delivered']);
    // The queue is the store: the relay of cn-mnd stops and starts again before the link returns.
    await cn.close();
    links.splice(links.indexOf(cn), 1);
    await pair.restart('cn');

    const t1 = Date.now();
    const up = jp.waitFor((f) => f.t === 'event' && f.event.type === 'link.up' && f.event.scope === 'relay' && f.event.at >= t1, 'link.up', 20_000);
    pair.toCn.restore();
    pair.toJp.restore();
    await up;
    for (const e of await closedBoth(jp, id)) expect(e).toMatchObject({ reason: 'recipient-refused' });
    await eventually(async () => (await auditOf(pair!.cn, id)).includes('refusal.relayed'), 'refusal.relayed at the relay of cn-mnd');
    // Cut and restored once more: a new connection sends nothing already confirmed.
    const down2 = jp.waitFor((f) => f.t === 'event' && f.event.type === 'link.down' && f.event.scope === 'relay', 'link.down', 20_000);
    pair.toCn.cut();
    pair.toJp.cut();
    await down2;
    const t2 = Date.now();
    const up2 = jp.waitFor((f) => f.t === 'event' && f.event.type === 'link.up' && f.event.scope === 'relay' && f.event.at >= t2, 'link.up again', 20_000);
    pair.toCn.restore();
    pair.toJp.restore();
    await up2;
    await jp.sync();
    expect(await auditOf(pair.jp, id)).toEqual(['envelope.accepted', 'message.relayed', 'refusal.accepted', 'deadline.closed', 'deadline.closed']);
    expect((await auditOf(pair.cn, id)).filter((t) => t === 'refusal.relayed')).toHaveLength(1);
    expect(closedEvents(jp, id)).toHaveLength(2);
    expect(await openRungs(pair.jp, dep, id)).toEqual([]);
  });
});

describe('a forwarded refusal that does not hold', () => {
  it('is refused with its own code, closes nothing, and is not stored; the genuine one then closes, and its resend is answered the same without effect', async () => {
    const dep = await makeTwoRelayDeployment();
    const dir = mkdtempSync(join(tmpdir(), 'hotline-fwd-refusal-'));
    const server = await startServer({
      agreement: dep.agreement,
      dataDir: dir,
      host: '127.0.0.1',
      port: 0,
      logLevel: 'silent',
      // Its own dialling goes nowhere (port 9, discard): only the test's fake relay of cn-mnd reaches it.
      relay: { identity: dep.relays.jp, peerUrls: { 'cn-mnd': ['http://127.0.0.1:9'] }, heartbeatIntervalMs: 5_000, backoff: { minMs: 1_000, maxMs: 5_000 } },
    });
    lone = { server, dir };
    for (const d of [dep.devices.jpOp, dep.devices.jpAud, dep.devices.jpArc]) {
      const res = await fetch(`${server.url}/v1/directory/devices`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(d.certificate) });
      expect(res.status).toBe(201);
    }
    const cnRelay = await fakeRelay(dep.agreement, server.url, dep.relays.cn, 'jp-mod');
    cnRelay.sendNumbered({ t: 'relay-directory', certificates: [dep.devices.cnOp.certificate, dep.devices.cnAud.certificate, dep.devices.cnArc.certificate], revocations: [] });
    const token = await login(server.url, dep.devices.jpAud, dep.agreement);
    await eventually(async () => (await fetchDirectory(server.url, token)).some((c) => c.device === 'cn-op-1'), 'cn-op-1 at the relay of jp-mod');

    const jp = await connect(server, dep, dep.devices.jpOp);
    const env = await send(server, dep, jp, 1);
    const id = env.header.id;
    const hash = envelopeHash(env.header);
    const fwd = await cnRelay.nextFrame('relay-envelope');
    expect((fwd.envelope as Envelope).header.id).toBe(id);
    cnRelay.sendNumbered({ t: 'relay-stored', id, envelopeHash: hash, at: Date.now() });

    const late = await enrollDevice(dep.cn, { device: 'cn-op-2', role: 'operator', now: dep.now });
    cnRelay.sendNumbered({ t: 'relay-directory', certificates: [late.certificate], revocations: [] });
    await eventually(async () => (await fetchDirectory(server.url, token)).some((c) => c.device === 'cn-op-2'), 'cn-op-2 at the relay of jp-mod');
    const genuine = await signRefusal(dep.devices.cnOp, id, hash, 'HL_ERR_CERT_UNKNOWN_DEVICE', Date.now());
    const other = await signRefusal(dep.devices.cnOp, id, hash, 'HL_ERR_ENVELOPE_BAD_SIGNATURE', Date.now());
    const bad: [string, unknown][] = [
      // Another refusal's signature on this body.
      ['HL_ERR_REFUSAL_BAD_SIGNATURE', { refusal: genuine.refusal, signature: other.signature }],
      // Signed, but over another header hash than the one stored.
      ['HL_ERR_REFUSAL_HASH_MISMATCH', await signRefusal(dep.devices.cnOp, id, 'a'.repeat(64), 'HL_ERR_CERT_UNKNOWN_DEVICE', Date.now())],
      // A device enrolled after the message was sealed: it was not wrapped for it.
      ['HL_ERR_REFUSAL_NOT_RECIPIENT', await signRefusal(late, id, hash, 'HL_ERR_CERT_UNKNOWN_DEVICE', Date.now())],
      // A message not stored here.
      ['HL_ERR_REFUSAL_UNKNOWN_MESSAGE', await signRefusal(dep.devices.cnOp, 'f'.repeat(32), hash, 'HL_ERR_CERT_UNKNOWN_DEVICE', Date.now())],
      // An auditor receives no messages, so it refuses none.
      ['HL_ERR_AUTH_FORBIDDEN', await signRefusal(dep.devices.cnAud, id, hash, 'HL_ERR_CERT_UNKNOWN_DEVICE', Date.now())],
    ];
    for (const [code, refusal] of bad) {
      cnRelay.sendNumbered({ t: 'relay-refusal', refusal, acceptedAt: Date.now() });
      const err = await cnRelay.nextFrame('relay-error');
      expect(err.code).toBe(code);
      expect(err.ref).toBe(`${(refusal as { refusal: { messageId: string } }).refusal.messageId}/cn-mnd/${(refusal as { refusal: { by: { device: string } } }).refusal.by.device}`);
    }
    // Nothing was stored, audited or closed; the link is still up.
    await jp.sync();
    expect(await auditOf(server, id)).toEqual(['envelope.accepted', 'message.relayed']);
    expect(await server.store.refusalsOf(id)).toEqual([]);
    expect(await openRungs(server, dep, id)).toEqual(['acknowledged', 'delivered']);
    expect(closedEvents(jp, id)).toEqual([]);

    // The genuine one closes the deadlines; its resend is answered with the first storing time.
    cnRelay.sendNumbered({ t: 'relay-refusal', refusal: genuine, acceptedAt: Date.now() });
    const stored = await cnRelay.nextFrame('relay-refusal-stored');
    expect(stored).toMatchObject({ messageId: id, by: { party: 'cn-mnd', device: 'cn-op-1' } });
    for (const e of await closedBoth(jp, id)) expect(e).toMatchObject({ reason: 'recipient-refused' });
    cnRelay.sendNumbered({ t: 'relay-refusal', refusal: genuine, acceptedAt: Date.now() });
    expect((await cnRelay.nextFrame('relay-refusal-stored')).at).toBe(stored.at);
    // A different refusal from the same device for the same message is a conflict.
    cnRelay.sendNumbered({ t: 'relay-refusal', refusal: other, acceptedAt: Date.now() });
    expect((await cnRelay.nextFrame('relay-error')).code).toBe('HL_ERR_REFUSAL_CONFLICT');
    await jp.sync();
    expect(await auditOf(server, id)).toEqual(['envelope.accepted', 'message.relayed', 'refusal.accepted', 'deadline.closed', 'deadline.closed']);
    expect(closedEvents(jp, id)).toHaveLength(2);

    // A refusal signed by a device of another party than the peer's: the peer relay does not speak for it; the link ends.
    cnRelay.sendNumbered({ t: 'relay-refusal', refusal: await signRefusal(dep.devices.jpOp2, id, hash, 'HL_ERR_CERT_UNKNOWN_DEVICE', Date.now()), acceptedAt: Date.now() });
    expect((await cnRelay.nextFrame('relay-error')).code).toBe('HL_ERR_RELAY_WRONG_PARTY');
  });
});
