import { describe, expect, it } from 'vitest';
import type { Rung } from '../../../shared/protocol/frames.js';
import { leafHash } from '../../../shared/audit/merkle.js';
import { utf8, toHex } from '../../../shared/encoding/base64.js';
import { REPLAY_WINDOW } from '../../../shared/crypto/envelope.js';
import type { Store } from '../../../server/store/store.js';
import type { MailboxItem, ReceiptWrite } from '../../../server/relay/records.js';
import { deviceEnrolledEntry, receiptAcceptedEntry, refusalAcceptedEntry } from '../../../server/relay/audit-entries.js';
import type { Precedence } from '../../../shared/protocol/schemas.js';
import { signReceipt } from '../../../shared/crypto/receipt.js';
import { signRefusal } from '../../../shared/crypto/refusal.js';
import { createPrekey } from '../../../shared/crypto/prekey.js';
import { CN, JP, createDeployment } from '../../helpers/deployment.js';
import { STORE_ADAPTERS, envelopeWrites, type StoreAdapter } from '../../helpers/stores.js';

async function setup(adapter: StoreAdapter) {
  const { store, reopen } = await adapter.open();
  const dep = await createDeployment();
  const envelopeWrite = envelopeWrites(dep);
  return { store, reopen, dep, envelopeWrite };
}

const ALL = { upTo: Number.MAX_SAFE_INTEGER, limit: 1000 };

/** Every un-acknowledged item of a device, page by page as a connection reads them. */
async function readAll(store: Store, device: string, limit: number): Promise<MailboxItem[]> {
  const out: MailboxItem[] = [];
  for (let page = 0; page < 1000; page++) {
    const last = out.at(-1);
    const items = await store.mailbox(device, { ...(last ? { after: last } : {}), upTo: Number.MAX_SAFE_INTEGER, limit });
    out.push(...items);
    if (items.length < limit) return out;
  }
  throw new Error('too many pages');
}

/**
 * The store contract: what every adapter of the `Store` port (server/store/store.ts) must do, run
 * against each of them (SQLite, PostgreSQL). Adapter-specific behaviour (SQLite's WAL mode and its
 * old-schema migrations) is tested beside the adapter (sqlite-store.test.ts, pg-store.test.ts).
 */
