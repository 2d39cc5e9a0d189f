import { createServer as createHttpServer } from 'node:http';
import { createServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { JP } from '../helpers/deployment.js';
import { onCleanup, startTestServer, type TestServer } from '../helpers/test-server.js';

/**
 * The per-attempt time limit of client fail-over (docs/failover.md): a node that takes the TCP
 * connection but never answers must not hold a client given several URLs; after
 * `attemptTimeoutMs` (2 s by default) it goes on to the next URL. Without the limit these clients
 * would wait for the HTTP client's own timeout (minutes), and the tests time out.
 */

/** A loopback listener that accepts every connection and never writes a byte. */
async function silentNode(): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

/** A node that answers HTTP (by forwarding to `s`) but never answers a WebSocket upgrade. */
async function upgradeHangsNode(s: TestServer): Promise<string> {
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void fetch(s.url + req.url, { method: req.method!, headers: { 'content-type': req.headers['content-type'] ?? 'application/json', ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) }, ...(chunks.length ? { body: Buffer.concat(chunks) } : {}) })
        .then(async (r) => {
          res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' });
          res.end(Buffer.from(await r.arrayBuffer()));
        })
        .catch(() => res.destroy());
    });
  });
  const held: Duplex[] = [];
  server.on('upgrade', (_req, socket) => {
    socket.on('error', () => {});
    held.push(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(async () => {
    for (const h of held) h.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

function client(s: TestServer, urls: string[], attemptTimeoutMs = 500) {
  const c = new HotlineClient({ serverUrl: urls, agreement: s.dep.agreement, device: s.dep.devices[`${JP}/op1`]!, storage: new MemoryStorage(), WebSocket, attemptTimeoutMs });
  onCleanup(() => c.stop());
  const disconnected: { url: string; code: number; reason: string; nextUrl?: string }[] = [];
  c.on('disconnected', (d) => disconnected.push({ url: d.url, code: d.code, reason: d.reason, ...(d.nextUrl ? { nextUrl: d.nextUrl } : {}) }));
  return { c, disconnected };
}

describe('client fail-over: a time limit on each attempt', () => {
  it('a node that accepts TCP and never answers: the client gives up on it and connects to the next URL', { timeout: 60_000 }, async () => {
    const s = await startTestServer({ logLevel: 'warn' });
    const silent = await silentNode();
    const { c, disconnected } = client(s, [silent, s.url]);
    await c.start();
    expect(c.serverUrl).toBe(s.url);
    expect(disconnected[0]).toMatchObject({ url: silent, nextUrl: s.url });
    expect(disconnected[0]!.reason).toMatch(/did not answer within 500 ms/);
  });

  it('a node that answers HTTP but never the WebSocket upgrade: the client gives up on it and connects to the next URL', { timeout: 60_000 }, async () => {
    const s = await startTestServer({ logLevel: 'warn' });
    const hangs = await upgradeHangsNode(s);
    // A limit the forwarding HTTP requests keep well within, even on a loaded machine.
    const { c, disconnected } = client(s, [hangs, s.url], 3_000);
    await c.start();
    expect(c.serverUrl).toBe(s.url);
    // Given up at the WebSocket stage (the socket closed abnormally), not at an HTTP request.
    expect(disconnected[0]).toMatchObject({ url: hangs, nextUrl: s.url, code: 1006 });
  });
});
