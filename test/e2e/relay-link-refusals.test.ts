import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../server/main.js';
import { relayLinkUrl } from '../../server/federation/relay-link.js';
import { agreementHash, CONTEXT, createAgreement, enrolRelay, revokeRelay, signingBytes } from '../../shared/crypto/keys.js';
import { ed25519Sign } from '../../shared/crypto/ed25519.js';
import { randomBytes } from '../../shared/crypto/random.js';
import { fromBase64, toBase64 } from '../../shared/encoding/base64.js';
import { envelopeHash, expectedRecipients, sealEnvelope } from '../../shared/crypto/envelope.js';
import { RELAY_LINK_PROTOCOL, type RelayAuthStatement } from '../../shared/protocol/relay-frames.js';
import type { DeviceSecretFile, Envelope, RelaySecretFile } from '../../shared/protocol/schemas.js';
import { makeTwoRelayDeployment, type TwoRelayDeployment } from '../helpers/two-relays.js';
import { fetchDirectory, login, tryLogin } from '../helpers/ws-client.js';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { signReceipt } from '../../shared/crypto/receipt.js';
import { next } from '../helpers/events.js';

/**
 * The relay of cn-mnd alone, and a test standing in for the relay of jp-mod on its link: every
 * refusal named in PROTOCOL.md "The relay-to-relay link", and the idempotent forward.
 */

let dep: TwoRelayDeployment;
let cn: RunningServer;
let dir: string;

beforeEach(async () => {
  dep = await makeTwoRelayDeployment();
  dir = mkdtempSync(join(tmpdir(), 'hotline-relay-refusals-'));
  cn = await startServer({
    agreement: dep.agreement,
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    logLevel: 'silent',
    // Its own dialling goes nowhere (port 9, discard): only the test's connections reach it.
    relay: { identity: dep.relays.cn, peerUrls: { 'jp-mod': ['http://127.0.0.1:9'] }, heartbeatIntervalMs: 5_000, backoff: { minMs: 1_000, maxMs: 5_000 } },
  });
  for (const d of [dep.devices.cnOp, dep.devices.cnAud, dep.devices.cnArc]) {
    const res = await fetch(`${cn.url}/v1/directory/devices`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(d.certificate) });
    expect(res.status).toBe(201);
  }
});

