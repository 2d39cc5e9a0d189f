import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { backoffDelay, HotlineClient, type HotlineClientEvents } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { FileStorage } from '../../client/storage/file-storage.js';
import type { ClientStorage } from '../../client/storage/client-storage.js';
import { createAgreement, createParty, enrollDevice, signDeviceCertificate } from '../../shared/crypto/keys.js';
import { envelopeHash, expectedRecipients, sealEnvelope } from '../../shared/crypto/envelope.js';
import { signReceipt, verifyReceipt } from '../../shared/crypto/receipt.js';
import type { DeviceSecretFile, Envelope, Precedence, SecurityLabel } from '../../shared/protocol/schemas.js';
import { makeDeployment, type TestDeployment } from '../helpers/fixtures.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { FakeRelay, type FakeSocket } from './fake-relay.js';
import { next } from '../helpers/events.js';

const clients: HotlineClient[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'hotline-client-'));
  dirs.push(d);
  return d;
}


interface Setup {
  d: TestDeployment;
  clock: ManualClock;
  relay: FakeRelay;
  make: (device?: DeviceSecretFile, storage?: ClientStorage) => HotlineClient;
}

async function setup(): Promise<Setup> {
  const d = await makeDeployment();
  const clock = new ManualClock(d.now + 1000);
  const relay = new FakeRelay(d.agreement, Object.values(d.devices).map((x) => x.certificate), () => clock.now());
  const make = (device = d.devices.jpOp, storage: ClientStorage = new MemoryStorage()) => {
    const c = new HotlineClient({
      serverUrl: 'http://relay.test',
      agreement: d.agreement,
      device,
      storage,
      WebSocket: relay.WebSocket,
      fetch: relay.fetch,
      clock,
      random: () => 0.5,
    });
    clients.push(c);
    return c;
  };
  return { d, clock, relay, make };
}

/** A connected client of Japan's operator, with the codes of its errors and the bodies of its messages as they come. */
async function receiving(): Promise<{ s: Setup; client: HotlineClient; sock: FakeSocket; errors: string[]; messages: string[] }> {
  const s = await setup();
  const client = s.make();
  const sock = await connect(s, client, 0);
  const errors: string[] = [];
  client.on('error', (e) => errors.push(e.code));
  const messages: string[] = [];
  client.on('message', (m) => messages.push(m.plaintext.body));
  return { s, client, sock, errors, messages };
}

/** Connect on socket `index` and wait until the client has processed the hello. */
async function connect(s: Setup, client: HotlineClient, index: number): Promise<FakeSocket> {
  const started = client.start();
  const sock = await s.relay.socket(index);
  sock.accept(client.me.party, client.me.device, s.clock.now());
  await started;
  return sock;
}

/** Wait until the client acknowledged every one of these cursors (alone or in a `cursors` batch). */
async function acked(sock: FakeSocket, cursors: readonly number[]): Promise<void> {
  await Promise.all(cursors.map((c) => sock.waitFor('ack', (f) => ('cursor' in f ? f.cursor === c : f.cursors.includes(c)))));
}

/** Every cursor the client acknowledged, in the order sent (single acks and `cursors` batches). */
function ackedCursors(sock: FakeSocket): number[] {
  return sock.sent.flatMap((f) => (f.t !== 'ack' ? [] : 'cursor' in f ? [f.cursor] : f.cursors));
}

/** Push an event frame and wait for it: everything pushed before it has then been processed. */
async function settle(client: HotlineClient, sock: FakeSocket, cursor: number): Promise<void> {
  const seen = next(client, 'event');
  sock.push({ t: 'event', cursor, event: { type: 'link.test', from: 'cn-mnd', to: 'jp-mod', ok: true, at: 0 } });
  await seen;
}

async function sealFromChina(s: Setup, seq: number, body = '紧急：请确认收到', precedence: Precedence = 'FLASH'): Promise<Envelope> {
  return sealFrom(s, s.d.devices.cnOp, 'jp-mod', seq, body, precedence);
}

async function sealFrom(s: Setup, sender: DeviceSecretFile, to: string, seq: number, body: string, precedence: Precedence, label?: SecurityLabel): Promise<Envelope> {
  const dir = Object.values(s.d.devices).map((x) => x.certificate.cert);
  const from = sender.certificate.cert;
  return sealEnvelope({
    sender,
    to,
    precedence,
    seq,
    sentAt: s.clock.now(),
    recipients: expectedRecipients(dir, { party: from.party, device: from.device }, to),
    plaintext: { body, lang: 'zh' },
    ...(label === undefined ? {} : { label }),
  });
}

describe('backoffDelay', () => {
  it('doubles from the initial delay, caps at the maximum, and jitters over the upper half', () => {
    expect(backoffDelay(0, () => 0)).toBe(250);
    expect(backoffDelay(0, () => 0.999999)).toBe(500);
    expect(backoffDelay(3, () => 0)).toBe(2000);
    expect(backoffDelay(3, () => 0.5)).toBe(3000);
    expect(backoffDelay(20, () => 0)).toBe(15_000);
    expect(backoffDelay(20, () => 0.999999)).toBe(30_000);
    expect(backoffDelay(2, () => 0, { initialMs: 100, maxMs: 300 })).toBe(150);
  });
});

