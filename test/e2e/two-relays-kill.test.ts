import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { spawnServer, type ServerProcess } from '../helpers/spawn-server.js';
import { onCleanup } from '../helpers/test-server.js';
import { tempDir } from '../helpers/deployment.js';
import { LoopbackProxy, makeTwoRelayDeployment } from '../helpers/two-relays.js';

/**
 * Both relays in their own processes, each behind a loopback proxy with a fixed address (what the
 * other relay dials and its own party's clients use), killed with SIGKILL at random moments while
 * messages go both ways; each is started again at once on its own database. At the end every
 * message sent has arrived exactly once, and each relay's log holds each acceptance once.
 */
describe('two relays under SIGKILL', () => {
  it('nothing accepted is lost and nothing is delivered twice across 20 kills of either relay', async () => {
    const dep = await makeTwoRelayDeployment();
    const dir = tempDir();
    onCleanup(() => dir.remove());
    const agreementPath = join(dir.path, 'agreement.json');
    writeFileSync(agreementPath, JSON.stringify(dep.agreement));
    const ports = { jp: 0, cn: 0 };
    const proxy = { jp: await LoopbackProxy.start(() => ports.jp), cn: await LoopbackProxy.start(() => ports.cn) };
    onCleanup(() => Promise.all([proxy.jp.close(), proxy.cn.close()]).then(() => undefined));
    const relays: Record<'jp' | 'cn', ServerProcess | undefined> = { jp: undefined, cn: undefined };
    const start = async (side: 'jp' | 'cn') => {
      const relayPath = join(dir.path, `${side}-relay.json`);
      writeFileSync(relayPath, JSON.stringify(dep.relays[side]));
      const other = side === 'jp' ? 'cn' : 'jp';
      const s = await spawnServer({
        agreementPath,
        dataDir: join(dir.path, side),
        extraEnv: { HOTLINE_RELAY: relayPath, HOTLINE_PEER_URL: `${other === 'jp' ? 'jp-mod' : 'cn-mnd'}=${proxy[other].url}` },
      });
      ports[side] = Number(new URL(s.url).port);
      relays[side] = s;
      return s;
    };
    onCleanup(async () => {
      for (const s of Object.values(relays)) {
        s?.child.kill('SIGKILL');
        if (s) await s.exited;
      }
    });
    await Promise.all([start('jp'), start('cn')]);
    for (const [side, party] of [
      ['jp', 'jp-mod'],
      ['cn', 'cn-mnd'],
    ] as const) {
      for (const d of Object.values(dep.devices).filter((x) => x.certificate.cert.party === party)) {
        const res = await fetch(`${proxy[side].url}/v1/directory/devices`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(d.certificate) });
        expect(res.status).toBe(201);
      }
    }
    // Each relay knows the other's devices before the clients seal anything.
    const knows = async (side: 'jp' | 'cn', party: string) => {
      const db = new Database(join(dir.path, side, 'hotline.sqlite'), { readonly: true, fileMustExist: true });
      try {
        return (db.prepare('SELECT COUNT(*) AS n FROM devices WHERE party = ?').get(party) as { n: number }).n > 0;
      } finally {
        db.close();
      }
    };
    for (let i = 0; i < 500 && !((await knows('jp', 'cn-mnd')) && (await knows('cn', 'jp-mod'))); i++) await new Promise((r) => setTimeout(r, 20));

    const mk = (device: (typeof dep.devices)['jpOp'], side: 'jp' | 'cn') =>
      new HotlineClient({ serverUrl: proxy[side].url, agreement: dep.agreement, device, storage: new MemoryStorage(), WebSocket, backoff: { initialMs: 20, maxMs: 200 } });
    const jp = mk(dep.devices.jpOp, 'jp');
    const cn = mk(dep.devices.cnOp, 'cn');
    onCleanup(async () => {
      await jp.stop();
      await cn.stop();
    });
    const got = { jp: new Map<string, number>(), cn: new Map<string, number>() };
    let wake = () => {};
    jp.on('message', (m) => {
      got.jp.set(m.header.id, (got.jp.get(m.header.id) ?? 0) + 1);
      wake();
    });
    cn.on('message', (m) => {
      got.cn.set(m.header.id, (got.cn.get(m.header.id) ?? 0) + 1);
      wake();
    });
    await Promise.all([jp.start(), cn.start()]);

    const sent = { jp: [] as string[], cn: [] as string[] };
    let kills = 0;
    // A bounded exchange: 40 messages each way, a kill of a random relay after every other pair.
    let seed = 11;
    const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
    for (let i = 0; i < 40; i++) {
      sent.jp.push((await jp.send({ to: 'cn-mnd', precedence: i % 5 === 0 ? 'FLASH' : 'ROUTINE', body: `jp ${i}`, lang: 'ja' })).id);
      sent.cn.push((await cn.send({ to: 'jp-mod', precedence: i % 7 === 0 ? 'IMMEDIATE' : 'ROUTINE', body: `cn ${i}`, lang: 'zh' })).id);
      if (i % 2 === 1 && kills < 20) {
        // A random moment: right away, or after up to 30 ms of traffic.
        await new Promise((r) => setTimeout(r, Math.floor(random() * 30)));
        const side = random() < 0.5 ? 'jp' : 'cn';
        const victim = relays[side]!;
        victim.child.kill('SIGKILL');
        await victim.exited;
        kills++;
        await start(side);
      }
    }
    expect(kills).toBe(20);
    // Everything arrives; bounded by time (the clients and relays retry with backoff).
    const end = Date.now() + 60_000;
    while ((got.cn.size < sent.jp.length || got.jp.size < sent.cn.length) && Date.now() < end) {
      await Promise.race([new Promise<void>((r) => (wake = r)), new Promise((r) => setTimeout(r, 500))]);
    }
    expect([...got.cn.keys()].sort()).toEqual([...sent.jp].sort());
    expect([...got.jp.keys()].sort()).toEqual([...sent.cn].sort());
    expect([...got.cn.values(), ...got.jp.values()].every((n) => n === 1)).toBe(true);
    // And at the relays: one acceptance per message in each relay's log (by id, not by text).
    for (const side of ['jp', 'cn'] as const) {
      const db = new Database(join(dir.path, side, 'hotline.sqlite'), { readonly: true });
      try {
        const rows = db.prepare(`SELECT json_extract(entry, '$.header.id') AS id, COUNT(*) AS n FROM audit_entries WHERE json_extract(entry, '$.type') = 'envelope.accepted' GROUP BY id`).all() as { id: string; n: number }[];
        expect(rows.every((r) => r.n === 1)).toBe(true);
        expect(rows.length).toBe(sent.jp.length + sent.cn.length);
      } finally {
        db.close();
      }
    }
  }, 240_000);
});
