import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { HotlineClient, MemoryPrekeyStore } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { envelopeHash, openEnvelope } from '../../shared/crypto/envelope.js';
import { keyIdOf } from '../../shared/crypto/keys.js';
import { createPrekey, DEFAULT_PREKEY_ROTATION_MS } from '../../shared/crypto/prekey.js';
import { fromBase64, toBase64 } from '../../shared/encoding/base64.js';
import type { DeviceSecretFile, Envelope, EnvelopeHeader, SignedPrekey } from '../../shared/protocol/schemas.js';
import { startServer, type RunningServer } from '../../server/main.js';
import { DRAIN_MARGIN_MS } from '../../server/federation/relay-link.js';
import type { Clock } from '../../server/clock.js';
import { call, fetchDirectory, login } from '../helpers/ws-client.js';
import { codeOf, next } from '../helpers/events.js';
import { exportedEnvelopes, makeClient } from '../helpers/audit.js';
import { fakeRelay } from '../helpers/fake-relay.js';
import { LogSink } from '../helpers/log-sink.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { directoriesExchanged, eventually, makeTwoRelayDeployment, startCnRelayAlone, startRelayPair, type RelayPair } from '../helpers/two-relays.js';

/**
 * Prekeys between two relays (PROTOCOL.md "Prekeys between relays"): each relay forwards its own
 * party's operators' prekeys over the relay link, checked by the receiving relay as if published
 * to it, so a sender wraps to the other party's newest prekey too; and a device keeps a prekey's
 * secret until the other relay's drained watermark has passed the prekey's notAfter, so an
 * envelope queued at the other relay while the link is down still opens when it arrives.
 */

const R = DEFAULT_PREKEY_ROTATION_MS;
const MIN = 60_000;
/** Heartbeats run on the manual clock too: keep them out of the way of week-long jumps. */
const YEAR = 365 * 24 * 60 * MIN;

const clients: HotlineClient[] = [];
let pair: RelayPair | undefined;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  // A line left cut would hold each relay's goodbye to the other (its timeout runs on the injected clock).
  pair?.toCn.restore();
  pair?.toJp.restore();
  await pair?.close();
  pair = undefined;
  for (const f of cleanups.splice(0)) await f();
});

function client(device: DeviceSecretFile, server: RunningServer, prekeys?: MemoryPrekeyStore, clock?: Clock): HotlineClient {
  const c = new HotlineClient({
    serverUrl: server.url,
    agreement: pair!.dep.agreement,
    device,
    storage: new MemoryStorage(),
    WebSocket,
    backoff: { initialMs: 20, maxMs: 200 },
    ...(clock ? { clock } : {}),
    ...(prekeys ? { prekeys: { store: prekeys } } : {}),
  });
  clients.push(c);
  return c;
}

/** Start a client that keeps prekeys; its first prekey's keyId once published. */
async function startWithPrekeys(c: HotlineClient): Promise<string> {
  const published = next(c, 'prekeys', (p) => p.rotated !== undefined);
  await c.start();
  return (await published).rotated!;
}

const certKeyId = (d: DeviceSecretFile) => keyIdOf(fromBase64(d.certificate.cert.boxKey, 32));
const keyIdFor = (h: EnvelopeHeader, device: string) => h.recipients.find((r) => r.device === device)!.keyId;

/** The prekeys a relay serves in its directory, as `party/device keyId` (logged in once per server). */
const tokens = new Map<RunningServer, Promise<string>>();
async function served(server: RunningServer, auditor: DeviceSecretFile): Promise<string[]> {
  if (!tokens.has(server)) tokens.set(server, login(server.url, auditor, pair!.dep.agreement));
  const token = await tokens.get(server)!;
  const body = (await call(server.url, 'GET', '/v1/directory', undefined, token)).body as { prekeys: SignedPrekey[] };
  return body.prekeys.map((p) => `${p.prekey.party}/${p.prekey.device} ${keyIdOf(fromBase64(p.prekey.boxKey, 32))}`).sort();
}