describe('HotlineClient reconnect', () => {
  it('retries with growing, jittered delays on the injected clock, not before they are due, and resets after a connection', async () => {
    const s = await setup();
    s.relay.down = true;
    let attempts = 0;
    const counting = (...args: Parameters<typeof s.relay.fetch>) => {
      attempts++;
      return s.relay.fetch(...args);
    };
    const c = new HotlineClient({ serverUrl: 'http://relay.test', agreement: s.d.agreement, device: s.d.devices.jpOp, storage: new MemoryStorage(), WebSocket: s.relay.WebSocket, fetch: counting, clock: s.clock, random: () => 0.5 });
    clients.push(c);
    const delays: number[] = [];
    let gone = next(c, 'disconnected');
    const started = c.start();
    for (let i = 0; i < 4; i++) {
      const ev = await gone;
      delays.push(ev.retryInMs!);
      const before = attempts;
      s.clock.advance(ev.retryInMs! - 1);
      expect(attempts).toBe(before);
      gone = next(c, 'disconnected');
      s.clock.advance(1);
      expect(attempts).toBe(before + 1);
    }
    expect(delays).toEqual([375, 750, 1500, 3000]);
    const ev = await gone;
    s.relay.down = false;
    s.clock.advance(ev.retryInMs!);
    const sock = await s.relay.socket(0);
    sock.accept('jp-mod', 'jp-op-1');
    await started;
    const after = next(c, 'disconnected');
    sock.drop(1006);
    expect((await after).retryInMs).toBe(375);
  });

  it('reconnectNow() tries at once instead of at the next backoff step; an outage is one error, not one per attempt', async () => {
    const s = await setup();
    s.relay.down = true;
    let attempts = 0;
    const counting = (...args: Parameters<typeof s.relay.fetch>) => {
      attempts++;
      return s.relay.fetch(...args);
    };
    const c = new HotlineClient({ serverUrl: 'http://relay.test', agreement: s.d.agreement, device: s.d.devices.jpOp, storage: new MemoryStorage(), WebSocket: s.relay.WebSocket, fetch: counting, clock: s.clock, random: () => 0.5 });
    clients.push(c);
    const errors: string[] = [];
    c.on('error', (e) => errors.push(e.code));
    let gone = next(c, 'disconnected');
    const started = c.start();
    for (let i = 0; i < 5; i++) {
      const ev = await gone;
      gone = next(c, 'disconnected');
      s.clock.advance(ev.retryInMs!);
    }
    const ev = await gone;
    expect(ev.retryInMs).toBe(375 * 2 ** 5);
    // Five failed attempts, one error line.
    expect(errors).toEqual(['HL_ERR_CLIENT_UNREACHABLE']);
    s.relay.down = false;
    const before = attempts;
    c.reconnectNow();
    // A second call while the attempt is under way starts no other.
    c.reconnectNow();
    const sock = await s.relay.socket(0);
    expect(attempts).toBeGreaterThan(before);
    sock.accept('jp-mod', 'jp-op-1');
    await started;
    // Nothing of the clock was advanced: the attempt came from reconnectNow, not from the backoff.
    expect(s.relay.sockets.length).toBe(1);
    // Connected: reconnectNow does nothing.
    c.reconnectNow();
    expect(s.relay.sockets.length).toBe(1);
    // The next outage is reported again.
    s.relay.down = true;
    const again = next(c, 'disconnected');
    sock.drop(1006);
    s.clock.advance((await again).retryInMs!);
    await expect.poll(() => errors.length).toBe(2);
  });
});

