import { afterEach, describe, expect, it } from 'vitest';
import { relayCosignerName, witnessEvidenceKey, witnessStateKey, type ForkEvidence } from '../../server/federation/witness.js';
import { fromBase64, toBase64, toHex, utf8 } from '../../shared/encoding/base64.js';
import { formatCheckpointBody, signNote, verifyCheckpoint } from '../../shared/audit/checkpoint.js';
import { MerkleLog, leafHash } from '../../shared/audit/merkle.js';
import { logKeyName, verifyAuditExport } from '../../shared/audit/log-verify.js';
import type { DeviceSecretFile } from '../../shared/protocol/schemas.js';
import { makeTwoRelayDeployment, startCnRelayAlone, startRelayPair, type RelayPair, type TwoRelayDeployment } from '../helpers/two-relays.js';
import { call, login } from '../helpers/ws-client.js';
import { fetchExport, makeClient, sendAndAck, signNow } from '../helpers/audit.js';
import { LogSink } from '../helpers/log-sink.js';
import { fakeRelay } from '../helpers/fake-relay.js';
import type { HotlineClient } from '../../client/hotline-client.js';

/**
 * Each relay witnesses the other's log over the relay-to-relay link (PROTOCOL.md "Witnessing the
 * peer relay's log"): checkpoints cosigned after a consistency proof, the cosignature stored beside
 * the checkpoint, and a fork refused, kept as evidence and raised as an alarm.
 */

const clients: HotlineClient[] = [];
let pair: RelayPair | undefined;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  await pair?.close();
  pair = undefined;
  for (const f of cleanups.splice(0)) await f();
});

/** Poll a condition, bounded in count and time (cosigning between relays has no client-visible event). */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (let i = 0; i < 1000 && Date.now() < end; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`not within ${timeoutMs} ms: ${what}`);
}

/** The newest checkpoint of `url`'s log, and the relay cosigner names that verify on it. */
async function latestCosigned(url: string, auditor: DeviceSecretFile, dep: TwoRelayDeployment, logParty: 'jp' | 'cn', witness: 'jp' | 'cn') {
  const r = await call(url, 'GET', '/v1/audit/checkpoint/latest', undefined, await login(url, auditor, dep.agreement));
  if (r.status !== 200) return undefined;
  const note = (r.body as { note: string }).note;
  const w = dep.relays[witness].certificate.cert;
  const v = await verifyCheckpoint(note, [
    { name: logKeyName(dep.agreement), publicKey: fromBase64(dep.logs[logParty].logKey, 32) },
    { name: relayCosignerName(w), publicKey: fromBase64(w.signKey, 32), type: 'cosignature/v1' },
  ]);
  return { size: v.checkpoint.size, cosigners: v.verified.filter((s) => s.type === 'cosignature/v1').map((s) => s.name) };
}

