import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../server/main.js';
import { HotlineClient, MemoryPrekeyStore, type PrekeyStore } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { FilePrekeyStore } from '../../client/storage/prekey-file-store.js';
import { openEnvelope } from '../../shared/crypto/envelope.js';
import { keyIdOf } from '../../shared/crypto/keys.js';
import { createPrekey, DEFAULT_PREKEY_ROTATION_MS, type HeldPrekey } from '../../shared/crypto/prekey.js';
import { fromBase64, toBase64 } from '../../shared/encoding/base64.js';
import type { Envelope, EnvelopeHeader, DeviceSecretFile } from '../../shared/protocol/schemas.js';
import { makeDeployment, type TestDeployment } from '../helpers/fixtures.js';
import { codeOf, next } from '../helpers/events.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { call, login } from '../helpers/ws-client.js';
import { exportedEnvelopes } from '../helpers/audit.js';

const R = DEFAULT_PREKEY_ROTATION_MS;
const MIN = 60_000;
/** Heartbeats run on the manual clock too: keep them out of the way of week-long jumps. */
const QUIET = { heartbeatIntervalMs: 365 * 24 * 60 * MIN };

let d: TestDeployment;
let clock: ManualClock;
let server: RunningServer;
let dir: string;
const clients: HotlineClient[] = [];

