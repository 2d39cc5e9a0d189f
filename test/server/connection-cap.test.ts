import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { CN, JP } from '../helpers/deployment.js';
import { onCleanup, startTestServer } from '../helpers/test-server.js';

/** A second loopback address: Linux routes all of 127/8 to lo, so a test can be two peers. */
const OTHER = '127.0.0.2';

/** Open a raw TCP connection from `from`; resolves once connected. */
function open(url: string, from: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect({ host: hostname, port: Number(port), localAddress: from }, () => resolve(s));
    s.once('error', reject);
    onCleanup(() => void s.destroy());
  });
}

/** Resolves when the server has closed this socket. */
const closedByServer = (s: Socket) => new Promise<void>((resolve) => (s.readableEnded || s.destroyed ? resolve() : s.once('close', () => resolve())));

describe('per-address connection cap', () => {
  it('closes connections past the cap from one address, logs it once, and keeps serving other addresses and the real devices', async () => {
    const s = await startTestServer({ app: { maxConnectionsPerAddress: 20 } });
    // A peer holding idle sockets from one address (bounded: 20 held, 5 over the cap).
    const held: Socket[] = [];
    for (let i = 0; i < 20; i++) held.push(await open(s.url, OTHER));
    const over: Socket[] = [];
    for (let i = 0; i < 5; i++) over.push(await open(s.url, OTHER));
    await Promise.all(over.map(closedByServer));
    for (const sock of held) expect(sock.destroyed).toBe(false);

    // Another address is not affected: devices log in and connect from 127.0.0.1.
    const jp = await s.connect(`${JP}/op1`);
    const cn = await s.connect(`${CN}/op1`);
    await jp.close();
    await cn.close();

    const lines = s.logs.records().filter((r) => r['msg'] === 'connection cap reached: connection refused');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ max: 20, open: 20 });

    // Freeing the held sockets lets the address in again.
    for (const sock of held) sock.destroy();
    await Promise.all(held.map(closedByServer));
    // The server sees the closes a moment later: try again on each refusal (bounded).
    let answer = '';
    for (let attempt = 0; attempt < 50 && answer === ''; attempt++) {
      const again = await open(s.url, OTHER);
      again.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      answer = await new Promise<string>((resolve) => {
        let text = '';
        again.on('data', (c: Buffer) => (text += c.toString()));
        again.once('close', () => resolve(text));
      });
    }
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
  });
});