describe('each relay witnesses the other’s log', () => {
  it('cosigns the peer’s checkpoints over the link, again after the log grew (consistency proof), and the exports still verify', async () => {
    pair = await startRelayPair({ withLogKeys: true });
    const { dep } = pair;
    // The first checkpoints (signed at start) are cosigned as soon as the link is up.
    for (const [server, auditor, party, witness] of [
      [pair.jp, dep.devices.jpAud, 'jp', 'cn'],
      [pair.cn, dep.devices.cnAud, 'cn', 'jp'],
    ] as const) {
      await eventually(async () => (await latestCosigned(server.url, auditor, dep, party, witness))?.cosigners.includes(relayCosignerName(dep.relays[witness].certificate.cert)) ?? false, `the first ${party} checkpoint cosigned by the relay of ${witness}`);
    }
    const first = (await latestCosigned(pair.jp.url, dep.devices.jpAud, dep, 'jp', 'cn'))!.size;

    // A real exchange grows both logs; the next checkpoints are cosigned after a consistency proof.
    const jp = makeClient(pair.jp.url, dep.agreement, dep.devices.jpOp);
    const cn = makeClient(pair.cn.url, dep.agreement, dep.devices.cnOp);
    clients.push(jp, cn);
    await Promise.all([jp.start(), cn.start()]);
    await sendAndAck(jp, cn, '緊急連絡 — test');
    const signed = await signNow(pair.jp.url, dep.devices.jpOp, dep.agreement);
    expect(signed.size).toBeGreaterThan(first);
    await eventually(async () => {
      const l = await latestCosigned(pair!.jp.url, dep.devices.jpAud, dep, 'jp', 'cn');
      return l?.size === signed.size && l.cosigners.includes('cn-mnd/cn-relay');
    }, 'the grown jp checkpoint cosigned by the relay of cn-mnd');
    const cnSigned = await signNow(pair.cn.url, dep.devices.cnOp, dep.agreement);
    await eventually(async () => {
      const l = await latestCosigned(pair!.cn.url, dep.devices.cnAud, dep, 'cn', 'jp');
      return l?.size === cnSigned.size && l.cosigners.includes('jp-mod/jp-relay');
    }, 'the grown cn checkpoint cosigned by the relay of jp-mod');

    // The witness remembers what it cosigned (so a restart keeps holding the peer to it).
    const state = JSON.parse((await pair.cn.store.getMeta(witnessStateKey('jp-mod')))!) as { size: number };
    expect(state.size).toBe(signed.size);

    // The export carries the witness's certificate: the auditor sees the other relay's cosignature verified.
    const exported = await fetchExport(pair.jp.url, dep.devices.jpAud, dep.agreement);
    expect((exported['relays'] as { cert: { relay: string } }[]).map((c) => c.cert.relay)).toEqual(['cn-relay']);
    const v = await verifyAuditExport(dep.agreement, exported);
    expect(v.problem).toBeUndefined();
    expect(v.ok).toBe(true);
    expect(v.logParty).toBe('jp-mod');
    expect(v.witnesses).toEqual(['cn-mnd/cn-relay']);
    expect(v.cosigners).toContain('cn-mnd/cn-relay');
  }, 60_000);
});

// ----- a test standing in for the relay of jp-mod (test/helpers/fake-relay.ts), against the real relay of cn-mnd -----

/** A log of `size` made-up entries; `fork` changes entry 1 (so every size above 1 differs). */
function treeOf(size: number, fork = false): MerkleLog {
  const log = new MerkleLog();
  for (let i = 0; i < size; i++) log.append(leafHash(utf8(`entry ${i}${fork && i === 1 ? ' (rewritten)' : ''}`)));
  return log;
}

async function checkpointOf(dep: TwoRelayDeployment, log: MerkleLog, size: number): Promise<string> {
  const name = logKeyName(dep.agreement);
  return signNote(formatCheckpointBody({ origin: name, size, rootHash: log.root(size) }), { name, secretKey: fromBase64(dep.logs.jp.logSecret, 32) });
}

