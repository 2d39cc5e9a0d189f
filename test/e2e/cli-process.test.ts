import { spawn } from 'node:child_process';
import { readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { CN, JP, tempDir, writeAgreement } from '../helpers/deployment.js';
import { onCleanup, startTestServer } from '../helpers/test-server.js';

/**
 * bin/hotline.js runs the compiled bundle (dist/cli/, built by the tests' globalSetup as by
 * `npm install`) when it is fresh, and the TypeScript sources when any source of the bundle is newer:
 * a stale bundle never runs.
 */

const ROOT = resolve('.');
const BIN = join(ROOT, 'bin/hotline.js');

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  return new Promise((res) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, HOTLINE_CLI_SOURCE: '', ...env } });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    child.on('exit', (code) => res({ code: code ?? -1, out, err }));
  });
}

describe('bin/hotline.js', () => {
  it('runs the compiled bundle when it is fresh, and the sources when a source is newer', { timeout: 60_000 }, async () => {
    const fresh = await run(['--version']);
    expect(fresh).toMatchObject({ code: 0, err: '' });
    expect(fresh.out).toMatch(/^hotline \d+\.\d+\.\d+ \(compiled bundle\)/);

    const { builtAt, inputs } = JSON.parse(readFileSync(join(ROOT, 'dist/cli/inputs.json'), 'utf8')) as { builtAt: number; inputs: string[] };
    expect(inputs).toContain('client/cli/run.ts');
    expect(inputs).toContain('shared/errors.ts');
    const source = join(ROOT, 'client/cli/status.ts');
    const { atime, mtime } = statSync(source);
    utimesSync(source, atime, new Date(builtAt + 60_000));
    try {
      const stale = await run(['--version']);
      expect(stale.code).toBe(0);
      expect(stale.out).toContain('(TypeScript sources via tsx)');
    } finally {
      utimesSync(source, atime, mtime);
    }
    expect((await run(['--version'])).out).toContain('(compiled bundle)');
    // HOTLINE_CLI_SOURCE=1 forces the sources (to debug with source lines).
    expect((await run(['--version'], { HOTLINE_CLI_SOURCE: '1' })).out).toContain('(TypeScript sources via tsx)');
  });

  it('runs every command group’s help from the bundle', { timeout: 60_000 }, async () => {
    for (const g of ['party', 'agreement', 'device', 'relay', 'audit', 'outbox']) {
      const r = await run([g, '--help']);
      expect(r.code, `${g}: ${r.err}`).toBe(0);
      expect(r.out).toContain(`hotline ${g}`);
    }
  });
});

describe('hotline in a pipeline and on a busy port', () => {
  it('listen --json | head -1: exits 0 quietly when the reader goes away (no EPIPE stack trace)', { timeout: 90_000 }, async () => {
    const s = await startTestServer();
    const dir = tempDir();
    onCleanup(() => dir.remove());
    const agreement = writeAgreement(dir.path, s.dep.agreement);
    const device = join(dir.path, 'cn-op1.secret.json');
    writeFileSync(device, JSON.stringify(s.dep.devices[`${CN}/op1`]), { mode: 0o600 });
    const child = spawn(process.execPath, [BIN, 'listen', '--json', '--device', device, '--agreement', agreement, '--server', s.url], { env: { ...process.env, HOTLINE_CLI_SOURCE: '' } });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (t: string) => (err += t));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    onCleanup(async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    });
    // Read up to the first line, then close the pipe as `head -1` does.
    await new Promise<void>((resolve) => {
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (t: string) => {
        out += t;
        if (out.includes('\n')) resolve();
      });
    });
    child.stdout.destroy();
    // Something more to print: a message from jp-mod.
    const jp = new HotlineClient({ serverUrl: s.url, agreement: s.dep.agreement, device: s.dep.devices[`${JP}/op1`]!, storage: new MemoryStorage(), WebSocket });
    onCleanup(() => jp.stop());
    await jp.start();
    await jp.send({ to: CN, precedence: 'FLASH', body: 'to a closed pipe' });
    expect(await exited).toBe(0);
    expect(err).not.toMatch(/EPIPE|\n\s+at /);
  });

  it('server and demo on a busy port: a sentence naming --port and HOTLINE_PORT, exit 1, no stack trace', { timeout: 60_000 }, async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const { port } = busy.address() as { port: number };
    const dir = tempDir();
    try {
      const demo = await run(['demo', '--dir', join(dir.path, 'demo'), '--port', String(port)]);
      expect(demo.code, demo.err).toBe(1);
      expect(demo.err).toContain(`port ${port} on 127.0.0.1 is already in use`);
      expect(demo.err).toContain('--port N or HOTLINE_PORT');
      expect(demo.err).not.toMatch(/\n\s+at /);
      // The server, on the agreement the demo made before it failed to listen.
      const r = await run(['server', '--agreement', join(dir.path, 'demo', 'agreement.json'), '--data', join(dir.path, 'server'), '--port', String(port), '--log-level', 'error']);
      expect(r.code, r.err).toBe(1);
      expect(r.err).toContain(`port ${port} on 127.0.0.1 is already in use`);
      expect(r.err).not.toMatch(/\n\s+at /);
    } finally {
      await new Promise<void>((r) => busy.close(() => r()));
      dir.remove();
    }
  });
});
