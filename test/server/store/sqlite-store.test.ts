import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { leafHash } from '../../../shared/audit/merkle.js';
import { utf8, toHex } from '../../../shared/encoding/base64.js';
import { envelopeHash, expectedRecipients } from '../../../shared/crypto/envelope.js';
import { SqliteStore } from '../../../server/store/sqlite-store.js';
import type { EnvelopeWrite } from '../../../server/store/store.js';
import { CN, JP, createDeployment, tempDir } from '../../helpers/deployment.js';
import { onCleanup } from '../../helpers/test-server.js';
import { seal } from '../../helpers/ws-client.js';

async function setup() {
  const dir = tempDir();
  const path = join(dir.path, 'hotline.sqlite');
  const store = new SqliteStore(path);
  onCleanup(async () => {
    await store.close();
    dir.remove();
  });
  const dep = await createDeployment();
  const certs = Object.values(dep.devices).map((d) => d.certificate.cert);
  const sender = dep.devices[`${JP}/op1`]!;
  const envelopeWrite = async (seq: number, id?: string): Promise<EnvelopeWrite> => {
    const env = await seal({ sender, to: CN, seq, directory: certs, plaintext: { body: `m${seq}`, lang: 'en' }, ...(id ? { id } : {}) });
    return {
      kind: 'envelope',
      envelope: env,
      envelopeHash: envelopeHash(env.header),
      acceptedAt: 1000 + seq,
      mailboxes: expectedRecipients(certs, sender.certificate.cert, CN).map((c) => `${c.party}/${c.device}`),
    };
  };
  return { store, path, dep, envelopeWrite };
}

describe('SqliteStore', () => {
  it('opens in WAL mode, migrates once, and reopens the same database', async () => {
    const { store, path } = await setup();
    await store.appendAudit({ type: 'server.start', at: 1 });
    const raw = new Database(path, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(raw.pragma('user_version', { simple: true })).toBeGreaterThanOrEqual(1);
    raw.close();
    const again = new SqliteStore(path);
    expect(await again.auditSize()).toBe(1);
    await again.close();
  });

  it('writes an envelope with its mailbox rows and audit entry in one batch; a resend is a duplicate', async () => {
    const { store, envelopeWrite } = await setup();
    const w = await envelopeWrite(1);
    const [r] = await store.commit([w]);
    expect(r).toMatchObject({ ok: true, status: 'new', acceptedAt: 1001 });
    expect(r!.ok && r!.status === 'new' && r!.delivered.map((d) => d.device)).toEqual(w.mailboxes);
    const [dup] = await store.commit([{ ...w, acceptedAt: 5000 }]);
    expect(dup).toEqual({ ok: true, status: 'duplicate', acceptedAt: 1001 });
    expect((await store.mailbox(`${CN}/op1`, 0, 10)).map((i) => i.cursor)).toHaveLength(1);
    const entries = await store.auditEntries(0, 10);
    expect(entries).toHaveLength(1);
    const entry = JSON.parse(entries[0]!.entry) as Record<string, unknown>;
    expect(entry).toMatchObject({ type: 'envelope.accepted', envelopeHash: w.envelopeHash, at: 1001 });
    // The audit entry holds the signed header and signature, never the ciphertext.
    expect(entry['ciphertext']).toBeUndefined();
    expect(entries[0]!.entry).not.toContain(w.envelope.ciphertext.slice(0, 32));
  });

  it('checks replays inside the transaction: of two writes racing with the same seq only the first wins', async () => {
    const { store, envelopeWrite } = await setup();
    const a = await envelopeWrite(7);
    const b = await envelopeWrite(7);
    const c = await envelopeWrite(8, a.envelope.header.id);
    const results = await store.commit([a, b, c]);
    expect(results[0]).toMatchObject({ ok: true, status: 'new' });
    expect(results[1]!.ok === false && (results[1]!.error as { code?: string }).code).toBe('HL_ERR_ENVELOPE_REPLAY');
    expect(results[2]!.ok === false && (results[2]!.error as { code?: string }).code).toBe('HL_ERR_ENVELOPE_DUPLICATE_ID');
    // The refused writes left nothing behind.
    expect(await store.auditSize()).toBe(1);
    expect(await store.getEnvelope(b.envelope.header.id)).toBeUndefined();
  });

  it('keeps audit indexes contiguous from 0 with leaf hashes SHA-256(0x00 ‖ entry)', async () => {
    const { store, envelopeWrite, dep } = await setup();
    await store.putDevice(dep.devices[`${JP}/op1`]!.certificate, 1);
    expect(await store.putDevice(dep.devices[`${JP}/op1`]!.certificate, 2)).toBe(false);
    await store.commit(await Promise.all([1, 2, 3].map((n) => envelopeWrite(n))));
    await store.appendAudit({ type: 'login', at: 3, party: JP, device: 'op1' });
    const entries = await store.auditEntries(0, 100);
    expect(entries.map((e) => e.idx)).toEqual([0, 1, 2, 3, 4]);
    for (const e of entries) expect(toHex(e.leafHash)).toBe(toHex(leafHash(utf8(e.entry))));
  });

  it('acknowledges mailbox items up to a cursor', async () => {
    const { store, envelopeWrite } = await setup();
    await store.commit(await Promise.all([1, 2, 3].map((n) => envelopeWrite(n))));
    const items = await store.mailbox(`${CN}/op1`, 0, 10);
    expect(items).toHaveLength(3);
    expect(await store.ack(`${CN}/op1`, items[1]!.cursor)).toBe(items[1]!.cursor);
    expect((await store.mailbox(`${CN}/op1`, 0, 10)).map((i) => i.cursor)).toEqual([items[2]!.cursor]);
    // Another device's mailbox is its own.
    expect(await store.mailbox(`${CN}/archive1`, 0, 10)).toHaveLength(3);
  });
});