describe('HotlineClient outbox', () => {
  it('sends a message composed while disconnected once, on reconnect, and not again after accepted', async () => {
    const s = await setup();
    const storage = new MemoryStorage();
    const client = s.make(s.d.devices.jpOp, storage);
    const s0 = await connect(s, client, 0);
    const gone = next(client, 'disconnected');
    s0.drop(1006);
    const { retryInMs } = await gone;

    const { id } = await client.send({ to: 'cn-mnd', precedence: 'flash', body: '至急：受領を確認されたい', lang: 'ja' });
    expect(s0.count('envelope')).toBe(0);
    expect((await storage.read('jp-mod/jp-op-1')).outbox).toEqual({ [`e:${id}`]: expect.anything() });

    const back = next(client, 'connected');
    s.clock.advance(retryInMs!);
    const s1 = await s.relay.socket(1);
    s1.accept('jp-mod', 'jp-op-1');
    await back;
    const f = await s1.waitFor('envelope');
    expect(f.envelope.header.id).toBe(id);
    expect(f.envelope.header.precedence).toBe('FLASH');
    const accepted = next(client, 'accepted');
    s1.push({ t: 'accepted', id, envelopeHash: envelopeHash(f.envelope.header), at: s.clock.now() });
    await accepted;
    await settle(client, s1, 1);
    expect(s1.count('envelope')).toBe(1);
    const state = await storage.read('jp-mod/jp-op-1');
    expect(state.outbox).toEqual({});
    expect(state.sent[id]?.acceptedAt).toBe(s.clock.now());

    const gone2 = next(client, 'disconnected');
    s1.drop(1006);
    s.clock.advance((await gone2).retryInMs!);
    const s2 = await s.relay.socket(2);
    s2.accept('jp-mod', 'jp-op-1');
    await settle(client, s2, 2);
    expect(s2.count('envelope')).toBe(0);
  });

  it('survives a restart of the client: the next client on the same state file sends it', async () => {
    const s = await setup();
    const path = join(tempDir(), 'jp-op-1.state.json');
    const first = s.make(s.d.devices.jpOp, new FileStorage(path));
    const s0 = await connect(s, first, 0);
    s0.drop(1006);
    const { id } = await first.send({ to: 'cn-mnd', precedence: 'IMMEDIATE', body: '明朝の会合について', subject: '会合' });
    await first.stop();

    const second = s.make(s.d.devices.jpOp, new FileStorage(path));
    const s1 = await connect(s, second, 1);
    const f = await s1.waitFor('envelope');
    expect(f.envelope.header.id).toBe(id);
    expect(f.envelope.header.seq).toBe(1);
    const accepted = next(second, 'accepted');
    s1.push({ t: 'accepted', id, envelopeHash: envelopeHash(f.envelope.header), at: s.clock.now() });
    await accepted;
    expect((await new FileStorage(path).read('jp-mod/jp-op-1')).outbox).toEqual({});
  });

  it('refuses to send from a device that is not an operator, and to a party outside the agreement', async () => {
    const s = await setup();
    const auditor = s.make(s.d.devices.jpAud);
    await expect(auditor.send({ to: 'cn-mnd', precedence: 'FLASH', body: 'x' })).rejects.toMatchObject({ code: 'HL_ERR_AUTH_FORBIDDEN' });
    const op = s.make();
    await expect(op.send({ to: 'kr-mnd', precedence: 'FLASH', body: 'x' })).rejects.toMatchObject({ code: 'HL_ERR_ENVELOPE_UNKNOWN_PARTY' });
    await expect(op.send({ to: 'jp-mod', precedence: 'FLASH', body: 'x' })).rejects.toMatchObject({ code: 'HL_ERR_ENVELOPE_UNKNOWN_PARTY' });
  });

  it('reseals once with a new seq after HL_ERR_ENVELOPE_RECIPIENTS, then gives up with a refusal', async () => {
    const s = await setup();
    const storage = new MemoryStorage();
    const client = s.make(s.d.devices.jpOp, storage);
    const sock = await connect(s, client, 0);
    const { id } = await client.send({ to: 'cn-mnd', precedence: 'PRIORITY', body: 'test' });
    const first = await sock.waitFor('envelope');
    // A new China operator was enrolled meanwhile: the server's directory has one more device.
    const cn2 = await enrollDevice(s.d.cn, { device: 'cn-op-2', role: 'operator', now: s.d.now });
    s.relay.certificates = [...s.relay.certificates, cn2.certificate];
    sock.push({ t: 'error', code: 'HL_ERR_ENVELOPE_RECIPIENTS', message: 'recipients differ', ref: id });
    const second = await sock.waitFor('envelope', (f) => f.envelope.header.seq !== first.envelope.header.seq);
    expect(second.envelope.header.id).toBe(id);
    expect(second.envelope.header.seq).toBe(first.envelope.header.seq + 1);
    expect(second.envelope.header.recipients.map((r) => r.device)).toContain('cn-op-2');

    const refused = next(client, 'refused');
    sock.push({ t: 'error', code: 'HL_ERR_ENVELOPE_RECIPIENTS', message: 'recipients differ', ref: id });
    expect(await refused).toMatchObject({ code: 'HL_ERR_ENVELOPE_RECIPIENTS', ref: id });
    expect((await storage.read('jp-mod/jp-op-1')).outbox).toEqual({});
    expect(sock.count('envelope')).toBe(2);
  });

  it('holds, never drops, a message whose new recipients are not approved: stored (a restart keeps it), sealed and sent once approved, or discarded on request', async () => {
    const s = await setup();
    const path = join(tempDir(), 'jp-op-1.state.json');
    const approved = new Set(Object.values(s.d.devices).map((x) => `${x.certificate.cert.party}/${x.certificate.cert.device}`));
    const make = () => {
      const c = new HotlineClient({
        serverUrl: 'http://relay.test',
        agreement: s.d.agreement,
        device: s.d.devices.jpOp,
        storage: new FileStorage(path),
        WebSocket: s.relay.WebSocket,
        fetch: s.relay.fetch,
        clock: s.clock,
        random: () => 0.5,
        // As the operator console does: only devices whose keys were confirmed.
        approveRecipients: (recipients) => recipients.map((r) => `${r.party}/${r.device}`).filter((k) => !approved.has(k)),
      });
      clients.push(c);
      return c;
    };
    const client = make();
    const sock = await connect(s, client, 0);
    const { id } = await client.send({ to: 'cn-mnd', precedence: 'FLASH', body: 'held, not lost' });
    const first = await sock.waitFor('envelope');
    // China enrolled a device meanwhile: the relay refuses the recipients, and the reseal to the new device is not approved.
    const cn2 = await enrollDevice(s.d.cn, { device: 'cn-op-2', role: 'operator', now: s.d.now });
    s.relay.certificates = [...s.relay.certificates, cn2.certificate];
    const held = next(client, 'held');
    const refusals: unknown[] = [];
    client.on('refused', (r) => refusals.push(r));
    sock.push({ t: 'error', code: 'HL_ERR_ENVELOPE_RECIPIENTS', message: 'envelope has 3 recipients; the directory has 4', ref: id });
    expect(await held).toEqual({ id, devices: ['cn-mnd/cn-op-2'] });
    let item = (await new FileStorage(path).read('jp-mod/jp-op-1')).outbox[`e:${id}`];
    expect(item).toMatchObject({ kind: 'held', id, devices: ['cn-mnd/cn-op-2'], draft: { precedence: 'FLASH', plaintext: { body: 'held, not lost' } } });
    // Nothing sealed to the unapproved device; no seq used for it.
    expect(sock.count('envelope')).toBe(1);
    expect((await new FileStorage(path).read('jp-mod/jp-op-1')).lastSeq).toBe(first.envelope.header.seq);
    // Still unapproved: a release leaves it held.
    expect(await client.releaseHeld()).toEqual([]);
    await client.stop();

    // A restart keeps it; a new message while still unapproved is held from the start.
    const again = make();
    const sock2 = await connect(s, again, 1);
    const other = (await again.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'to discard' })).id;
    expect((await new FileStorage(path).read('jp-mod/jp-op-1')).outbox[`e:${other}`]?.kind).toBe('held');
    expect(await again.discardHeld(other)).toBe(true);
    expect(await again.discardHeld(other)).toBe(false);
    approved.add('cn-mnd/cn-op-2');
    expect(await again.releaseHeld()).toEqual([id]);
    const sent = await sock2.waitFor('envelope', (f) => f.envelope.header.id === id);
    expect(sent.envelope.header.seq).toBe(first.envelope.header.seq + 1);
    expect(sent.envelope.header.recipients.map((r) => r.device)).toContain('cn-op-2');
    // A sealed envelope is never withdrawn by a discard.
    expect(await again.discardHeld(id)).toBe(false);
    const accepted = next(again, 'accepted');
    sock2.push({ t: 'accepted', id, envelopeHash: envelopeHash(sent.envelope.header), at: s.clock.now() });
    await accepted;
    item = (await new FileStorage(path).read('jp-mod/jp-op-1')).outbox[`e:${id}`];
    expect(item).toBeUndefined();
    expect((await new FileStorage(path).read('jp-mod/jp-op-1')).outbox).toEqual({});
    expect(refusals).toEqual([]);
  });

  it('stores a run of accepted answers in one update, and emits each', async () => {
    const s = await setup();
    const inner = new MemoryStorage();
    let updates = 0;
    const counting: ClientStorage = { read: (dev) => inner.read(dev), update: (dev, mutate) => (updates++, inner.update(dev, mutate)) };
    const client = s.make(s.d.devices.jpOp, counting);
    const sock = await connect(s, client, 0);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await client.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: `m${i}` })).id);
    const frames = await Promise.all(ids.map((id) => sock.waitFor('envelope', (f) => f.envelope.header.id === id)));
    const before = updates;
    const accepted: string[] = [];
    client.on('accepted', (a) => accepted.push(a.id));
    const last = next(client, 'accepted', (a) => a.id === ids[4]);
    frames.forEach((f, i) => sock.push({ t: 'accepted', id: ids[i]!, envelopeHash: envelopeHash(f.envelope.header), at: 7 }));
    await last;
    expect(updates - before).toBe(1);
    expect(accepted).toEqual(ids);
    const state = await inner.read('jp-mod/jp-op-1');
    expect(state.outbox).toEqual({});
    expect(ids.map((id) => state.sent[id]?.acceptedAt)).toEqual([7, 7, 7, 7, 7]);
  });

  it('keeps an envelope refused for a transient reason in the outbox', async () => {
    const s = await setup();
    const storage = new MemoryStorage();
    const client = s.make(s.d.devices.jpOp, storage);
    const sock = await connect(s, client, 0);
    const { id } = await client.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'x' });
    await sock.waitFor('envelope');
    const err = next(client, 'error');
    sock.push({ t: 'error', code: 'HL_ERR_STORE_FAILED', message: 'disk', ref: id });
    expect((await err).code).toBe('HL_ERR_STORE_FAILED');
    expect(Object.values((await storage.read('jp-mod/jp-op-1')).outbox).map((x) => x.kind === 'envelope' && x.id)).toEqual([id]);
  });
});