beforeEach(async () => {
  d = await makeDeployment();
  clock = new ManualClock(d.now + 1000);
  dir = mkdtempSync(join(tmpdir(), 'hotline-prekeys-'));
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

function client(device: DeviceSecretFile, prekeys?: PrekeyStore): HotlineClient {
  const c = new HotlineClient({
    serverUrl: server.url,
    agreement: d.agreement,
    device,
    storage: new MemoryStorage(),
    WebSocket,
    clock,
    backoff: { initialMs: 20, maxMs: 200 },
    ...(prekeys ? { prekeys: { store: prekeys } } : {}),
  });
  clients.push(c);
  return c;
}

/** The envelopes the relay accepted, with their ciphertexts, from the audit export (an auditor's view). */
const exported = (): Promise<Map<string, Envelope>> => exportedEnvelopes(server.url, d.devices.cnAud, d.agreement);

function keyIdFor(h: EnvelopeHeader, device: string): string {
  return h.recipients.find((r) => r.device === device)!.keyId;
}

/** Send from jp and wait until cn's client has opened it. */
async function deliver(jp: HotlineClient, cn: HotlineClient, body: string): Promise<EnvelopeHeader> {
  const got = next(cn, 'message', (m) => m.plaintext.body === body);
  await jp.send({ to: 'cn-mnd', precedence: 'FLASH', body, lang: 'en' });
  return (await got).header;
}

describe('prekeys end to end (PROTOCOL.md "Prekeys and forward secrecy")', () => {
  it('a stolen old prekey secret cannot open a message wrapped after rotation, and the documented window holds', async () => {
    const store = new MemoryPrekeyStore();
    const cn = client(d.devices.cnOp, store);
    const firstKey = next(cn, 'prekeys', (p) => p.rotated !== undefined);
    await cn.start();
    const k1 = (await firstKey).rotated!;
    const jp = client(d.devices.jpOp);
    await jp.start();
    await jp.refreshDirectory();

    // Wrapped to the published prekey, not to the certificate's long-term key.
    const m1 = await deliver(jp, cn, 'before rotation');
    expect(keyIdFor(m1, 'cn-op-1')).toBe(k1);
    expect(k1).not.toBe(keyIdOf(fromBase64(d.devices.cnOp.certificate.cert.boxKey, 32)));
    // The archive publishes none here: its copy is wrapped to its certificate's key (the fallback).
    expect(keyIdFor(m1, 'cn-archive')).toBe(keyIdOf(fromBase64(d.devices.cnArc.certificate.cert.boxKey, 32)));

    // The thief takes the device's whole key material now: k1's secret and the device key file.
    const stolen: HeldPrekey[] = structuredClone(await store.load());
    expect(stolen.map((h) => h.keyId)).toEqual([k1]);

    // One rotation period later the client rotates by itself (its timer on the injected clock).
    const rotated = next(cn, 'prekeys', (p) => p.rotated !== undefined);
    clock.advance(R);
    const k2 = (await rotated).rotated!;
    expect(k2).not.toBe(k1);
    await jp.refreshDirectory();
    const m2 = await deliver(jp, cn, 'after rotation');
    expect(keyIdFor(m2, 'cn-op-1')).toBe(k2);

    const envelopes = await exported();
    const senderCert = d.devices.jpOp.certificate.cert;
    // The window: what the relay accepted while k1 was in date opens with k1's secret...
    expect((await openEnvelope(envelopes.get(m1.id)!, { device: d.devices.cnOp, senderCert, prekeys: stolen })).plaintext.body).toBe('before rotation');
    // ...and what was wrapped after the rotation does not, not even with the device key file beside it.
    expect(await codeOf(openEnvelope(envelopes.get(m2.id)!, { device: d.devices.cnOp, senderCert, prekeys: stolen }))).toBe('HL_ERR_PREKEY_SECRET_GONE');

    // The window's far end: a sender whose directory still names k1 is refused once k1 is out of
    // date, and its client seals again to the newest prekey; nothing accepted from k1's notAfter on is wrapped to k1.
    const k1NotAfter = stolen[0]!.signed.prekey.notAfter;
    const third = next(cn, 'prekeys', (p) => p.rotated !== undefined);
    clock.advance(k1NotAfter - clock.now());
    const k3 = (await third).rotated!;
    const m3 = await deliver(jp, cn, 'after k1 expired');
    expect([k2, k3]).toContain(keyIdFor(m3, 'cn-op-1'));
    expect(m3.sentAt).toBeGreaterThanOrEqual(k1NotAfter);

    // k1's secret is deleted: out of date at the relay and nothing wrapped to it waiting.
    let deleted = false;
    for (let i = 0; i < 50 && !deleted; i++) deleted = (await store.load()).every((h) => h.keyId !== k1) || (await cn.maintainPrekeys()).deleted.includes(k1);
    expect(deleted).toBe(true);
    expect((await store.load()).map((h) => h.keyId)).not.toContain(k1);
    expect((await store.load()).map((h) => h.keyId)).toEqual(expect.arrayContaining([k2, k3]));
  });

  it('keeps a prekey secret while a message wrapped to it waits unread, opens it, then deletes it (injected clock)', async () => {
    const path = join(dir, 'cn-op.prekeys');
    const first = client(d.devices.cnOp, new FilePrekeyStore(path));
    const published = next(first, 'prekeys', (p) => p.rotated !== undefined);
    await first.start();
    const k1 = (await published).rotated!;
    expect(statSync(path).mode & 0o777).toBe(0o600);
    await first.stop();

    const jp = client(d.devices.jpOp);
    await jp.start();
    await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'waiting while offline', lang: 'en' });
    await next(jp, 'accepted');

    // Past k1's notAfter, the device still offline: the relay says a message wrapped to k1 waits.
    clock.advance(2 * R + MIN);
    const token = await login(server.url, d.devices.cnOp, d.agreement);
    const pending = (await call(server.url, 'GET', '/v1/prekeys/pending', undefined, token)).body as { serverTime: number; pending: string[] };
    expect(pending.pending).toContain(k1);
    expect(pending.serverTime).toBe(clock.now());

    // Back online: the message opens with k1 (kept), then k1 goes.
    const store = new FilePrekeyStore(path);
    const again = client(d.devices.cnOp, store);
    const got = next(again, 'message', (m) => m.plaintext.body === 'waiting while offline');
    await again.start();
    expect(keyIdFor((await got).header, 'cn-op-1')).toBe(k1);
    let deleted = false;
    for (let i = 0; i < 50 && !deleted; i++) deleted = (await again.maintainPrekeys()).deleted.includes(k1) || (await store.load()).every((h) => h.keyId !== k1);
    expect(deleted).toBe(true);
    // Gone from the file itself, not only from memory.
    expect(readFileSync(path, 'utf8')).not.toContain(k1);
    expect((await store.load()).length).toBe(1);
  });

  it('a prekey made by another process of the device (sharing its prekey file) opens what is wrapped to it, and is not dropped by the next rotation run', async () => {
    const path = join(dir, 'cn-op.prekeys');
    const cn = client(d.devices.cnOp, new FilePrekeyStore(path));
    const published = next(cn, 'prekeys', (p) => p.rotated !== undefined);
    await cn.start();
    const k1 = (await published).rotated!;

    // What `hotline prekeys` does beside a running `hotline listen`: a newer prekey, stored in the
    // same file, then published.
    clock.advance(MIN);
    const other = new FilePrekeyStore(path);
    const k2 = await createPrekey(d.devices.cnOp, { now: clock.now(), rotationMs: R });
    await other.save([...(await other.load()), k2]);
    expect((await call(server.url, 'POST', '/v1/prekeys', k2.signed)).status).toBe(201);

    const jp = client(d.devices.jpOp);
    await jp.start();
    await jp.refreshDirectory();
    const refused: string[] = [];
    cn.on('error', (e) => refused.push(e.code));
    const m = await deliver(jp, cn, 'wrapped to the prekey of another process');
    expect(keyIdFor(m, 'cn-op-1')).toBe(k2.keyId);
    expect(refused).toEqual([]);
    // The other process adds one more; the running client's next rotation keeps it (it reads the
    // file again, not only its own view, before it saves).
    const k3 = await createPrekey(d.devices.cnOp, { now: clock.now(), rotationMs: R });
    await other.save([...(await other.load()), k3]);
    const rotated = next(cn, 'prekeys', (p) => p.rotated !== undefined);
    clock.advance(R);
    const k4 = (await rotated).rotated!;
    expect((await other.load()).map((h) => h.keyId).sort()).toEqual([k1, k2.keyId, k3.keyId, k4].sort());
  });

  it('the relay refuses a forged prekey with its code, and serves the genuine one', async () => {
    const cn = d.devices.cnOp;
    const genuine = await createPrekey(cn, { now: clock.now(), rotationMs: R });
    const post = (body: unknown) => call(server.url, 'POST', '/v1/prekeys', body);
    const code = (r: { body: unknown }) => (r.body as { error: { code: string } }).error.code;

    const swapped = { ...genuine.signed, prekey: { ...genuine.signed.prekey, boxKey: toBase64(new Uint8Array(32).fill(3)) } };
    const bad = await post(swapped);
    expect(bad.status).toBe(400);
    expect(code(bad)).toBe('HL_ERR_PREKEY_BAD_SIGNATURE');
    // jp-op-1's own prekey relabelled as cn-op-1's (its signKey is not cn-op-1's).
    const jpKey = await createPrekey(d.devices.jpOp, { now: clock.now(), rotationMs: R });
    const relabelled = await post({ ...jpKey.signed, prekey: { ...jpKey.signed.prekey, party: 'cn-mnd', device: 'cn-op-1' } });
    expect(code(relabelled)).toBe('HL_ERR_PREKEY_WRONG_DEVICE');
    expect((await post(genuine.signed)).status).toBe(201);

    const token = await login(server.url, d.devices.jpOp, d.agreement);
    const dir = (await call(server.url, 'GET', '/v1/directory', undefined, token)).body as { prekeys: unknown[] };
    expect(dir.prekeys).toEqual([genuine.signed]);
  });

  it('a device that publishes no prekey gets messages wrapped to its certificate key (the fallback)', async () => {
    const jp = client(d.devices.jpOp);
    await jp.start();
    // No prekey published: wrapped to the certificate's long-term key (no forward secrecy).
    const errors: string[] = [];
    jp.on('error', (e) => errors.push(e.code));
    await jp.send({ to: 'cn-mnd', precedence: 'FLASH', body: 'fallback', lang: 'en' });
    const { id } = await next(jp, 'accepted');
    const env = (await exported()).get(id)!;
    expect(keyIdFor(env.header, 'cn-op-1')).toBe(keyIdOf(fromBase64(d.devices.cnOp.certificate.cert.boxKey, 32)));
    expect(errors).toEqual([]);
  });
});
