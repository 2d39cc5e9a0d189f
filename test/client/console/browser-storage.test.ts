import { describe, expect, it } from 'vitest';
import { MemoryKeyValueStore, type RecordWrite } from '../../../client/storage/kv.js';
import { BrowserStorage, type StateCipher, type StorageChange } from '../../../client/storage/browser-storage.js';
import type { InboxRecord, OutboxEnvelope } from '../../../client/storage/client-storage.js';
import type { EnvelopeHeader } from '../../../shared/protocol/schemas.js';

const DEVICE = 'jp-mod/op1';

/** Stands in for the data key's secretbox: what matters here is which records are written. */
const cipher: StateCipher = {
  seal: (v) => `sealed:${JSON.stringify(v)}`,
  open: (t) => JSON.parse(t.slice('sealed:'.length)) as unknown,
};

function inbox(id: string): InboxRecord {
  return { header: { id, precedence: 'ROUTINE', to: 'jp-mod', from: { party: 'cn-mnd', device: 'op1' }, seq: 1, sentAt: 1 } as unknown as EnvelopeHeader, envelopeHash: 'h', receivedAt: 1 };
}

function outbox(id: string): OutboxEnvelope {
  return { kind: 'envelope', id, draft: { to: 'cn-mnd', precedence: 'ROUTINE', plaintext: { body: `body ${id}`, lang: 'en' } }, envelope: {} as never, composedAt: 1, resealed: 0 };
}

/** A store that counts the records each transaction writes. */
function countingStore(): { kv: MemoryKeyValueStore; writes: RecordWrite[][] } {
  const kv = new MemoryKeyValueStore();
  const writes: RecordWrite[][] = [];
  const write = kv.writeRecords.bind(kv);
  kv.writeRecords = (scope, w, more) => {
    writes.push([...w]);
    return write(scope, w, more);
  };
  return { kv, writes };
}

describe('BrowserStorage', () => {
  it('migrates the single sealed record: every outbox item and inbox record kept, the old record removed in the same transaction', async () => {
    const { kv, writes } = countingStore();
    // The shape stored before per-record storage: the outbox an array, peerSeq a number.
    const old = { v: 1, device: DEVICE, lastSeq: 7, outbox: [outbox('o1'), outbox('o2'), outbox('o3')], inbox: { a: inbox('a'), b: inbox('b') }, sent: {}, peerSeq: { 'cn-mnd/op1': 9 } };
    await kv.set(`client-state/${DEVICE}`, cipher.seal(old));

    const state = await new BrowserStorage(kv, cipher).read(DEVICE);
    expect(Object.values(state.outbox).map((i) => (i as OutboxEnvelope).id)).toEqual(['o1', 'o2', 'o3']);
    expect(Object.keys(state.inbox)).toEqual(['a', 'b']);
    expect(state.lastSeq).toBe(7);
    expect(state.peerSeq['cn-mnd/op1']?.high).toBe(9);
    expect(await kv.get(`client-state/${DEVICE}`)).toBeUndefined();
    expect(writes).toHaveLength(1);

    // Read back from the records alone, in the same order.
    const again = await new BrowserStorage(kv, cipher).read(DEVICE);
    expect(Object.keys(again.outbox)).toEqual(Object.keys(state.outbox));
    expect(again.inbox).toEqual(state.inbox);
    expect(again.lastSeq).toBe(7);
  });

  it('keeps the old record when writing the records fails, and migrates on the next try', async () => {
    const kv = new MemoryKeyValueStore();
    await kv.set(`client-state/${DEVICE}`, cipher.seal({ v: 1, device: DEVICE, lastSeq: 1, outbox: [outbox('o1')], inbox: {}, sent: {}, peerSeq: {} }));
    const write = kv.writeRecords.bind(kv);
    kv.writeRecords = () => Promise.reject(new Error('quota'));
    await expect(new BrowserStorage(kv, cipher).read(DEVICE)).rejects.toThrow('quota');
    expect(await kv.get(`client-state/${DEVICE}`)).toBeDefined();
    kv.writeRecords = write;
    expect(Object.keys((await new BrowserStorage(kv, cipher).read(DEVICE)).outbox)).toEqual(['e:o1']);
  });

  it('writes only the records an update changed, however many are stored', async () => {
    const { kv, writes } = countingStore();
    const storage = new BrowserStorage(kv, cipher);
    await storage.update(DEVICE, (s) => {
      for (let i = 0; i < 300; i++) s.inbox[`m${i}`] = inbox(`m${i}`);
    });
    writes.length = 0;
    await storage.update(DEVICE, (s) => {
      s.inbox.m7!.acknowledgedAt = 5;
      s.outbox['e:x'] = outbox('x');
    });
    // The two records, the version and its log entry.
    expect(writes).toHaveLength(1);
    expect(writes[0]!.map((w) => w.store).sort()).toEqual(['state-inbox', 'state-outbox', 'state-top', 'state-top']);
    await storage.update(DEVICE, (s) => void delete s.outbox['e:x']);
    expect(Object.keys((await new BrowserStorage(kv, cipher).read(DEVICE)).outbox)).toEqual([]);
    expect((await new BrowserStorage(kv, cipher).read(DEVICE)).inbox.m7?.acknowledgedAt).toBe(5);
  });

  it('a failed write leaves the stored state and the next read as they were before it', async () => {
    const kv = new MemoryKeyValueStore();
    const storage = new BrowserStorage(kv, cipher);
    await storage.update(DEVICE, (s) => void (s.lastSeq = 1));
    const write = kv.writeRecords.bind(kv);
    kv.writeRecords = () => Promise.reject(new Error('disk'));
    await expect(storage.update(DEVICE, (s) => void (s.lastSeq = 2))).rejects.toThrow('disk');
    kv.writeRecords = write;
    expect((await storage.read(DEVICE)).lastSeq).toBe(1);
  });

  it('another tab catches up with the records written since, before its own update, and reports them', async () => {
    const kv = new MemoryKeyValueStore();
    const a = new BrowserStorage(kv, cipher);
    const b = new BrowserStorage(kv, cipher);
    await a.update(DEVICE, (s) => void (s.inbox.one = inbox('one')));
    expect(Object.keys((await b.read(DEVICE)).inbox)).toEqual(['one']);
    const seen: StorageChange[] = [];
    b.onChange((_, c) => seen.push(c));
    await a.update(DEVICE, (s) => {
      s.inbox.two = inbox('two');
      delete s.inbox.one;
      s.lastSeq = 3;
    });
    const seq = await b.update(DEVICE, (s) => ++s.lastSeq);
    expect(seq).toBe(4);
    expect(Object.keys((await b.read(DEVICE)).inbox)).toEqual(['two']);
    expect(seen[0]!.inbox.sort()).toEqual(['one', 'two']);
    // And back: the first tab sees the second's update.
    expect((await a.update(DEVICE, (s) => s.lastSeq))).toBe(4);
    // Ordinals never collide across tabs: both records survive a fresh read.
    await b.update(DEVICE, (s) => void (s.inbox.three = inbox('three')));
    await a.update(DEVICE, (s) => void (s.inbox.four = inbox('four')));
    expect(Object.keys((await new BrowserStorage(kv, cipher).read(DEVICE)).inbox)).toEqual(['two', 'three', 'four']);
  });
});
