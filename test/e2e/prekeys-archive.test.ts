import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { RunningServer } from '../../server/main.js';
import type { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { DEFAULT_PREKEY_ROTATION_MS, type HeldPrekey } from '../../shared/crypto/prekey.js';
import type { EnvelopeHeader } from '../../shared/protocol/schemas.js';
import { makeDeployment, type TestDeployment } from '../helpers/fixtures.js';
import { cli, fetchExport, logSecretFile, makeClient, sendAndAck, startAuditServer } from '../helpers/audit.js';

/**
 * An archive's prekeys through the CLI (PROTOCOL.md "Archives"): `hotline prekeys --keep-days N`
 * rotates them on the agreement's schedule and deletes a secret only N days after its prekey went
 * out of date; `hotline audit decrypt` opens what was wrapped to the prekeys it still holds and
 * names the others. The CLI has no injected clock: `Date` alone is faked (in-process, for the
 * relay, the clients and the CLI alike), timers and sockets are real.
 */

const R = DEFAULT_PREKEY_ROTATION_MS;
const DAY = 24 * 3_600_000;
const MIN = 60_000;
const KEEP_DAYS = 10;

let dir: string;
let d: TestDeployment;
let t0: number;
let server: RunningServer | undefined;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hotline-prekeys-archive-'));
  t0 = Date.now();
  d = await makeDeployment(t0 - MIN);
  vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true, now: t0 });
});

afterEach(async () => {
  await server?.close();
  server = undefined;
  vi.useRealTimers();
  rmSync(dir, { recursive: true, force: true });
});

interface PrekeysJson {
  rotated?: string;
  deleted: string[];
  keepMs: number;
  held: { keyId: string; notBefore: number; notAfter: number; deleteAfter: number }[];
}

