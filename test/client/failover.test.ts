import { afterEach, describe, expect, it } from 'vitest';
import { HotlineClient, type HotlineClientEvents } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { createAgreement, createParty } from '../../shared/crypto/keys.js';
import { makeDeployment } from '../helpers/fixtures.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { next } from '../helpers/events.js';
import { FakeRelay } from './fake-relay.js';

/**
 * The client's choice of URL and delay among several URLs (docs/failover.md), on the injected
 * clock: the nodes of one relay are host names of one fake relay, each of which can be "down".
 */

const clients: HotlineClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
});

const A = 'http://a.test';
const B = 'http://b.test';
const C = 'http://c.test';

async function setup(urls: string[]) {
  const d = await makeDeployment();
  const clock = new ManualClock(d.now + 1000);
  const relay = new FakeRelay(d.agreement, Object.values(d.devices).map((x) => x.certificate), () => clock.now());
  const down = new Set<string>();
  /** Hosts that serve another agreement. */
  const foreign = new Set<string>();
  const other = createAgreement({ name: 'other.hotline.test', parties: [createParty({ id: 'xx-mod', name: 'X', languages: ['en'] }).party, createParty({ id: 'yy-mod', name: 'Y', languages: ['en'] }).party], now: d.now }).agreement;
  const fetched: string[] = [];
  const fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    fetched.push(url.origin);
    if (down.has(url.origin)) throw new TypeError('fetch failed');
    if (foreign.has(url.origin) && url.pathname === '/v1/agreement') return new Response(JSON.stringify(other), { status: 200 });
    return relay.fetch(input, init);
  };
  const client = new HotlineClient({ serverUrl: urls, agreement: d.agreement, device: d.devices.jpOp, storage: new MemoryStorage(), WebSocket: relay.WebSocket, fetch, clock, random: () => 0.5 });
  clients.push(client);
  const events: HotlineClientEvents['disconnected'][] = [];
  client.on('disconnected', (e) => events.push(e));
  return { d, clock, relay, down, foreign, fetched, client, events };
}

describe('HotlineClient with several relay URLs', () => {
  it('checks and de-duplicates the list, and refuses an empty one or a URL that is not http(s)', async () => {
    const s = await setup([`${A}/`, B, A]);
    expect(s.client.serverUrls).toEqual([A, B]);
    expect(s.client.serverUrl).toBe(A);
    const make = (serverUrl: string[]) => new HotlineClient({ serverUrl, agreement: s.d.agreement, device: s.d.devices.jpOp, storage: new MemoryStorage(), WebSocket: s.relay.WebSocket });
    expect(() => make([])).toThrow(expect.objectContaining({ code: 'HL_ERR_CONFIG_INVALID' }));
    expect(() => make([A, 'ftp://b.test'])).toThrow(expect.objectContaining({ code: 'HL_ERR_CONFIG_INVALID' }));
  });

  it('a lost link goes to the next URL after the backoff’s first step; failed attempts go on at once, and the backoff grows once per failed round', async () => {
    const s = await setup([A, B, C]);
    const started = s.client.start();
    const first = await s.relay.socket(0);
    expect(first.url).toBe('ws://a.test/v1/link');
    first.accept('jp-mod', 'jp-op-1');
    await started;

    // A dies; B and C are down too for a while.
    s.down.add(A).add(B).add(C);
    let gone = next(s.client, 'disconnected');
    first.drop(1006);
    expect(await gone).toMatchObject({ url: A, nextUrl: B, retryInMs: 375 });
    // A failed attempt moves on at once (0 ms), until a whole round failed: then the next step.
    const expected = [
      { url: B, nextUrl: C, retryInMs: 0 },
      { url: C, nextUrl: A, retryInMs: 0 },
      { url: A, nextUrl: B, retryInMs: 750 },
      { url: B, nextUrl: C, retryInMs: 0 },
      { url: C, nextUrl: A, retryInMs: 0 },
      { url: A, nextUrl: B, retryInMs: 1500 },
    ];
    for (const e of expected) {
      gone = next(s.client, 'disconnected');
      s.clock.advance(s.events.at(-1)!.retryInMs!);
      expect(await gone).toMatchObject(e);
    }
    // B comes back: the next attempt goes there and connects.
    s.down.delete(B);
    const connected = next(s.client, 'connected');
    s.clock.advance(1500);
    const second = await s.relay.socket(1);
    expect(second.url).toBe('ws://b.test/v1/link');
    second.accept('jp-mod', 'jp-op-1');
    expect(await connected).toMatchObject({ url: B });
    expect(s.client.serverUrl).toBe(B);
    // Connected again: the next loss starts from the first step, at the URL after B.
    gone = next(s.client, 'disconnected');
    second.drop(1001, 'server stopping');
    expect(await gone).toMatchObject({ url: B, nextUrl: C, retryInMs: 375 });
  });

  it('leaves out a URL that serves another agreement (reported) while another remains, and stops when none is left', async () => {
    const s = await setup([A, B]);
    s.foreign.add(A);
    const errors: string[] = [];
    s.client.on('error', (e) => errors.push(`${e.code}: ${e.message}`));
    const skipped = next(s.client, 'disconnected');
    const started = s.client.start();
    expect(await skipped).toMatchObject({ url: A, nextUrl: B, retryInMs: 0 });
    s.clock.advance(0);
    const sock = await s.relay.socket(0);
    expect(sock.url).toBe('ws://b.test/v1/link');
    sock.accept('jp-mod', 'jp-op-1');
    await started;
    expect(errors).toEqual([expect.stringMatching(/^HL_ERR_AGREEMENT_MISMATCH: http:\/\/a\.test: .*trying the other URLs$/)]);
    // B is lost: A stays left out, so the client stays on B.
    const gone = next(s.client, 'disconnected');
    sock.drop(1006);
    expect(await gone).toMatchObject({ url: B, nextUrl: B });
    s.foreign.add(B);
    const stopped = next(s.client, 'disconnected', (e) => e.retryInMs === undefined);
    s.clock.advance(375);
    expect(await stopped).toMatchObject({ url: B });
    expect(s.client.connected).toBe(false);
    expect(errors.at(-1)).toMatch(/^HL_ERR_AGREEMENT_MISMATCH/);
  });
});
