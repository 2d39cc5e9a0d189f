import { describe, expect, it } from 'vitest';
import { applyChanges, initialState, migrateState, outboxKey, trackChanges, type ClientState, type OutboxItem } from '../../client/storage/client-storage.js';

const DEV = 'jp-mod/jp-op-1';
const receipt = (messageId: string, kind = 'delivered'): OutboxItem => ({ kind: 'receipt', messageId, receiptKind: kind, receipt: {} } as never);
const envelope = (id: string): OutboxItem => ({ kind: 'envelope', id, draft: {}, envelope: {}, composedAt: 1, resealed: 0 } as never);

describe('outboxKey', () => {
  it('keys an envelope by its id and a receipt by message and kind', () => {
    expect(outboxKey(envelope('m1'))).toBe('e:m1');
    expect(outboxKey(receipt('m1', 'acknowledged'))).toBe('r:m1:acknowledged');
  });
});

describe('trackChanges', () => {
  it('lists the top-level fields and, per record map, the records set and deleted, in order', () => {
    const state = initialState(DEV);
    state.outbox['e:a'] = envelope('a');
    state.outbox['e:b'] = envelope('b');
    state.inbox.x = { receivedAt: 1 } as never;
    state.sent.s = { receipts: [] } as never;
    state.directory = { certificates: [], revocations: [], fetchedAt: 1 };
    const { draft, changes } = trackChanges(state);
    draft.lastSeq = 4;
    delete draft.directory;
    delete draft.outbox['e:a'];
    draft.outbox['r:x:delivered'] = receipt('x');
    draft.outbox['e:a'] = envelope('a'); // deleted and added again: now the last
    draft.peerSeq['cn-mnd/cn-op-1'] = { high: 3, missing: [] };
    draft.sent.s!.receipts.push({ kind: 'delivered' } as never); // changed in place through a read
    const c = changes()!;
    expect(c.set).toEqual([['lastSeq', 4]]);
    expect(c.deleted).toEqual(['directory']);
    expect(c.maps.outbox).toEqual({ deleted: ['e:a'], set: [['r:x:delivered', receipt('x')], ['e:a', envelope('a')]] });
    expect(c.maps.peerSeq).toEqual({ deleted: [], set: [['cn-mnd/cn-op-1', { high: 3, missing: [] }]] });
    expect(c.maps.sent).toEqual({ deleted: [], set: [['s', { receipts: [{ kind: 'delivered' }] }]] });
    expect(c.maps.inbox).toBeUndefined();

    // Applied to a copy of the state before, the changes give the state after, keys in the same order.
    const before = initialState(DEV);
    before.outbox = { 'e:a': envelope('a'), 'e:b': envelope('b') };
    before.inbox.x = { receivedAt: 1 } as never;
    before.sent.s = { receipts: [] } as never;
    before.directory = { certificates: [], revocations: [], fetchedAt: 1 };
    applyChanges(before, JSON.parse(JSON.stringify(c)) as typeof c);
    expect(before).toEqual(state);
    expect(Object.keys(before.outbox)).toEqual(['e:b', 'r:x:delivered', 'e:a']);
  });

  it('reports nothing for a mutation that only reads records, and a record map replaced whole as a top-level set', () => {
    const state = initialState(DEV);
    const t1 = trackChanges(state);
    expect(t1.draft.inbox.nothing).toBeUndefined();
    expect(t1.draft.lastSeq).toBe(0);
    expect(t1.changes()).toBeUndefined();
    const t2 = trackChanges(state);
    t2.draft.outbox = { 'e:z': envelope('z') };
    expect(t2.changes()).toEqual({ set: [['outbox', { 'e:z': envelope('z') }]], deleted: [], maps: {} });
  });
});

describe('migrateState', () => {
  it('turns an outbox array into the keyed map in the same order, and highest seqs into replay windows', () => {
    const old = { ...initialState(DEV), outbox: [envelope('a'), receipt('a'), envelope('b')], peerSeq: { 'cn-mnd/cn-op-1': 7 } } as unknown as ClientState;
    expect(migrateState(old)).toBe(true);
    expect(Object.keys(old.outbox)).toEqual(['e:a', 'r:a:delivered', 'e:b']);
    expect(old.peerSeq).toEqual({ 'cn-mnd/cn-op-1': { high: 7, missing: [] } });
    expect(migrateState(old)).toBe(false);
  });
});
