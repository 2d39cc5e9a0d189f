import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { HotlineClient, type HotlineClientOptions } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { CN, JP } from '../helpers/deployment.js';
import { onCleanup, startTestServer, type TestServer } from '../helpers/test-server.js';
import { LoopbackProxy } from '../helpers/two-relays.js';

/**
 * Client failover (issue 12, docs/failover.md): a device given the URLs of several nodes of its
 * relay loses the node it is on mid-stream, is on the next one within 2 s, and resumes from its
 * cursors and outbox with nothing lost and nothing delivered or stored twice, either way.
 */

const portOf = (url: string) => Number(new URL(url).port);

interface Timed<T> {
  t: number;
  ev: T;
}

/** A client on `urls` with the library's defaults (no test backoff), and a record of its link events. */
function device(s: TestServer, key: string, urls: string | string[], extra: Partial<HotlineClientOptions> = {}) {
  const client = new HotlineClient({ serverUrl: urls, agreement: s.dep.agreement, device: s.dep.devices[key]!, storage: new MemoryStorage(), WebSocket, ...extra });
  onCleanup(() => client.stop());
  const links: Timed<{ kind: 'connected' | 'disconnected'; url: string; nextUrl?: string; retryInMs?: number }>[] = [];
  client.on('connected', (c) => links.push({ t: Date.now(), ev: { kind: 'connected', url: c.url } }));
  client.on('disconnected', (d) =>
    links.push({ t: Date.now(), ev: { kind: 'disconnected', url: d.url, ...(d.nextUrl === undefined ? {} : { nextUrl: d.nextUrl }), ...(d.retryInMs === undefined ? {} : { retryInMs: d.retryInMs }) } }),
  );
  const messages = new Map<string, number>();
  const accepted = new Map<string, number>();
  const delivered = new Map<string, number>();
  let wake = () => {};
  const count = (m: Map<string, number>, id: string) => {
    m.set(id, (m.get(id) ?? 0) + 1);
    wake();
  };
  client.on('message', (m) => count(messages, m.header.id));
  client.on('accepted', (a) => count(accepted, a.id));
  client.on('receipt', (r) => {
    if (r.verified && r.receipt.receipt.kind === 'delivered') count(delivered, r.receipt.receipt.messageId);
  });
  return {
    client,
    links,
    messages,
    accepted,
    delivered,
    /** Resolves once `cond` holds, checked at each of this client's events (the test's timeout bounds it). */
    async until(cond: () => boolean): Promise<void> {
      while (!cond()) await new Promise<void>((resolve) => (wake = resolve));
    },
  };
}

/** Each of `ids` counted exactly once in `m`, and nothing else. */
function exactlyOnce(m: Map<string, number>, ids: readonly string[]): void {
  expect([...m.keys()].sort()).toEqual([...ids].sort());
  expect([...m].filter(([, n]) => n !== 1)).toEqual([]);
}

/** The failover of a client: from the loss of its link at `from` to its next `connected`, and where. */
function failover(links: Timed<{ kind: string; url: string }>[], from: string): { lostAt: number; connectedAt: number; url: string; ms: number } {
  const lost = links.findIndex((l) => l.ev.kind === 'disconnected' && l.ev.url === from);
  expect(lost).toBeGreaterThanOrEqual(0);
  const back = links.slice(lost).find((l) => l.ev.kind === 'connected');
  expect(back).toBeDefined();
  return { lostAt: links[lost]!.t, connectedAt: back!.t, url: back!.ev.url, ms: back!.t - links[lost]!.t };
}

/** Every `envelope.accepted` entry of the relay's log, counted by message id (an auditor's export). */
async function acceptedInLog(s: TestServer, storageKey = `${JP}/audit1`): Promise<Map<string, number>> {
  const auditor = new HotlineClient({ serverUrl: s.url, agreement: s.dep.agreement, device: s.dep.devices[storageKey]!, storage: new MemoryStorage(), WebSocket });
  const exp = (await auditor.auditExport()) as { entries: string[] };
  const m = new Map<string, number>();
  for (const text of exp.entries) {
    const e = JSON.parse(text) as { type: string; header?: { id: string } };
    if (e.type === 'envelope.accepted') m.set(e.header!.id, (m.get(e.header!.id) ?? 0) + 1);
  }
  return m;
}