describe('HotlineClient seq', () => {
  it('stores the seq in the same update as its envelope: a seal that fails uses up nothing, and a restart continues above every stored seq', async () => {
    const s = await setup();
    const path = join(tempDir(), 'state.json');
    const a = s.make(s.d.devices.jpOp, new FileStorage(path));
    const sock = await connect(s, a, 0);
    await a.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'one' });
    // 40,000 three-byte characters encrypt to more than the envelope limit: the seal fails, nothing was sent with its seq.
    await expect(a.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: '至'.repeat(40_000) })).rejects.toMatchObject({ code: 'HL_ERR_ENVELOPE_TOO_LARGE' });
    await a.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'three' });
    const seqs = async () => Object.values((await new FileStorage(path).read('jp-mod/jp-op-1')).outbox).map((x) => (x.kind === 'envelope' ? x.envelope.header.seq : 0));
    expect(await seqs()).toEqual([1, 2]);
    expect(sock.sent.map((f) => f.t === 'envelope' && f.envelope.header.seq)).toEqual([1, 2]);
    await a.stop();

    const b = s.make(s.d.devices.jpOp, new FileStorage(path));
    await b.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'four' });
    expect(await seqs()).toEqual([1, 2, 3]);
  });

  it('seals again with the next seq when another process on the device took the seq while it was sealing', async () => {
    const s = await setup();
    const inner = new MemoryStorage();
    let armed = false;
    let raced = false;
    // Once armed, another process's update lands between this client's read of lastSeq and its own update.
    const racing: ClientStorage = {
      read: (device) => inner.read(device),
      update: async (device, mutate) => {
        if (armed && !raced) {
          raced = true;
          await inner.update(device, (st) => void (st.lastSeq = 1));
        }
        return inner.update(device, mutate);
      },
    };
    const client = s.make(s.d.devices.jpOp, racing);
    const sock = await connect(s, client, 0);
    armed = true;
    const { id } = await client.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'x' });
    expect(raced).toBe(true);
    const f = await sock.waitFor('envelope');
    expect(f.envelope.header).toMatchObject({ id, seq: 2 });
    expect(sock.count('envelope')).toBe(1);
    expect((await inner.read('jp-mod/jp-op-1')).lastSeq).toBe(2);
  });

  it('sends concurrent sends in seq order', async () => {
    const s = await setup();
    const client = s.make();
    const sock = await connect(s, client, 0);
    await Promise.all([1, 2, 3, 4, 5].map((i) => client.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: `m${i}` })));
    await sock.waitFor('envelope', (f) => f.envelope.header.seq === 5);
    expect(sock.sent.map((f) => (f.t === 'envelope' ? f.envelope.header.seq : -1))).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('HotlineClient inbox', () => {
  it('shows a redelivered message once, answers it with one signed delivered receipt, and acks every cursor', async () => {
    const s = await setup();
    const storage = new MemoryStorage();
    const client = s.make(s.d.devices.jpOp, storage);
    const messages: HotlineClientEvents['message'][] = [];
    client.on('message', (m) => messages.push(m));
    const sock = await connect(s, client, 0);
    const env = await sealFromChina(s, 1);
    sock.push({ t: 'deliver', cursor: 1, envelope: env, acceptedAt: s.clock.now() });
    sock.push({ t: 'deliver', cursor: 2, envelope: env, acceptedAt: s.clock.now() });
    await settle(client, sock, 3);

    expect(messages).toHaveLength(1);
    expect(messages[0]!.plaintext.body).toBe('紧急：请确认收到');
    expect(messages[0]!.envelopeHash).toBe(envelopeHash(env.header));
    expect(sock.count('receipt')).toBe(1);
    const r = await sock.waitFor('receipt');
    const verified = await verifyReceipt(r.receipt, s.d.devices.jpOp.certificate.cert, env.header);
    expect(verified.receipt.kind).toBe('delivered');
    await acked(sock, [1, 2, 3]);
    expect(ackedCursors(sock)).toEqual([1, 2, 3]);

    // The inbox is stored: a new client on the same storage does not show it again.
    await client.stop();
    const again = s.make(s.d.devices.jpOp, storage);
    const shown: unknown[] = [];
    again.on('message', (m) => shown.push(m));
    const sock2 = await connect(s, again, 1);
    sock2.push({ t: 'deliver', cursor: 1, envelope: env, acceptedAt: s.clock.now() });
    await settle(again, sock2, 2);
    expect(shown).toEqual([]);
    // The delivered receipt was still waiting for receipt-accepted: it goes again on the new link.
    expect(sock2.count('receipt')).toBe(1);
  });

  it('sends the delivered receipt before it tells the application of the message', async () => {
    // A console renders on 'message'; the sender waits for `delivered`, not for the page.
    const s = await setup();
    const client = s.make(s.d.devices.jpOp, new MemoryStorage());
    const sock = await connect(s, client, 0);
    const receiptsSentWhenTold: number[] = [];
    client.on('message', () => receiptsSentWhenTold.push(sock.count('receipt')));
    sock.push({ t: 'deliver', cursor: 1, envelope: await sealFromChina(s, 1), acceptedAt: s.clock.now() });
    await settle(client, sock, 1);
    expect(receiptsSentWhenTold).toEqual([1]);
  });

  it('acknowledge() signs an acknowledged receipt, removed from the outbox on receipt-accepted', async () => {
    const s = await setup();
    const storage = new MemoryStorage();
    const client = s.make(s.d.devices.jpOp, storage);
    const sock = await connect(s, client, 0);
    const env = await sealFromChina(s, 1);
    const got = next(client, 'message');
    sock.push({ t: 'deliver', cursor: 1, envelope: env, acceptedAt: s.clock.now() });
    await got;
    await client.acknowledge(env.header.id);
    const f = await sock.waitFor('receipt', (x) => x.receipt.receipt.kind === 'acknowledged');
    await verifyReceipt(f.receipt, s.d.devices.jpOp.certificate.cert, env.header);
    const ok = next(client, 'receipt-accepted', (x) => x.kind === 'acknowledged');
    sock.push({ t: 'receipt-accepted', messageId: env.header.id, kind: 'acknowledged', at: 1 });
    await ok;
    const state = await storage.read('jp-mod/jp-op-1');
    expect(Object.values(state.outbox).map((x) => x.kind === 'receipt' && x.receiptKind)).toEqual(['delivered']);
    expect(state.inbox[env.header.id]?.acknowledgedAt).toBeTypeOf('number');
    await expect(client.acknowledge('0'.repeat(32))).rejects.toMatchObject({ code: 'HL_ERR_RECEIPT_UNKNOWN_MESSAGE' });
  });

  it('acknowledges a burst in batches: each cursor exactly once, in `cursors` frames of at most 256, not a frame per item', async () => {
    const s = await setup();
    const client = s.make();
    const sock = await connect(s, client, 0);
    const events: unknown[] = [];
    client.on('event', (e) => events.push(e));
    const cursors = Array.from({ length: 40 }, (_, i) => i + 1);
    for (const cursor of cursors) sock.push({ t: 'event', cursor, event: { type: 'link.test', from: 'cn-mnd', to: 'jp-mod', ok: true, at: cursor } });
    await acked(sock, cursors);
    expect(events).toHaveLength(40);
    expect(ackedCursors(sock)).toEqual(cursors);
    const frames = sock.sent.filter((f) => f.t === 'ack');
    // Sixteen items a batch at most (FRAME_BATCH), so at least three frames; fewer than one per item.
    expect(frames.length).toBeGreaterThanOrEqual(3);
    expect(frames.length).toBeLessThan(cursors.length);
    for (const f of frames) if ('cursors' in f) expect(f.cursors.length).toBeLessThanOrEqual(256);
  });

  it('an archive device decrypts but never sends a receipt', async () => {
    const s = await setup();
    const client = s.make(s.d.devices.jpArc);
    const sock = await connect(s, client, 0);
    const got = next(client, 'message');
    sock.push({ t: 'deliver', cursor: 1, envelope: await sealFromChina(s, 1), acceptedAt: s.clock.now() });
    expect((await got).plaintext.body).toBe('紧急：请确认收到');
    await settle(client, sock, 2);
    await acked(sock, [1, 2]);
    expect(sock.count('receipt')).toBe(0);
    expect(ackedCursors(sock).sort()).toEqual([1, 2]);
  });

  it('refuses a forged envelope and a replayed seq, and does not stall the mailbox', async () => {
    const { s, client, sock, errors, messages } = await receiving();
    const good = await sealFromChina(s, 5);
    const forged: Envelope = { ...good, header: { ...good.header, sentAt: good.header.sentAt + 1 } };
    sock.push({ t: 'deliver', cursor: 1, envelope: forged, acceptedAt: s.clock.now() });
    sock.push({ t: 'deliver', cursor: 2, envelope: good, acceptedAt: s.clock.now() });
    sock.push({ t: 'deliver', cursor: 3, envelope: await sealFromChina(s, 5, 'replayed seq'), acceptedAt: s.clock.now() });
    await settle(client, sock, 4);
    expect(errors).toEqual(['HL_ERR_ENVELOPE_BAD_SIGNATURE', 'HL_ERR_ENVELOPE_REPLAY']);
    expect(messages).toHaveLength(1);
    // Refused items are acknowledged too (they would only be refused again).
    await acked(sock, [1, 2, 3, 4]);
    expect(ackedCursors(sock)).toEqual([1, 2, 3, 4]);
    expect(sock.count('receipt')).toBe(1);
  });

  it('refuses a delivered envelope whose security label its agreement does not define (PROTOCOL.md "Security labels")', async () => {
    const { s, client, sock, errors, messages } = await receiving();
    // Signed by a real sender, so only the label is wrong: this agreement defines no labels.
    const labelled = await sealFrom(s, s.d.devices.cnOp, 'jp-mod', 1, 'labelled', 'FLASH', { classification: 'SECRET' });
    sock.push({ t: 'deliver', cursor: 1, envelope: labelled, acceptedAt: s.clock.now() });
    sock.push({ t: 'deliver', cursor: 2, envelope: await sealFromChina(s, 2, 'plain'), acceptedAt: s.clock.now() });
    await settle(client, sock, 2);
    expect(errors).toEqual(['HL_ERR_ENVELOPE_LABEL']);
    expect(messages).toEqual(['plain']);
  });
});

