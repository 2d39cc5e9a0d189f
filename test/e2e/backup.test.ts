import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { HotlineClient } from '../../client/hotline-client.js';
import type { RunningServer } from '../../server/main.js';
import { makeDeployment } from '../helpers/fixtures.js';
import { cli, logSecretFile, makeClient, sendAndAck, signNow, startAuditServer } from '../helpers/audit.js';

let dir: string;
let server: RunningServer | undefined;
const clients: HotlineClient[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hotline-backup-'));
});
afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  await server?.close();
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

async function entryTypes(s: RunningServer): Promise<string[]> {
  return (await s.store.auditEntries(0, await s.store.auditSize())).map((e) => (JSON.parse(e.entry) as { type: string }).type);
}

/** A server with one message exchanged, a signed checkpoint, and jp's cosignature of it. */
async function exchangeAndCosign(text: string, precedence: 'FLASH' | 'ROUTINE') {
  const d = await makeDeployment(Date.now() - 60_000);
  const data = join(dir, 'server');
  const log = logSecretFile(d.agreement, d.logSecret);
  const s = await startAuditServer(d.agreement, log, data, Object.values(d.devices));
  const jp = makeClient(s.url, d.agreement, d.devices.jpOp);
  const cn = makeClient(s.url, d.agreement, d.devices.cnOp);
  clients.push(jp, cn);
  await Promise.all([jp.start(), cn.start()]);
  await sendAndAck(jp, cn, text, precedence);
  const cp = await signNow(s.url, d.devices.jpAud, d.agreement);
  expect(await jp.cosignLatest()).toMatchObject({ status: 'cosigned', size: cp.size });
  return { d, data, log, jp, cn, cp, s };
}

describe('hotline backup and restore', () => {
  it('backs up under load, restores after a loss, verifies the log against the cosigned checkpoint and names the gap', async () => {
    const { d, data, log, jp, cn, cp, s: running } = await exchangeAndCosign('至急：確認されたい', 'FLASH');
    server = running;

    // The backup runs while entries are being written (bounded: 200 appends).
    const store = server.store;
    const writing = (async () => {
      for (let i = 0; i < 200; i++) await store.appendAudit({ type: 'test.load', at: i });
    })();
    const out = join(dir, 'backup.sqlite');
    const made = await cli(['backup', '--data', data, '--out', out]);
    await writing;
    expect(made.code).toBe(0);
    const backedUp = Number(/(\d+) audit log entries/.exec(made.out)![1]);
    expect(backedUp).toBeGreaterThanOrEqual(cp.size);

    // More traffic after the backup, then a clean stop: the directory records the larger log.
    await sendAndAck(cn, jp, '紧急：请确认', 'IMMEDIATE');
    for (const c of clients.splice(0)) await c.stop();
    const before = await server.store.auditSize();
    await server.close();
    server = undefined;

    // A server must not be running for a restore.
    const restored = await cli(['restore', '--data', data, '--from', out]);
    expect(restored.code).toBe(0);
    expect(restored.out).toContain(`cosigned by`);
    expect(restored.out).toMatch(/GAP: the directory had recorded \d+ entries/);
    expect(restored.out).toContain('the replaced database is kept at');

    server = await startAuditServer(d.agreement, log, data, []);
    const types = await entryTypes(server);
    expect(types.length).toBeLessThan(before + 3);
    expect(types.slice(0, backedUp + 1).at(-1)).toBe('store.restored');
    const entry = JSON.parse((await server.store.auditEntries(backedUp, backedUp + 1))[0]!.entry) as { lost: number; cosignedSize: number };
    expect(entry.cosignedSize).toBe(cp.size);
    expect(entry.lost).toBeGreaterThan(0);
  });

  it('refuses a backup whose log does not match the checkpoint the parties cosigned, and never overwrites a backup', async () => {
    const { d, data, cp, s: running } = await exchangeAndCosign('first', 'ROUTINE');
    server = running;
    const out = join(dir, 'backup.sqlite');
    expect((await cli(['backup', '--data', data, '--out', out])).code).toBe(0);
    expect((await cli(['backup', '--data', data, '--out', out])).code).not.toBe(0);

    // Someone changes an entry the cosigned checkpoint covers, leaf hash included.
    const db = new Database(out);
    db.prepare('UPDATE audit_entries SET leaf_hash = ? WHERE idx = ?').run(Buffer.alloc(32, 7), cp.size - 1);
    db.close();
    for (const c of clients.splice(0)) await c.stop();
    await server.close();
    server = undefined;
    const refused = await cli(['restore', '--data', data, '--from', out]);
    expect(refused.code).not.toBe(0);
    expect(refused.err).toContain('HL_ERR_AUDIT_ROOT_MISMATCH');
    // Nothing was replaced: the server starts on its own data.
    server = await startAuditServer(d.agreement, logSecretFile(d.agreement, d.logSecret), data, []);
    expect(await server.store.auditSize()).toBeGreaterThan(cp.size);
  });
});