describe('client failover across the nodes of one relay', () => {
  it('a node lost mid-stream: the client is on the next URL within 2 s, and nothing is lost or duplicated either way', { timeout: 120_000 }, async () => {
    // Two nodes of one relay: two front doors to one server and its data (what nodes on one
    // database are to a client). Node 1 dies: its connections are dropped, new ones refused.
    const s = await startTestServer({ logLevel: 'warn' });
    const node1 = await LoopbackProxy.start(() => portOf(s.url));
    const node2 = await LoopbackProxy.start(() => portOf(s.url));
    onCleanup(() => node2.close());
    const jp = device(s, `${JP}/op1`, [node1.url, node2.url]);
    const cn = device(s, `${CN}/op1`, s.url);
    await Promise.all([jp.client.start(), cn.client.start()]);
    expect(jp.links.at(-1)?.ev).toEqual({ kind: 'connected', url: node1.url });

    const N = 40;
    const M = 20;
    // Node 1 goes when jp has received a quarter of the stream, while both sides keep sending.
    let killed: Promise<void> | undefined;
    jp.client.on('message', () => {
      if (jp.messages.size === N / 4) killed ??= node1.close();
    });
    const toJp: string[] = [];
    const toCn: string[] = [];
    for (let i = 0; i < N; i++) {
      toJp.push((await cn.client.send({ to: JP, precedence: i % 10 === 0 ? 'FLASH' : 'ROUTINE', body: `cn → jp ${i}` })).id);
      if (i < M) toCn.push((await jp.client.send({ to: CN, precedence: 'ROUTINE', body: `jp → cn ${i}` })).id);
    }
    await jp.until(() => toJp.every((id) => jp.messages.has(id)) && toCn.every((id) => jp.accepted.has(id)));
    await cn.until(() => toCn.every((id) => cn.messages.has(id)) && toJp.every((id) => cn.delivered.has(id)));
    await killed;

    const f = failover(jp.links, node1.url);
    expect(f.url).toBe(node2.url);
    expect(f.ms).toBeLessThanOrEqual(2000);
    expect(jp.client.connected && jp.client.serverUrl === node2.url).toBe(true);
    // Each message shown once, each sent one accepted once, each delivered receipt seen once.
    exactlyOnce(jp.messages, toJp);
    exactlyOnce(cn.messages, toCn);
    exactlyOnce(jp.accepted, toCn);
    exactlyOnce(cn.delivered, toJp);
    // The relay stored each envelope once, whatever was sent again on the new link.
    const log = await acceptedInLog(s);
    exactlyOnce(log, [...toJp, ...toCn]);
    console.info(`failover: link lost at node 1 → connected at node 2 in ${f.ms} ms`);
  });

  it('a node stopped mid-stream and another started on its data directory: the client goes on at the second URL with nothing lost or duplicated', { timeout: 120_000 }, async () => {
    const x = await startTestServer({ logLevel: 'warn' });
    // The second URL: where node Y will answer once started on X's data directory (port 0 until then: refused).
    let yPort = 0;
    const second = await LoopbackProxy.start(() => yPort);
    onCleanup(() => second.close());
    // A backoff capped at 1.5 s (the console caps at 5 s): the client then tries each URL at
    // least every 1.5 s, so it is on Y within 2 s of Y answering.
    const jp = device(x, `${JP}/op1`, [x.url, second.url], { backoff: { maxMs: 1500 } });
    const cn = device(x, `${CN}/op1`, [x.url, second.url], { backoff: { maxMs: 1500 } });
    await Promise.all([jp.client.start(), cn.client.start()]);

    const N = 30;
    const toJp: string[] = [];
    const toCn: string[] = [];
    for (let i = 0; i < N; i++) {
      toJp.push((await cn.client.send({ to: JP, precedence: 'ROUTINE', body: `cn → jp ${i}` })).id);
      toCn.push((await jp.client.send({ to: CN, precedence: 'PRIORITY', body: `jp → cn ${i}` })).id);
    }
    // Mid-stream: some delivered, the rest in flight or in the outboxes.
    await jp.until(() => jp.messages.size >= N / 3);
    await x.close();
    const more: string[] = [];
    for (let i = 0; i < 5; i++) more.push((await cn.client.send({ to: JP, precedence: 'IMMEDIATE', body: `while no node answers ${i}` })).id);
    const y = await startTestServer({ dep: x.dep, dataDir: x.dataDir, enrolAll: false, logLevel: 'warn' });
    yPort = portOf(y.url);
    const yUp = Date.now();

    const all = [...toJp, ...more];
    await jp.until(() => all.every((id) => jp.messages.has(id)) && toCn.every((id) => jp.accepted.has(id)));
    await cn.until(() => toCn.every((id) => cn.messages.has(id)) && all.every((id) => cn.delivered.has(id)) && toJp.every((id) => cn.accepted.has(id)));

    for (const d of [jp, cn]) {
      const f = failover(d.links, x.url);
      expect(f.url).toBe(second.url);
      // Within 2 s of the second node answering (or of the loss, had it answered already).
      expect(f.connectedAt - Math.max(f.lostAt, yUp)).toBeLessThanOrEqual(2000);
    }
    exactlyOnce(jp.messages, all);
    exactlyOnce(cn.messages, toCn);
    exactlyOnce(jp.accepted, toCn);
    exactlyOnce(cn.accepted, all);
    exactlyOnce(cn.delivered, all);
    exactlyOnce(await acceptedInLog(y), [...all, ...toCn]);
  });
});
