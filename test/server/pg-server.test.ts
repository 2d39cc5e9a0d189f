import { describe, expect, it } from 'vitest';
import { envelopeHash } from '../../shared/crypto/envelope.js';
import { signReceipt } from '../../shared/crypto/receipt.js';
import { loadConfig } from '../../server/config.js';
import { startOptionsFromConfig } from '../../server/main.js';
import { PgStore } from '../../server/store/pg-store.js';
import { CN, JP, createDeployment } from '../helpers/deployment.js';
import { onCleanup, startTestServer } from '../helpers/test-server.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { testDatabaseUrl, testSchema } from '../helpers/stores.js';
import { call, login, seal } from '../helpers/ws-client.js';

/**
 * The relay on PostgreSQL (issue 12), end to end: the same link as on SQLite, the data in the
 * database (not the data directory), and a second node on the same database taking over.
 */
describe('the relay on PostgreSQL', () => {
  it('both start paths take the URL: HOTLINE_DATABASE_URL reaches the start options', () => {
    const config = loadConfig({ HOTLINE_AGREEMENT: 'a.json', HOTLINE_DATA_DIR: 'd', HOTLINE_DATABASE_URL: 'postgres://u:p@h/db' });
    expect(startOptionsFromConfig(config).databaseUrl).toBe('postgres://u:p@h/db');
  });

  it('refuses a schema name that is not a plain identifier, or too long for its NOTIFY channel names', async () => {
    for (const schema of ['Bad-Name', 'a'.repeat(46)]) {
      await expect(PgStore.open(testDatabaseUrl(), { schema })).rejects.toMatchObject({ code: 'HL_ERR_CONFIG_INVALID' });
    }
  });

  it('relays a message and its receipts, keeps it in the database; a second node starts beside the first, and takes over with the same data and tokens once the first has stopped', async () => {
    const database = { url: testDatabaseUrl(), schema: testSchema() };
    const dep = await createDeployment();
    const a = await startTestServer({ dep, database });
    const jp = await a.connect(`${JP}/op1`);
    const cn = await a.connect(`${CN}/op1`);
    const sender = dep.devices[`${JP}/op1`]!;
    const recipient = dep.devices[`${CN}/op1`]!;
    const env = await seal({ sender, to: CN, seq: 1, directory: await a.directory(), plaintext: { body: '本日一二時、演習を中止する。', lang: 'ja' } });
    jp.send({ t: 'envelope', envelope: env });
    expect(await jp.waitForType('accepted')).toMatchObject({ id: env.header.id, envelopeHash: envelopeHash(env.header) });
    const deliver = await cn.waitForType('deliver');
    expect(deliver.envelope).toEqual(env);
    const receipt = await signReceipt(recipient, env.header, 'delivered', Date.now());
    cn.send({ t: 'receipt', receipt });
    expect((await jp.waitForType('receipt')).receipt).toEqual(receipt);

    // It is in PostgreSQL, in this schema: a store opened on it reads the envelope and the log.
    const direct = await PgStore.open(database.url, { schema: database.schema, maxConnections: 1 });
    try {
      expect((await direct.getEnvelope(env.header.id))?.envelope).toEqual(env);
      const size = await direct.auditSize();
      expect(size).toBeGreaterThan(2);
      const entries = (await direct.auditEntries(0, size)).map((e) => e.entry);
      expect(entries.some((e) => e.includes('"envelope.accepted"'))).toBe(true);
    } finally {
      await direct.close();
    }

    // A second node on the same database starts beside the first (several nodes at once: the
    // two-node tests are in test/e2e/pg-nodes.test.ts); it is stopped again here.
    const token = await login(a.url, sender, dep.agreement);
    const beside = await startTestServer({ dep, database, enrolAll: false });
    expect((await call(beside.url, 'GET', '/readyz')).status).toBe(200);
    await beside.close();

    // Once the first has stopped, a second node takes over: its own (empty) data directory, the
    // same database. A token issued by the first node is good here (the token secret is in the
    // database), and the stored message and its audit log are served as they are.
    await a.close();
    const b = await startTestServer({ dep, database, enrolAll: false });
    expect((await call(b.url, 'GET', '/readyz')).status).toBe(200);
    expect((await call(b.url, 'GET', '/v1/directory', undefined, token)).status).toBe(200);
    const cnOnB = await b.connect(`${CN}/archive1`);
    expect((await cnOnB.waitForType('deliver')).envelope).toEqual(env);
    const audit = await call(b.url, 'GET', '/v1/audit/entries', undefined, await b.token(`${JP}/audit1`));
    expect(audit.status).toBe(200);
    const read = (audit.body as { entries: { idx: number; entry: string }[] }).entries;
    expect(read.map((e) => e.idx)).toEqual(read.map((_, i) => i));
    expect(read.some((e) => e.entry.includes(env.header.id))).toBe(true);
  });
});

