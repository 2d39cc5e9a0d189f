import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../server/main.js';
import { HotlineClient } from '../../client/hotline-client.js';
import type { HotlineClientEvents } from '../../client/events.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { revokeDevice } from '../../shared/crypto/keys.js';
import type { Agreement, DeviceSecretFile, PartySecretFile } from '../../shared/protocol/schemas.js';
import { makeDeployment } from '../helpers/fixtures.js';
import { next } from '../helpers/events.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { call, fetchDirectory, login } from '../helpers/ws-client.js';
import { startRelayPair, type RelayPair } from '../helpers/two-relays.js';

/**
 * A revocation reaches connected clients at once (PROTOCOL.md "Directory changes"): the relay
 * pushes `directory-changed` to every open link, and the client library fetches and verifies the
 * directory then, without reconnecting and without waiting for its next refresh.
 */

const MIN = 60_000;
/** Heartbeats run on the manual clock too: keep them out of the way. */
const QUIET = { heartbeatIntervalMs: 365 * 24 * 60 * MIN };

const clients: HotlineClient[] = [];
let single: { server: RunningServer; dir: string } | undefined;
let pair: RelayPair | undefined;

afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  if (single) {
    await single.server.close();
    rmSync(single.dir, { recursive: true, force: true });
    single = undefined;
  }
  await pair?.close();
  pair = undefined;
});

function client(server: RunningServer, agreement: Agreement, device: DeviceSecretFile, clock?: ManualClock): HotlineClient {
  const c = new HotlineClient({ serverUrl: server.url, agreement, device, storage: new MemoryStorage(), WebSocket, ...(clock ? { clock } : {}), backoff: { initialMs: 20, maxMs: 200 } });
  clients.push(c);
  return c;
}

/** Every connection and disconnection of a client from now on. */
function reconnections(c: HotlineClient): string[] {
  const seen: string[] = [];
  c.on('connected', () => seen.push('connected'));
  c.on('disconnected', (d: HotlineClientEvents['disconnected']) => seen.push(`disconnected ${d.code}`));
  return seen;
}

async function revoke(server: RunningServer, party: PartySecretFile, device: DeviceSecretFile, at: number): Promise<void> {
  const rev = await revokeDevice(party, device.certificate.cert, { at, reason: 'device lost' });
  const res = await call(server.url, 'POST', '/v1/directory/revocations', rev);
  expect(res.status).toBe(201);
}

describe('a revocation is pushed to connected clients', () => {
  it('one relay: the connected addressee drops the revoked sender from its directory and labels its stored message "revoked since", without reconnecting', async () => {
    const d = await makeDeployment();
    const clock = new ManualClock(d.now + 1000);
    const dir = mkdtempSync(join(tmpdir(), 'hotline-revocation-push-'));
    const server = await startServer({ agreement: d.agreement, dataDir: join(dir, 'server'), host: '127.0.0.1', port: 0, logLevel: 'silent', clock, app: QUIET });
    single = { server, dir };
    for (const dev of Object.values(d.devices)) {
      const res = await fetch(`${server.url}/v1/directory/devices`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(dev.certificate) });
      expect(res.status).toBe(201);
    }
    const jp = client(server, d.agreement, d.devices.jpOp, clock);
    const cn = client(server, d.agreement, d.devices.cnOp, clock);
    await Promise.all([jp.start(), cn.start()]);
    const arrived = next(cn, 'message');
    const { id } = await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: '演習区域の変更について', lang: 'ja' });
    expect((await arrived).header.id).toBe(id);
    expect(cn.directory().some((c) => c.party === 'jp-mod' && c.device === 'jp-op-1')).toBe(true);

    const seen = reconnections(cn);
    const directory = next(cn, 'directory', (e) => !e.certificates.some((c) => c.party === 'jp-mod' && c.device === 'jp-op-1'));
    const labelled = next(cn, 'revoked-since');
    clock.advance(MIN);
    const revokedAt = clock.now();
    await revoke(server, d.jp, d.devices.jpOp, revokedAt);
    await directory;
    expect((await labelled).messages).toEqual([{ id, from: 'jp-mod/jp-op-1', revokedAt }]);
    expect(cn.directory().some((c) => c.party === 'jp-mod' && c.device === 'jp-op-1')).toBe(false);
    // Still the same link: the push, not a reconnection, brought it.
    expect(seen).toEqual([]);
    expect(cn.connected).toBe(true);
  });

  it('two relays: a revocation posted to the peer party’s relay reaches a client of the other relay at once', async () => {
    pair = await startRelayPair();
    const { dep } = pair;
    const token = await login(pair.jp.url, dep.devices.jpAud, dep.agreement);
    // The peer's directory arrives over the relay link (bounded poll: it has no client-visible event).
    for (let i = 0; i < 500 && !(await fetchDirectory(pair.jp.url, token)).some((c) => c.device === 'cn-op-1'); i++) await new Promise((r) => setTimeout(r, 20));
    const jp = client(pair.jp, dep.agreement, dep.devices.jpOp);
    await jp.start();
    expect(jp.directory().some((c) => c.device === 'cn-op-1')).toBe(true);

    const seen = reconnections(jp);
    const directory = next(jp, 'directory', (e) => !e.certificates.some((c) => c.party === 'cn-mnd' && c.device === 'cn-op-1'));
    // cn-mnd revokes its own device at its own relay; the relay of jp-mod learns it over the link and tells jp-op-1.
    await revoke(pair.cn, dep.cn, dep.devices.cnOp, Date.now());
    await directory;
    expect(jp.directory().some((c) => c.device === 'cn-op-1')).toBe(false);
    expect(seen).toEqual([]);
    expect(jp.connected).toBe(true);
  });
});