describe('a fork of the peer relay’s log', () => {
  it('is refused, kept as evidence and raised (log line at error, audit.alarm to the operators); consistent checkpoints are cosigned', async () => {
    const dep = await makeTwoRelayDeployment();
    const sink = new LogSink();
    const relay = await startCnRelayAlone(dep, sink, 'hotline-witness-');
    cleanups.push(relay.close);
    const cn = relay.server;
    for (const d of [dep.devices.cnOp, dep.devices.cnAud]) {
      const res = await fetch(`${cn.url}/v1/directory/devices`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(d.certificate) });
      expect(res.status).toBe(201);
    }
    const op = makeClient(cn.url, dep.agreement, dep.devices.cnOp);
    clients.push(op);
    const alarms: string[] = [];
    op.on('event', (e) => e.type === 'audit.alarm' && alarms.push(e.reason));
    await op.start();

    const jp = await fakeRelay(dep.agreement, cn.url, dep.relays.jp, 'cn-mnd');
    expect((await jp.nextFrame('relay-witness-state')).size).toBe(0);
    const good = treeOf(9);
    const cosignerKey = { name: 'cn-mnd/cn-relay', publicKey: fromBase64(dep.relays.cn.certificate.cert.signKey, 32), type: 'cosignature/v1' as const };
    const logKey = { name: logKeyName(dep.agreement), publicKey: fromBase64(dep.logs.jp.logKey, 32) };

    // First checkpoint: nothing to be consistent with yet.
    jp.sendNumbered({ t: 'relay-checkpoint', size: 3, note: await checkpointOf(dep, good, 3), from: 0, proof: [] });
    const c3 = await jp.nextFrame('relay-cosignature');
    expect(c3.size).toBe(3);
    expect((await verifyCheckpoint(c3.note as string, [logKey, cosignerKey])).verified.map((s) => s.name)).toContain('cn-mnd/cn-relay');

    // A grown log with a proof from the wrong size: the witness says which size it needs.
    jp.sendNumbered({ t: 'relay-checkpoint', size: 5, note: await checkpointOf(dep, good, 5), from: 2, proof: good.consistencyProof(2, 5).map(toHex) });
    expect((await jp.nextFrame('relay-witness-state')).size).toBe(3);
    // With the proof from 3: cosigned.
    jp.sendNumbered({ t: 'relay-checkpoint', size: 5, note: await checkpointOf(dep, good, 5), from: 3, proof: good.consistencyProof(3, 5).map(toHex) });
    expect((await jp.nextFrame('relay-cosignature')).size).toBe(5);

    // Two roots for one size: refused.
    const forked = treeOf(9, true);
    const twin = await checkpointOf(dep, forked, 5);
    jp.sendNumbered({ t: 'relay-checkpoint', size: 5, note: twin, from: 5, proof: [] });
    const e1 = await jp.nextFrame('relay-error');
    expect(e1).toMatchObject({ code: 'HL_ERR_AUDIT_EQUIVOCATION', ref: 'checkpoint/5' });

    // A larger checkpoint that does not extend the one cosigned (its proof is of the forked tree): refused.
    jp.sendNumbered({ t: 'relay-checkpoint', size: 8, note: await checkpointOf(dep, forked, 8), from: 5, proof: forked.consistencyProof(5, 8).map(toHex) });
    const e2 = await jp.nextFrame('relay-error');
    expect(e2).toMatchObject({ code: 'HL_ERR_AUDIT_PROOF_INVALID', ref: 'checkpoint/8' });

    // A checkpoint signed by another key than jp's log key: refused (not an alarm: not jp's log).
    const name = logKeyName(dep.agreement);
    const foreign = await signNote(formatCheckpointBody({ origin: name, size: 9, rootHash: good.root(9) }), { name, secretKey: fromBase64(dep.logs.cn.logSecret, 32) });
    jp.sendNumbered({ t: 'relay-checkpoint', size: 9, note: foreign, from: 5, proof: good.consistencyProof(5, 9).map(toHex) });
    expect((await jp.nextFrame('relay-error')).code).toBe('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE');

    // The honest history goes on being cosigned, and the link stays up.
    jp.sendNumbered({ t: 'relay-checkpoint', size: 9, note: await checkpointOf(dep, good, 9), from: 5, proof: good.consistencyProof(5, 9).map(toHex) });
    expect((await jp.nextFrame('relay-cosignature')).size).toBe(9);

    // Evidence kept: both refused checkpoints, as signed by jp's log key, with the proof and the state.
    const evidence = JSON.parse((await cn.store.getMeta(witnessEvidenceKey('jp-mod')))!) as ForkEvidence[];
    expect(evidence.map((e) => e.code)).toEqual(['HL_ERR_AUDIT_EQUIVOCATION', 'HL_ERR_AUDIT_PROOF_INVALID']);
    expect(evidence[0]!.note).toBe(twin);
    expect(evidence[0]!.cosigned.size).toBe(5);
    expect(evidence[0]!.seenRoot).toBe(toBase64(good.root(5)));
    expect(evidence[1]!.proof).toEqual(forked.consistencyProof(5, 8).map(toHex));

    // The alarm: at error in the log, in the audit log, and on the operators' consoles.
    const errors = sink.records().filter((r) => r['level'] === 50 && String(r['msg']).includes('forked'));
    expect(errors).toHaveLength(2);
    const entries = (await fetchExport(cn.url, dep.devices.cnAud, dep.agreement)).entries.map((t) => JSON.parse(t) as { type: string; reason?: string });
    const logged = entries.filter((e) => e.type === 'audit.alarm');
    expect(logged).toHaveLength(2);
    expect(logged[0]!.reason).toMatch(/two different checkpoints of size 5/);
    expect(logged[1]!.reason).toMatch(/not an extension of checkpoint 5/);
    await eventually(async () => alarms.length === 2, 'both alarms on the operator console');
    jp.ws.close();
  }, 60_000);
});
