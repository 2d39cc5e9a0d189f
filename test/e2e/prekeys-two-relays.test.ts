import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { HotlineClient, MemoryPrekeyStore } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { keyIdOf } from '../../shared/crypto/keys.js';
import { fromBase64 } from '../../shared/encoding/base64.js';
import type { DeviceSecretFile, EnvelopeHeader, SignedPrekey } from '../../shared/protocol/schemas.js';
import type { RunningServer } from '../../server/main.js';
import { call, login } from '../helpers/ws-client.js';
import { next } from '../helpers/events.js';
import { directoriesExchanged, startRelayPair, type RelayPair } from '../helpers/two-relays.js';

/**
 * Prekeys between two relays (PROTOCOL.md "Prekeys and forward secrecy", "Fallback"): a relay
 * keeps and serves the prekeys its own party's devices publish to it; the relay link carries
 * certificates and revocations, not prekeys. So a sender wraps to the newest prekey of the devices
 * of its own party, and to the long-term certificate key of the other party's devices.
 */

const clients: HotlineClient[] = [];
let pair: RelayPair | undefined;

afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  await pair?.close();
  pair = undefined;
});

function client(device: DeviceSecretFile, server: RunningServer, prekeys?: MemoryPrekeyStore): HotlineClient {
  const c = new HotlineClient({
    serverUrl: server.url,
    agreement: pair!.dep.agreement,
    device,
    storage: new MemoryStorage(),
    WebSocket,
    backoff: { initialMs: 20, maxMs: 200 },
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

describe('prekeys with one relay per party', () => {
  it('a sender wraps to its own party’s prekeys and to the other party’s certificate keys (the relay link carries no prekeys); both sides open', { timeout: 60_000 }, async () => {
    pair = await startRelayPair();
    await directoriesExchanged(pair);
    const { dep } = pair;
    const cn = client(dep.devices.cnOp, pair.cn, new MemoryPrekeyStore());
    const jp2 = client(dep.devices.jpOp2, pair.jp, new MemoryPrekeyStore());
    const [cnKey, jp2Key] = await Promise.all([startWithPrekeys(cn), startWithPrekeys(jp2)]);

    // Each relay serves the prekeys published to it, and none of the other party's.
    const served = async (server: RunningServer, device: DeviceSecretFile) =>
      ((await call(server.url, 'GET', '/v1/directory', undefined, await login(server.url, device, dep.agreement))).body as { prekeys: SignedPrekey[] }).prekeys.map(
        (p) => `${p.prekey.party}/${p.prekey.device}`,
      );
    expect(await served(pair.jp, dep.devices.jpAud)).toEqual(['jp-mod/jp-op-2']);
    expect(await served(pair.cn, dep.devices.cnAud)).toEqual(['cn-mnd/cn-op-1']);

    const jp = client(dep.devices.jpOp, pair.jp);
    await jp.start();
    await jp.refreshDirectory();
    const toCn = next(cn, 'message', (m) => m.plaintext.body === 'jp to cn');
    const copyAtJp2 = next(jp2, 'message', (m) => m.plaintext.body === 'jp to cn');
    await jp.send({ to: 'cn-mnd', precedence: 'FLASH', body: 'jp to cn', lang: 'en' });
    const h = (await toCn).header;
    // The other party's device: its certificate's long-term key (no forward secrecy), not its prekey.
    expect(keyIdFor(h, 'cn-op-1')).toBe(certKeyId(dep.devices.cnOp));
    expect(keyIdFor(h, 'cn-op-1')).not.toBe(cnKey);
    // The sender's own colleague on the same relay: its newest prekey.
    expect(keyIdFor(h, 'jp-op-2')).toBe(jp2Key);
    expect((await copyAtJp2).header.id).toBe(h.id);

    // The other way round alike.
    await cn.refreshDirectory();
    const toJp = next(jp2, 'message', (m) => m.plaintext.body === 'cn to jp');
    await cn.send({ to: 'jp-mod', precedence: 'FLASH', body: 'cn to jp', lang: 'en' });
    const back = (await toJp).header;
    expect(keyIdFor(back, 'jp-op-2')).toBe(certKeyId(dep.devices.jpOp2));
  });
});
