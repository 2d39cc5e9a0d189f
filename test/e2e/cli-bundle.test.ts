import { spawn } from 'node:child_process';
import { readFileSync, statSync, utimesSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

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
