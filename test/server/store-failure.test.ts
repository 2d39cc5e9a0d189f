import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { createLogger, startServer } from '../../server/main.js';
import { buildApp } from '../../server/app.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { randomBytes } from '../../shared/crypto/random.js';
import { LogSink } from '../helpers/log-sink.js';
import { next } from '../helpers/events.js';
import { guardStore } from '../../server/store/guarded-store.js';
import type { Store } from '../../server/store/store.js';
import { HotlineError } from '../../shared/errors.js';
import { CN, createDeployment, JP, tempDir } from '../helpers/deployment.js';
import { onCleanup } from '../helpers/test-server.js';
import { enrol, fetchDirectory, LinkClient, login, seal } from '../helpers/ws-client.js';

/** Readiness tells the truth, and a failing store is HL_ERR_STORE_FAILED (503), never HL_ERR_INTERNAL. */
describe('a store that cannot write', () => {
  it('disk full: /readyz is 503 with the reason, login is 503 HL_ERR_STORE_FAILED, and everything accepted is kept', async () => {
    const dep = await createDeployment();
    const dir = tempDir();
    onCleanup(() => dir.remove());
    const dataDir = join(dir.path, 'data');
    const start = (maxPageCount?: number) =>
      startServer({ agreement: dep.agreement, dataDir, host: '127.0.0.1', port: 0, logLevel: 'silent', ...(maxPageCount ? { sqlite: { maxPageCount } } : {}) });

    const first = await start();
    for (const d of Object.values(dep.devices)) await enrol(first.url, d.certificate);
    await first.close();

    // A quota a little above what the database holds: the "disk" fills after a few hundred KiB.
    const server = await start(200);
    const stored: number[] = [];
    let refused: unknown;
    // Fill it to the last byte: large entries first, then smaller ones into what is left.
    for (const size of [4000, 400, 40, 1]) {
      refused = undefined;
      for (let i = 0; i < 2000 && refused === undefined; i++) {
        try {
          stored.push(await server.store.appendAudit({ type: 'test.filler', at: i, text: 'x'.repeat(size) }));
        } catch (err) {
          refused = err;
        }
      }
      expect(refused).toBeInstanceOf(HotlineError);
      expect((refused as HotlineError).code).toBe('HL_ERR_STORE_FAILED');
    }
    expect(stored.length).toBeGreaterThan(0);

    const ready = await fetch(`${server.url}/readyz`);
    const body = (await ready.json()) as { error: { code: string; message: string } };
    expect([ready.status, body.error.code]).toEqual([503, 'HL_ERR_STORE_FAILED']);
    expect(body.error.message).toContain('SQLITE_FULL');

    const op = dep.devices[`${JP}/op1`]!;
    const challenge = await fetch(`${server.url}/v1/auth/challenge`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ party: JP, device: op.certificate.cert.device }) });
    if (challenge.status === 200) {
      const login = await fetch(`${server.url}/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ party: JP, device: op.certificate.cert.device, challenge: ((await challenge.json()) as { challenge: string }).challenge, signature: 'A'.repeat(86) + '==' }),
      });
      expect([login.status, ((await login.json()) as { error: { code: string } }).error.code]).toEqual([503, 'HL_ERR_STORE_FAILED']);
    } else {
      expect([challenge.status, ((await challenge.json()) as { error: { code: string } }).error.code]).toEqual([503, 'HL_ERR_STORE_FAILED']);
    }
    await server.close().catch(() => undefined);

    // Space freed (a larger quota): ready again, and every entry accepted before is there.
    const after = await start();
    expect((await fetch(`${after.url}/readyz`)).status).toBe(200);
    const entries = await after.store.auditEntries(0, await after.store.auditSize());
    const fillers = entries.filter((e) => (JSON.parse(e.entry) as { type: string }).type === 'test.filler');
    expect(fillers.map((e) => e.idx)).toEqual(stored);
    await after.close();
  });

  it('corrupt: writes stop, reads go on, and readiness says so until restored', async () => {
    const calls: string[] = [];
    const inner = {
      ping: async () => void calls.push('ping'),
      setMeta: async () => void calls.push('setMeta'),
      auditSize: async () => 7,
      appendAudit: async () => {
        throw Object.assign(new Error('database disk image is malformed'), { code: 'SQLITE_CORRUPT' });
      },
    } as unknown as Store;
    const store = guardStore(inner, () => 1);
    await expect(store.appendAudit({ type: 'x', at: 1 })).rejects.toMatchObject({ code: 'HL_ERR_STORE_FAILED' });
    expect(store.failure()).toMatchObject({ kind: 'corrupt' });
    await expect(store.setMeta('k', 'v')).rejects.toMatchObject({ code: 'HL_ERR_STORE_FAILED' });
    expect(calls).not.toContain('setMeta');
    expect(await store.auditSize()).toBe(7);
    await expect(store.ping()).rejects.toMatchObject({ code: 'HL_ERR_STORE_FAILED', message: expect.stringContaining('corrupt') });
  });

  it('passes refusals and programming errors through unchanged', async () => {
    const inner = {
      auditEntries: async () => {
        throw new HotlineError('HL_ERR_AUDIT_RANGE', 'out of range');
      },
      getMeta: async () => {
        throw new TypeError('bug');
      },
    } as unknown as Store;
    const store = guardStore(inner);
    await expect(store.auditEntries(0, 1)).rejects.toMatchObject({ code: 'HL_ERR_AUDIT_RANGE' });
    await expect(store.getMeta('k')).rejects.toBeInstanceOf(TypeError);
    expect(store.failure()).toBeUndefined();
  });
});

describe('corruption found at run time', () => {
  it('stops the writes, logs it, and tells every open link (and each new one) with a store.corrupt notice; the client library emits it', async () => {
    const dir = tempDir();
    const dep = await createDeployment();
    const sqlite = new SqliteStore(join(dir.path, 'db.sqlite'));
    // A store that fails on demand: its commit reports a damaged file, as SQLite does.
    let corrupt = false;
    const commit = sqlite.commit.bind(sqlite);
    sqlite.commit = async (writes) => {
      if (corrupt) throw Object.assign(new Error('database disk image is malformed'), { code: 'SQLITE_CORRUPT' });
      return commit(writes);
    };
    const store = guardStore(sqlite);
    const logs = new LogSink();
    const app = await buildApp({ store, storeHealth: store, agreement: dep.agreement, jwtSecret: randomBytes(32), logger: createLogger('info', logs) });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const links: LinkClient[] = [];
    const clients: HotlineClient[] = [];
    onCleanup(async () => {
      for (const c of clients) await c.stop();
      for (const l of links) await l.close();
      await app.close();
      dir.remove();
    });
    for (const d of Object.values(dep.devices)) await enrol(url, d.certificate);
    const open = async (key: string, token?: string) => {
      const l = await LinkClient.open(url, token ?? (await login(url, dep.devices[key]!, dep.agreement)));
      links.push(l);
      await l.waitForType('hello');
      return l;
    };
    const jp = await open(`${JP}/op1`);
    const jpAudit = await open(`${JP}/audit1`);
    const cnClient = new HotlineClient({ serverUrl: url, agreement: dep.agreement, device: dep.devices[`${CN}/op1`]!, storage: new MemoryStorage(), WebSocket });
    clients.push(cnClient);
    await cnClient.start();
    const laterToken = await login(url, dep.devices[`${CN}/archive1`]!, dep.agreement);
    const noticeAtCn = next(cnClient, 'notice');
    const directory = await fetchDirectory(url, laterToken);

    corrupt = true;
    const env = await seal({ sender: dep.devices[`${JP}/op1`]!, to: CN, seq: 1, directory, plaintext: { body: 'x', lang: 'en' } });
    jp.send({ t: 'envelope', envelope: env });
    expect((await jp.waitForType('error', (f) => f.ref === env.header.id)).code).toBe('HL_ERR_STORE_FAILED');

    for (const l of [jp, jpAudit]) {
      const n = await l.waitForType('notice');
      expect(n.notice).toMatchObject({ type: 'store.corrupt', reason: expect.stringContaining('SQLITE_CORRUPT') });
    }
    expect((await noticeAtCn).type).toBe('store.corrupt');
    const fatal = logs.records().filter((r) => r['level'] === 60);
    expect(fatal).toHaveLength(1);
    expect(fatal[0]).toMatchObject({ msg: expect.stringContaining('the database is corrupt: writes are stopped'), linksTold: 3 });

    // The file is not trusted again: writes stay refused, readiness says why, and a link opened
    // now (with a token from before) is told right after its hello.
    corrupt = false;
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { error: { message: string } }).error.message).toContain('corrupt');
    const late = await open(`${CN}/archive1`, laterToken);
    expect((await late.waitForType('notice')).notice.type).toBe('store.corrupt');
    const env2 = await seal({ sender: dep.devices[`${JP}/op1`]!, to: CN, seq: 2, directory, plaintext: { body: 'y', lang: 'en' } });
    jp.send({ t: 'envelope', envelope: env2 });
    expect((await jp.waitForType('error', (f) => f.ref === env2.header.id)).code).toBe('HL_ERR_STORE_FAILED');
  });
});
