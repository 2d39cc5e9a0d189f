import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { leafHash } from '../../../shared/audit/merkle.js';
import { utf8, toHex } from '../../../shared/encoding/base64.js';
import { envelopeHash, expectedRecipients, REPLAY_WINDOW } from '../../../shared/crypto/envelope.js';
import { MIGRATIONS, SqliteStore } from '../../../server/store/sqlite-store.js';
import type { EnvelopeWrite, MailboxItem, ReceiptWrite } from '../../../server/relay/records.js';
import { deviceEnrolledEntry, envelopeAcceptedEntry, receiptAcceptedEntry } from '../../../server/relay/audit-entries.js';
import { PRECEDENCE_RANK } from '../../../server/relay/delivery.js';
import type { Precedence } from '../../../shared/protocol/schemas.js';
import { signReceipt } from '../../../shared/crypto/receipt.js';
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
  const envelopeWrite = async (seq: number, id?: string, precedence: Precedence = 'FLASH'): Promise<EnvelopeWrite> => {
    const env = await seal({ sender, to: CN, seq, precedence, directory: certs, plaintext: { body: `m${seq}`, lang: 'en' }, ...(id ? { id } : {}) });
    const hash = envelopeHash(env.header);
    return {
      kind: 'envelope',
      envelope: env,
      envelopeHash: hash,
      acceptedAt: 1000 + seq,
      rank: PRECEDENCE_RANK[precedence],
      mailboxes: expectedRecipients(certs, sender.certificate.cert, CN).map((c) => `${c.party}/${c.device}`),
      audit: envelopeAcceptedEntry(env, hash, 1000 + seq),
    };
  };
  return { store, path, dep, envelopeWrite };
}

const ALL = { upTo: Number.MAX_SAFE_INTEGER, limit: 1000 };