describe('HotlineClient answers', () => {
  it('does not take an `accepted` under another hash as acceptance: the message stays in the outbox and the mismatch is reported', async () => {
    const s = await setup();
    const storage = new MemoryStorage();
    const client = s.make(s.d.devices.jpOp, storage);
    const sock = await connect(s, client, 0);
    const { id } = await client.send({ to: 'cn-mnd', precedence: 'FLASH', body: '至急' });
    const f = await sock.waitFor('envelope');
    const accepted: string[] = [];
    client.on('accepted', (a) => accepted.push(a.id));
    const err = next(client, 'error');
    sock.push({ t: 'accepted', id, envelopeHash: envelopeHash({ ...f.envelope.header, seq: f.envelope.header.seq + 1 }), at: 1 });
    expect((await err).code).toBe('HL_ERR_RELAY_HASH_MISMATCH');
    const state = await storage.read('jp-mod/jp-op-1');
    expect(Object.keys(state.outbox)).toEqual([`e:${id}`]);
    expect(state.sent[id]).toBeUndefined();
    // The right hash is an acceptance.
    const ok = next(client, 'accepted');
    sock.push({ t: 'accepted', id, envelopeHash: envelopeHash(f.envelope.header), at: 2 });
    await ok;
    expect(accepted).toEqual([id]);
    expect((await storage.read('jp-mod/jp-op-1')).outbox).toEqual({});
  });
});

