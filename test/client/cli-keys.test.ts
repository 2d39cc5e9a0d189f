import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cli } from '../helpers/cli.js';

let dir: string;
let cwd: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hotline-cli-keys-'));
  cwd = process.cwd();
  process.chdir(dir);
});
afterEach(() => {
  process.chdir(cwd);
  rmSync(dir, { recursive: true, force: true });
});

describe('key files sealed with a passphrase', () => {
  it('party create seals by default, says how to opt out, and every command opens the file only with the passphrase', { timeout: 120_000 }, async () => {
    const unsealed = await cli(['party', 'create', '--id', 'jp-mod', '--name', 'Japan', '--out', 'jp.secret.json']);
    expect(unsealed.code).toBe(2);
    expect(unsealed.err).toContain('--passphrase-file FILE');
    expect(unsealed.err).toContain('--no-passphrase');

    writeFileSync('pass.txt', 'correct horse battery staple\n', { mode: 0o600 });
    writeFileSync('wrong.txt', 'incorrect horse\n', { mode: 0o600 });
    const made = await cli(['party', 'create', '--id', 'jp-mod', '--name', 'Japan', '--out', 'jp.secret.json', '--passphrase-file', 'pass.txt']);
    expect(made.code, made.err).toBe(0);
    expect(made.out).toContain('sealed with the passphrase');
    const text = readFileSync('jp.secret.json', 'utf8');
    const root = JSON.parse(text) as Record<string, unknown>;
    expect(root).toMatchObject({ type: 'hotline-sealed-key', v: 1, contains: 'hotline-party-secret', kdf: { name: 'scrypt' } });
    expect(text).not.toContain('rootSecret');
    expect(statSync('jp.secret.json').mode & 0o777).toBe(0o600);
    expect((await cli(['party', 'create', '--id', 'cn-mnd', '--name', 'China', '--out', 'cn.secret.json'], { HOTLINE_PASSPHRASE: 'another one' })).code).toBe(0);
    expect((await cli(['agreement', 'create', '--party', 'jp.public.json', '--party', 'cn.public.json', '--out', 'agreement.json'])).code).toBe(0);

    const enroll = (...extra: string[]) => cli(['device', 'enroll', '--root', 'jp.secret.json', '--id', 'op-1', '--role', 'operator', '--out', 'op.secret.json', ...extra]);
    const locked = await enroll();
    expect(locked.code).toBe(2);
    expect(locked.err).toContain('jp.secret.json is sealed with a passphrase: give --passphrase-file FILE');
    const wrong = await enroll('--passphrase-file', 'wrong.txt');
    expect(wrong.code).toBe(1);
    expect(wrong.err).toContain('jp.secret.json: wrong passphrase');
    expect(wrong.err).toContain('HL_ERR_KEY_PASSPHRASE');
    // The global option may come anywhere, and as --passphrase-file=FILE.
    const ok = await cli(['--passphrase-file=pass.txt', 'device', 'enroll', '--root', 'jp.secret.json', '--id', 'op-1', '--role', 'operator', '--out', 'op.secret.json', '--device-passphrase-file', 'wrong.txt']);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toContain('sealed with its passphrase');

    // The device file: sealed with its own passphrase; its certificate readable without it.
    const device = JSON.parse(readFileSync('op.secret.json', 'utf8')) as Record<string, unknown>;
    expect(device).toMatchObject({ type: 'hotline-sealed-key', contains: 'hotline-device', certificate: { cert: { party: 'jp-mod', device: 'op-1', role: 'operator' } } });
    expect(readFileSync('op.secret.json', 'utf8')).not.toMatch(/signSecret|boxSecret/);
    expect(await cli(['outbox', '--device', 'op.secret.json'])).toMatchObject({ code: 2, err: expect.stringContaining('op.secret.json is sealed with a passphrase') });
    expect(await cli(['outbox', '--device', 'op.secret.json', '--passphrase-file', 'pass.txt'])).toMatchObject({ code: 1, err: expect.stringContaining('HL_ERR_KEY_PASSPHRASE') });
    expect(await cli(['outbox', '--device', 'op.secret.json'], { HOTLINE_PASSPHRASE_FILE: join(dir, 'wrong.txt') })).toMatchObject({ code: 0, out: expect.stringContaining('is empty') });

    // A sealed file of the wrong kind is named as such, before any passphrase is asked.
    const kind = await cli(['outbox', '--device', 'jp.secret.json']);
    expect(kind.err).toContain('jp.secret.json is a party root file (the secret from hotline party create), not a device key file');

    // Opting out writes the plain file, and says so.
    const plain = await cli(['party', 'create', '--id', 'us-dod', '--name', 'US', '--out', 'us.secret.json', '--no-passphrase']);
    expect(plain.code).toBe(0);
    expect(plain.out).toContain('NOT sealed');
    expect(JSON.parse(readFileSync('us.secret.json', 'utf8'))).toMatchObject({ type: 'hotline-party-secret' });
  });
});
