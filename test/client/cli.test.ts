import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { COMMANDS } from '../../client/cli/run.js';
import { cli } from '../helpers/cli.js';

let dir: string;
let cwd: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hotline-cli-unit-'));
  cwd = process.cwd();
  process.chdir(dir);
});
afterEach(() => {
  process.chdir(cwd);
  rmSync(dir, { recursive: true, force: true });
});


describe('runCli', () => {
  it('has --help on every command', async () => {
    for (const c of COMMANDS) {
      const h = await cli([...c.name.split(' '), '--help']);
      expect(h.code, c.name).toBe(0);
      expect(h.out, c.name).toContain(`Usage: hotline ${c.name}`);
    }
    expect((await cli(['--help'])).out).toContain('party create');
    expect((await cli([])).code).toBe(2);
  });

  it('has --help on every command group, and --version', async () => {
    const groups = [...new Set(COMMANDS.filter((c) => c.name.includes(' ')).map((c) => c.name.split(' ')[0]!))];
    expect(groups).toEqual(expect.arrayContaining(['party', 'agreement', 'device', 'relay', 'audit']));
    for (const g of groups) {
      const h = await cli([g, '--help']);
      expect(h.code, g).toBe(0);
      for (const c of COMMANDS.filter((x) => x.name.startsWith(`${g} `))) expect(h.out, g).toContain(c.name);
    }
    const v = await cli(['--version']);
    expect(v.code).toBe(0);
    expect(v.out).toMatch(/^hotline \d+\.\d+\.\d+/);
  });

  it('suggests the command or flag meant', async () => {
    expect(await cli(['sned'])).toMatchObject({ code: 2, err: expect.stringContaining('did you mean hotline send?') });
    expect(await cli(['lisen', '--device', 'x'])).toMatchObject({ code: 2, err: expect.stringContaining('did you mean hotline listen?') });
    expect(await cli(['device', 'enrol'])).toMatchObject({ code: 2, err: expect.stringContaining('did you mean hotline device enroll?') });
    expect(await cli(['send', '--devce', 'x.json'])).toMatchObject({ code: 2, err: expect.stringContaining('did you mean --device?') });
    expect(await cli(['listen', '--jsno'])).toMatchObject({ code: 2, err: expect.stringContaining('did you mean --json?') });
    const far = await cli(['xyzzy']);
    expect(far.err).not.toContain('did you mean');
  });

  it('says what a wrong file is and what was expected, not schema paths', async () => {
    await cli(['party', 'create', '--no-passphrase', '--id', 'jp-mod', '--name', 'Japan', '--out', 'jp.secret.json']);
    await cli(['party', 'create', '--no-passphrase', '--id', 'cn-mnd', '--name', 'China', '--out', 'cn.secret.json']);
    await cli(['agreement', 'create', '--party', 'jp.public.json', '--party', 'cn.public.json', '--out', 'agreement.json']);
    await cli(['device', 'enroll', '--root', 'jp.secret.json', '--id', 'op-1', '--role', 'operator', '--out', 'op.secret.json']);
    const rootAsDevice = await cli(['listen', '--device', 'jp.secret.json', '--server', 'http://127.0.0.1:1']);
    expect(rootAsDevice.code).toBe(1);
    expect(rootAsDevice.err).toContain('jp.secret.json is a party root file (the secret from hotline party create), not a device key file');
    expect(rootAsDevice.err).not.toMatch(/Expected|\/type/);
    const deviceAsRoot = await cli(['device', 'enroll', '--root', 'op.secret.json', '--id', 'op-2', '--role', 'operator', '--out', 'op2.secret.json']);
    expect(deviceAsRoot.err).toContain('op.secret.json is a device key file (from hotline device enroll), not a party root file');
    const agreementAsDevice = await cli(['send', '--device', 'agreement.json', '--to', 'cn-mnd', '--precedence', 'flash', 'x']);
    expect(agreementAsDevice.err).toContain('agreement.json is an agreement (from hotline agreement create), not a device key file');
    const deviceAsAgreement = await cli(['status', '--device', 'op.secret.json', '--agreement', 'op.secret.json', '--server', 'http://127.0.0.1:1']);
    expect(deviceAsAgreement.err).toContain('op.secret.json is a device key file (from hotline device enroll), not an agreement');
  });

  it('says "an archive" and "an auditor", not "a archive"', async () => {
    await cli(['party', 'create', '--no-passphrase', '--id', 'jp-mod', '--name', 'Japan', '--out', 'jp.secret.json']);
    await cli(['party', 'create', '--no-passphrase', '--id', 'cn-mnd', '--name', 'China', '--out', 'cn.secret.json']);
    await cli(['agreement', 'create', '--party', 'jp.public.json', '--party', 'cn.public.json', '--out', 'agreement.json']);
    await cli(['agreement', 'sign', '--root', 'jp.secret.json', '--root', 'cn.secret.json', '--agreement', 'agreement.json']);
    await cli(['device', 'enroll', '--root', 'jp.secret.json', '--id', 'archive-1', '--role', 'archive', '--out', 'ar.secret.json']);
    const r = await cli(['seal', '--device', 'ar.secret.json', '--to', 'cn-mnd', '--precedence', 'flash', '--out', 'x.sealed.json', 'text']);
    expect(r.code).toBe(1);
    expect(r.err).toContain('jp-mod/archive-1 is an archive device');
  });

  it('answers usage errors with exit 2 and what to do', async () => {
    expect(await cli(['frobnicate'])).toMatchObject({ code: 2, err: expect.stringContaining('hotline --help') });
    expect(await cli(['party'])).toMatchObject({ code: 2, err: expect.stringContaining('hotline party create') });
    expect(await cli(['send', '--device', 'x.json', '--bogus'])).toMatchObject({ code: 2, err: expect.stringContaining("Unknown option '--bogus'") });
    expect(await cli(['party', 'create', '--no-passphrase', '--id', 'Not Valid', '--name', 'x', '--out', 'p.secret.json'])).toMatchObject({ code: 2, err: expect.stringContaining('HL_ERR_KEY_INVALID') });
    expect(await cli(['ack', '--device', 'x.json', 'not-an-id'])).toMatchObject({ code: 2, err: expect.stringContaining('32 hex characters') });
  });

  it('refuses to overwrite a key file, to take a secret file as a public part, and an unknown role', async () => {
    expect((await cli(['party', 'create', '--no-passphrase', '--id', 'jp-mod', '--name', 'Japan', '--languages', 'ja,en', '--out', 'jp.secret.json'])).code).toBe(0);
    expect((await cli(['party', 'create', '--no-passphrase', '--id', 'cn-mnd', '--name', 'China', '--out', 'cn.secret.json'])).code).toBe(0);
    expect(await cli(['party', 'create', '--no-passphrase', '--id', 'jp-mod', '--name', 'again', '--out', 'jp.secret.json'])).toMatchObject({ code: 2, err: expect.stringContaining('refusing to overwrite') });
    expect(await cli(['agreement', 'create', '--party', 'jp.secret.json', '--party', 'cn.public.json', '--out', 'a.json'])).toMatchObject({ code: 2, err: expect.stringContaining('SECRET') });
    expect(await cli(['agreement', 'create', '--party', 'jp.public.json', '--out', 'a.json'])).toMatchObject({ code: 2, err: expect.stringContaining('at least twice') });
    expect(await cli(['device', 'enroll', '--root', 'jp.secret.json', '--id', 'x1', '--role', 'admiral', '--out', 'x.json'])).toMatchObject({ code: 2, err: expect.stringContaining('--role must be') });
    expect(await cli(['device', 'enroll', '--root', 'missing.json', '--id', 'x1', '--role', 'operator', '--out', 'x.json'])).toMatchObject({ code: 1, err: expect.stringContaining('cannot read the party root secret file missing.json') });
  });

  it('asks for a server and an agreement when neither flag nor environment gives one', async () => {
    await cli(['party', 'create', '--no-passphrase', '--id', 'jp-mod', '--name', 'Japan', '--out', 'jp.secret.json']);
    await cli(['device', 'enroll', '--root', 'jp.secret.json', '--id', 'op-1', '--role', 'operator', '--out', 'op.secret.json']);
    expect(await cli(['listen', '--device', 'op.secret.json'])).toMatchObject({ code: 2, err: expect.stringContaining('--agreement') });
    await cli(['party', 'create', '--no-passphrase', '--id', 'cn-mnd', '--name', 'China', '--out', 'cn.secret.json']);
    await cli(['agreement', 'create', '--party', 'jp.public.json', '--party', 'cn.public.json', '--out', 'agreement.json']);
    await cli(['agreement', 'sign', '--root', 'jp.secret.json', '--root', 'cn.secret.json', '--agreement', 'agreement.json']);
    expect(await cli(['listen', '--device', 'op.secret.json'])).toMatchObject({ code: 2, err: expect.stringContaining('--server') });
    expect(await cli(['listen', '--device', 'op.secret.json', '--server', 'ftp://x'])).toMatchObject({ code: 2, err: expect.stringContaining('http://') });
  });
});
