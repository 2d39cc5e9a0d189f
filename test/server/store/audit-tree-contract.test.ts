import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { FastifyBaseLogger } from 'fastify';
import { MerkleLog } from '../../../shared/audit/merkle.js';
import { createDeployment } from '../../helpers/deployment.js';
import { AuditLog } from '../../../server/audit-log.js';
import type { Store } from '../../../server/store/store.js';
import { LogSink } from '../../helpers/log-sink.js';
import { ManualClock } from '../../helpers/manual-clock.js';
import { STORE_ADAPTERS, type OpenedStore, type StoreAdapter } from '../../helpers/stores.js';

/**
 * Issue 9: the audit tree's complete subtrees are stored with the entries, and a restarted server
 * reads O(log n) of them instead of every leaf. What it answers must be exactly what a tree rebuilt
 * from every stored leaf answers, and stored nodes that disagree with the leaves must be found and
 * rebuilt, never served. Run against every store adapter (the tree is part of the store contract).
 */

async function makeLog(adapter: StoreAdapter, n: number): Promise<OpenedStore> {
  const opened = await adapter.open();
  await opened.store.appendAuditMany(Array.from({ length: n }, (_, i) => ({ type: 'test.entry', at: i, n: i })));
  return opened;
}

const agreement = (await createDeployment(Date.UTC(2026, 0, 1))).agreement;

/** A restarted server's audit log on the database at `path` (no log key: nothing is signed). */
async function restart(opened: OpenedStore, inlineCheckMax?: number): Promise<{ store: Store; audit: AuditLog; sink: LogSink }> {
  const sink = new LogSink();
  const store = await opened.reopen();
  const audit = new AuditLog({
    agreement,
    store,
    clock: new ManualClock(),
    log: pino({ level: 'warn' }, sink) as unknown as FastifyBaseLogger,
    ...(inlineCheckMax === undefined ? {} : { inlineCheckMax }),
  });
  await audit.start();
  return { store, audit, sink };
}

/** The reference: every stored leaf hash read and the whole tree built in memory. */
async function fullRebuild(store: Store): Promise<MerkleLog> {
  const size = await store.auditSize();
  return MerkleLog.fromLeafHashes((await store.auditEntries(0, size)).map((r) => r.leafHash));
}

async function expectSameAnswers(audit: AuditLog, ref: MerkleLog): Promise<void> {
  const tree = await audit.tree();
  expect(tree.size).toBe(ref.size);
  const n = ref.size;
  const sizes = [...new Set([0, 1, 2, 3, Math.floor(n / 2), n - 1, n].filter((s) => s >= 0 && s <= n))];
  for (const s of sizes) expect(await tree.root(s)).toEqual(ref.root(s));
  for (const s of sizes.filter((x) => x > 0)) {
    for (const i of [...new Set([0, 1, Math.floor(s / 3), s - 2, s - 1])].filter((x) => x >= 0 && x < s)) {
      expect(await tree.inclusionProof(i, s)).toEqual(ref.inclusionProof(i, s));
      expect(await tree.leafHash(i)).toEqual(ref.leafHash(i));
    }
    for (const s1 of sizes.filter((x) => x <= s)) expect(await tree.consistencyProof(s1, s)).toEqual(ref.consistencyProof(s1, s));
  }
  await expect(tree.inclusionProof(n, n)).rejects.toMatchObject({ code: 'HL_ERR_AUDIT_RANGE' });
  await expect(tree.consistencyProof(1, n + 1)).rejects.toMatchObject({ code: 'HL_ERR_AUDIT_RANGE' });
}

/** The warnings about the tree (a server without a log key also warns that it signs nothing). */
const warnings = (sink: LogSink) => sink.records().filter((r) => r['level'] === 40 && String(r['msg']).includes('audit tree')).map((r) => String(r['msg']));

