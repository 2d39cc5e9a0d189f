import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cli } from '../helpers/cli.js';
import { startServer, type RunningServer } from '../../server/main.js';
import { verifyRevocation } from '../../shared/crypto/keys.js';
import { makeDeployment, type TestDeployment } from '../helpers/fixtures.js';
import { loginSignature } from '../helpers/ws-client.js';

let dir: string;
let d: TestDeployment;
let server: RunningServer;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hotline-revoke-'));
  d = await makeDeployment(Date.now() - 60_000);
  server = await startServer({ agreement: d.agreement, dataDir: join(dir, 'server'), host: '127.0.0.1', port: 0, logLevel: 'silent' });
});
afterEach(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});


async function login(device: TestDeployment['devices']['cnOp']): Promise<{ status: number; code?: string }> {
  const { party, device: id } = device.certificate.cert;
  const post = (path: string, body: unknown) =>
    fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const ch = (await (await post('/v1/auth/challenge', { party, device: id })).json()) as { challenge: string };
  const res = await post('/v1/auth/login', { party, device: id, challenge: ch.challenge, signature: await loginSignature(device, ch.challenge, d.agreement), certificate: device.certificate });
  const body = (await res.json()) as { error?: { code: string } };
  return { status: res.status, ...(body.error ? { code: body.error.code } : {}) };
}

describe('hotline device revoke', () => {
  it('signs a revocation with the party root, hands it to the relay, and the device can no longer log in', async () => {
    const rootFile = join(dir, 'cn-mnd.secret.json');
    const deviceFile = join(dir, 'cn-op-1.secret.json');
    writeFileSync(rootFile, JSON.stringify(d.cn));
    writeFileSync(deviceFile, JSON.stringify(d.devices.cnOp));
    expect((await login(d.devices.cnOp)).status).toBe(200);

    const out = join(dir, 'cn-op-1.revocation.json');
    const r = await cli(['device', 'revoke', '--root', rootFile, '--device', deviceFile, '--reason', 'console lost', '--server', server.url, '--out', out]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain('cn-mnd/cn-op-1 revoked at');
    const rev = await verifyRevocation(d.agreement, JSON.parse(readFileSync(out, 'utf8')));
    expect(rev.revocation).toMatchObject({ party: 'cn-mnd', device: 'cn-op-1', reason: 'console lost' });

    expect(await login(d.devices.cnOp)).toMatchObject({ status: 403, code: 'HL_ERR_CERT_REVOKED' });
    expect((await login(d.devices.jpOp)).status).toBe(200);
  });

  it('refuses another party’s root with a usage error and says what to give', async () => {
    const rootFile = join(dir, 'jp-mod.secret.json');
    const deviceFile = join(dir, 'cn-op-1.secret.json');
    writeFileSync(rootFile, JSON.stringify(d.jp));
    writeFileSync(deviceFile, JSON.stringify(d.devices.cnOp));
    const wrong = await cli(['device', 'revoke', '--root', rootFile, '--device', deviceFile, '--server', server.url]);
    expect(wrong.code).toBe(2);
    expect(wrong.err).toMatch(/another party/);
    const missing = await cli(['device', 'revoke', '--root', rootFile, '--device', deviceFile]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/--server URL/);
  });
});
