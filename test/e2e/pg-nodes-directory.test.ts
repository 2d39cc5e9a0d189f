import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { enrollDevice, revokeDevice } from '../../shared/crypto/keys.js';
import { CN, JP, createDeployment, type Deployment } from '../helpers/deployment.js';
import { onCleanup, startTestServer, type TestServer } from '../helpers/test-server.js';
import { testDatabaseUrl, testSchema } from '../helpers/stores.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { call, enrol, tryLogin } from '../helpers/ws-client.js';

/**
 * The device directory across several nodes of one relay on one PostgreSQL database (issue 12,
 * docs/postgresql.md "The device directory"): a certificate or revocation stored through one node
 * is notified in its transaction and learned by the others at once, and read again by a node whose
 * listening connection was away. Against the test database of the global setup: fails, never
 * skips, when it is unreachable.
 */

const OP2 = `${JP}/op2`;
const LATE = `${JP}/op3`;

async function revoke(on: TestServer, dep: Deployment, key: string): Promise<void> {
  const rev = await revokeDevice(dep.parties[JP]!, dep.devices[key]!.certificate.cert, { at: on.now(), reason: 'device lost' });
  expect((await call(on.url, 'POST', '/v1/directory/revocations', rev)).status).toBe(201);
}

/** Login on `on` is refused with HL_ERR_CERT_REVOKED (403). */
async function expectLoginRevoked(on: TestServer, dep: Deployment, key: string): Promise<void> {
  const login = await tryLogin(on.url, dep.devices[key]!, dep.agreement);
  expect([login.status, login.body.error?.code]).toEqual([403, 'HL_ERR_CERT_REVOKED']);
}

describe('the device directory across two nodes on one PostgreSQL database', () => {
  it('a device revoked through node A: its live link on node B is closed with HL_ERR_CERT_REVOKED (4416), its token and a new login on B are refused, and B tells its other links', async () => {
    const dep = await createDeployment();
    const database = { url: testDatabaseUrl(), schema: testSchema() };
    const a = await startTestServer({ dep, database });
    const b = await startTestServer({ dep, database, enrolAll: false });
    const live = await b.connect(OP2);
    const token = await b.token(OP2);
    const other = await b.connect(`${CN}/op1`);

    await revoke(a, dep, OP2);
    await live.waitForError('HL_ERR_CERT_REVOKED');
    expect((await live.closed).code).toBe(4416);
    const changed = await other.waitForType('directory-changed');
    expect(changed.revocation).toMatchObject({ party: JP, device: 'op2', signKey: dep.devices[OP2]!.certificate.cert.signKey });
    await expectLoginRevoked(b, dep, OP2);
    const withToken = await call(b.url, 'GET', '/v1/directory', undefined, token);
    expect([withToken.status, withToken.body.error.code]).toEqual([403, 'HL_ERR_CERT_REVOKED']);
    expect((await b.directory()).some((c) => c.party === JP && c.device === 'op2')).toBe(false);
  });

  it('a device enrolled through node A, after node B started, logs in on node B', async () => {
    const dep = await createDeployment();
    const database = { url: testDatabaseUrl(), schema: testSchema() };
    const a = await startTestServer({ dep, database });
    const b = await startTestServer({ dep, database, enrolAll: false });
    // A device of JP that neither node knows yet.
    const late = await enrollDevice(dep.parties[JP]!, { device: 'op3', role: 'operator', now: Date.now() });
    dep.devices[LATE] = late;
    const before = await tryLogin(b.url, late, dep.agreement);
    expect([before.status, before.body.error?.code]).toEqual([404, 'HL_ERR_CERT_UNKNOWN_DEVICE']);

    await enrol(a.url, late.certificate);
    // B hears of it by notification: no restart, no enrolment through B.
    await b.logs.waitFor((r) => r['msg'] === 'directory change stored by another node learned' && r['device'] === LATE);
    const link = await b.connect(LATE);
    expect(link.frames[0]?.t).toBe('hello');
    expect((await b.directory()).some((c) => c.party === JP && c.device === 'op3')).toBe(true);
  });

  it('node B’s connection to the database cut while a device is revoked through node A: once B listens again it reads the directory again and refuses the device and its token', async () => {
    const dep = await createDeployment();
    const schema = testSchema();
    const url = new URL(testDatabaseUrl());
    const proxy = await TcpProxy.start({ host: url.hostname, port: Number(url.port || 5432) });
    onCleanup(() => proxy.close());
    const viaProxy = new URL(url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const a = await startTestServer({ dep, database: { url: url.toString(), schema } });
    const b = await startTestServer({ dep, database: { url: viaProxy.toString(), schema }, enrolAll: false });
    // No live link of the device on B here: its backlog read would fail in the cut and end the link
    // (HL_ERR_STORE_FAILED) first. The live link's end is the first test's.
    const token = await b.token(OP2);
    const restored = () => b.logs.records().filter((r) => String(r['msg']).startsWith('listening for new mailbox items again')).length;
    const before = restored();

    // B can neither listen nor reconnect while the revocation is committed: its notification is lost to B.
    proxy.cut();
    await b.logs.waitFor((r) => String(r['msg']).startsWith('the connection listening for new mailbox items was lost'));
    await revoke(a, dep, OP2);
    expect(restored()).toBe(before);

    proxy.restore();
    await b.logs.waitFor((r) => String(r['msg']).startsWith('listening for new mailbox items again'), before + 1);
    await b.logs.waitFor((r) => r['msg'] === 'directory read again: changes stored by other nodes learned' && r['learned'] === 1);
    await expectLoginRevoked(b, dep, OP2);
    const withToken = await call(b.url, 'GET', '/v1/directory', undefined, token);
    expect([withToken.status, withToken.body.error.code]).toEqual([403, 'HL_ERR_CERT_REVOKED']);
  });

  it('a directory notification that is not a row key (anyone on the database can NOTIFY) makes a node read the whole directory', async () => {
    const dep = await createDeployment();
    const database = { url: testDatabaseUrl(), schema: testSchema() };
    const a = await startTestServer({ dep, database });
    // A revocation row written without its notification (as a node would, had its NOTIFY been lost), then a junk payload.
    const rev = await revokeDevice(dep.parties[JP]!, dep.devices[OP2]!.certificate.cert, { at: a.now(), reason: 'device lost' });
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const r = rev.revocation;
      await client.query(`INSERT INTO ${database.schema}.revocations (party, device, sign_key, revocation, stored_at) VALUES ($1, $2, $3, $4, $5)`, [r.party, r.device, r.signKey, JSON.stringify(rev), a.now()]);
      await client.query(`SELECT pg_notify('hotline_directory_${database.schema}', 'not a row key')`);
    } finally {
      await client.end();
    }
    await a.logs.waitFor((r) => r['msg'] === 'directory read again: changes stored by other nodes learned' && r['learned'] === 1);
    await expectLoginRevoked(a, dep, OP2);
  });
});
