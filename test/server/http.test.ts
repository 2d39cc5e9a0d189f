import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../server/app.js';
import { createLogger } from '../../server/main.js';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { agreementHash, enrollDevice } from '../../shared/crypto/keys.js';
import { randomBytes } from '../../shared/crypto/random.js';
import { CN, JP, createDeployment, tempDir } from '../helpers/deployment.js';
import { LogSink } from '../helpers/log-sink.js';
import { onCleanup, startTestServer } from '../helpers/test-server.js';
import { call, tryLogin } from '../helpers/ws-client.js';

describe('HTTP API', () => {
  it('serves health, readiness and the agreement, and answers errors with their code', async () => {
    const s = await startTestServer({ enrolAll: false });
    expect(await call(s.url, 'GET', '/healthz')).toEqual({ status: 200, body: { ok: true } });
    expect(await call(s.url, 'GET', '/readyz')).toEqual({ status: 200, body: { ok: true } });
    const a = await call(s.url, 'GET', '/v1/agreement');
    expect(agreementHash(a.body)).toBe(agreementHash(s.dep.agreement));

    const missing = await call(s.url, 'GET', '/v1/nothing');
    expect([missing.status, missing.body.error.code]).toEqual([404, 'HL_ERR_NOT_FOUND']);
    const badJson = await call(s.url, 'POST', '/v1/auth/challenge', '{"party":');
    expect([badJson.status, badJson.body.error.code]).toEqual([400, 'HL_ERR_INPUT_MALFORMED_JSON']);
    const big = await call(s.url, 'POST', '/v1/directory/devices', JSON.stringify({ pad: 'x'.repeat(70_000) }));
    expect([big.status, big.body.error.code]).toEqual([413, 'HL_ERR_INPUT_TOO_LARGE']);
    const wrong = await call(s.url, 'POST', '/v1/auth/challenge', { party: 'JP!', device: 'op1' });
    expect([wrong.status, wrong.body.error.code]).toEqual([400, 'HL_ERR_INPUT_SCHEMA']);
  });

  it('enrols only certificates that chain to the agreement, idempotently; login may carry the certificate', async () => {
    const s = await startTestServer({ enrolAll: false });
    const op1 = s.dep.devices[`${JP}/op1`]!;
    expect((await call(s.url, 'POST', '/v1/directory/devices', op1.certificate)).status).toBe(201);
    expect((await call(s.url, 'POST', '/v1/directory/devices', op1.certificate)).status).toBe(201);

    const forged = { ...op1.certificate, cert: { ...op1.certificate.cert, role: 'auditor' } };
    const f = await call(s.url, 'POST', '/v1/directory/devices', forged);
    expect([f.status, f.body.error.code]).toEqual([403, 'HL_ERR_CERT_BAD_SIGNATURE']);
    const stranger = await createDeployment();
    const u = await call(s.url, 'POST', '/v1/directory/devices', stranger.devices[`${JP}/op1`]!.certificate);
    expect(u.body.error.code).toBe('HL_ERR_CERT_BAD_SIGNATURE');
    const notCert = await call(s.url, 'POST', '/v1/directory/devices', { hello: 1 });
    expect(notCert.body.error.code).toBe('HL_ERR_CERT_MALFORMED');

    // Not enrolled and no certificate given: unknown. With the certificate: enrolled and logged in.
    const cnOp = s.dep.devices[`${CN}/op1`]!;
    const unknown = await tryLogin(s.url, cnOp, s.dep.agreement);
    expect([unknown.status, unknown.body.error.code]).toEqual([404, 'HL_ERR_CERT_UNKNOWN_DEVICE']);
    const ok = await tryLogin(s.url, cnOp, s.dep.agreement, { withCertificate: true });
    expect(ok.status).toBe(200);
    expect(ok.body.role).toBe('operator');
    const d = await call(s.url, 'GET', '/v1/directory', undefined, ok.body.token);
    expect(d.body.certificates.map((c: { cert: { party: string; device: string } }) => `${c.cert.party}/${c.cert.device}`)).toEqual([`${CN}/op1`, `${JP}/op1`]);

    // A certificate of another device offered at login is refused.
    const other = await enrollDevice(s.dep.parties[CN]!, { device: 'op9', role: 'operator', now: Date.now() });
    const ch = await call(s.url, 'POST', '/v1/auth/challenge', { party: CN, device: 'op1' });
    const mixed = await call(s.url, 'POST', '/v1/auth/login', { party: CN, device: 'op1', challenge: ch.body.challenge, signature: 'A'.repeat(86) + '==', certificate: other.certificate });
    expect(mixed.body.error.code).toBe('HL_ERR_CERT_MALFORMED');
  });

  it('answers /readyz 503 when the store does not answer', async () => {
    const dir = tempDir();
    const dep = await createDeployment();
    const store = new SqliteStore(join(dir.path, 'db.sqlite'));
    const app = await buildApp({ store, agreement: dep.agreement, jwtSecret: randomBytes(32), logger: createLogger('silent', new LogSink()) });
    onCleanup(async () => {
      await app.close();
      dir.remove();
    });
    store.ping = () => Promise.reject(new Error('disk gone'));
    const r = await app.inject({ method: 'GET', url: '/readyz' });
    expect([r.statusCode, r.json().error.code]).toEqual([503, 'HL_ERR_STORE_FAILED']);
  });
});