describe('HotlineClient receipts', () => {
  it('verifies receipts for its own messages against the directory and the header it sent', async () => {
    const s = await setup();
    const storage = new MemoryStorage();
    const client = s.make(s.d.devices.jpOp, storage);
    const sock = await connect(s, client, 0);
    const { id } = await client.send({ to: 'cn-mnd', precedence: 'FLASH', body: '至急' });
    const f = await sock.waitFor('envelope');
    const accepted = next(client, 'accepted');
    sock.push({ t: 'accepted', id, envelopeHash: envelopeHash(f.envelope.header), at: 1 });
    await accepted;

    const results: HotlineClientEvents['receipt'][] = [];
    client.on('receipt', (r) => results.push(r));
    const good = await signReceipt(s.d.devices.cnOp, f.envelope.header, 'acknowledged', 2);
    const tampered = { ...good, receipt: { ...good.receipt, at: 3 } };
    // A colleague on my own side is not the addressee: its "acknowledgement" proves nothing.
    const colleague = await signReceipt(s.d.devices.jpOp2, f.envelope.header, 'acknowledged', 2);
    sock.push({ t: 'receipt', cursor: 1, receipt: good, acceptedAt: s.clock.now() });
    sock.push({ t: 'receipt', cursor: 2, receipt: tampered, acceptedAt: s.clock.now() });
    sock.push({ t: 'receipt', cursor: 3, receipt: colleague, acceptedAt: s.clock.now() });
    await settle(client, sock, 4);
    expect(results.map((r) => [r.verified, r.headerChecked, r.error?.code])).toEqual([
      [true, true, undefined],
      [false, true, 'HL_ERR_RECEIPT_BAD_SIGNATURE'],
      [false, true, 'HL_ERR_RECEIPT_NOT_RECIPIENT'],
    ]);
    expect((await storage.read('jp-mod/jp-op-1')).sent[id]?.receipts.map((r) => r.kind)).toEqual(['acknowledged']);
  });
});

