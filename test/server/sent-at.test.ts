import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { SENT_AT_WINDOW_MS } from '../../shared/crypto/envelope.js';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { startServer } from '../../server/main.js';
import { CN, JP } from '../helpers/deployment.js';
import { makeDeployment } from '../helpers/fixtures.js';
import { next } from '../helpers/events.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { onCleanup, startTestServer } from '../helpers/test-server.js';
import { seal } from '../helpers/ws-client.js';

const HOUR = 3_600_000;
const QUIET = { heartbeatIntervalMs: 365 * 24 * HOUR };

describe('the sentAt window', () => {
  it('refuses an envelope whose sentAt is more than 24 h from the relay’s clock, either way, with HL_ERR_ENVELOPE_SENT_AT; the edges pass', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1));
    const s = await startTestServer({ clock, app: QUIET });
    const jp = await s.connect(`${JP}/op1`);
    const dir = await s.directory();
    const sender = s.dep.devices[`${JP}/op1`]!;
    const now = clock.now();
    let seq = 0;
    const attempt = async (sentAt: number) => {
      const env = await seal({ sender, to: CN, seq: ++seq, directory: dir, plaintext: { body: 'x', lang: 'en' }, sentAt });
      jp.send({ t: 'envelope', envelope: env });
      const answer = await jp.waitFor((f) => (f.t === 'accepted' && f.id === env.header.id) || (f.t === 'error' && f.ref === env.header.id), env.header.id);
      return answer.t === 'error' ? answer.code : 'accepted';
    };
    expect(await attempt(now + SENT_AT_WINDOW_MS + 1)).toBe('HL_ERR_ENVELOPE_SENT_AT');
    expect(await attempt(now - SENT_AT_WINDOW_MS - 1)).toBe('HL_ERR_ENVELOPE_SENT_AT');
    expect(await attempt(Date.UTC(2200, 0, 1))).toBe('HL_ERR_ENVELOPE_SENT_AT');
    expect(await attempt(now + SENT_AT_WINDOW_MS)).toBe('accepted');
    expect(await attempt(now - SENT_AT_WINDOW_MS)).toBe('accepted');
    // A device clock set in the wrong time zone (14 h ahead) is still within the window.
    expect(await attempt(now + 14 * HOUR)).toBe('accepted');
  });

  it('the very same envelope sent again days later is answered accepted again with the first acceptance time', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1));
    const s = await startTestServer({ clock, app: QUIET });
    const jp = await s.connect(`${JP}/op1`);
    const env = await seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq: 1, directory: await s.directory(), plaintext: { body: 'x', lang: 'en' }, sentAt: clock.now() });
    jp.send({ t: 'envelope', envelope: env });
    const first = await jp.waitForType('accepted', (f) => f.id === env.header.id);
    clock.advance(3 * 24 * HOUR);
    const before = jp.ofType('accepted').length;
    jp.send({ t: 'envelope', envelope: env });
    const again = await jp.waitFor((f) => f.t === 'accepted' && jp.ofType('accepted').length > before, 'second accepted');
    expect(again).toMatchObject({ t: 'accepted', id: env.header.id, at: first.at });
    expect(jp.ofType('error')).toEqual([]);
  });

  it('a message sealed offline two days before it reaches the relay is resealed by the client once and delivered', async () => {
    const d = await makeDeployment();
    const clock = new ManualClock(d.now + 1000);
    const dir = mkdtempSync(join(tmpdir(), 'hotline-sent-at-'));
    const server = await startServer({ agreement: d.agreement, dataDir: join(dir, 'server'), host: '127.0.0.1', port: 0, logLevel: 'silent', clock, app: QUIET });
    const clients: HotlineClient[] = [];
    onCleanup(async () => {
      for (const c of clients) await c.stop();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    });
    for (const dev of Object.values(d.devices)) {
      const res = await fetch(`${server.url}/v1/directory/devices`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(dev.certificate) });
      expect(res.status).toBe(201);
    }
    const make = (device = d.devices.jpOp, storage = new MemoryStorage()) => {
      const c = new HotlineClient({ serverUrl: server.url, agreement: d.agreement, device, storage, WebSocket, clock, backoff: { initialMs: 20, maxMs: 200 } });
      clients.push(c);
      return c;
    };
    const storage = new MemoryStorage();
    const jp = make(d.devices.jpOp, storage);
    await jp.start(); // fetches and stores the directory
    await jp.stop();
    const { id } = await jp.send({ to: 'cn-mnd', precedence: 'PRIORITY', body: 'sealed offline', lang: 'en' });
    const sealedAt = (await storage.read('jp-mod/jp-op-1')).outbox[`e:${id}`];
    expect(sealedAt?.kind === 'envelope' ? sealedAt.envelope.header.sentAt : undefined).toBe(clock.now());
    clock.advance(2 * 24 * HOUR);

    const cn = make(d.devices.cnOp);
    const arrived = next(cn, 'message');
    await cn.start();
    const again = make(d.devices.jpOp, storage);
    const refusals: string[] = [];
    again.on('error', (e) => refusals.push(e.code));
    const accepted = next(again, 'accepted', (a) => a.id === id);
    await again.start();
    await accepted;
    const m = await arrived;
    expect(m.header.id).toBe(id);
    expect(m.plaintext.body).toBe('sealed offline');
    expect(m.header.sentAt).toBe(clock.now());
    expect(refusals).toEqual([]);
  });
});