afterEach(async () => {
  await cn.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Frame {
  t: string;
  [k: string]: unknown;
}

/** A raw relay-link connection to the relay of cn-mnd, speaking as `identity`. */
async function open(identity: RelaySecretFile, agreement = agreementHash(dep.agreement)) {
  const ws = new WebSocket(relayLinkUrl(cn.url), RELAY_LINK_PROTOCOL);
  const frames: Frame[] = [];
  let wake = () => {};
  ws.on('message', (d) => {
    frames.push(JSON.parse(d.toString()) as Frame);
    wake();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const challenge = toBase64(randomBytes(32));
  let n = 0;
  const nextFrame = async (t: string): Promise<Frame> => {
    for (let i = 0; i < 100; i++) {
      const k = frames.findIndex((f) => f.t === t);
      if (k >= 0) return frames.splice(k, 1)[0]!;
      await Promise.race([new Promise<void>((r) => (wake = r)), closed]);
      if (ws.readyState === WebSocket.CLOSED && !frames.some((f) => f.t === t)) throw new Error(`closed before ${t}`);
    }
    throw new Error(`no ${t}`);
  };
  const send = (f: Frame) => ws.send(JSON.stringify(f));
  send({ t: 'relay-hello', v: 1, agreement, certificate: identity.certificate, challenge });
  return {
    ws,
    closed,
    nextFrame,
    send,
    /** A numbered frame after the handshake. */
    sendNumbered: (f: Frame, no?: number) => send({ ...f, n: no ?? ++n }),
    /** The relay-auth answering the relay's challenge, as PROTOCOL.md specifies it. */
    async auth(theirChallenge: string): Promise<string> {
      const me = identity.certificate.cert;
      const statement: RelayAuthStatement = { v: 1, agreement, party: me.party, relay: me.relay, peer: 'cn-mnd', challenge: theirChallenge, ownChallenge: challenge };
      return toBase64(await ed25519Sign(fromBase64(identity.signSecret, 32), signingBytes(CONTEXT.relayLink, statement)));
    },
  };
}

/** A full handshake as the relay of jp-mod. */
async function authenticated(identity = dep.relays.jp) {
  const c = await open(identity);
  const hello = await c.nextFrame('relay-hello');
  await c.nextFrame('relay-auth');
  const signature = await c.auth(hello.challenge as string);
  c.send({ t: 'relay-auth', signature });
  // The relay sends its directory once it has verified us.
  await c.nextFrame('relay-directory');
  return { ...c, signature };
}

async function refusedWith(c: { closed: Promise<{ code: number }>; nextFrame: (t: string) => Promise<Frame> }, code: string, wsCode: number): Promise<void> {
  const err = await c.nextFrame('relay-error');
  expect(err.code).toBe(code);
  expect((await c.closed).code).toBe(wsCode);
}

function jpEnvelope(sender: DeviceSecretFile, to: string, seq: number) {
  const certs = Object.values(dep.devices).map((d) => d.certificate.cert);
  return sealEnvelope({
    sender,
    to,
    precedence: 'FLASH',
    seq,
    sentAt: Date.now(),
    recipients: expectedRecipients(certs, sender.certificate.cert, to),
    plaintext: { body: 'test', lang: 'en' },
  });
}

describe('relay-to-relay link refusals', () => {
  it('a relay certificate of the wrong party (cn-mnd’s own, on the link to jp-mod)', async () => {
    const cnLog = dep.logs.cn.logKey;
    const impostor = await enrolRelay(dep.cn, { relay: 'cn-relay-2', logKey: cnLog, now: Date.now() - 1000 });
    await refusedWith(await open(impostor), 'HL_ERR_RELAY_WRONG_PARTY', 4530);
  });

  it('an expired relay certificate', async () => {
    const old = await enrolRelay(dep.jp, { relay: 'jp-relay', logKey: dep.logs.jp.logKey, now: Date.now() - 10_000, validForMs: 1_000 });
    await refusedWith(await open(old), 'HL_ERR_CERT_EXPIRED', 4415);
  });

  it('a revoked relay certificate (the revocation sent to the relay like any other)', async () => {
    const relay = await enrolRelay(dep.jp, { relay: 'jp-relay-2', logKey: dep.logs.jp.logKey, now: Date.now() - 1000 });
    const rev = await revokeRelay(dep.jp, relay.certificate.cert, { at: Date.now(), reason: 'host compromised' });
    const res = await fetch(`${cn.url}/v1/directory/revocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rev) });
    expect(res.status).toBe(201);
    await refusedWith(await open(relay), 'HL_ERR_CERT_REVOKED', 4416);
  });

  it('a relay whose certificate is revoked while its link is up is cut off at once', async () => {
    const relay = await enrolRelay(dep.jp, { relay: 'jp-relay-3', logKey: dep.logs.jp.logKey, now: Date.now() - 1000 });
    const c = await authenticated(relay);
    const rev = await revokeRelay(dep.jp, relay.certificate.cert, { at: Date.now(), reason: 'host compromised' });
    const res = await fetch(`${cn.url}/v1/directory/revocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rev) });
    expect(res.status).toBe(201);
    await refusedWith(c, 'HL_ERR_CERT_REVOKED', 4416);
  });

  it('another agreement', async () => {
    const other = createAgreement({ name: 'other.hotline', parties: dep.agreement.parties, now: Date.now() }).agreement;
    await refusedWith(await open(dep.relays.jp, agreementHash(other)), 'HL_ERR_AGREEMENT_MISMATCH', 4421);
  });

  it('a relay-auth replayed from an earlier connection (the challenge is fresh each time)', async () => {
    const first = await authenticated();
    first.ws.close();
    await first.closed;
    const second = await open(dep.relays.jp);
    await second.nextFrame('relay-hello');
    await second.nextFrame('relay-auth');
    second.send({ t: 'relay-auth', signature: first.signature });
    await refusedWith(second, 'HL_ERR_AUTH_BAD_SIGNATURE', 4461);
  });

  it('a replayed frame (its number not above the last)', async () => {
    const c = await authenticated();
    c.sendNumbered({ t: 'relay-ping', at: Date.now() }, 1);
    expect((await c.nextFrame('relay-pong')).t).toBe('relay-pong');
    c.sendNumbered({ t: 'relay-ping', at: Date.now() }, 1);
    await refusedWith(c, 'HL_ERR_RELAY_FRAME_REPLAY', 4531);
  });

  it('a frame of an unknown type, or not JSON, ends the link', async () => {
    const c = await authenticated();
    c.send({ t: 'relay-bogus', n: 1 });
    await refusedWith(c, 'HL_ERR_INPUT_UNKNOWN_FRAME', 4402);
    const d = await authenticated();
    d.ws.send('{not json');
    await refusedWith(d, 'HL_ERR_INPUT_MALFORMED_JSON', 4400);
  });

  it('an envelope whose sender is not of the forwarding relay’s party', async () => {
    const c = await authenticated();
    const env = await jpEnvelope(dep.devices.cnOp, 'jp-mod', 1);
    c.sendNumbered({ t: 'relay-envelope', envelope: env, acceptedAt: Date.now() });
    await refusedWith(c, 'HL_ERR_RELAY_WRONG_PARTY', 4530);
  });

  it('a directory with a device of another party (a relay cannot introduce one)', async () => {
    const c = await authenticated();
    c.sendNumbered({ t: 'relay-directory', certificates: [dep.devices.jpOp.certificate, dep.devices.cnOp.certificate], revocations: [] });
    await refusedWith(c, 'HL_ERR_RELAY_WRONG_PARTY', 4530);
  });

  it('a party’s relay logs in only its own party’s devices', async () => {
    const refused = await tryLogin(cn.url, dep.devices.jpOp, dep.agreement);
    expect(refused.status).toBe(403);
    expect(refused.body).toMatchObject({ error: { code: 'HL_ERR_AUTH_FORBIDDEN' } });
    expect((await tryLogin(cn.url, dep.devices.cnOp, dep.agreement)).status).toBe(200);
  });

  it('the same envelope forwarded twice is stored once and confirmed twice with the first time', async () => {
    const c = await authenticated();
    c.sendNumbered({ t: 'relay-directory', certificates: [dep.devices.jpOp.certificate, dep.devices.jpOp2.certificate, dep.devices.jpArc.certificate], revocations: [] });
    const env = await jpEnvelope(dep.devices.jpOp, 'cn-mnd', 1);
    c.sendNumbered({ t: 'relay-envelope', envelope: env, acceptedAt: Date.now() });
    const first = await c.nextFrame('relay-stored');
    c.sendNumbered({ t: 'relay-envelope', envelope: env, acceptedAt: Date.now() });
    const second = await c.nextFrame('relay-stored');
    expect(first).toMatchObject({ id: env.header.id, at: second.at, envelopeHash: second.envelopeHash });
    const size = await cn.store.auditSize();
    const accepted = (await cn.store.auditEntries(0, size)).filter((e) => e.entry.includes('"type":"envelope.accepted"') && e.entry.includes(env.header.id));
    expect(accepted).toHaveLength(1);
    c.ws.close();
  });

  it('a receipt forwarded twice is stored once, confirmed twice, and reaches the sender once', async () => {
    const c = await authenticated();
    c.sendNumbered({ t: 'relay-directory', certificates: [dep.devices.jpOp.certificate, dep.devices.jpOp2.certificate, dep.devices.jpArc.certificate], revocations: [] });
    // Once the directory is in, a Chinese operator writes to jp-mod at its own relay...
    const token = await eventuallyToken(dep.devices.cnOp);
    const sender = new HotlineClient({ serverUrl: cn.url, agreement: dep.agreement, device: dep.devices.cnOp, storage: new MemoryStorage(), WebSocket, backoff: { initialMs: 20, maxMs: 200 } });
    try {
      expect(token).toBeTruthy();
      await sender.start();
      const { id } = await sender.send({ to: 'jp-mod', precedence: 'FLASH', body: '测试', lang: 'zh' });
      // ...which forwards it here, to the test standing in for the relay of jp-mod.
      const fwd = await c.nextFrame('relay-envelope');
      const env = fwd.envelope as Envelope;
      expect(env.header.id).toBe(id);
      const relayed = next(sender, 'relayed');
      c.sendNumbered({ t: 'relay-stored', id, envelopeHash: envelopeHash(env.header), at: Date.now() });
      expect((await relayed).messageId).toBe(id);
      // jp-op-1's receipt, forwarded twice.
      const receipts: string[] = [];
      sender.on('receipt', (r) => r.verified && receipts.push(r.receipt.receipt.kind));
      const receipt = await signReceipt(dep.devices.jpOp, env.header, 'delivered', Date.now());
      c.sendNumbered({ t: 'relay-receipt', receipt, acceptedAt: Date.now() });
      const first = await c.nextFrame('relay-receipt-stored');
      const gotIt = next(sender, 'receipt');
      c.sendNumbered({ t: 'relay-receipt', receipt, acceptedAt: Date.now() });
      const second = await c.nextFrame('relay-receipt-stored');
      expect(first).toMatchObject({ messageId: id, kind: 'delivered', by: { party: 'jp-mod', device: 'jp-op-1' }, at: second.at });
      expect((await gotIt).verified).toBe(true);
      const size = await cn.store.auditSize();
      const stored = (await cn.store.auditEntries(0, size)).filter((e) => e.entry.includes('"type":"receipt.accepted"') && e.entry.includes(id));
      expect(stored).toHaveLength(1);
      expect(receipts).toEqual(['delivered']);
    } finally {
      await sender.stop();
      c.ws.close();
    }
  });
});

/** A token for a device of cn-mnd once the relay knows jp-mod's devices (sent over the link). */
async function eventuallyToken(device: DeviceSecretFile): Promise<string> {
  const token = await login(cn.url, device, dep.agreement);
  for (let i = 0; i < 250; i++) {
    if ((await fetchDirectory(cn.url, token)).some((c) => c.device === 'jp-op-1')) return token;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('jp-op-1 never reached the relay of cn-mnd');
}