/** Every un-acknowledged item of a device, page by page as a connection reads them. */
async function readAll(store: SqliteStore, device: string, limit: number): Promise<MailboxItem[]> {
  const out: MailboxItem[] = [];
  for (let page = 0; page < 1000; page++) {
    const last = out.at(-1);
    const items = await store.mailbox(device, { ...(last ? { after: last } : {}), upTo: Number.MAX_SAFE_INTEGER, limit });
    out.push(...items);
    if (items.length < limit) return out;
  }
  throw new Error('too many pages');
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

  it('a group commit is answered after its WAL fsync, and its audit entries are not served before', async () => {
    const { store, path, envelopeWrite } = await setup();
    const before = await store.auditSize();
    const w = await envelopeWrite(1);
    const committing = store.commit([w]);
    // The transaction ran (other readers of the file see the row) but the fsync is still pending:
    // the tree size served, which every checkpoint and proof starts from, leaves the entry out.
    const reader = new Database(path, { readonly: true });
    onCleanup(() => {
      reader.close();
    });
    expect(reader.prepare('SELECT COUNT(*) AS n FROM envelopes').get()).toEqual({ n: 1 });
    expect(await store.auditSize()).toBe(before);
    const [result] = await committing;
    expect(result).toMatchObject({ ok: true, status: 'new' });
    expect(await store.auditSize()).toBe(before + 1);
  });

  it('writes an envelope with its mailbox rows and audit entry in one batch; a resend is a duplicate', async () => {
    const { store, envelopeWrite } = await setup();
    const w = await envelopeWrite(1);
    const [r] = await store.commit([w]);
    expect(r).toMatchObject({ ok: true, status: 'new', acceptedAt: 1001 });
    expect(r!.ok && r!.status === 'new' && r!.delivered.map((d) => d.device)).toEqual(w.mailboxes);
    const [dup] = await store.commit([{ ...w, acceptedAt: 5000 }]);
    expect(dup).toEqual({ ok: true, status: 'duplicate', acceptedAt: 1001 });
    expect((await store.mailbox(`${CN}/op1`, ALL)).map((i) => i.cursor)).toHaveLength(1);
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
    const certificate = dep.devices[`${JP}/op1`]!.certificate;
    await store.putDevice(certificate, 1, deviceEnrolledEntry(certificate, 1));
    expect(await store.putDevice(certificate, 2, deviceEnrolledEntry(certificate, 2))).toBe(false);
    await store.commit(await Promise.all([1, 2, 3].map((n) => envelopeWrite(n))));
    await store.appendAudit({ type: 'login', at: 3, party: JP, device: 'op1' });
    const entries = await store.auditEntries(0, 100);
    expect(entries.map((e) => e.idx)).toEqual([0, 1, 2, 3, 4]);
    for (const e of entries) expect(toHex(e.leafHash)).toBe(toHex(leafHash(utf8(e.entry))));
  });

  it('acknowledges exactly the items named, all acks of a batch in one statement beside the other writes', async () => {
    const { store, envelopeWrite } = await setup();
    await store.commit(await Promise.all([1, 2, 3, 4].map((n) => envelopeWrite(n))));
    const items = await store.mailbox(`${CN}/op1`, ALL);
    expect(items).toHaveLength(4);
    const [a, b, c, d] = items.map((i) => i.cursor) as [number, number, number, number];
    const results = await store.commit([
      { kind: 'ack', device: `${CN}/op1`, cursors: [b], acceptedAt: 1 },
      await envelopeWrite(5),
      { kind: 'ack', device: `${CN}/op1`, cursors: [d], acceptedAt: 1 },
      // Another device's cursor is ignored: a device acknowledges only its own items.
      { kind: 'ack', device: `${JP}/archive1`, cursors: [a], acceptedAt: 1 },
    ]);
    expect(results.every((r) => r.ok)).toBe(true);
    const left = (await store.mailbox(`${CN}/op1`, ALL)).map((i) => i.cursor);
    expect(left).toHaveLength(3);
    expect(left.slice(0, 2)).toEqual([a, c]);
    expect(await store.ackedCursor(`${CN}/op1`)).toBe(d);
    expect(await store.ack(`${CN}/op1`, [a, c])).toBe(d);
    // Another device's mailbox is its own.
    expect(await store.mailbox(`${CN}/archive1`, ALL)).toHaveLength(5);
  });

  it('reads the mailbox by rank, then cursor, in keyset pages up to a snapshot', async () => {
    const { store, envelopeWrite } = await setup();
    const precedences: Precedence[] = ['ROUTINE', 'PRIORITY', 'ROUTINE', 'FLASH', 'IMMEDIATE', 'FLASH', 'ROUTINE'];
    for (const [i, p] of precedences.entries()) await store.commit([await envelopeWrite(i + 1, undefined, p)]);
    const all = await readAll(store, `${CN}/op1`, 2);
    const seqOf = (i: MailboxItem) => (JSON.parse(i.json) as { header: { seq: number } }).header.seq;
    expect(all.map(seqOf)).toEqual([4, 6, 5, 2, 1, 3, 7]);
    expect(all.map((i) => i.rank)).toEqual([0, 0, 1, 2, 3, 3, 3]);
    // Up to a snapshot: later items are not read (they are pushed live instead).
    const snapshot = all.find((i) => seqOf(i) === 4)!.cursor;
    expect((await store.mailbox(`${CN}/op1`, { upTo: snapshot, limit: 10 })).map(seqOf)).toEqual([4, 2, 1, 3]);
    expect(await store.maxCursor()).toBeGreaterThanOrEqual(Math.max(...all.map((i) => i.cursor)));
  });

  it('accepts seqs out of order inside the replay window and refuses a reused or too-old seq', async () => {
    const { store, envelopeWrite } = await setup();
    const code = (r: unknown) => (r as { ok: boolean; error?: { code?: string } }).error?.code;
    expect((await store.commit([await envelopeWrite(10)]))[0]).toMatchObject({ ok: true, status: 'new' });
    expect((await store.commit([await envelopeWrite(8)]))[0]).toMatchObject({ ok: true, status: 'new' });
    expect(code((await store.commit([await envelopeWrite(8)]))[0])).toBe('HL_ERR_ENVELOPE_REPLAY');
    expect(code((await store.commit([await envelopeWrite(10)]))[0])).toBe('HL_ERR_ENVELOPE_REPLAY');
    expect((await store.commit([await envelopeWrite(10 + REPLAY_WINDOW)]))[0]).toMatchObject({ ok: true, status: 'new' });
    expect(code((await store.commit([await envelopeWrite(9)]))[0])).toBe('HL_ERR_ENVELOPE_REPLAY');
    expect((await store.commit([await envelopeWrite(11)]))[0]).toMatchObject({ ok: true, status: 'new' });
    expect(await store.lastSeq(`${JP}/op1`)).toBe(10 + REPLAY_WINDOW);
  });

  it('gives a receipt its message’s rank and serves the header and hash without the envelope', async () => {
    const { store, envelopeWrite, dep } = await setup();
    const w = await envelopeWrite(1, undefined, 'IMMEDIATE');
    await store.commit([w]);
    const message = await store.getMessage(w.envelope.header.id);
    expect(message).toEqual({ header: w.envelope.header, envelopeHash: w.envelopeHash });
    const receipt = await signReceipt(dep.devices[`${CN}/op1`]!, w.envelope.header, 'delivered', 2000);
    const rw: ReceiptWrite = { kind: 'receipt', receipt, acceptedAt: 2001, rank: 1, mailboxes: [`${JP}/op1`], audit: receiptAcceptedEntry(receipt, 2001) };
    const [r] = await store.commit([rw]);
    expect(r!.ok && r!.status === 'new' && r!.delivered[0]!.item).toMatchObject({ rank: 1, kind: 'receipt', json: JSON.stringify(receipt) });
    expect((await store.mailbox(`${JP}/op1`, ALL)).map((i) => i.rank)).toEqual([1]);
  });

  it('migration: ranks the un-acknowledged rows of a database made before ranks', async () => {
    const { envelopeWrite } = await setup();
    const routine = (await envelopeWrite(1, undefined, 'ROUTINE')).envelope;
    const flash = (await envelopeWrite(2, undefined, 'FLASH')).envelope;
    const receiptJson = JSON.stringify({ receipt: { messageId: flash.header.id }, signature: 'x' });
    // A database at the schema just before the rank migration, with rows as that schema wrote them
    // (whatever migrations come after it run on top, as in a real upgrade).
    const before = MIGRATIONS.findIndex((m) => m.includes('ADD COLUMN rank'));
    const dir = tempDir();
    onCleanup(() => dir.remove());
    const oldPath = join(dir.path, 'old.sqlite');
    const raw = new Database(oldPath);
    for (const m of MIGRATIONS.slice(0, before)) raw.exec(m);
    raw.pragma(`user_version = ${before}`);
    const putEnvelope = raw.prepare('INSERT INTO envelopes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
    for (const e of [routine, flash]) {
      const h = e.header;
      putEnvelope.run(h.id, envelopeHash(h), h.from.party, h.from.device, h.to, h.precedence, h.seq, JSON.stringify(h), JSON.stringify(e), 1);
    }
    raw.prepare('INSERT INTO receipts (message_id, kind, by_party, by_device, receipt, at, accepted_at) VALUES (?, ?, ?, ?, ?, 1, 1)').run(flash.header.id, 'delivered', CN, 'op1', receiptJson);
    raw.prepare('INSERT INTO events (type, event, at) VALUES (?, ?, 1)').run('deadline.missed', JSON.stringify({ type: 'deadline.missed', precedence: 'PRIORITY', at: 1 }));
    raw.prepare('INSERT INTO events (type, event, at) VALUES (?, ?, 1)').run('link.down', JSON.stringify({ type: 'link.down', at: 1 }));
    const box = raw.prepare('INSERT INTO mailbox (device, kind, ref) VALUES (?, ?, ?)');
    box.run(`${JP}/op1`, 'envelope', routine.header.id);
    box.run(`${JP}/op1`, 'envelope', flash.header.id);
    box.run(`${JP}/op1`, 'receipt', '1');
    box.run(`${JP}/op1`, 'event', '1');
    box.run(`${JP}/op1`, 'event', '2');
    raw.close();

    const migrated = new SqliteStore(oldPath);
    onCleanup(() => migrated.close());
    const items = await migrated.mailbox(`${JP}/op1`, ALL);
    // FLASH envelope, the receipt for it and the link event rank 0; the PRIORITY deadline event 2; ROUTINE 3.
    expect(items.map((i) => [i.cursor, i.rank])).toEqual([[2, 0], [3, 0], [5, 0], [4, 2], [1, 3]]);
    // The seq index came with it: a used seq is refused.
    const [again] = await migrated.commit([await envelopeWrite(1, undefined, 'ROUTINE')]);
    expect(again!.ok === false && (again!.error as { code?: string }).code).toBe('HL_ERR_ENVELOPE_REPLAY');
  });
});
