import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalize } from '../../shared/encoding/canonical-json.js';
import { fromBase64, utf8 } from '../../shared/encoding/base64.js';
import { formatCheckpointBody, signNote } from '../../shared/audit/checkpoint.js';
import { MerkleLog, leafHash } from '../../shared/audit/merkle.js';
import { formatAuditEntry, logKeyName, verifyAuditExport } from '../../shared/audit/log-verify.js';
import { reconcileAuditExports } from '../../shared/audit/reconcile.js';
import type { HotlineClient } from '../../client/hotline-client.js';
import { startRelayPair, type RelayPair } from '../helpers/two-relays.js';
import { cli, fetchExport, makeClient, sendAndAck, signNow } from '../helpers/audit.js';

/**
 * `hotline audit verify` with the two relays' exports (README "Auditing", two relays): a real
 * exchange reconciles clean; an entry removed or changed in one log, and a relay that dropped a
 * forwarded message (its own log consistent and signed, but without it), are each named.
 */

/** An entry as the tests read it (only the fields they touch). */
type LooseEntry = { type: string; header: { id: string; sentAt: number }; receipt: { receipt: { messageId: string; kind: string; at: number } } };

type Export = Record<string, unknown> & { entries: string[]; checkpoints: string[] };

let pair: RelayPair;
const clients: HotlineClient[] = [];
let work: string;
let agreementPath: string;
let jpExport: Export;
let cnExport: Export;
/** The message jp-op-1 sent to cn-mnd, and the one cn-op-1 sent to jp-mod. */
let jpMsg: string;
let cnMsg: string;

/** Poll a condition, bounded in count and time (relaying the last receipts has no client-visible event). */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (let i = 0; i < 1000 && Date.now() < end; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`not within ${timeoutMs} ms: ${what}`);
}

beforeAll(async () => {
  pair = await startRelayPair({ withLogKeys: true });
  const { dep } = pair;
  const jp = makeClient(pair.jp.url, dep.agreement, dep.devices.jpOp);
  const cn = makeClient(pair.cn.url, dep.agreement, dep.devices.cnOp);
  clients.push(jp, cn);
  await Promise.all([jp.start(), cn.start()]);
  jpMsg = await sendAndAck(jp, cn, '至急：演習の通知', 'FLASH');
  cnMsg = await sendAndAck(cn, jp, '紧急：收到', 'IMMEDIATE');
  // Everything crossed and each relay recorded the peer's confirmations: nothing pending.
  await eventually(async () => {
    const a = await fetchExport(pair.jp.url, dep.devices.jpAud, dep.agreement);
    const b = await fetchExport(pair.cn.url, dep.devices.cnAud, dep.agreement);
    const r = reconcileAuditExports(dep.agreement, a, b, { parties: ['jp-mod', 'cn-mnd'] });
    return r.pending.length === 0 && r.envelopes === 2 && r.receipts === 4;
  }, 'both messages and their four receipts relayed and confirmed');
  await signNow(pair.jp.url, dep.devices.jpOp, dep.agreement);
  await signNow(pair.cn.url, dep.devices.cnOp, dep.agreement);
  jpExport = await fetchExport(pair.jp.url, dep.devices.jpAud, dep.agreement);
  cnExport = await fetchExport(pair.cn.url, dep.devices.cnAud, dep.agreement);
  work = mkdtempSync(join(tmpdir(), 'hotline-reconcile-'));
  agreementPath = join(work, 'agreement.json');
  writeFileSync(agreementPath, JSON.stringify(dep.agreement));
}, 90_000);

afterAll(async () => {
  for (const c of clients.splice(0)) await c.stop();
  await pair?.close();
  rmSync(work, { recursive: true, force: true });
});

function save(name: string, value: unknown): string {
  const path = join(work, name);
  writeFileSync(path, JSON.stringify(value));
  return path;
}

function copy(e: Export): Export {
  return JSON.parse(JSON.stringify(e)) as Export;
}

function entryIndex(e: Export, pred: (entry: LooseEntry) => boolean): number {
  const i = e.entries.findIndex((t) => pred(JSON.parse(t) as LooseEntry));
  expect(i).toBeGreaterThanOrEqual(0);
  return i;
}

/** Rewrite one entry's content (kept canonical: only its hash changes). */
function changeEntry(e: Export, i: number, change: (entry: LooseEntry) => void): void {
  const entry = JSON.parse(e.entries[i]!) as LooseEntry;
  change(entry);
  e.entries[i] = canonicalize(entry);
}

