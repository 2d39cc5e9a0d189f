import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { signReceipt } from '../../shared/crypto/receipt.js';
import { cli, cliRun, closedUrl } from '../helpers/cli.js';
import { CN, JP, tempDir, writeAgreement } from '../helpers/deployment.js';
import { slowDisk } from '../helpers/slow-disk.js';
import { onCleanup, startTestServer, type TestServer } from '../helpers/test-server.js';

afterEach(() => {
  vi.restoreAllMocks();
});

function files(s: TestServer): { dir: string; agreement: string; device: (key: string) => string; root: (party: string) => string } {
  const dir = tempDir();
  onCleanup(() => dir.remove());
  const agreement = writeAgreement(dir.path, s.dep.agreement);
  const write = (name: string, value: unknown) => {
    const path = join(dir.path, name);
    writeFileSync(path, JSON.stringify(value), { mode: 0o600 });
    return path;
  };
  return {
    dir: dir.path,
    agreement,
    device: (key) => write(`${key.replace('/', '-')}.secret.json`, s.dep.devices[key]),
    root: (party) => write(`${party}.root.secret.json`, s.dep.parties[party]),
  };
}


describe('hotline outbox, and what a send flushes', () => {
  it('lists what a failed send left, drops an item, and the next send says what else it sent', { timeout: 120_000 }, async () => {
    const s = await startTestServer();
    const f = files(s);
    const jp = f.device(`${JP}/op1`);
    const base = ['--device', jp, '--agreement', f.agreement];
    expect((await cli(['peers', 'confirm', ...base, '--server', s.url])).code).toBe(0);
    const ok = await cli(['send', ...base, '--server', s.url, '--to', CN, '--precedence', 'routine', '--timeout', '60', 'first, to fetch the directory']);
    expect(ok.code, ok.err).toBe(0);
    expect((await cli(['outbox', '--device', jp])).out).toContain(`the outbox of ${JP}/op1 is empty`);

    // The relay unreachable: said at once, retried until the timeout, and the reason given at the end.
    const down = await closedUrl();
    const failed = cliRun(['send', ...base, '--server', down, '--to', CN, '--precedence', 'flash', '--timeout', '8', 'the FLASH that failed']);
    await failed.line(new RegExp(`^cannot reach ${down} \\(retrying\\)$`));
    expect(await failed.exited).toBe(1);
    const flashId = failed.lines.find((l) => /^[0-9a-f]{32}$/.test(l))!;
    expect(flashId).toBeDefined();
    expect(failed.text()).toMatch(new RegExp(`message ${flashId}: it was not accepted by the relay within 8 s \\(cannot reach ${down}: the connection was refused.*\\); it stays in the outbox`));
    const second = await cli(['send', ...base, '--server', down, '--to', CN, '--precedence', 'priority', '--timeout', '2', 'a PRIORITY to drop']);
    expect(second.code).toBe(1);
    const dropId = second.out.trim();

    const listed = await cli(['outbox', '--device', jp]);
    expect(listed.code).toBe(0);
    expect(listed.out).toContain(`the outbox of ${JP}/op1 (2)`);
    expect(listed.out).toMatch(new RegExp(`FLASH +${flashId} to ${CN}  waiting for the relay \\(sealed, seq \\d+\\) since `));
    expect(listed.out).toMatch(new RegExp(`PRIORITY +${dropId} to ${CN}  waiting for the relay`));
    const json = (await cli(['outbox', '--device', jp, '--json'])).out.trim().split('\n').map((l) => JSON.parse(l) as { id: string; precedence: string });
    expect(json.map((r) => [r.id, r.precedence]).sort()).toEqual([[dropId, 'PRIORITY'], [flashId, 'FLASH']].sort());

    // Drop by the start of its id: asks nothing, says what it dropped.
    const dropped = await cli(['outbox', 'drop', dropId.slice(0, 10), '--device', jp]);
    expect(dropped.code, dropped.err).toBe(0);
    expect(dropped.out).toMatch(new RegExp(`^dropped: +PRIORITY +${dropId} to ${CN}`));
    expect(await cli(['outbox', 'drop', dropId, '--device', jp])).toMatchObject({ code: 2, err: expect.stringContaining(`nothing in the outbox of ${JP}/op1 has the id ${dropId}`) });

    // The next send (relay up again) sends the FLASH too, and says so.
    const next = await cli(['send', ...base, '--server', s.url, '--to', CN, '--precedence', 'routine', '--timeout', '60', 'the next one']);
    expect(next.code, next.err).toBe(0);
    expect(next.err).toContain('also sent from the outbox (1, waiting from before):');
    expect(next.err).toMatch(new RegExp(`FLASH +${flashId} to ${CN}`));
    expect(next.err).not.toContain(dropId);
    expect((await cli(['outbox', '--device', jp])).out).toContain('is empty');
  });

  it('every command that connects says what it sent from the outbox: directory, peers, peers confirm', { timeout: 180_000 }, async () => {
    const s = await startTestServer();
    const f = files(s);
    const jp = f.device(`${JP}/op1`);
    const base = ['--device', jp, '--agreement', f.agreement];
    expect((await cli(['peers', 'confirm', ...base, '--server', s.url])).code).toBe(0);
    const down = await closedUrl();
    const left = async (text: string): Promise<string> => {
      const failed = await cli(['send', ...base, '--server', down, '--to', CN, '--precedence', 'flash', '--timeout', '2', text]);
      expect(failed.code).toBe(1);
      return failed.out.trim();
    };
    for (const command of [['directory', '--out', join(f.dir, 'directory.json')], ['peers'], ['peers', 'confirm']]) {
      const id = await left(`left behind before ${command.join(' ')}`);
      const run = await cli([...command, ...base, '--server', s.url]);
      expect(run.err, command.join(' ')).toContain('also sent from the outbox (1, waiting from before):');
      expect(run.err, command.join(' ')).toMatch(new RegExp(`FLASH +${id} to ${CN}`));
      expect((await cli(['outbox', '--device', jp])).out, command.join(' ')).toContain('is empty');
    }
  });

  it('listen exits 1 with a plain sentence when its own device is revoked', { timeout: 90_000 }, async () => {
    const s = await startTestServer();
    const f = files(s);
    const cn = f.device(`${CN}/op1`);
    const listen = cliRun(['listen', '--device', cn, '--agreement', f.agreement, '--server', s.url]);
    onCleanup(async () => {
      listen.stop();
      await listen.exited;
    });
    await listen.line(/^connected as cn-mnd\/op1/);
    const revoked = await cli(['device', 'revoke', '--root', f.root(CN), '--device', cn, '--server', s.url]);
    expect(revoked.code, revoked.err).toBe(0);
    expect(await listen.exited).toBe(1);
    expect(listen.text()).toContain('hotline listen: this device, cn-mnd/op1, has been revoked by its party; the relay refuses it from now on.');

    // Started again, it says the same at once.
    const again = await cli(['listen', '--device', cn, '--agreement', f.agreement, '--server', s.url]);
    expect(again.code).toBe(1);
    expect(again.err).toContain('has been revoked by its party');
  });

  it('send --wait delivered, the receipt before the accepted: says accepted, then delivered, and leaves nothing in the outbox', { timeout: 120_000 }, async () => {
    const s = await startTestServer();
    const f = files(s);
    const jp = f.device(`${JP}/op1`);
    const base = ['--device', jp, '--agreement', f.agreement, '--server', s.url];
    expect((await cli(['peers', 'confirm', ...base])).code).toBe(0);
    const cn = await s.connect(`${CN}/op1`);
    // A colleague of the sender gets each receipt with it: when it has the receipt, so has the CLI (nearly).
    const colleague = await s.connect(`${JP}/op2`);
    const disk = slowDisk();
    const run = cliRun(['send', ...base, '--to', CN, '--precedence', 'flash', '--wait', 'delivered', '--timeout', '60', 'receipt first']);
    const deliver = await cn.waitForType('deliver', (d) => d.envelope.header.precedence === 'FLASH');
    cn.send({ t: 'receipt', receipt: await signReceipt(s.dep.devices[`${CN}/op1`]!, deliver.envelope.header, 'delivered', s.now()) });
    await colleague.waitForType('receipt', (r) => r.receipt.receipt.messageId === deliver.envelope.header.id);
    disk.release();
    expect(await run.exited, run.text()).toBe(0);
    const told = run.lines.filter((l) => /^(accepted by the relay|delivered by)/.test(l)).map((l) => l.split(' ')[0]);
    expect(told).toEqual(['accepted', 'delivered']);
    expect((await cli(['outbox', '--device', jp])).out).toContain(`the outbox of ${JP}/op1 is empty`);
  });
});