describe('PostgreSQL unreachable', () => {
  it('readiness is 503 HL_ERR_STORE_FAILED and nothing is accepted while the database is away; the relay recovers by itself', async () => {
    const url = new URL(testDatabaseUrl());
    const proxy = await TcpProxy.start({ host: url.hostname, port: Number(url.port || 5432) });
    onCleanup(() => proxy.close());
    const viaProxy = new URL(url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const dep = await createDeployment();
    const schema = testSchema();
    const s = await startTestServer({ dep, database: { url: viaProxy.toString(), schema } });
    const jp = await s.connect(`${JP}/op1`);
    const directory = await s.directory();
    const sender = dep.devices[`${JP}/op1`]!;
    const first = await seal({ sender, to: CN, seq: 1, directory, plaintext: { body: 'before', lang: 'en' } });
    jp.send({ t: 'envelope', envelope: first });
    await jp.waitForType('accepted', (f) => f.id === first.header.id);

    proxy.cut();
    const ready = await call(s.url, 'GET', '/readyz');
    expect([ready.status, ready.body.error.code]).toEqual([503, 'HL_ERR_STORE_FAILED']);
    // The store's own reason (a known failure, not "does not answer"), without the password.
    expect(ready.body.error.message).toMatch(/^the database cannot write \((ECONNRESET|ECONNREFUSED|57P01|08\w+)/);
    expect(ready.body.error.message).not.toContain(url.password);
    // An envelope sent now is refused (retry later), not accepted.
    const during = await seal({ sender, to: CN, seq: 2, directory, plaintext: { body: 'during', lang: 'en' } });
    jp.send({ t: 'envelope', envelope: during });
    const refused = await jp.waitForType('error', (f) => f.ref === during.header.id);
    expect(refused.code).toBe('HL_ERR_STORE_FAILED');

    proxy.restore();
    expect((await call(s.url, 'GET', '/readyz')).status).toBe(200);
    // Sent again, it is accepted, and both are stored once.
    jp.send({ t: 'envelope', envelope: during });
    await jp.waitForType('accepted', (f) => f.id === during.header.id);
    const store = await PgStore.open(viaProxy.toString(), { schema, maxConnections: 1 });
    try {
      expect((await store.getEnvelope(first.header.id))?.envelope).toEqual(first);
      expect((await store.getEnvelope(during.header.id))?.envelope).toEqual(during);
    } finally {
      await store.close();
    }
  });

  it('a LISTEN connection that goes silent (no reset, no error) is found by its probe, reopened and caught up', async () => {
    const url = new URL(testDatabaseUrl());
    const proxy = await TcpProxy.start({ host: url.hostname, port: Number(url.port || 5432) });
    onCleanup(() => proxy.close());
    const viaProxy = new URL(url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const store = await PgStore.open(viaProxy.toString(), { schema: testSchema(), maxConnections: 1, listenProbeMs: 200 });
    onCleanup(() => store.close());
    const heard: string[] = [];
    const waiters: { what: string; resolve: () => void }[] = [];
    const note = (what: string) => {
      heard.push(what);
      for (const w of waiters.filter((x) => x.what === what)) w.resolve();
    };
    const when = (what: string) => (heard.includes(what) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ what, resolve })));
    await store.listenMailboxes({ devices: () => {}, directory: () => {}, restored: () => note('restored'), lost: (err) => note(`lost: ${err.message}`) });

    proxy.stall();
    await when('lost: the listening connection did not answer within 200 ms');
    expect(heard).not.toContain('restored');
    proxy.restore();
    await when('restored');
  });
});
