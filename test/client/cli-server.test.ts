import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Io } from '../../client/cli/common.js';
import { runCli } from '../../client/cli/run.js';
import { makeDeployment, type TestDeployment } from '../helpers/fixtures.js';

/**
 * `hotline server` is the path the Dockerfile and compose run: it must honour every setting the
 * server's own entry does. Each case starts it in-process with one rate limit set (by flag or by
 * environment variable) and shows the limit biting at exactly that count.
 */
let dep: TestDeployment;
let dir: string;
let agreementPath: string;

beforeAll(async () => {
  dep = await makeDeployment();
  dir = mkdtempSync(join(tmpdir(), 'hotline-cli-server-'));
  agreementPath = join(dir, 'agreement.json');
  writeFileSync(agreementPath, JSON.stringify(dep.agreement));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Start `hotline server` in-process; resolves with its URL and a stop function once it listens. */
async function startCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ url: string; stop: () => Promise<number> }> {
  let stop!: () => void;
  let listening!: (url: string) => void;
  const url = new Promise<string>((resolve) => (listening = resolve));
  const io: Io = {
    out: (line) => {
      const m = /^listening on (\S+)$/.exec(line);
      if (m) listening(m[1]!);
    },
    err: () => {},
    env,
    interrupted: new Promise<void>((resolve) => (stop = resolve)),
    readStdin: async () => '',
  };
  const data = mkdtempSync(join(dir, 'data-'));
  const exited = runCli(['server', '--agreement', agreementPath, '--data', data, '--port', '0', '--log-level', 'silent', ...args], io);
  const first = await Promise.race([url, exited.then((code) => Promise.reject(new Error(`hotline server exited with ${code}`)))]);
  return {
    url: first,
    stop: () => {
      stop();
      return exited;
    },
  };
}

async function post(url: string, path: string, body: unknown): Promise<{ status: number; code: string | undefined }> {
  const res = await fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = (await res.json()) as { error?: { code: string } };
  return { status: res.status, code: json.error?.code };
}

/** Statuses of `count` calls made one after another. */
async function statuses(count: number, call: () => Promise<{ status: number }>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push((await call()).status);
  return out;
}

describe('hotline server honours every rate limit setting', () => {
  it('--rate-login-per-minute', async () => {
    const s = await startCli(['--rate-login-per-minute', '2']);
    const challenge = () => post(s.url, '/v1/auth/challenge', { party: 'jp-mod', device: 'jp-op-1' });
    expect(await statuses(4, challenge)).toEqual([200, 200, 429, 429]);
    expect(await s.stop()).toBe(0);
  });

  it('HOTLINE_RATE_LOGIN_PER_MINUTE, and a flag wins over its variable', async () => {
    const byEnv = await startCli([], { HOTLINE_RATE_LOGIN_PER_MINUTE: '1' });
    const challenge = (url: string) => () => post(url, '/v1/auth/challenge', { party: 'jp-mod', device: 'jp-op-1' });
    expect(await statuses(2, challenge(byEnv.url))).toEqual([200, 429]);
    await byEnv.stop();
    const both = await startCli(['--rate-login-per-minute', '3'], { HOTLINE_RATE_LOGIN_PER_MINUTE: '1' });
    expect(await statuses(4, challenge(both.url))).toEqual([200, 200, 200, 429]);
    await both.stop();
  });

  it('--rate-device-failures-per-minute and HOTLINE_RATE_DEVICE_FAILURES_PER_MINUTE', async () => {
    const badLogin = (url: string) => () => post(url, '/v1/auth/login', { party: 'jp-mod', device: 'jp-op-1', challenge: 'A'.repeat(43) + '=', signature: 'A'.repeat(86) + '==' });
    const byFlag = await startCli(['--rate-login-per-minute', '1000', '--rate-device-failures-per-minute', '2']);
    expect(await statuses(3, badLogin(byFlag.url))).toEqual([401, 401, 429]);
    await byFlag.stop();
    const byEnv = await startCli(['--rate-login-per-minute', '1000'], { HOTLINE_RATE_DEVICE_FAILURES_PER_MINUTE: '1' });
    expect(await statuses(2, badLogin(byEnv.url))).toEqual([401, 429]);
    await byEnv.stop();
  });

  it('--rate-directory-per-minute and HOTLINE_RATE_DIRECTORY_PER_MINUTE', async () => {
    const enrol = (url: string) => () => post(url, '/v1/directory/devices', dep.devices.jpOp.certificate);
    const byFlag = await startCli(['--rate-directory-per-minute', '2']);
    expect(await statuses(3, enrol(byFlag.url))).toEqual([201, 201, 429]);
    await byFlag.stop();
    const byEnv = await startCli([], { HOTLINE_RATE_DIRECTORY_PER_MINUTE: '1' });
    expect(await statuses(2, enrol(byEnv.url))).toEqual([201, 429]);
    await byEnv.stop();
  });

  it('refuses a bad value with a usage error that names the flag', async () => {
    let err = '';
    const io: Io = { out: () => {}, err: (line) => (err += line + '\n'), env: {}, interrupted: new Promise(() => {}), readStdin: async () => '' };
    expect(await runCli(['server', '--agreement', agreementPath, '--data', join(dir, 'x'), '--rate-login-per-minute', 'lots'], io)).toBe(2);
    expect(err).toContain('--rate-login-per-minute');
  });
});
