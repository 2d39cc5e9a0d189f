import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer } from '../../server/main.js';
import { ForwardCursor } from '../../server/federation/forward-cursor.js';
import { enrollDevice, revokeDevice } from '../../shared/crypto/keys.js';
import type { DeviceCertificate, Revocation } from '../../shared/protocol/schemas.js';
import type { Store } from '../../server/store/store.js';
import type { HotlineClient } from '../../client/hotline-client.js';
import { makeTwoRelayDeployment, startRelayPair, type RelayPair } from '../helpers/two-relays.js';
import { fakeRelay } from '../helpers/fake-relay.js';
import { makeClient } from '../helpers/audit.js';
import { next } from '../helpers/events.js';

/**
 * The relay link's queue and directory (PROTOCOL.md "The relay-to-relay link"): a new connection
 * pages on from the stored forward position instead of rescanning history, and a directory
 * change goes to the peer as a delta.
 */

const clients: HotlineClient[] = [];
let pair: RelayPair | undefined;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  await pair?.close();
  pair = undefined;
  for (const f of cleanups.splice(0)) await f();
});

async function post(url: string, path: string, body: unknown): Promise<number> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return res.status;
}

describe('the relay link’s directory exchange', () => {
  it('sends the whole directory once per connection, then each change alone', async () => {
    const dep = await makeTwoRelayDeployment();
    const dir = mkdtempSync(join(tmpdir(), 'hotline-relay-queue-'));
    const cn = await startServer({
      agreement: dep.agreement,
      dataDir: dir,
      host: '127.0.0.1',
      port: 0,
      logLevel: 'silent',
      relay: { identity: dep.relays.cn, peerUrls: { 'jp-mod': ['http://127.0.0.1:9'] }, heartbeatIntervalMs: 5_000, backoff: { minMs: 1_000, maxMs: 5_000 } },
    });
    cleanups.push(async () => {
      await cn.close();
      rmSync(dir, { recursive: true, force: true });
    });
    for (const d of [dep.devices.cnOp, dep.devices.cnAud, dep.devices.cnArc]) expect(await post(cn.url, '/v1/directory/devices', d.certificate)).toBe(201);

    const jp = await fakeRelay(dep.agreement, cn.url, dep.relays.jp, 'cn-mnd');
    const full = await jp.nextFrame('relay-directory');
    expect((full.certificates as DeviceCertificate[]).map((c) => c.cert.device).sort()).toEqual(['cn-archive', 'cn-audit-1', 'cn-op-1']);

    const added = await enrollDevice(dep.cn, { device: 'cn-op-2', role: 'operator', now: dep.now });
    expect(await post(cn.url, '/v1/directory/devices', added.certificate)).toBe(201);
    const delta = await jp.nextFrame('relay-directory');
    expect((delta.certificates as DeviceCertificate[]).map((c) => c.cert.device)).toEqual(['cn-op-2']);
    expect(delta.revocations).toEqual([]);

    const rev = await revokeDevice(dep.cn, added.certificate.cert, { at: Date.now(), reason: 'console lost' });
    expect(await post(cn.url, '/v1/directory/revocations', rev)).toBe(201);
    const revoked = await jp.nextFrame('relay-directory');
    expect(revoked.certificates).toEqual([]);
    expect((revoked.revocations as Revocation[]).map((r) => r.revocation.device)).toEqual(['cn-op-2']);
    jp.ws.close();
  }, 30_000);
});

describe('the relay link’s forward queue', () => {
  it('a new connection pages on from the stored position; what was sent while cut still arrives exactly once', async () => {
    pair = await startRelayPair();
    const { dep } = pair;
    const jp = makeClient(pair.jp.url, dep.agreement, dep.devices.jpOp);
    const cn = makeClient(pair.cn.url, dep.agreement, dep.devices.cnOp);
    clients.push(jp, cn);
    await Promise.all([jp.start(), cn.start()]);
    const received: string[] = [];
    cn.on('message', (m) => received.push(m.header.id));
    const relayedIds = new Set<string>();
    jp.on('relayed', (r) => relayedIds.add(r.messageId));
    const relayed = async (id: string) => {
      if (!relayedIds.has(id)) await next(jp, 'relayed', (r) => r.messageId === id);
    };
    const sent: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { id } = await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: `before ${i}`, lang: 'en' });
      sent.push(id);
      await relayed(id);
    }

    // Watch where the jp relay's pages start from now on.
    const store = pair.jp.store as Store;
    const original = store.relayOutgoing.bind(store);
    const starts: number[] = [];
    store.relayOutgoing = (o) => {
      if (o.kind === 'envelope') starts.push(o.after);
      return original(o);
    };

    // Cut: the link goes down (heartbeat), the position reached is stored.
    const down = next(jp, 'link', (e) => e.type === 'link.down' && e.scope === 'relay');
    pair.toCn.cut();
    pair.toJp.cut();
    await down;
    // Stored as the session closes: the three envelopes sent (positions 1–3 of jp's relay) confirmed.
    const floorKey = ForwardCursor.key('cn-mnd', 'envelope');
    let floor = 0;
    for (let i = 0; i < 200 && floor < 3; i++) {
      floor = Number(await pair.jp.store.getMeta(floorKey));
      if (floor < 3) await new Promise((r) => setTimeout(r, 25));
    }
    expect(floor).toBe(3);

    const { id: during } = await jp.send({ to: 'cn-mnd', precedence: 'FLASH', body: 'during the cut', lang: 'en' });
    const arrived = next(cn, 'message', (m) => m.header.id === during);
    const up = next(jp, 'link', (e) => e.type === 'link.up' && e.scope === 'relay');
    starts.length = 0;
    pair.toCn.restore();
    pair.toJp.restore();
    await up;
    await arrived;
    await relayed(during);
    // Every page of the new connection started at or after the stored position, never from 0.
    expect(starts.length).toBeGreaterThan(0);
    expect(Math.min(...starts)).toBe(floor);
    // Each message exactly once.
    expect(received.filter((id) => id === during)).toHaveLength(1);
    for (const id of sent) expect(received.filter((x) => x === id)).toHaveLength(1);
  }, 60_000);
});