describe('hotline prekeys --keep-days and audit decrypt (an archive rotating its keys)', () => {
  it('rotates on schedule, keeps each secret for the retention after its prekey went out of date, then deletes it; decrypt opens what the kept secrets open and names the rest', { timeout: 120_000 }, async () => {
    server = await startAuditServer(d.agreement, logSecretFile(d.agreement, d.logSecret), join(dir, 'server'), Object.values(d.devices));
    const url = server.url;
    const agreementPath = join(dir, 'agreement.json');
    writeFileSync(agreementPath, JSON.stringify(d.agreement));
    const archiveKey = join(dir, 'jp-archive.secret.json');
    writeFileSync(archiveKey, JSON.stringify(d.devices.jpArc), { mode: 0o600 });
    const prekeyFile = join(dir, 'jp-archive.state.json.prekeys');
    const link = ['--server', url, '--agreement', agreementPath];

    const rotate = async (): Promise<PrekeysJson> => {
      const r = await cli(['prekeys', '--device', archiveKey, '--keep-days', String(KEEP_DAYS), ...link, '--json']);
      expect(r.code, r.err).toBe(0);
      return JSON.parse(r.out) as PrekeysJson;
    };
    // The operators keep their client state across the phases (sequence numbers), not their connections.
    const storage = { jp: new MemoryStorage(), cn: new MemoryStorage() };
    const exchange = async (body: string): Promise<string> => {
      const clients: HotlineClient[] = [makeClient(url, d.agreement, d.devices.jpOp, storage.jp), makeClient(url, d.agreement, d.devices.cnOp, storage.cn)];
      try {
        await Promise.all(clients.map((c) => c.start()));
        return await sendAndAck(clients[0]!, clients[1]!, body);
      } finally {
        for (const c of clients) await c.stop();
      }
    };
    const archiveKeyIdOf = async (id: string): Promise<string> => {
      const exp = await fetchExport(url, d.devices.jpAud, d.agreement);
      for (const text of exp.entries) {
        const e = JSON.parse(text) as { type: string; header?: EnvelopeHeader };
        if (e.type === 'envelope.accepted' && e.header?.id === id) return e.header.recipients.find((x) => x.device === 'jp-archive')!.keyId;
      }
      throw new Error(`no envelope ${id} in the export`);
    };

    // An archive must say how long it keeps its secrets.
    const noRetention = await cli(['prekeys', '--device', archiveKey, ...link]);
    expect(noRetention.code).toBe(2);
    expect(noRetention.err).toContain('--keep-days');

    // t0: the first prekey, published; the archive copy of a message is wrapped to it.
    const first = await rotate();
    const k1 = first.rotated!;
    expect(first).toMatchObject({ deleted: [], keepMs: KEEP_DAYS * DAY });
    expect(first.held).toEqual([expect.objectContaining({ keyId: k1, notAfter: first.held[0]!.notBefore + 2 * R, deleteAfter: first.held[0]!.notBefore + 2 * R + KEEP_DAYS * DAY })]);
    const m1 = await exchange('m1: wrapped to the first archive prekey');
    expect(await archiveKeyIdOf(m1)).toBe(k1);

    // One rotation period after k1 was made (each step from the previous prekey's own notBefore:
    // Date runs on in real time between the steps): a second prekey; k1 is still in date and kept.
    const notBefore = (r: PrekeysJson, keyId: string) => r.held.find((h) => h.keyId === keyId)!.notBefore;
    vi.setSystemTime(notBefore(first, k1) + R + MIN);
    const second = await rotate();
    const k2 = second.rotated!;
    expect(second.deleted).toEqual([]);
    expect(second.held.map((h) => h.keyId)).toEqual([k1, k2]);
    const m2 = await exchange('m2: wrapped to the second');
    expect(await archiveKeyIdOf(m2)).toBe(k2);

    // Two periods: k1 is out of date, but its secret is kept for the retention; the text says so.
    vi.setSystemTime(notBefore(second, k2) + R + MIN);
    const third = await rotate();
    const k3 = third.rotated!;
    expect(third.deleted).toEqual([]);
    expect(third.held.map((h) => h.keyId)).toEqual([k1, k2, k3]);
    const m3 = await exchange('m3: wrapped to the third');
    expect(await archiveKeyIdOf(m3)).toBe(k3);
    const text = await cli(['prekeys', '--device', archiveKey, '--keep-days', String(KEEP_DAYS), ...link]);
    expect(text.out).toContain(`holds ${k1}: in date`);
    expect(text.out).toContain(`Retention: keeps each prekey secret ${KEEP_DAYS} days after it went out of date`);

    const auditorKey = join(dir, 'jp-auditor.secret.json');
    writeFileSync(auditorKey, JSON.stringify(d.devices.jpAud), { mode: 0o600 });
    const exportFile = join(dir, 'export.json');
    expect((await cli(['audit', 'export', '--device', auditorKey, '--out', exportFile, ...link])).code).toBe(0);
    const all = await cli(['audit', 'decrypt', '--device', archiveKey, '--agreement', agreementPath, exportFile]);
    expect(all.code, all.err).toBe(0);
    for (const m of ['m1', 'm2', 'm3']) expect(all.out).toContain(`${m}: wrapped to`);
    expect(all.err).toContain('opened 3 of 3 messages');
    const heldAtThree = join(dir, 'copy-of-the-prekey-file');
    copyFileSync(prekeyFile, heldAtThree);

    // Past k1's retention (notAfter + 10 days): its secret leaves the file; k2 and k3 stay.
    vi.setSystemTime(notBefore(third, k1) + 2 * R + KEEP_DAYS * DAY + MIN);
    const fourth = await rotate();
    expect(fourth.deleted).toEqual([k1]);
    expect(fourth.held.map((h) => h.keyId)).toEqual(expect.arrayContaining([k2, k3]));
    expect(fourth.held.map((h) => h.keyId)).not.toContain(k1);
    const k1Secret = (JSON.parse(readFileSync(heldAtThree, 'utf8')) as { held: HeldPrekey[] }).held.find((h) => h.keyId === k1)!.boxSecret;
    expect(readFileSync(prekeyFile, 'utf8')).not.toContain(k1Secret);

    // The same export: m1 no longer opens with the archive's keys (named, with its code), m2 and m3 do.
    const after = await cli(['audit', 'decrypt', '--device', archiveKey, '--agreement', agreementPath, exportFile]);
    expect(after.code).toBe(1);
    expect(after.out).not.toContain('m1: wrapped to');
    expect(after.out).toContain('m2: wrapped to');
    expect(after.out).toContain('m3: wrapped to');
    expect(after.err).toContain(`cannot open ${m1}`);
    expect(after.err).toContain('HL_ERR_PREKEY_SECRET_GONE');
    expect(after.err).toContain('opened 2 of 3 messages');
    // A copy of the file made while k1 was kept (what a backup holds) still opens it: --prekeys.
    const fromCopy = await cli(['audit', 'decrypt', '--device', archiveKey, '--agreement', agreementPath, '--prekeys', heldAtThree, exportFile]);
    expect(fromCopy.code, fromCopy.err).toBe(0);
    expect(fromCopy.out).toContain('m1: wrapped to');
  });
});
