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

  it('descriptor exhaustion from one address: cap + 250 sockets, the extra ones refused, logged and counted on /metrics, and a real device still logs in and links', async () => {
    const CAP = 50;
    const EXTRA = 250;
    const s = await startTestServer({ app: { maxConnectionsPerAddress: CAP } });
    const metric = async (name: string) => {
      const text = await (await fetch(`${s.url}/metrics`)).text();
      const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
      return m ? Number(m[1]) : undefined;
    };
    expect(await metric('hotline_connections_refused_total')).toBe(0);
    const held: Socket[] = [];
    for (let i = 0; i < CAP; i++) held.push(await open(s.url, OTHER));
    const over = await Promise.all(Array.from({ length: EXTRA }, () => open(s.url, OTHER)));
    await Promise.all(over.map(closedByServer));
    for (const sock of held) expect(sock.destroyed).toBe(false);

    expect(await metric('hotline_connections_refused_total')).toBe(EXTRA);
    // The held ones and this very /metrics request are open.
    expect(await metric('hotline_connections_open')).toBeGreaterThanOrEqual(CAP);
    const lines = s.logs.records().filter((r) => r['msg'] === 'connection cap reached: connection refused');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ address: expect.stringContaining('127.0.0.2'), max: CAP, open: CAP });

    // A real device, from another address, logs in and gets its hello meanwhile.
    const jp = await s.connect(`${JP}/op1`);
    expect(jp.ofType('hello')).toHaveLength(1);
    await jp.close();
  });
});
