import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { generate } from 'selfsigned';
import { startServer, type RunningServer } from '../../server/main.js';
import { makeDeployment, type TestDeployment } from '../helpers/fixtures.js';
import { loginSignature } from '../helpers/ws-client.js';

// HOTLINE_TLS_CERT / HOTLINE_TLS_KEY: the same API and link over HTTPS and WSS, with a throwaway
// certificate for 127.0.0.1 made in the test (selfsigned, pure JS: no openssl needed).
let dir: string;
let ca: Buffer;
let server: RunningServer;
let d: TestDeployment;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hotline-tls-'));
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  const pems = await generate([{ name: 'commonName', value: '127.0.0.1' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + 86_400_000),
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
  });
  writeFileSync(certPath, pems.cert);
  writeFileSync(keyPath, pems.private, { mode: 0o600 });
  ca = readFileSync(certPath);
  d = await makeDeployment(Date.now() - 60_000);
  server = await startServer({ agreement: d.agreement, dataDir: join(dir, 'data'), host: '127.0.0.1', port: 0, logLevel: 'silent', tls: { certPath, keyPath } });
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

function https(method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}${path}`, { method, ca, headers: body === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

describe('TLS', () => {
  it('serves the API over HTTPS and the link over WSS', async () => {
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(await https('GET', '/healthz')).toEqual({ status: 200, body: { ok: true } });

    const dev = d.devices.jpOp;
    const { party, device } = dev.certificate.cert;
    const ch = await https('POST', '/v1/auth/challenge', { party, device });
    const login = await https('POST', '/v1/auth/login', {
      party,
      device,
      challenge: ch.body['challenge'],
      signature: await loginSignature(dev, ch.body['challenge'] as string, d.agreement),
      certificate: dev.certificate,
    });
    expect(login.status).toBe(200);

    const ws = new WebSocket(server.url.replace(/^https/, 'wss') + '/v1/link', ['hotline.v1', `bearer.${login.body['token'] as string}`], { ca });
    const hello = await new Promise<{ t: string }>((resolve, reject) => {
      ws.once('message', (data) => resolve(JSON.parse(data.toString()) as { t: string }));
      ws.once('error', reject);
    });
    expect(hello.t).toBe('hello');
    ws.close();
  });

  it('refuses a client that does not trust the certificate', async () => {
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
  });
});