describe('HotlineClient trust', () => {
  it('refuses to go on when the server’s agreement differs from the pinned one', async () => {
    const s = await setup();
    const other = createAgreement({ name: 'another', parties: [createParty({ id: 'jp-mod', name: 'x', languages: ['ja'] }).party, s.d.cn.party], now: s.d.now });
    s.relay.agreement = other.agreement;
    const client = s.make();
    await expect(client.start()).rejects.toMatchObject({ code: 'HL_ERR_AGREEMENT_MISMATCH' });
    expect(s.relay.sockets).toHaveLength(0);
    expect(s.relay.logins).toBe(0);
  });

  it('leaves out of the directory a certificate the pinned roots did not sign, and never encrypts to it', async () => {
    const s = await setup();
    const rogueRoot = createParty({ id: 'cn-mnd', name: 'impostor', languages: ['zh'] });
    const rogue = await enrollDevice(rogueRoot, { device: 'cn-op-9', role: 'operator', now: s.d.now });
    const expired = await signDeviceCertificate(s.d.cn, { ...s.d.devices.cnOp.certificate.cert, device: 'cn-op-old', notBefore: 0, notAfter: 1 });
    s.relay.certificates = [...s.relay.certificates, rogue.certificate, expired];
    const client = s.make();
    const sock = await connect(s, client, 0);
    const devices = client.directory().map((c) => c.device);
    expect(devices).not.toContain('cn-op-9');
    expect(devices).not.toContain('cn-op-old');
    expect(devices).toContain('cn-op-1');
    await client.send({ to: 'cn-mnd', precedence: 'FLASH', body: 'x' });
    const f = await sock.waitFor('envelope');
    expect(f.envelope.header.recipients.map((r) => `${r.party}/${r.device}`)).toEqual(['cn-mnd/cn-archive', 'cn-mnd/cn-op-1', 'jp-mod/jp-archive', 'jp-mod/jp-op-2']);
  });

  it('logs in again before the token expires, and uses the new token for the next connection', async () => {
    const s = await setup();
    const client = s.make();
    const sock = await connect(s, client, 0);
    expect(s.relay.logins).toBe(1);
    // Tokens live 15 minutes; the client renews 60 s before expiry, not earlier.
    s.clock.advance(14 * 60_000 - 1);
    expect(s.relay.logins).toBe(1);
    const renewed = next(client, 'session');
    s.clock.advance(1);
    expect((await renewed).expiresAt).toBe(s.clock.now() + 15 * 60_000);
    expect(s.relay.logins).toBe(2);
    const gone = next(client, 'disconnected');
    sock.drop(1006);
    s.clock.advance((await gone).retryInMs!);
    const again = await s.relay.socket(1);
    expect(again.protocols).toEqual(['hotline.v1', 'bearer.token-2']);
  });

  it('offers the token as a subprotocol, never in the URL', async () => {
    const s = await setup();
    const client = s.make();
    const sock = await connect(s, client, 0);
    expect(sock.url).toBe('ws://relay.test/v1/link');
    expect(sock.protocols).toEqual(['hotline.v1', 'bearer.token-1']);
  });
});

