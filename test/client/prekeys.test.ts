import { afterEach, describe, expect, it } from 'vitest';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { MemoryKeyValueStore } from '../../client/storage/kv.js';
import { SealedPrekeyStore } from '../../client/storage/sealed-prekey-store.js';
import { DataCipher } from '../../client/console/key-store.js';
import { keyIdOf, signingBytes } from '../../shared/crypto/keys.js';
import { createPrekey, DEFAULT_PREKEY_ROTATION_MS, PREKEY_CONTEXT } from '../../shared/crypto/prekey.js';
import { ed25519Sign } from '../../shared/crypto/ed25519.js';
import { fromBase64, toBase64 } from '../../shared/encoding/base64.js';
import { makeDeployment } from '../helpers/fixtures.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { FakeRelay } from './fake-relay.js';

const R = DEFAULT_PREKEY_ROTATION_MS;
const clients: HotlineClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
});

/** What jp-op-1 wraps cn-op-1's key to when the relay's directory serves `prekeys`, and the errors it reports. */
async function wrappedFor(prekeys: (d: Awaited<ReturnType<typeof makeDeployment>>, now: number) => Promise<unknown[]>): Promise<{ keyId: string; errors: string[]; certKeyId: string }> {
  const d = await makeDeployment();
  const clock = new ManualClock(d.now + 1000);
  const relay = new FakeRelay(d.agreement, Object.values(d.devices).map((x) => x.certificate), () => clock.now());
  relay.prekeys = await prekeys(d, clock.now());
  const c = new HotlineClient({ serverUrl: 'http://relay.test', agreement: d.agreement, device: d.devices.jpOp, storage: new MemoryStorage(), WebSocket: relay.WebSocket, fetch: relay.fetch, clock });
  clients.push(c);
  const errors: string[] = [];
  c.on('error', (e) => errors.push(e.code));
  const started = c.start();
  const sock = await relay.socket(0);
  sock.accept('jp-mod', 'jp-op-1', clock.now());
  await started;
  await c.send({ to: 'cn-mnd', precedence: 'FLASH', body: 'to cn', lang: 'en' });
  const frame = await sock.waitFor('envelope');
  const keyId = frame.envelope.header.recipients.find((r) => r.device === 'cn-op-1')!.keyId;
  return { keyId, errors, certKeyId: keyIdOf(fromBase64(d.devices.cnOp.certificate.cert.boxKey, 32)) };
}

/** A prekey signed with jp-op-1's key in the name of cn-op-1 (its signKey claimed to be cn-op-1's). */
async function forged(d: Awaited<ReturnType<typeof makeDeployment>>, now: number): Promise<unknown> {
  const own = await createPrekey(d.devices.jpOp, { now, rotationMs: R });
  const body = { ...own.signed.prekey, party: 'cn-mnd', device: 'cn-op-1', signKey: d.devices.cnOp.certificate.cert.signKey };
  return { prekey: body, signature: toBase64(await ed25519Sign(fromBase64(d.devices.jpOp.signSecret, 32), signingBytes(PREKEY_CONTEXT, body))) };
}

describe('the sender and prekeys from the directory', () => {
  it('wraps to the genuine prekey and leaves out a forged one, reporting its code', async () => {
    let genuine = '';
    const r = await wrappedFor(async (d, now) => {
      const g = await createPrekey(d.devices.cnOp, { now, rotationMs: R });
      genuine = g.keyId;
      const f = (await forged(d, now + 1)) as { prekey: object };
      return [g.signed, f];
    });
    expect(r.keyId).toBe(genuine);
    expect(r.errors).toContain('HL_ERR_PREKEY_BAD_SIGNATURE');
  });

  it('falls back to the certificate key when the only prekey served is forged (no forward secrecy: PROTOCOL.md)', async () => {
    const r = await wrappedFor(async (d, now) => [await forged(d, now)]);
    expect(r.keyId).toBe(r.certKeyId);
    expect(r.errors).toContain('HL_ERR_PREKEY_BAD_SIGNATURE');
  });

  it('leaves out a prekey of another device relabelled as this one', async () => {
    const r = await wrappedFor(async (d, now) => {
      const jpKey = await createPrekey(d.devices.jpOp, { now, rotationMs: R });
      return [{ ...jpKey.signed, prekey: { ...jpKey.signed.prekey, party: 'cn-mnd', device: 'cn-op-1' } }];
    });
    expect(r.keyId).toBe(r.certKeyId);
    expect(r.errors).toContain('HL_ERR_PREKEY_WRONG_DEVICE');
  });
});

describe('SealedPrekeyStore (the operator console’s prekeys)', () => {
  it('keeps the held prekeys in one record sealed with the data key, replaced whole: a deleted secret leaves it', async () => {
    const d = await makeDeployment();
    const kv = new MemoryKeyValueStore();
    const cipher = new DataCipher(new Uint8Array(32).fill(7));
    const store = new SealedPrekeyStore(kv, cipher, 'prekeys/cn-mnd/cn-op-1');
    expect(await store.load()).toEqual([]);
    const a = await createPrekey(d.devices.cnOp, { now: d.now, rotationMs: R });
    const b = await createPrekey(d.devices.cnOp, { now: d.now + R, rotationMs: R });
    await store.save([a, b]);
    expect(await store.load()).toEqual([a, b]);
    const stored = () => [...kv.map.values()].join('\n');
    for (const h of [a, b]) {
      expect(stored()).not.toContain(h.boxSecret);
      expect(stored()).not.toContain(h.signed.prekey.boxKey);
    }
    await store.save([b]);
    expect(await store.load()).toEqual([b]);
    expect(kv.map.size).toBe(1);
    // Sealed under another data key, or not a prekey record: refused, not taken for an empty store.
    await expect(new SealedPrekeyStore(kv, new DataCipher(new Uint8Array(32).fill(8)), 'prekeys/cn-mnd/cn-op-1').load()).rejects.toThrow();
    await kv.set('prekeys/other', cipher.seal({ type: 'something else' }));
    await expect(new SealedPrekeyStore(kv, cipher, 'prekeys/other').load()).rejects.toMatchObject({ code: 'HL_ERR_KEY_INVALID' });
  });
});

describe('stopping a client while its prekeys are being rotated', () => {
  it('stop() resolves only once the rotation’s save has finished: nothing is written after it', async () => {
    const d = await makeDeployment();
    const clock = new ManualClock(d.now + 1000);
    const relay = new FakeRelay(d.agreement, Object.values(d.devices).map((x) => x.certificate), () => clock.now());
    // A store whose save waits for the test: the rotation is caught mid-way.
    const events: string[] = [];
    let saveStarted: () => void = () => {};
    const started = new Promise<void>((r) => (saveStarted = r));
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const store = {
      load: async () => [],
      save: async () => {
        saveStarted();
        await gate;
        events.push('saved');
      },
    };
    const c = new HotlineClient({ serverUrl: 'http://relay.test', agreement: d.agreement, device: d.devices.jpOp, storage: new MemoryStorage(), WebSocket: relay.WebSocket, fetch: relay.fetch, clock, prekeys: { store } });
    const starting = c.start();
    (await relay.socket(0)).accept('jp-mod', 'jp-op-1', clock.now());
    await starting;
    await started;
    const stopping = c.stop().then(() => events.push('stopped'));
    // Give a stop that does not wait for the save every chance to resolve first.
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    release();
    await stopping;
    expect(events).toEqual(['saved', 'stopped']);
  });
});