describe('hotline audit verify with the two relays’ exports', () => {
  it('a real two-relay exchange reconciles clean; the single-export usage still works', async () => {
    const a = save('jp-export.json', jpExport);
    const b = save('cn-export.json', cnExport);
    const r = await cli(['audit', 'verify', '--agreement', agreementPath, a, b]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain('(log of jp-mod\'s relay)');
    expect(r.out).toContain('(log of cn-mnd\'s relay)');
    expect(r.out).toContain('RECONCILED jp-mod ⇄ cn-mnd: 2 envelope headers and 4 receipts in both logs with the same hash');
    // Any order.
    const swapped = await cli(['audit', 'verify', '--agreement', agreementPath, b, a, '--json']);
    expect(swapped.code).toBe(0);
    const json = JSON.parse(swapped.out) as { ok: boolean; reconciliation: { parties: string[]; findings: unknown[] } };
    expect(json.ok).toBe(true);
    expect(json.reconciliation.parties).toEqual(['cn-mnd', 'jp-mod']);
    const single = await cli(['audit', 'verify', '--agreement', agreementPath, a]);
    expect(single.code).toBe(0);
    expect(single.out).toMatch(/^OK: /);
    // Two exports of one relay's log are not a pair.
    const same = await cli(['audit', 'verify', '--agreement', agreementPath, a, a]);
    expect(same.code).toBe(1);
    expect(same.err).toContain('both exports are of the log of jp-mod');
  });

  it('an entry removed from one log is named: message id, kind, whose log', async () => {
    const jp = copy(jpExport);
    // jp's relay received cn's message over the link; its entry is taken out of jp's log.
    const i = entryIndex(jp, (e) => e.type === 'envelope.accepted' && e.header.id === cnMsg);
    jp.entries.splice(i, 1);
    const r = reconcileAuditExports(pair.dep.agreement, jp, cnExport, { parties: ['jp-mod', 'cn-mnd'] });
    expect(r.ok).toBe(false);
    expect(r.findings).toContainEqual(expect.objectContaining({ problem: 'missing', kind: 'envelope', messageId: cnMsg, side: 'jp-mod', from: 'cn-mnd', to: 'jp-mod' }));
    const out = await cli(['audit', 'verify', '--agreement', agreementPath, save('jp-removed.json', jp), save('cn.json', cnExport)]);
    expect(out.code).toBe(1);
    expect(out.err).toContain(`MISSING (jp-mod): envelope ${cnMsg}`);
    // The log itself no longer holds together either, and says where.
    expect(out.err).toMatch(/FAILED .*jp-removed\.json.* at entry \d+/);
  });

  it('an entry changed in one log is named as altered (an envelope header, a receipt)', async () => {
    const cn = copy(cnExport);
    const i = entryIndex(cn, (e) => e.type === 'envelope.accepted' && e.header.id === jpMsg);
    changeEntry(cn, i, (e) => (e.header.sentAt += 1));
    const jp = copy(jpExport);
    const k = entryIndex(jp, (e) => e.type === 'receipt.accepted' && e.receipt.receipt.messageId === jpMsg && e.receipt.receipt.kind === 'acknowledged');
    changeEntry(jp, k, (e) => (e.receipt.receipt.at += 1));
    const r = reconcileAuditExports(pair.dep.agreement, jp, cn, { parties: ['jp-mod', 'cn-mnd'] });
    expect(r.findings).toHaveLength(2);
    expect(r.findings).toContainEqual(expect.objectContaining({ problem: 'altered', kind: 'envelope', messageId: jpMsg, from: 'jp-mod', to: 'cn-mnd' }));
    expect(r.findings).toContainEqual(
      expect.objectContaining({ problem: 'altered', kind: 'receipt', messageId: jpMsg, receipt: { kind: 'acknowledged', by: 'cn-mnd/cn-op-1' }, from: 'cn-mnd', to: 'jp-mod' }),
    );
    const out = await cli(['audit', 'verify', '--agreement', agreementPath, save('jp-changed.json', jp), save('cn-changed.json', cn)]);
    expect(out.code).toBe(1);
    expect(out.err).toContain(`ALTERED (jp-mod+cn-mnd): envelope ${jpMsg}`);
    expect(out.err).toContain(`ALTERED (cn-mnd+jp-mod): receipt ${jpMsg} acknowledged by cn-mnd/cn-op-1`);
  });

  it('a relay that dropped a forwarded message, its own log consistent and signed without it, is named', async () => {
    const { dep } = pair;
    // cn's relay confirmed jp's message (jp's log says so) but kept no trace of it: every entry
    // that names it is gone, the rest re-chained, and a checkpoint signed with cn's own log key.
    const kept = cnExport.entries.filter((t) => !t.includes(jpMsg));
    expect(kept.length).toBeLessThan(cnExport.entries.length);
    const log = new MerkleLog();
    let prev: Uint8Array | null = null;
    const entries = kept.map((t, idx) => {
      const { idx: _i, prev: _p, ...entry } = JSON.parse(t) as { type: string; at: number; idx: number; prev: string };
      const text = formatAuditEntry(entry, idx, prev);
      prev = leafHash(utf8(text));
      log.append(prev);
      return text;
    });
    const name = logKeyName(dep.agreement);
    const checkpoint = await signNote(formatCheckpointBody({ origin: name, size: log.size, rootHash: log.root() }), { name, secretKey: fromBase64(dep.logs.cn.logSecret, 32) });
    const dropped = { ...copy(cnExport), entries, checkpoints: [checkpoint] };
    // On its own, the dishonest log verifies: only the other party's log shows what is missing.
    const alone = await verifyAuditExport(dep.agreement, dropped);
    expect(alone.problem).toBeUndefined();
    expect(alone.logParty).toBe('cn-mnd');

    const r = reconcileAuditExports(dep.agreement, jpExport, dropped);
    expect(r.parties).toEqual(['jp-mod', 'cn-mnd']);
    expect(r.findings).toContainEqual(expect.objectContaining({ problem: 'missing', kind: 'envelope', messageId: jpMsg, side: 'cn-mnd', from: 'jp-mod', to: 'cn-mnd' }));
    const out = await cli(['audit', 'verify', '--agreement', agreementPath, save('jp.json', jpExport), save('cn-dropped.json', dropped)]);
    expect(out.code).toBe(1);
    expect(out.out).toContain('OK');
    expect(out.err).toContain(`MISSING (cn-mnd): envelope ${jpMsg}`);
    expect(out.err).toContain('confirmed storing it');
    // The receipts cn's devices signed for it (relayed to jp) are named as missing from cn's log too.
    expect(out.err).toContain(`MISSING (cn-mnd): receipt ${jpMsg} delivered by cn-mnd/cn-op-1`);
  });
});