describe('prekeys with one relay per party', () => {
  it('each relay forwards its operators’ prekeys: a sender wraps to the other party’s newest prekey, which opens it, and the certificate key alone does not', { timeout: 60_000 }, async () => {
    pair = await startRelayPair();
    await directoriesExchanged(pair);
    const { dep } = pair;
    const cnStore = new MemoryPrekeyStore();
    const cn = client(dep.devices.cnOp, pair.cn, cnStore);
    const jp2 = client(dep.devices.jpOp2, pair.jp, new MemoryPrekeyStore());
    const [cnKey, jp2Key] = await Promise.all([startWithPrekeys(cn), startWithPrekeys(jp2)]);

    // Each relay serves its own party's prekeys and, forwarded over the relay link, the other's.
    const both = [`cn-mnd/cn-op-1 ${cnKey}`, `jp-mod/jp-op-2 ${jp2Key}`].sort();
    await eventually(async () => JSON.stringify(await served(pair!.jp, dep.devices.jpAud)) === JSON.stringify(both), 'cn-op-1’s prekey at the relay of jp-mod');
    await eventually(async () => JSON.stringify(await served(pair!.cn, dep.devices.cnAud)) === JSON.stringify(both), 'jp-op-2’s prekey at the relay of cn-mnd');

    const jp = client(dep.devices.jpOp, pair.jp);
    await jp.start();
    await jp.refreshDirectory();
    const toCn = next(cn, 'message', (m) => m.plaintext.body === 'jp to cn');
    const copyAtJp2 = next(jp2, 'message', (m) => m.plaintext.body === 'jp to cn');
    await jp.send({ to: 'cn-mnd', precedence: 'FLASH', body: 'jp to cn', lang: 'en' });
    const h = (await toCn).header;
    // The other party's device: its newest prekey, published at its own relay, not its certificate's key.
    expect(keyIdFor(h, 'cn-op-1')).toBe(cnKey);
    expect(cnKey).not.toBe(certKeyId(dep.devices.cnOp));
    expect(keyIdFor(h, 'jp-op-2')).toBe(jp2Key);
    expect((await copyAtJp2).header.id).toBe(h.id);

    // The copy cn's relay stored: the prekey's secret opens it; the device key file alone does not.
    const env = (await exportedEnvelopes(pair.cn.url, dep.devices.cnAud, dep.agreement)).get(h.id)!;
    const senderCert = dep.devices.jpOp.certificate.cert;
    expect((await openEnvelope(env, { device: dep.devices.cnOp, senderCert, prekeys: await cnStore.load() })).plaintext.body).toBe('jp to cn');
    expect(await codeOf(openEnvelope(env, { device: dep.devices.cnOp, senderCert, prekeys: [] }))).toBe('HL_ERR_PREKEY_SECRET_GONE');

    // The other way round alike.
    await cn.refreshDirectory();
    const toJp = next(jp2, 'message', (m) => m.plaintext.body === 'cn to jp');
    await cn.send({ to: 'jp-mod', precedence: 'FLASH', body: 'cn to jp', lang: 'en' });
    expect(keyIdFor((await toJp).header, 'jp-op-2')).toBe(jp2Key);
  });

  it('the receiving relay checks each forwarded prekey against the device’s certificate: a forged or relabelled one is refused and not served', { timeout: 60_000 }, async () => {
    const dep = await makeTwoRelayDeployment();
    const logs = new LogSink();
    const relay = await startCnRelayAlone(dep, logs, 'hotline-prekeys-link-');
    cleanups.push(relay.close);
    const cn = relay.server;
    for (const d of [dep.devices.cnAud]) expect((await call(cn.url, 'POST', '/v1/directory/devices', d.certificate)).status).toBe(201);

    const jp = await fakeRelay(dep.agreement, cn.url, dep.relays.jp, 'cn-mnd');
    await jp.nextFrame('relay-directory');
    const now = Date.now();
    const genuine = await createPrekey(dep.devices.jpOp, { now, rotationMs: R });
    // Another box key under jp-op-1's signature: the signature no longer holds.
    const swapped = { ...genuine.signed, prekey: { ...genuine.signed.prekey, boxKey: toBase64(new Uint8Array(32).fill(3)) } };
    // jp-op-2's own prekey relabelled as jp-op-1's: its signKey is not jp-op-1's.
    const other = await createPrekey(dep.devices.jpOp2, { now, rotationMs: R });
    const relabelled = { ...other.signed, prekey: { ...other.signed.prekey, device: 'jp-op-1' } };
    // An archive's prekey (archives' prekeys are not forwarded: their deletion does not wait for the link).
    const archive = await createPrekey(dep.devices.jpArc, { now, rotationMs: R });
    const certificates = [dep.devices.jpOp, dep.devices.jpOp2, dep.devices.jpArc].map((d) => d.certificate);
    jp.sendNumbered({ t: 'relay-directory', certificates, revocations: [], prekeys: [swapped, relabelled, archive.signed, genuine.signed] });

    const refused = (code: string) => (r: Record<string, unknown>) => r.msg === 'peer relay prekey refused' && r.code === code;
    await logs.waitFor(refused('HL_ERR_PREKEY_BAD_SIGNATURE'));
    await logs.waitFor(refused('HL_ERR_PREKEY_WRONG_DEVICE'), 2);
    const token = await login(cn.url, dep.devices.cnAud, dep.agreement);
    await eventually(async () => ((await call(cn.url, 'GET', '/v1/directory', undefined, token)).body as { prekeys: unknown[] }).prekeys.length > 0, 'the genuine prekey served');
    expect(((await call(cn.url, 'GET', '/v1/directory', undefined, token)).body as { prekeys: unknown[] }).prekeys).toEqual([genuine.signed]);

    // A prekey of a party the peer relay does not speak for ends the link, as a certificate would.
    const cnKey = await createPrekey(dep.devices.cnOp, { now, rotationMs: R });
    jp.sendNumbered({ t: 'relay-directory', certificates: [], revocations: [], prekeys: [cnKey.signed] });
    expect((await jp.nextFrame('relay-error')).code).toBe('HL_ERR_RELAY_WRONG_PARTY');
  });

  it('a prekey’s secret is kept while an envelope wrapped to it waits in the other relay’s queue (link down, clock past its notAfter), and deleted once it arrived and was read (injected clock)', { timeout: 90_000 }, async () => {
    const dep = await makeTwoRelayDeployment();
    const clock = new ManualClock(dep.now + 1000);
    pair = await startRelayPair({ dep, clock, app: { heartbeatIntervalMs: YEAR }, relay: { heartbeatIntervalMs: YEAR } });
    await directoriesExchanged(pair);
    const cnStore = new MemoryPrekeyStore();
    const cn = client(dep.devices.cnOp, pair.cn, cnStore, clock);
    const k1 = await startWithPrekeys(cn);
    await eventually(async () => (await served(pair!.jp, dep.devices.jpAud)).includes(`cn-mnd/cn-op-1 ${k1}`), 'cn-op-1’s prekey at the relay of jp-mod');
    const k1NotAfter = (await cnStore.load())[0]!.signed.prekey.notAfter;

    const jp = client(dep.devices.jpOp, pair.jp, undefined, clock);
    await jp.start();
    await jp.refreshDirectory();

    // The line between the relays breaks (silently: bytes dropped); jp's relay accepts an envelope
    // wrapped to k1 and holds it in its queue to cn's relay.
    pair.toCn.cut();
    pair.toJp.cut();
    const arrived = next(cn, 'message', (m) => m.plaintext.body === 'queued while the link was down');
    await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'queued while the link was down', lang: 'en' });
    const accepted = await next(jp, 'accepted');
    expect(accepted.at).toBeLessThan(k1NotAfter);

    // Days pass, past k1's notAfter (and the margin): cn's mailbox has nothing wrapped to k1, yet the
    // relay reports k1 pending, since jp's relay has not said it drained past k1's notAfter.
    const rotated = next(cn, 'prekeys', (p) => p.rotated !== undefined);
    clock.advance(k1NotAfter + DRAIN_MARGIN_MS + MIN - clock.now());
    await rotated;
    const token = await login(pair.cn.url, dep.devices.cnOp, dep.agreement);
    const pending = (await call(pair.cn.url, 'GET', '/v1/prekeys/pending', undefined, token)).body as { serverTime: number; pending: string[]; peerDrainedAt: number };
    expect(pending.serverTime).toBeGreaterThanOrEqual(k1NotAfter);
    expect(pending.peerDrainedAt).toBeLessThan(k1NotAfter);
    expect(pending.pending).toContain(k1);
    // So the device keeps k1's secret.
    const kept = await cn.maintainPrekeys();
    expect(kept.deleted).not.toContain(k1);
    expect((await cnStore.load()).map((h) => h.keyId)).toContain(k1);

    // The line is back: the relays redial (their backoff runs on the injected clock), the envelope
    // goes over, and cn opens it with k1.
    pair.toCn.restore();
    pair.toJp.restore();
    let opened: EnvelopeHeader | undefined;
    void arrived.then((m) => (opened = m.header));
    await eventually(async () => {
      clock.advance(100);
      return opened !== undefined;
    }, 'the queued envelope at cn-op-1', 30_000);
    expect(keyIdFor(opened!, 'cn-op-1')).toBe(k1);

    // jp's relay, its queue drained, tells cn's a watermark past k1's notAfter: k1's secret goes.
    let deleted = false;
    for (let i = 0; i < 200 && !deleted; i++) {
      deleted = (await cn.maintainPrekeys()).deleted.includes(k1) || (await cnStore.load()).every((h) => h.keyId !== k1);
      if (!deleted) await new Promise((r) => setTimeout(r, 20));
    }
    expect(deleted).toBe(true);
    const after = (await call(pair.cn.url, 'GET', '/v1/prekeys/pending', undefined, token)).body as { pending: string[]; peerDrainedAt: number };
    expect(after.peerDrainedAt).toBeGreaterThanOrEqual(k1NotAfter);
    expect(after.pending).not.toContain(k1);

    // The watermark is kept in the store: cn's relay, restarted, still has it before the link is back.
    pair.toCn.cut();
    pair.toJp.cut();
    // (Its goodbye to jp's relay is not answered on the cut line: its timeout runs on the injected clock.)
    let restarted = false;
    const restarting = pair.restart('cn').then(() => (restarted = true));
    for (let i = 0; i < 300 && !restarted; i++) {
      clock.advance(100);
      await new Promise((r) => setTimeout(r, 20));
    }
    await restarting;
    const again = await login(pair.cn.url, dep.devices.cnOp, dep.agreement);
    const stored = (await call(pair.cn.url, 'GET', '/v1/prekeys/pending', undefined, again)).body as { peerDrainedAt: number };
    expect(stored.peerDrainedAt).toBeGreaterThanOrEqual(k1NotAfter);
  });

  it('a forwarded envelope the peer relay refused holds the drained watermark until a later connection gets it stored (injected clock)', { timeout: 60_000 }, async () => {
    const dep = await makeTwoRelayDeployment();
    const clock = new ManualClock(dep.now + 1000);
    const dir = mkdtempSync(join(tmpdir(), 'hotline-prekeys-drained-'));
    const jpRelay = await startServer({
      agreement: dep.agreement,
      dataDir: dir,
      host: '127.0.0.1',
      port: 0,
      logLevel: 'silent',
      clock,
      app: { heartbeatIntervalMs: YEAR },
      relay: { identity: dep.relays.jp, peerUrls: { 'cn-mnd': ['http://127.0.0.1:9'] }, heartbeatIntervalMs: YEAR, backoff: { minMs: 1_000, maxMs: 5_000 } },
    });
    cleanups.push(async () => {
      await jpRelay.close();
      rmSync(dir, { recursive: true, force: true });
    });
    for (const d of [dep.devices.jpOp, dep.devices.jpAud]) expect((await call(jpRelay.url, 'POST', '/v1/directory/devices', d.certificate)).status).toBe(201);

    // The test stands in for cn's relay: it gives jp's relay cn's directory.
    const first = await fakeRelay(dep.agreement, jpRelay.url, dep.relays.cn, 'jp-mod');
    first.sendNumbered({ t: 'relay-directory', certificates: [dep.devices.cnOp, dep.devices.cnArc].map((d) => d.certificate), revocations: [] });
    const audToken = await login(jpRelay.url, dep.devices.jpAud, dep.agreement);
    await eventually(async () => (await fetchDirectory(jpRelay.url, audToken)).some((c) => c.device === 'cn-op-1'), 'cn-op-1 at the relay of jp-mod');
    const jp = makeClient(jpRelay.url, dep.agreement, dep.devices.jpOp);
    clients.push(jp);
    await jp.start();
    const drained: number[] = [];
    const collect = (frames: { t: string; at?: unknown }[]) => drained.push(...frames.filter((f) => f.t === 'relay-drained').map((f) => f.at as number));

    // E1 is refused by the peer (the link stays up), E2 stored.
    const { id: e1 } = await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'refused once', lang: 'en' });
    const t1 = (await next(jp, 'accepted', (a) => a.id === e1)).at;
    const f1 = (await first.nextFrame('relay-envelope')).envelope as Envelope;
    expect(f1.header.id).toBe(e1);
    first.sendNumbered({ t: 'relay-error', code: 'HL_ERR_STORE_FAILED', message: 'not now', ref: e1 });
    // Time passes: a watermark sent from now on would be past E1's acceptance.
    clock.advance(DRAIN_MARGIN_MS + 2 * MIN);
    const relayed = next(jp, 'relayed');
    const { id: e2 } = await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'stored', lang: 'en' });
    const f2 = (await first.nextFrame('relay-envelope')).envelope as Envelope;
    expect(f2.header.id).toBe(e2);
    first.sendNumbered({ t: 'relay-stored', id: e2, envelopeHash: envelopeHash(f2.header), at: clock.now() });
    expect((await relayed).messageId).toBe(e2);
    collect(first.frames);
    first.ws.close();

    // A new connection: E1 again (not E2), and the watermark passes E1 only once it is stored.
    const second = await fakeRelay(dep.agreement, jpRelay.url, dep.relays.cn, 'jp-mod');
    const again = (await second.nextFrame('relay-envelope')).envelope as Envelope;
    expect(again.header.id).toBe(e1);
    collect(second.frames);
    expect(drained.length).toBeGreaterThan(0);
    for (const at of drained) expect(at).toBeLessThanOrEqual(t1);
    second.sendNumbered({ t: 'relay-stored', id: e1, envelopeHash: envelopeHash(again.header), at: clock.now() });
    let past = false;
    for (let i = 0; i < 20 && !past; i++) past = ((await second.nextFrame('relay-drained')).at as number) > t1;
    expect(past).toBe(true);
    second.ws.close();
  });
});
