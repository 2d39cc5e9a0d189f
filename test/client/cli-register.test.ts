import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, closedUrl } from '../helpers/cli.js';
import { CN, JP, tempDir, writeAgreement } from '../helpers/deployment.js';
import { onCleanup, startTestServer, type TestServer } from '../helpers/test-server.js';


/** A temporary folder with the agreement written in it, and a writer of key files (mode 0600) beside it. */
function keyFiles(s: TestServer) {
  const dir = tempDir();
  onCleanup(() => dir.remove());
  const agreement = writeAgreement(dir.path, s.dep.agreement);
  const file = (name: string, value: unknown) => {
    const path = join(dir.path, name);
    writeFileSync(path, JSON.stringify(value), { mode: 0o600 });
    return path;
  };
  return { dir, agreement, file };
}

describe('hotline device register, and send/seal to a party without registered devices', () => {
  it('registers a device enrolled before the relay ran; send refuses a party without an operator and warns of a missing archive', { timeout: 120_000 }, async () => {
    const s = await startTestServer({ enrolAll: false });
    const { dir, agreement, file } = keyFiles(s);
    const cnRoot = file('cn-mnd.secret.json', s.dep.parties[CN]);
    const jpOp = file('jp-op1.secret.json', s.dep.devices[`${JP}/op1`]);
    const cnOp = file('cn-op1.secret.json', s.dep.devices[`${CN}/op1`]);
    const jpArchive = file('jp-archive1.secret.json', s.dep.devices[`${JP}/archive1`]);

    // Enrolled with --server before the server runs: the key file is kept, and the error says how to register it later.
    const down = await closedUrl();
    const cnArchive = join(dir.path, 'cn-archive-2.secret.json');
    const early = await cli(['device', 'enroll', '--root', cnRoot, '--id', 'archive-2', '--role', 'archive', '--out', cnArchive, '--server', down]);
    expect(early.code).toBe(1);
    expect(existsSync(cnArchive)).toBe(true);
    expect(early.err).toContain(`hotline device register --device ${cnArchive} --server ${down}`);

    const send = (text: string) => cli(['send', '--device', jpOp, '--agreement', agreement, '--server', s.url, '--to', CN, '--precedence', 'immediate', '--timeout', '60', text]);
    // cn-mnd has no registered device at all: refused, with a code, before anything is sealed.
    const refused = await send('nobody could read this');
    expect(refused.code).toBe(1);
    expect(refused.err).toContain(`${CN} has no registered operator device`);
    expect(refused.err).toContain('HL_ERR_ENVELOPE_RECIPIENTS');
    expect(refused.out).toBe('');
    expect((await cli(['outbox', '--device', jpOp])).out).toContain('is empty');

    const reg = await cli(['device', 'register', '--device', cnOp, '--server', s.url]);
    expect(reg.code, reg.err).toBe(0);
    expect(reg.out).toContain(`registered ${CN}/op1 (operator) with ${s.url}`);
    const confirm = () => cli(['peers', 'confirm', '--device', jpOp, '--agreement', agreement, '--server', s.url]);
    expect((await confirm()).code).toBe(0);
    const warned = await send('the archives miss this one');
    expect(warned.code, warned.err).toBe(0);
    expect(warned.err).toContain(`warning: ${CN} has no registered archive device`);
    expect(warned.err).toContain(`warning: ${JP} has no registered archive device`);

    expect((await cli(['device', 'register', '--device', cnArchive], { HOTLINE_SERVER: s.url })).code).toBe(0);
    expect((await cli(['device', 'register', '--device', jpArchive, '--server', s.url])).code).toBe(0);
    // Registering again is harmless.
    expect((await cli(['device', 'register', '--device', jpArchive, '--server', s.url])).code).toBe(0);
    // A new device of cn-mnd blocks sending to it until its keys are confirmed (jp-mod's own archive does not).
    const blocked = await send('not before the new archive is confirmed');
    expect(blocked.code).toBe(1);
    expect(blocked.err).toContain(`${CN}/archive-2`);
    expect(blocked.err).toContain('HL_ERR_PEER_KEY_UNCONFIRMED');
    expect(blocked.err).not.toContain(`${JP}/archive1 `);
    expect((await confirm()).out).toContain(`${CN}/archive-2`);
    const quiet = await send('every archive gets this one');
    expect(quiet.code, quiet.err).toBe(0);
    expect(quiet.err).not.toContain('warning');

    // seal checks the same, against a directory file.
    const directory = join(dir.path, 'directory.json');
    expect((await cli(['directory', '--device', jpOp, '--agreement', agreement, '--server', s.url, '--out', directory])).code).toBe(0);
    const sealed = await cli(['seal', '--device', jpOp, '--agreement', agreement, '--to', CN, '--precedence', 'routine', '--directory', directory, '--out', join(dir.path, 'm.sealed.json'), 'offline']);
    expect(sealed.code, sealed.err).toBe(0);
    expect(sealed.err).toContain(`sealed for ${CN}/archive-2, ${CN}/op1, ${JP}/archive1`);

    // The wrong file says what it is.
    const wrong = await cli(['device', 'register', '--device', cnRoot, '--server', s.url]);
    expect(wrong.code).toBe(1);
    expect(wrong.err).toContain('is a party root file (the secret from hotline party create), not a device key file');
  });

  it('seal refuses a party whose only operator was revoked', { timeout: 60_000 }, async () => {
    const s = await startTestServer();
    const { dir, agreement, file } = keyFiles(s);
    const jpOp = file('jp-op1.secret.json', s.dep.devices[`${JP}/op1`]);
    const cnOp = file('cn-op1.secret.json', s.dep.devices[`${CN}/op1`]);
    expect((await cli(['device', 'revoke', '--root', file('cn.secret.json', s.dep.parties[CN]), '--device', cnOp, '--server', s.url])).code).toBe(0);
    const directory = join(dir.path, 'directory.json');
    expect((await cli(['directory', '--device', jpOp, '--agreement', agreement, '--server', s.url, '--out', directory])).code).toBe(0);
    const sealed = await cli(['seal', '--device', jpOp, '--agreement', agreement, '--to', CN, '--precedence', 'routine', '--directory', directory, '--out', join(dir.path, 'm.sealed.json'), 'x']);
    expect(sealed.code).toBe(1);
    expect(sealed.err).toContain(`${CN} has no registered operator device (never registered, or revoked)`);
  });

  it('peers: a new, then a changed key of a peer blocks send and seal until confirmed, showing fingerprints', { timeout: 120_000 }, async () => {
    const s = await startTestServer();
    const { dir, agreement, file } = keyFiles(s);
    const jpOp = file('jp-op1.secret.json', s.dep.devices[`${JP}/op1`]);
    const link = ['--device', jpOp, '--agreement', agreement, '--server', s.url];
    const send = () => cli(['send', ...link, '--to', CN, '--precedence', 'routine', '--timeout', '60', 'text']);

    const first = await send();
    expect(first.code).toBe(1);
    expect(first.out).toBe('');
    expect(first.err).toContain(`not sent: keys of ${CN} are new or changed and not confirmed`);
    expect(first.err).toMatch(new RegExp(`${CN}/op1 +operator +NEW +sign [0-9a-f]{64}`));
    expect(first.err).toContain(`hotline peers confirm --device ${jpOp} --party ${CN}`);
    const listed = await cli(['peers', ...link]);
    expect(listed.out).toMatch(new RegExp(`${CN}/archive1 +archive +NEW`));
    expect(listed.out).toContain('2 not confirmed');

    const confirmed = await cli(['peers', 'confirm', ...link, '--party', CN]);
    expect(confirmed.code, confirmed.err).toBe(0);
    expect(confirmed.out).toMatch(new RegExp(`${CN}/op1 +operator +new +sign [0-9a-f]{64}`));
    expect((await cli(['peers', ...link])).out).toMatch(new RegExp(`${CN}/op1 +operator +confirmed`));
    expect((await send()).code).toBe(0);

    // cn-mnd/op1 re-enrolled with new keys (same id): CHANGED, blocked again.
    const cnRoot = file('cn.secret.json', s.dep.parties[CN]);
    const cnNew = join(dir.path, 'cn-op1-new.secret.json');
    expect((await cli(['device', 'enroll', '--root', cnRoot, '--id', 'op1', '--role', 'operator', '--out', cnNew, '--server', s.url])).code).toBe(0);
    const changed = await send();
    expect(changed.code).toBe(1);
    expect(changed.err).toMatch(new RegExp(`${CN}/op1 +operator +CHANGED`));
    const directory = join(dir.path, 'directory.json');
    expect((await cli(['directory', ...link, '--out', directory])).code).toBe(0);
    const sealed = await cli(['seal', '--device', jpOp, '--agreement', agreement, '--to', CN, '--precedence', 'routine', '--directory', directory, '--out', join(dir.path, 'm.sealed.json'), 'x']);
    expect(sealed.code).toBe(1);
    expect(sealed.err).toContain('HL_ERR_PEER_KEY_UNCONFIRMED');
    expect((await cli(['peers', 'confirm', ...link])).out).toMatch(new RegExp(`${CN}/op1 +operator +changed`));
    expect((await send()).code).toBe(0);
  });
});
