import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { CN, JP } from '../helpers/deployment.js';
import { startTestServer } from '../helpers/test-server.js';
import { seal } from '../helpers/ws-client.js';

describe('a slow consumer', () => {
  it('is closed with HL_ERR_SERVER_SLOW_CONSUMER once too much waits unread; the mailbox then delivers everything, in order', async () => {
    const s = await startTestServer({ app: { slowConsumerBytes: 64 * 1024 }, logLevel: 'info' });
    const dir = await s.directory();
    const jp = await s.connect(`${JP}/op1`);
    const cn = await s.connect(`${CN}/op1`);
    // The recipient stops reading: the kernel buffers fill, then ws's own buffer grows.
    const socket = (cn.ws as unknown as { _socket: Socket })._socket;
    socket.pause();

    const N = 120;
    const big = 'x'.repeat(38_000);
    const envs = [];
    for (let i = 1; i <= N; i++) envs.push(await seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq: i, directory: dir, plaintext: { body: `${i} ${big}`, lang: 'en' } }));
    for (const envelope of envs) jp.send({ t: 'envelope', envelope });
    for (const env of envs) await jp.waitForType('accepted', (f) => f.id === env.header.id);

    socket.resume();
    await cn.waitForError('HL_ERR_SERVER_SLOW_CONSUMER');
    expect((await cn.closed).code).toBe(4505);
    const got = cn.ofType('deliver').length;
    expect(got).toBeLessThan(N);

    // Reconnecting resumes from the mailbox: everything arrives, in order, flow-controlled.
    const again = await s.connect(`${CN}/op1`);
    await again.waitFor(() => again.ofType('deliver').length === N, 'the whole mailbox', 30_000);
    expect(again.ofType('deliver').map((d) => d.envelope.header.seq)).toEqual(envs.map((e) => e.header.seq));
    expect(again.ofType('error')).toEqual([]);
  });
});