describe('HotlineClient precedence', () => {
  it('handles a FLASH that arrives behind 200 ROUTINE in one burst first: its message and its delivered receipt come first, every message exactly once', async () => {
    const s = await setup();
    const client = s.make();
    const sock = await connect(s, client, 0);
    const messages: HotlineClientEvents['message'][] = [];
    client.on('message', (m) => messages.push(m));
    const routine = [];
    for (let seq = 1; seq <= 200; seq++) routine.push(await sealFromChina(s, seq, `routine ${seq}`, 'ROUTINE'));
    const flash = await sealFromChina(s, 201, '至急', 'FLASH');
    routine.forEach((envelope, i) => sock.push({ t: 'deliver', cursor: i + 1, envelope, acceptedAt: s.clock.now() }));
    sock.push({ t: 'deliver', cursor: 201, envelope: flash, acceptedAt: s.clock.now() });
    await acked(sock, Array.from({ length: 201 }, (_, i) => i + 1));

    expect(messages[0]!.header.id).toBe(flash.header.id);
    const receipts = sock.sent.filter((f) => f.t === 'receipt');
    expect(receipts[0]!.t === 'receipt' && receipts[0]!.receipt.receipt.messageId).toBe(flash.header.id);
    expect(ackedCursors(sock)[0]).toBe(201);
    // Exactly once each, and the ROUTINE ones in their sender's order.
    expect(messages).toHaveLength(201);
    expect(receipts).toHaveLength(201);
    expect(messages.slice(1).map((m) => m.header.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(ackedCursors(sock).sort((a, b) => a - b)).toEqual(Array.from({ length: 201 }, (_, i) => i + 1));
  }, 60_000);

  it('keeps each sender’s order within one precedence, while a higher precedence overtakes', async () => {
    const s = await setup();
    const client = s.make();
    const sock = await connect(s, client, 0);
    const got: string[] = [];
    client.on('message', (m) => got.push(m.plaintext.body));
    // China's operator and a Japanese colleague (whose messages to China this device gets a copy of).
    const burst = [
      await sealFrom(s, s.d.devices.cnOp, 'jp-mod', 1, 'cn r1', 'ROUTINE'),
      await sealFrom(s, s.d.devices.jpOp2, 'cn-mnd', 1, 'jp r1', 'ROUTINE'),
      await sealFrom(s, s.d.devices.cnOp, 'jp-mod', 2, 'cn r2', 'ROUTINE'),
      await sealFrom(s, s.d.devices.cnOp, 'jp-mod', 3, 'cn p3', 'PRIORITY'),
      await sealFrom(s, s.d.devices.jpOp2, 'cn-mnd', 2, 'jp r2', 'ROUTINE'),
      await sealFrom(s, s.d.devices.jpOp2, 'cn-mnd', 3, 'jp i3', 'IMMEDIATE'),
      await sealFrom(s, s.d.devices.cnOp, 'jp-mod', 4, 'cn r4', 'ROUTINE'),
    ];
    burst.forEach((envelope, i) => sock.push({ t: 'deliver', cursor: i + 1, envelope, acceptedAt: s.clock.now() }));
    await acked(sock, [1, 2, 3, 4, 5, 6, 7]);
    expect(got).toEqual(['jp i3', 'cn p3', 'cn r1', 'jp r1', 'cn r2', 'jp r2', 'cn r4']);
  });

  it('transmits the outbox FLASH first, then by precedence and in the order queued, after a reconnect', async () => {
    const s = await setup();
    const client = s.make();
    const s0 = await connect(s, client, 0);
    const gone = next(client, 'disconnected');
    s0.drop(1006);
    const { retryInMs } = await gone;
    const ids: Record<string, string> = {};
    for (const [name, precedence] of [['r1', 'ROUTINE'], ['p', 'PRIORITY'], ['r2', 'ROUTINE'], ['f', 'FLASH'], ['r3', 'ROUTINE']] as const) {
      ids[(await client.send({ to: 'cn-mnd', precedence, body: name })).id] = name;
    }
    s.clock.advance(retryInMs!);
    const s1 = await s.relay.socket(1);
    s1.accept('jp-mod', 'jp-op-1');
    await s1.waitFor('envelope', (f) => ids[f.envelope.header.id] === 'r3');
    expect(s1.sent.map((f) => f.t === 'envelope' && ids[f.envelope.header.id])).toEqual(['f', 'p', 'r1', 'r2', 'r3']);
  });

  it('accepts a seq below the highest seen once (within the replay window), and refuses it again and below the window', async () => {
    const s = await setup();
    const storage = new MemoryStorage();
    const client = s.make(s.d.devices.jpOp, storage);
    const sock = await connect(s, client, 0);
    const errors: string[] = [];
    client.on('error', (e) => errors.push(e.code));
    const got: string[] = [];
    client.on('message', (m) => got.push(m.plaintext.body));
    const deliver = async (cursor: number, envelope: Envelope) => {
      sock.push({ t: 'deliver', cursor, envelope, acceptedAt: s.clock.now() });
      await acked(sock, [cursor]);
    };
    await deliver(1, await sealFromChina(s, 10, 'flash 10', 'FLASH'));
    await deliver(2, await sealFromChina(s, 7, 'routine 7', 'ROUTINE'));
    await deliver(3, await sealFromChina(s, 7, 'routine 7 again', 'ROUTINE'));
    await deliver(4, await sealFromChina(s, 9, 'routine 9', 'ROUTINE'));
    expect(got).toEqual(['flash 10', 'routine 7', 'routine 9']);
    expect(errors).toEqual(['HL_ERR_ENVELOPE_REPLAY']);
    expect((await storage.read('jp-mod/jp-op-1')).peerSeq['cn-mnd/cn-op-1']).toEqual({ high: 10, missing: [[1, 6], [8, 8]] });

    await deliver(5, await sealFromChina(s, 5000, 'flash 5000', 'FLASH'));
    await deliver(6, await sealFromChina(s, 904, 'below the window', 'ROUTINE'));
    await deliver(7, await sealFromChina(s, 905, 'just inside the window', 'ROUTINE'));
    expect(got.slice(3)).toEqual(['flash 5000', 'just inside the window']);
    expect(errors).toEqual(['HL_ERR_ENVELOPE_REPLAY', 'HL_ERR_ENVELOPE_REPLAY']);
  });
});
