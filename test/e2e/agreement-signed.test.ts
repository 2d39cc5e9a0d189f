import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, startServer, type RunningServer } from '../../server/main.js';
import { agreementHash } from '../../shared/crypto/keys.js';
import { signAgreement } from '../../shared/crypto/agreement-signatures.js';
import type { Agreement } from '../../shared/protocol/schemas.js';
import { createDeployment, device, tempDir, writeAgreement } from '../helpers/deployment.js';
import { LogSink } from '../helpers/log-sink.js';
import { cli } from '../helpers/cli.js';

/**
 * Issue 15: "an agreement missing a party's signature refused by relay and clients". The relay
 * refuses to start on it, the CLI refuses to use it, and `agreement sign` by each root makes it
 * usable; HOTLINE_ALLOW_UNSIGNED_AGREEMENT (development only) lets it through with a warning.
 */
const dirs: { remove(): void }[] = [];
const servers: RunningServer[] = [];
afterEach(async () => {
  while (servers.length > 0) await servers.pop()!.close();
  while (dirs.length > 0) dirs.pop()!.remove();
});

async function halfSigned(): Promise<{ full: Agreement; half: Agreement; dep: Awaited<ReturnType<typeof createDeployment>> }> {
  const dep = await createDeployment();
  const { signatures: _all, ...bare } = dep.agreement;
  const half = await signAgreement(bare, dep.parties['jp-mod']!);
  return { full: dep.agreement, half, dep };
}

describe('an agreement missing a party signature', () => {
  it('is refused by the relay at start; the development flag starts it with a loud warning', async () => {
    const { half } = await halfSigned();
    const dir = tempDir();
    dirs.push(dir);
    await expect(startServer({ agreement: half, dataDir: join(dir.path, 'a'), host: '127.0.0.1', port: 0, logLevel: 'silent' })).rejects.toThrow(
      expect.objectContaining({ code: 'HL_ERR_AGREEMENT_UNSIGNED', detail: { missing: ['cn-mnd'] } }),
    );
    // From the file, as `hotline server --agreement` reads it.
    const path = writeAgreement(dir.path, half);
    await expect(startServer({ agreementPath: path, dataDir: join(dir.path, 'b'), host: '127.0.0.1', port: 0, logLevel: 'silent' })).rejects.toThrow(
      expect.objectContaining({ code: 'HL_ERR_AGREEMENT_UNSIGNED' }),
    );
    const logs = new LogSink();
    const server = await startServer({ agreementPath: path, dataDir: join(dir.path, 'c'), host: '127.0.0.1', port: 0, logger: createLogger('info', logs), allowUnsignedAgreement: true });
    servers.push(server);
    const warning = logs.records().find((r) => r.level === 40 && String(r.msg).includes('for development only'));
    expect(warning, logs.lines.join('\n')).toBeDefined();
    expect(String(warning!.msg)).toContain('cn-mnd');
  });

  it('is refused by the CLI; each root signing it with `agreement sign` makes it usable, its hash unchanged', async () => {
    const { half, full, dep } = await halfSigned();
    const dir = tempDir();
    dirs.push(dir);
    const logs = new LogSink();
    const server = await startServer({ agreement: full, dataDir: join(dir.path, 'server'), host: '127.0.0.1', port: 0, logger: createLogger('warn', logs) });
    servers.push(server);
    const path = writeAgreement(dir.path, half);
    const op = join(dir.path, 'op.secret.json');
    writeFileSync(op, JSON.stringify(device(dep, 'jp-mod/op1')), { mode: 0o600 });
    const cnRoot = join(dir.path, 'cn.secret.json');
    writeFileSync(cnRoot, JSON.stringify(dep.parties['cn-mnd']), { mode: 0o600 });

    const refused = await cli(['status', '--device', op, '--agreement', path, '--server', server.url]);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('HL_ERR_AGREEMENT_UNSIGNED');
    expect(refused.err).toContain('cn-mnd');
    // Development only: let through with a warning on stderr.
    const dev = await cli(['status', '--device', op, '--agreement', path, '--server', server.url], { HOTLINE_ALLOW_UNSIGNED_AGREEMENT: '1' });
    expect(dev.code, dev.err).toBe(0);
    expect(dev.err).toContain('for development only');

    const signed = await cli(['agreement', 'sign', '--root', cnRoot, '--agreement', path]);
    expect(signed.code, signed.err).toBe(0);
    expect(signed.out).toContain('every party has signed');
    expect(signed.out).toContain(agreementHash(half));
    const after = JSON.parse(readFileSync(path, 'utf8')) as Agreement;
    expect(after.signatures?.map((s) => s.party)).toEqual(['jp-mod', 'cn-mnd']);
    expect(agreementHash(after)).toBe(agreementHash(half));
    const ok = await cli(['status', '--device', op, '--agreement', path, '--server', server.url]);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.err).not.toContain('for development only');

    // A signature that does not verify is refused even with the development flag.
    writeFileSync(path, JSON.stringify({ ...after, reminderIntervalMs: after.reminderIntervalMs + 1 }));
    const forged = await cli(['status', '--device', op, '--agreement', path, '--server', server.url], { HOTLINE_ALLOW_UNSIGNED_AGREEMENT: '1' });
    expect(forged.code).toBe(1);
    expect(forged.err).toContain('HL_ERR_AGREEMENT_BAD_SIGNATURE');
  });
});
