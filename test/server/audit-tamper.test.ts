import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IDENTITY_FILE } from '../../server/data-dir.js';
import { DATABASE_FILE } from '../../server/main.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { parseCheckpoint } from '../../shared/audit/checkpoint.js';
import { verifyAuditExport, type AuditVerification } from '../../shared/audit/log-verify.js';
import { leafHash } from '../../shared/audit/merkle.js';
import { utf8 } from '../../shared/encoding/base64.js';
import type { LogSecretFile } from '../../shared/protocol/schemas.js';
import { makeDeployment, type TestDeployment } from '../helpers/fixtures.js';
import { cli, fetchExport, logSecretFile, makeClient, next, sendAndAck, signNow, startAuditServer } from '../helpers/audit.js';

/**
 * Issue 5: "on a copy of the database, change each kind of stored row by one byte, delete a row,
 * reorder two rows, truncate the log: each is detected and named". The database is changed with
 * better-sqlite3 directly (as someone with the file would), a server is started on the copy, and
 * its export is checked with verifyAuditExport, which knows nothing but the agreement.
 */

let d: TestDeployment;
let logSecret: LogSecretFile;
let root: string;
let original: string;
/** The last good export, and the checkpoint jp-op-1 and cn-op-1 cosigned. */
let good: { entries: string[]; checkpoints: string[] };
let cosignedSize: number;
const jpStorage = new MemoryStorage();

