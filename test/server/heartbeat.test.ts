import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { JP, CN } from '../helpers/deployment.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { startTestServer } from '../helpers/test-server.js';

describe('ping/pong heartbeat', () => {
  it('ends a link whose peer stops answering pings, and keeps the one that answers', async () => {
    const clock = new ManualClock(Date.now());
    const s = await startTestServer({ clock, app: { heartbeatIntervalMs: 30_000 } });
    const alive = await s.connect(`${JP}/op1`);

    // A peer that is there at the TCP level but answers no ping (a hung console, a half-open route).
    const token = await s.token(`${CN}/op1`);
    const mute = new WebSocket(s.url.replace(/^http/, 'ws') + '/v1/link', ['hotline.v1', `bearer.${token}`], { autoPong: false });
    const muteClosed = new Promise<number>((resolve) => mute.on('close', (code) => resolve(code)));
    const pinged = new Promise<void>((resolve) => mute.once('ping', () => resolve()));
    await new Promise<void>((resolve) => mute.once('message', () => resolve())); // hello

    clock.advance(30_000); // first ping to both
    await pinged;
    await alive.sync(); // the answering peer's pong reached the server before this round trip
    clock.advance(30_000); // no pong from the mute peer: terminated

    expect(await muteClosed).toBe(1006);
    await alive.sync();
    expect(alive.ws.readyState).toBe(WebSocket.OPEN);
  });
});