describe.each(STORE_ADAPTERS)('store contract: $name', (adapter) => {
  it('writes an envelope with its mailbox rows and audit entry in one batch; a resend is a duplicate', async () => {
    const { store, envelopeWrite } = await setup(adapter);
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
    const { store, envelopeWrite } = await setup(adapter);
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
    const { store, envelopeWrite, dep } = await setup(adapter);
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
    const { store, envelopeWrite } = await setup(adapter);
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
    // Nor does another device's cursor count as acknowledged by the device that named it.
    expect(await store.ackedCursor(`${JP}/archive1`)).toBe(0);
    expect(await store.ack(`${CN}/op1`, [a, c])).toBe(d);
    // Another device's mailbox is its own.
    expect(await store.mailbox(`${CN}/archive1`, ALL)).toHaveLength(5);
  });

  it('reads the mailbox by rank, then cursor, in keyset pages up to a snapshot', async () => {
    const { store, envelopeWrite } = await setup(adapter);
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
    const { store, envelopeWrite } = await setup(adapter);
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
    const { store, envelopeWrite, dep } = await setup(adapter);
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


  it('writes deadline and link-test rows, events with their mailbox items and audit entries, with an envelope and on their own', async () => {
    const { store, envelopeWrite } = await setup(adapter);
    const w = await envelopeWrite(1, undefined, 'IMMEDIATE');
    const id = w.envelope.header.id;
    const rung = (r: 'delivered' | 'acknowledged', dueAt: number) => ({ messageId: id, from: JP, to: CN, precedence: 'IMMEDIATE' as const, rung: r, acceptedAt: 1001, dueAt, level: 0, nextAt: dueAt });
    await store.commit([{ ...w, effects: { deadlines: [rung('delivered', 5000), rung('acknowledged', 9000)] } }]);
    expect((await store.loadDeadlines()).map((d) => [d.rung, d.nextAt, d.level])).toEqual([['delivered', 5000, 0], ['acknowledged', 9000, 0]]);

    // A deadline fires: its row moves on, its event goes to two mailboxes and into the log.
    const missed = { type: 'deadline.missed' as const, messageId: id, from: JP, to: CN, precedence: 'IMMEDIATE' as const, rung: 'delivered' as const, dueAt: 5000, at: 5001, lateMs: 1, level: 1 };
    const sizeBefore = await store.auditSize();
    const [fired] = await store.commit([
      {
        kind: 'events',
        acceptedAt: 5001,
        deadlines: [{ ...rung('delivered', 5000), level: 1, nextAt: 6000 }],
        linkPairs: [{ from: JP, to: CN, status: 'up', since: 4000, last: { messageId: 'lt1', sentAt: 3000, ok: true, answeredAt: 3100, roundTripMs: 100, at: 3100 } }],
        linkTests: [{ test: { messageId: 'lt2', from: JP, to: CN, sentAt: 4500, dueAt: 7000 }, done: false }],
        events: [{ event: missed, rank: 1, mailboxes: [`${JP}/op1`, `${JP}/op2`] }],
      },
    ]);
    expect(fired!.ok && fired!.status === 'new' && fired!.delivered.map((d) => [d.device, d.item.kind, d.item.rank, JSON.parse(d.item.json)])).toEqual([
      [`${JP}/op1`, 'event', 1, missed],
      [`${JP}/op2`, 'event', 1, missed],
    ]);
    expect((await store.mailbox(`${JP}/op2`, ALL)).filter((i) => i.kind === 'event').map((i) => [i.rank, i.acceptedAt])).toEqual([[1, 5001]]);
    expect(await store.auditSize()).toBe(sizeBefore + 1);
    expect(JSON.parse((await store.auditEntries(sizeBefore, sizeBefore + 1))[0]!.entry)).toMatchObject({ type: 'deadline.missed', level: 1, messageId: id });
    expect((await store.loadDeadlines()).map((d) => [d.rung, d.nextAt, d.level])).toEqual([['delivered', 6000, 1], ['acknowledged', 9000, 0]]);
    const links = await store.loadLinkTests();
    expect(links.pairs).toEqual([{ from: JP, to: CN, status: 'up', since: 4000, last: { messageId: 'lt1', sentAt: 3000, ok: true, answeredAt: 3100, roundTripMs: 100, at: 3100 } }]);
    expect(links.pending).toEqual([{ messageId: 'lt2', from: JP, to: CN, sentAt: 4500, dueAt: 7000 }]);

    // Closed rows are no longer loaded; a finished test is no longer pending.
    await store.commit([
      { kind: 'events', acceptedAt: 7000, deadlines: [{ ...rung('delivered', 5000), level: 1, nextAt: 6000, closedAt: 6500, late: true }], linkTests: [{ test: { messageId: 'lt2', from: JP, to: CN, sentAt: 4500, dueAt: 7000 }, done: true }] },
    ]);
    expect((await store.loadDeadlines()).map((d) => d.rung)).toEqual(['acknowledged']);
    expect((await store.loadLinkTests()).pending).toEqual([]);
  });

  it('keeps the ladder\'s answered and complied deadline rows (h15-ladder migration), open and closed', async () => {
    const { store, envelopeWrite } = await setup(adapter);
    const w = await envelopeWrite(1, undefined, 'FLASH');
    const id = w.envelope.header.id;
    const row = (rung: Rung, dueAt: number) => ({ messageId: id, from: JP, to: CN, precedence: 'FLASH' as const, rung, acceptedAt: 1001, dueAt, level: 0, nextAt: dueAt });
    await store.commit([{ ...w, effects: { deadlines: [row('delivered', 2000), row('acknowledged', 3000), row('answered', 4000), row('complied', 5000)] } }]);
    expect((await store.loadDeadlines()).map((d) => [d.rung, d.dueAt])).toEqual([['delivered', 2000], ['acknowledged', 3000], ['answered', 4000], ['complied', 5000]]);
    await store.commit([{ kind: 'events', acceptedAt: 3500, deadlines: [{ ...row('complied', 5000), closedAt: 3500, late: false }] }]);
    expect((await store.loadDeadlines()).map((d) => d.rung)).toEqual(['delivered', 'acknowledged', 'answered']);
  });

  it('keeps checkpoints by size (idempotent) and one cosignature per checkpoint and cosigner (the newest)', async () => {
    const { store } = await setup(adapter);
    const cp = (size: number) => ({ size, rootHash: 'ab'.repeat(32), note: `note ${size}`, createdAt: 100 + size });
    expect(await store.putCheckpoint(cp(3))).toBe(true);
    expect(await store.putCheckpoint({ ...cp(3), note: 'other' })).toBe(false);
    expect(await store.putCheckpoint(cp(7))).toBe(true);
    expect(await store.getCheckpoint()).toEqual(cp(7));
    expect(await store.getCheckpoint(3)).toEqual(cp(3));
    expect(await store.getCheckpoint(4)).toBeUndefined();
    expect(await store.listCheckpoints()).toEqual([cp(3), cp(7)]);
    expect(await store.listCheckpoints(3)).toEqual([cp(7)]);
    await store.putCosignature({ size: 3, cosigner: `${CN}/op1`, signature: 'sig-a', at: 1 });
    await store.putCosignature({ size: 3, cosigner: `${CN}/op1`, signature: 'sig-b', at: 2 });
    await store.putCosignature({ size: 7, cosigner: `${JP}/op1`, signature: 'sig-c', at: 3 });
    expect(await store.listCosignatures(3)).toEqual([{ size: 3, cosigner: `${CN}/op1`, signature: 'sig-b', at: 2 }]);
    expect((await store.listCosignatures()).map((c) => c.signature)).toEqual(['sig-b', 'sig-c']);
  });

  it('relay-to-relay: lists what the peer has not confirmed, in acceptance order; a confirmation is recorded once, with its events', async () => {
    const { store, envelopeWrite, dep } = await setup(adapter);
    const writes = await Promise.all([1, 2, 3].map((n) => envelopeWrite(n)));
    await store.commit(writes);
    const out = await store.relayOutgoing({ kind: 'envelope', local: JP, peer: CN, after: 0, limit: 10 });
    expect(out.map((o) => (JSON.parse(o.json) as { header: { seq: number } }).header.seq)).toEqual([1, 2, 3]);
    expect(out.map((o) => o.acceptedAt)).toEqual([1001, 1002, 1003]);
    // Pages go on after the last position read.
    expect(await store.relayOutgoing({ kind: 'envelope', local: JP, peer: CN, after: out[0]!.pos, limit: 1 })).toEqual([out[1]]);
    expect(await store.relayOutgoing({ kind: 'envelope', local: CN, peer: JP, after: 0, limit: 10 })).toEqual([]);

    const relayed = { type: 'message.relayed', messageId: writes[0]!.envelope.header.id, from: JP, to: CN, at: 2000 };
    const events = { kind: 'events' as const, acceptedAt: 2000, events: [{ event: relayed as never, rank: 0, mailboxes: [`${JP}/op1`] }] };
    const mark = { kind: 'envelope' as const, ref: writes[0]!.envelope.header.id, peer: CN, at: 2000 };
    const size = await store.auditSize();
    expect((await store.markRelayed([mark], events)).map((d) => d.device)).toEqual([`${JP}/op1`]);
    // Again: nothing new, so no events.
    expect(await store.markRelayed([mark], events)).toEqual([]);
    expect(await store.auditSize()).toBe(size + 1);
    expect((await store.relayOutgoing({ kind: 'envelope', local: JP, peer: CN, after: 0, limit: 10 })).map((o) => o.pos)).toEqual([out[1]!.pos, out[2]!.pos]);

    // Receipts signed here for messages from the peer's party: none yet (the messages are from JP).
    const receipt = await signReceipt(dep.devices[`${CN}/op1`]!, writes[1]!.envelope.header, 'delivered', 3000);
    await store.commit([{ kind: 'receipt', receipt, acceptedAt: 3001, rank: 0, mailboxes: [`${JP}/op1`], audit: receiptAcceptedEntry(receipt, 3001) }]);
    const receipts = await store.relayOutgoing({ kind: 'receipt', local: CN, peer: JP, after: 0, limit: 10 });
    expect(receipts.map((r) => JSON.parse(r.json))).toEqual([receipt]);
    const ref = `${receipt.receipt.messageId}/delivered/${CN}/op1`;
    await store.markRelayed([{ kind: 'receipt', ref, peer: JP, at: 3002 }]);
    expect(await store.relayOutgoing({ kind: 'receipt', local: CN, peer: JP, after: 0, limit: 10 })).toEqual([]);

    // Refusals signed here for messages from the peer's party go the same way (kind 'refusal').
    const refusal = await signRefusal(dep.devices[`${CN}/op1`]!, writes[2]!.envelope.header.id, writes[2]!.envelopeHash, 'HL_ERR_CERT_UNKNOWN_DEVICE', 4000);
    await store.commit([{ kind: 'refusal', refusal, acceptedAt: 4001, audit: refusalAcceptedEntry(refusal, 4001) }]);
    const refusals = await store.relayOutgoing({ kind: 'refusal', local: CN, peer: JP, after: 0, limit: 10 });
    expect(refusals.map((r) => JSON.parse(r.json))).toEqual([refusal]);
    expect(refusals.map((r) => r.acceptedAt)).toEqual([4001]);
    expect(await store.relayOutgoing({ kind: 'refusal', local: CN, peer: JP, after: refusals[0]!.pos, limit: 10 })).toEqual([]);
    expect(await store.relayOutgoing({ kind: 'refusal', local: JP, peer: CN, after: 0, limit: 10 })).toEqual([]);
    const refusedRef = `${refusal.refusal.messageId}/${CN}/op1`;
    const relayedEntry = { type: 'refusal.relayed', at: 4002, messageId: refusal.refusal.messageId };
    const before = await store.auditSize();
    await store.markRelayed([{ kind: 'refusal', ref: refusedRef, peer: JP, at: 4002 }], { kind: 'events', acceptedAt: 4002, audit: [relayedEntry] });
    await store.markRelayed([{ kind: 'refusal', ref: refusedRef, peer: JP, at: 4002 }], { kind: 'events', acceptedAt: 4002, audit: [relayedEntry] });
    expect(await store.auditSize()).toBe(before + 1);
    expect(await store.relayOutgoing({ kind: 'refusal', local: CN, peer: JP, after: 0, limit: 10 })).toEqual([]);
  });

  it('keeps meta values, replaced by key, and a restart (a second store on the data) sees everything', async () => {
    const { store, reopen, envelopeWrite } = await setup(adapter);
    expect(await store.getMeta('k')).toBeUndefined();
    await store.setMeta('k', 'one');
    await store.setMeta('k', 'two');
    expect(await store.getMeta('k')).toBe('two');
    const w = await envelopeWrite(1);
    await store.commit([w]);
    expect(await store.checkIntegrity()).toBeUndefined();
    const again = await reopen();
    expect(await again.getMeta('k')).toBe('two');
    expect((await again.getEnvelope(w.envelope.header.id))?.envelope).toEqual(w.envelope);
    expect(await again.auditSize()).toBe(1);
    expect(await again.checkAuditTree()).toBeUndefined();
    expect(await again.lastSeq(`${JP}/op1`)).toBe(1);
  });
  it('keeps prekeys once per box key (h15-fs migration), lists those in date by device and age, across a restart', async () => {
    const { store, reopen, dep } = await setup(adapter);
    const op = dep.devices[`${CN}/op1`]!;
    const other = dep.devices[`${JP}/op1`]!;
    const older = await createPrekey(op, { now: 1000, rotationMs: 60_000 });
    const newer = await createPrekey(op, { now: 61_000, rotationMs: 60_000 });
    const jp = await createPrekey(other, { now: 1000, rotationMs: 60_000 });
    expect(await store.putPrekey(newer.signed, 61_000)).toBe(true);
    expect(await store.putPrekey(older.signed, 61_001)).toBe(true);
    expect(await store.putPrekey(older.signed, 61_002)).toBe(false);
    expect(await store.putPrekey(jp.signed, 61_003)).toBe(true);
    // In date means notAfter > now; ordered by party, device, notBefore.
    expect(await store.listPrekeys(121_000 - 1)).toEqual([older.signed, newer.signed, jp.signed]);
    expect(await store.listPrekeys(121_000)).toEqual([newer.signed]);
    const again = await reopen();
    expect(await again.listPrekeys(0)).toEqual([older.signed, newer.signed, jp.signed]);
    // Not an audit entry: a prekey is public, and envelope headers name its keyId.
    expect(await again.auditSize()).toBe(0);
  });
});