beforeAll(async () => {
  d = await makeDeployment(Date.now() - 60_000);
  logSecret = logSecretFile(d.agreement, d.logSecret);
  root = mkdtempSync(join(tmpdir(), 'hotline-tamper-'));
  original = join(root, 'original');
  const server = await startAuditServer(d.agreement, logSecret, original, Object.values(d.devices));
  const jp = makeClient(server.url, d.agreement, d.devices.jpOp, jpStorage);
  const cn = makeClient(server.url, d.agreement, d.devices.cnOp);
  try {
    await Promise.all([jp.start(), cn.start()]);
    await sendAndAck(jp, cn, '至急：演習の件', 'FLASH');
    await sendAndAck(cn, jp, '紧急：收到', 'IMMEDIATE');
    cosignedSize = (await signNow(server.url, d.devices.jpAud, d.agreement)).size;
    expect(await jp.cosignLatest()).toEqual({ status: 'cosigned', size: cosignedSize });
    expect(await cn.cosignLatest()).toEqual({ status: 'cosigned', size: cosignedSize });
    good = await fetchExport(server.url, d.devices.jpAud, d.agreement);
  } finally {
    await jp.stop();
    await cn.stop();
    await server.close();
  }
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

let copies = 0;
/** A copy of the stopped server's data directory, changed by `tamper`; then the export of a server started on it. */
async function exportAfter(tamper: (db: Database.Database) => void): Promise<{ exp: { entries: string[]; checkpoints: string[] }; v: AuditVerification; dir: string }> {
  const dir = join(root, `copy-${++copies}`);
  cpSync(original, dir, { recursive: true });
  const db = new Database(join(dir, DATABASE_FILE));
  try {
    tamper(db);
  } finally {
    db.close();
  }
  // Whoever can change the database can rewrite the directory's record of it too (a checksum, no
  // secret): these cases are about what the cosigned checkpoints catch, so the record goes.
  rmSync(join(dir, IDENTITY_FILE));
  const server = await startAuditServer(d.agreement, logSecret, dir, []);
  try {
    const exp = await fetchExport(server.url, d.devices.jpAud, d.agreement);
    return { exp, v: await verifyAuditExport(d.agreement, exp), dir };
  } finally {
    await server.close();
  }
}

function rows(db: Database.Database): { idx: number; entry: string }[] {
  return db.prepare<[], { idx: number; entry: string }>('SELECT idx, entry FROM audit_entries ORDER BY idx').all();
}

/** The first stored entry of `type` (before idx `before`, so that an entry follows it). */
function find(db: Database.Database, type: string, pick: (e: Record<string, unknown>) => boolean = () => true): { idx: number; entry: string } {
  const row = rows(db).find((r) => {
    const e = JSON.parse(r.entry) as Record<string, unknown>;
    return e['type'] === type && pick(e);
  });
  if (!row) throw new Error(`no ${type} entry`);
  return row;
}

/** Change one character (one byte: ASCII for ASCII) at `pos` of `text`. */
function flip(text: string, pos: number): string {
  const c = text[pos]!;
  const to = c === 'A' ? 'B' : /[0-8]/.test(c) ? String(Number(c) + 1) : c === '9' ? '0' : c === 'a' ? 'b' : 'A';
  return text.slice(0, pos) + to + text.slice(pos + 1);
}

function setEntry(db: Database.Database, idx: number, text: string): void {
  expect(db.prepare('UPDATE audit_entries SET entry = ? WHERE idx = ?').run(text, idx).changes).toBe(1);
}

describe('the unaltered log', () => {
  it('a full exchange exports and verifies: both parties cosigned, every header and receipt checked', async () => {
    const v = await verifyAuditExport(d.agreement, good);
    expect(v).toMatchObject({ ok: true, envelopes: 2, receipts: 4, verifiedSize: cosignedSize });
    expect(v.cosigners.sort()).toEqual(['cn-mnd/cn-op-1', 'jp-mod/jp-op-1']);
    const types = new Set(good.entries.map((e) => (JSON.parse(e) as { type: string }).type));
    for (const t of ['server.start', 'device.enrolled', 'login', 'envelope.accepted', 'receipt.accepted']) expect(types).toContain(t);
    // Never the ciphertext in an entry, never a plaintext.
    expect(good.entries.join('\n')).not.toContain('ciphertext"');
    expect(good.entries.join('\n')).not.toContain('演習');
  });

  it('restarted on its own database (unchanged), the log still verifies, server.stop and the new server.start included', async () => {
    const { exp, v } = await exportAfter(() => {});
    expect(v.ok).toBe(true);
    const types = exp.entries.map((e) => (JSON.parse(e) as { type: string }).type);
    expect(types).toContain('server.stop');
    expect(types.at(-1)).toBe('login'); // the export's own login, after the second server.start
    expect(types.lastIndexOf('server.start')).toBeGreaterThan(types.indexOf('server.stop'));
  });
});

describe('each change to a copy of the database is found and named', () => {
  it('one byte of an envelope.accepted entry (its time): named by its index', async () => {
    let k = -1;
    const { v } = await exportAfter((db) => {
      const row = find(db, 'envelope.accepted');
      k = row.idx;
      setEntry(db, k, flip(row.entry, row.entry.indexOf('"at":') + 6));
    });
    expect(v.ok).toBe(false);
    expect(v.problem).toMatchObject({ index: k, code: 'HL_ERR_AUDIT_LEAF_MISMATCH' });
  });

  it('one byte of a receipt entry (its signature): named by its index', async () => {
    let k = -1;
    const { exp, v, dir } = await exportAfter((db) => {
      const row = find(db, 'receipt.accepted', (e) => (e['receipt'] as { receipt: { kind: string } }).receipt.kind === 'acknowledged');
      k = row.idx;
      setEntry(db, k, flip(row.entry, row.entry.indexOf('"signature":"') + 20));
    });
    expect(v.problem).toMatchObject({ index: k, code: 'HL_ERR_RECEIPT_BAD_SIGNATURE' });
    // And the CLI says the same, from the export file alone.
    const exportPath = join(dir, 'export.json');
    const agreementPath = join(dir, 'agreement.json');
    writeFileSync(agreementPath, JSON.stringify(d.agreement));
    writeFileSync(exportPath, JSON.stringify(exp));
    const r = await cli(['audit', 'verify', '--agreement', agreementPath, exportPath]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`FAILED at entry ${k}:`);
    expect(r.err).toContain('HL_ERR_RECEIPT_BAD_SIGNATURE');
  });

  it('one byte of a login entry: named by its index', async () => {
    let k = -1;
    const { v } = await exportAfter((db) => {
      const row = find(db, 'login', (e) => e['role'] === 'operator');
      k = row.idx;
      setEntry(db, k, row.entry.replace('"role":"operator"', '"role":"operatos"'));
    });
    expect(v.problem).toMatchObject({ index: k, code: 'HL_ERR_AUDIT_LEAF_MISMATCH' });
  });

  it('one byte of a device.enrolled entry (the certificate): named by its index', async () => {
    let k = -1;
    const { v } = await exportAfter((db) => {
      const row = find(db, 'device.enrolled');
      k = row.idx;
      setEntry(db, k, flip(row.entry, row.entry.indexOf('"signature":"') + 20));
    });
    expect(v.problem?.index).toBe(k);
    expect(v.problem?.code).toBe('HL_ERR_CERT_BAD_SIGNATURE');
  });

  it('one byte of a checkpoint row (the log signature): named by the checkpoint', async () => {
    const { exp, v } = await exportAfter((db) => {
      const row = db.prepare<[number], { note: string }>('SELECT note FROM checkpoints WHERE size = ?').get(cosignedSize)!;
      const sig = row.note.indexOf('\n\u2014 ');
      const pos = row.note.indexOf(' ', sig + 3) + 12;
      expect(db.prepare('UPDATE checkpoints SET note = ? WHERE size = ?').run(flip(row.note, pos), cosignedSize).changes).toBe(1);
    });
    const at = exp.checkpoints.findIndex((n) => parseCheckpoint(n).size === cosignedSize);
    expect(at).toBeGreaterThanOrEqual(0);
    expect(v.problem).toMatchObject({ checkpoint: at, code: 'HL_ERR_AUDIT_CHECKPOINT_SIGNATURE' });
  });

  it('a checkpoint row whose root was changed (and its note re-signed by nobody): named by the checkpoint', async () => {
    const { exp, v } = await exportAfter((db) => {
      const row = db.prepare<[number], { note: string }>('SELECT note FROM checkpoints WHERE size = ?').get(cosignedSize)!;
      const rootLine = row.note.split('\n')[2]!;
      db.prepare('UPDATE checkpoints SET note = ? WHERE size = ?').run(row.note.replace(rootLine, flip(rootLine, 5)), cosignedSize);
    });
    expect(v.problem?.checkpoint).toBe(exp.checkpoints.findIndex((n) => parseCheckpoint(n).size === cosignedSize));
  });

  it('a deleted row: named by its index', async () => {
    let k = -1;
    const { v } = await exportAfter((db) => {
      k = find(db, 'receipt.accepted').idx;
      db.prepare('DELETE FROM audit_entries WHERE idx = ?').run(k);
    });
    expect(v.problem).toMatchObject({ index: k, code: 'HL_ERR_AUDIT_ENTRY_INVALID' });
    expect(v.problem?.message).toContain('deleted, inserted or reordered');
  });

  it('two rows reordered (their entry texts swapped): named by the first of them', async () => {
    let k = -1;
    const { v } = await exportAfter((db) => {
      const env = find(db, 'envelope.accepted');
      k = env.idx;
      const after = rows(db).find((r) => r.idx === k + 1)!;
      setEntry(db, k, after.entry);
      setEntry(db, k + 1, env.entry);
    });
    expect(v.problem).toMatchObject({ index: k, code: 'HL_ERR_AUDIT_ENTRY_INVALID' });
  });

  it('the log truncated (its tail deleted): the checkpoint that covered it names it', async () => {
    const keep = cosignedSize - 3;
    const { exp, v } = await exportAfter((db) => {
      db.prepare('DELETE FROM audit_entries WHERE idx >= ?').run(keep);
    });
    expect(v.ok).toBe(false);
    const at = exp.checkpoints.findIndex((n) => parseCheckpoint(n).size > exp.entries.length);
    expect(v.problem).toMatchObject({ checkpoint: at, code: 'HL_ERR_AUDIT_ROOT_MISMATCH' });
    expect(v.problem?.message).toContain('truncated');
  });

  it('an entry rewritten with every later link and leaf hash recomputed: the signed root of the checkpoint covering it names it', async () => {
    let k = -1;
    const { exp, v } = await exportAfter((db) => {
      const row = find(db, 'login', (e) => e['role'] === 'operator');
      k = row.idx;
      let prev = '';
      for (const r of rows(db).filter((x) => x.idx >= k)) {
        let text = r.idx === k ? row.entry.replace('"role":"operator"', '"role":"auditor"') : r.entry;
        if (r.idx > k) text = text.replace(`"prev":"${(JSON.parse(r.entry) as { prev: string }).prev}"`, `"prev":"${prev}"`);
        const lh = leafHash(utf8(text));
        db.prepare('UPDATE audit_entries SET entry = ?, leaf_hash = ? WHERE idx = ?').run(text, Buffer.from(lh), r.idx);
        prev = Buffer.from(lh).toString('hex');
      }
    });
    const covering = exp.checkpoints.findIndex((n) => parseCheckpoint(n).size > k);
    expect(covering).toBeGreaterThan(0);
    expect(v.problem).toMatchObject({ checkpoint: covering, code: 'HL_ERR_AUDIT_ROOT_MISMATCH' });
  });
});

describe('a history rewritten on the server', () => {
  it('is refused by the cosigning client: the consistency proof from what it cosigned does not verify, an alarm is raised', async () => {
    const dir = join(root, 'rewritten');
    cpSync(original, dir, { recursive: true });
    const db = new Database(join(dir, DATABASE_FILE));
    // A rewrite that keeps every stored hash self-consistent: entry 2 and its leaf hash replaced.
    const row = db.prepare<[], { entry: string }>('SELECT entry FROM audit_entries WHERE idx = 2').get()!;
    const text = row.entry.replace(/"at":(\d)/, (_m, digit: string) => `"at":${(Number(digit) + 1) % 10}`);
    db.prepare('UPDATE audit_entries SET entry = ?, leaf_hash = ? WHERE idx = 2').run(text, Buffer.from(leafHash(utf8(text))));
    db.close();
    const server = await startAuditServer(d.agreement, logSecret, dir, []);
    const jp = makeClient(server.url, d.agreement, d.devices.jpOp, jpStorage);
    try {
      const alarm = next(jp, 'audit.alarm');
      await expect(jp.cosignLatest()).rejects.toMatchObject({ code: 'HL_ERR_AUDIT_PROOF_INVALID' });
      const a = await alarm;
      expect(a).toMatchObject({ type: 'audit.alarm', party: 'jp-mod', code: 'HL_ERR_AUDIT_PROOF_INVALID' });
      expect(a.reason).toContain(`from checkpoint ${cosignedSize}`);
      // Nothing was cosigned; the alarm is in the log for the auditors.
      const exp = await fetchExport(server.url, d.devices.jpAud, d.agreement);
      const latest = exp.checkpoints.at(-1)!;
      expect(latest).not.toContain('jp-mod/jp-op-1');
      expect(exp.entries.some((e) => e.includes('"audit.alarm"') && e.includes('HL_ERR_AUDIT_PROOF_INVALID'))).toBe(true);
    } finally {
      await jp.stop();
      await server.close();
    }
  });
});
