import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseAgreement, relayOf, verifyRelayCertificate, verifyRevocation } from '../../shared/crypto/keys.js';
import { revocationKey } from '../../shared/crypto/directory.js';
import { loadConfig } from '../../server/config.js';
import { startOptionsFromConfig } from '../../server/main.js';
import { cli } from '../helpers/cli.js';

let dir: string;
let cwd: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hotline-cli-relay-'));
  cwd = process.cwd();
  process.chdir(dir);
});
afterEach(() => {
  process.chdir(cwd);
  rmSync(dir, { recursive: true, force: true });
});

async function parties(): Promise<void> {
  expect((await cli(['party', 'create', '--no-passphrase', '--id', 'jp-mod', '--name', 'Japan', '--languages', 'ja,en', '--out', 'jp-mod.secret.json'])).code).toBe(0);
  expect((await cli(['party', 'create', '--no-passphrase', '--id', 'cn-mnd', '--name', 'China', '--languages', 'zh,en', '--out', 'cn-mnd.secret.json'])).code).toBe(0);
}

describe('hotline agreement create --relay, relay enroll, server --relay', () => {
  it('makes a version-2 agreement with a relay and a log key per party, and certifies each relay against it', async () => {
    await parties();
    const made = await cli([
      'agreement', 'create', '--party', 'jp-mod.public.json', '--party', 'cn-mnd.public.json', '--out', 'agreement.json',
      '--relay', 'jp-mod=https://hotline.mod.go.jp', '--relay', 'cn-mnd=https://hotline.mod.gov.cn', '--relay', 'cn-mnd=https://hotline-2.mod.gov.cn',
    ]);
    expect(made.code, made.err).toBe(0);
    expect(made.out).toContain('version 2');
    const agreement = parseAgreement(JSON.parse(readFileSync('agreement.json', 'utf8')));
    expect(relayOf(agreement, 'cn-mnd')?.urls).toEqual(['https://hotline.mod.gov.cn', 'https://hotline-2.mod.gov.cn']);
    const jpLog = JSON.parse(readFileSync('agreement.jp-mod.log.secret.json', 'utf8'));
    expect(statSync('agreement.jp-mod.log.secret.json').mode & 0o777).toBe(0o600);
    expect(relayOf(agreement, 'jp-mod')?.logKey).toBe(jpLog.logKey);
    expect(relayOf(agreement, 'cn-mnd')?.logKey).not.toBe(jpLog.logKey);

    const enrolled = await cli(['relay', 'enroll', '--root', 'jp-mod.secret.json', '--id', 'jp-relay', '--log-key', 'agreement.jp-mod.log.secret.json', '--out', 'jp-relay.secret.json']);
    expect(enrolled.code, enrolled.err).toBe(0);
    const relay = JSON.parse(readFileSync('jp-relay.secret.json', 'utf8'));
    expect(statSync('jp-relay.secret.json').mode & 0o777).toBe(0o600);
    await expect(verifyRelayCertificate(agreement, relay.certificate, { now: Date.now() })).resolves.toMatchObject({ party: 'jp-mod', relay: 'jp-relay' });

    // Retired like a device: the revocation names the relay's id and link key.
    const revoked = await cli(['device', 'revoke', '--root', 'jp-mod.secret.json', '--device', 'jp-relay.secret.json', '--reason', 'host retired', '--out', 'jp-relay.revocation.json']);
    expect(revoked.code, revoked.err).toBe(0);
    const rev = await verifyRevocation(agreement, JSON.parse(readFileSync('jp-relay.revocation.json', 'utf8')));
    expect(rev.revocation).toMatchObject({ party: 'jp-mod', device: 'jp-relay', signKey: relay.certificate.cert.signKey });
    const isRevoked = (c: { party: string; device: string; signKey: string }) => revocationKey(c) === revocationKey(rev.revocation);
    await expect(verifyRelayCertificate(agreement, relay.certificate, { now: Date.now(), isRevoked })).rejects.toMatchObject({ code: 'HL_ERR_CERT_REVOKED' });

    // The server takes it, and where to dial the peer.
    const config = loadConfig({}, ['--agreement', 'agreement.json', '--data-dir', 'data', '--relay', 'jp-relay.secret.json', '--peer-url', 'cn-mnd=http://127.0.0.1:9']);
    const start = startOptionsFromConfig(config);
    expect(start.relay?.identity.certificate.cert.relay).toBe('jp-relay');
    expect(start.relay?.peerUrls).toEqual({ 'cn-mnd': ['http://127.0.0.1:9'] });
  });

  it('without --relay the agreement stays version 1; bad --relay values are usage errors', async () => {
    await parties();
    expect((await cli(['agreement', 'create', '--party', 'jp-mod.public.json', '--party', 'cn-mnd.public.json', '--out', 'v1.json'])).code).toBe(0);
    expect(JSON.parse(readFileSync('v1.json', 'utf8'))).not.toHaveProperty('relays');
    const base = ['agreement', 'create', '--party', 'jp-mod.public.json', '--party', 'cn-mnd.public.json', '--out', 'x.json'];
    expect(await cli([...base, '--relay', 'jp-mod=ftp://x'])).toMatchObject({ code: 2, err: expect.stringContaining('http(s) URL') });
    expect(await cli([...base, '--relay', 'us-dod=https://x'])).toMatchObject({ code: 2, err: expect.stringContaining('no --party file of us-dod') });
    expect(await cli([...base, '--relay-log-key', 'jp-mod=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='])).toMatchObject({ code: 2, err: expect.stringContaining('needs --relay jp-mod=URL') });
    expect(await cli(['relay', 'enroll', '--root', 'jp-mod.secret.json', '--id', 'jp-relay', '--log-key', 'nope', '--out', 'r.json'])).toMatchObject({ code: 1, err: expect.stringContaining('nope') });
    expect(() => loadConfig({}, ['--agreement', 'a.json', '--data-dir', 'd', '--peer-url', 'cn-mnd=http://x'])).toThrow(/needs HOTLINE_RELAY/);
  });
});