describe.each(STORE_ADAPTERS)('the stored audit tree: $name', (adapter) => {
  for (const n of [1, 2, 3, 5, 8, 13, 64, 100, 257, 1000]) {
    it(`${n} entries: a restart from the stored nodes answers roots and proofs exactly like a full rebuild, without a warning`, async () => {
      const opened = await makeLog(adapter, n);
      const { store, audit, sink } = await restart(opened);
      try {
        await expectSameAnswers(audit, await fullRebuild(store));
        // Growing after the restart keeps them equal.
        await opened.store.appendAuditMany([{ type: 'test.more', at: 1 }, { type: 'test.more', at: 2 }, { type: 'test.more', at: 3 }]);
        await expectSameAnswers(audit, await fullRebuild(store));
        expect(warnings(sink)).toEqual([]);
      } finally {
        audit.stop();
        await store.close();
      }
    });
  }

  const seven = new Uint8Array(32).fill(7);
  const damage: [string, (o: OpenedStore) => string][] = [
    ['a node row deleted (inside the tree)', () => 'DELETE FROM audit_nodes WHERE level = 2 AND idx = 5'],
    ['a node row deleted (the newest of its level)', () => 'DELETE FROM audit_nodes WHERE level = 1 AND idx = 49'],
    ['a node hash changed (inside the tree)', (o) => `UPDATE audit_nodes SET hash = ${o.blob(seven)} WHERE level = 1 AND idx = 10`],
    ['a node hash changed (high in the tree)', (o) => `UPDATE audit_nodes SET hash = ${o.blob(seven)} WHERE level = 5 AND idx = 0`],
    ['a stray row beyond the log', (o) => `INSERT INTO audit_nodes (level, idx, hash) VALUES (1, 50, ${o.blob(new Uint8Array(32).fill(1))})`],
    ['a stray row above the top level', (o) => `INSERT INTO audit_nodes (level, idx, hash) VALUES (9, 0, ${o.blob(new Uint8Array(32).fill(1))})`],
    ['a node too short', (o) => `UPDATE audit_nodes SET hash = ${o.blob(new Uint8Array(5))} WHERE level = 3 AND idx = 2`],
    ['a leaf hash rewritten (the nodes above it now disagree)', (o) => `UPDATE audit_entries SET leaf_hash = ${o.blob(new Uint8Array(32).fill(3))} WHERE idx = 37`],
    ['no node stored at all (a log from before they were kept)', () => 'DELETE FROM audit_nodes'],
    ['the log truncated under its nodes', () => 'DELETE FROM audit_entries WHERE idx >= 90'],
  ];
  for (const background of [false, true]) {
    for (const [what, tamper] of damage) {
      it(`${what}: found${background ? ' by the background check' : ''}, logged and rebuilt from the leaves, never served`, async () => {
        const opened = await makeLog(adapter, 100);
        await opened.exec(tamper(opened));
        const { store, audit, sink } = await restart(opened, background ? 0 : undefined);
        try {
          await expectSameAnswers(audit, await fullRebuild(store));
          expect(warnings(sink)).toContain('the stored audit tree does not match the stored entries: rebuilding it from the entries');
          expect(warnings(sink)).toContain('audit tree rebuilt');
          expect(await store.checkAuditTree()).toBeUndefined();
        } finally {
          audit.stop();
          await store.close();
        }
      });
    }
  }

  it('a gap in the entries cannot be rebuilt over: the error is logged and the stored nodes kept', async () => {
    const opened = await makeLog(adapter, 20);
    const nodes = async () => (await opened.exec('SELECT level, idx, hash FROM audit_nodes ORDER BY level, idx')).map((r) => `${String(r['level'])}/${String(r['idx'])}/${(r['hash'] as Buffer).toString('hex')}`);
    const before = await nodes();
    expect(before.length).toBeGreaterThan(10);
    await opened.exec('DELETE FROM audit_entries WHERE idx = 6');
    const { store, audit, sink } = await restart(opened);
    try {
      expect(sink.records().some((r) => r['level'] === 50 && r['msg'] === 'the audit tree cannot be rebuilt: its stored nodes are kept')).toBe(true);
      expect(await nodes()).toEqual(before);
    } finally {
      audit.stop();
      await store.close();
    }
  });
});
