import { beforeAll, describe, expect, it } from 'vitest';
import { AUDIT_EXPORT_TYPE, cosignerName, formatAuditEntry, logKeyName, verifyAuditExport, type AuditExport } from '../../../shared/audit/log-verify.js';
import { buildAuditReport } from '../../../shared/audit/report.js';
import { MerkleLog, leafHash } from '../../../shared/audit/merkle.js';
import { cosignCheckpoint, formatCheckpointBody, signNote } from '../../../shared/audit/checkpoint.js';
import { expectedRecipients, sealEnvelope } from '../../../shared/crypto/envelope.js';
import { signReceipt } from '../../../shared/crypto/receipt.js';
import { agreementHash, revokeDevice } from '../../../shared/crypto/keys.js';
import { fromBase64, utf8 } from '../../../shared/encoding/base64.js';
import type { DeviceSecretFile } from '../../../shared/protocol/schemas.js';
import { makeDeployment, type TestDeployment } from '../../helpers/fixtures.js';

let d: TestDeployment;
let good: AuditExport;

/** Builds a small log the way the server does: entries linked by idx/prev, checkpoints cosigned. */
async function buildExport(): Promise<AuditExport> {
  const entries: string[] = [];
  const log = new MerkleLog();
  let prev: Uint8Array | null = null;
  const add = (e: { type: string; at: number } & Record<string, unknown>) => {
    const text = formatAuditEntry(e, entries.length, prev);
    entries.push(text);
    prev = leafHash(utf8(text));
    log.append(prev);
  };
  const devices = Object.values(d.devices);
  for (const dev of devices) add({ type: 'device.enrolled', at: d.now, certificate: dev.certificate });
  const directory = devices.map((x) => x.certificate.cert);
  const checkpoints: string[] = [];
  const checkpoint = async (cosigners: DeviceSecretFile[]) => {
    let note = await signNote(formatCheckpointBody({ origin: logKeyName(d.agreement), size: log.size, rootHash: log.root() }), {
      name: logKeyName(d.agreement),
      secretKey: fromBase64(d.logSecret),
    });
    for (const c of cosigners) {
      note = await cosignCheckpoint(note, { name: cosignerName(c.certificate.cert), secretKey: fromBase64(c.signSecret) }, Math.floor(d.now / 1000));
    }
    checkpoints.push(note);
  };
  await checkpoint([d.devices.jpAud, d.devices.cnAud]);
  for (let i = 0; i < 4; i++) {
    const precedence = (['FLASH', 'IMMEDIATE', 'FLASH', 'ROUTINE'] as const)[i]!;
    const env = await sealEnvelope({
      sender: d.devices.jpOp,
      to: 'cn-mnd',
      precedence,
      seq: i + 1,
      sentAt: d.now + i * 1000,
      recipients: expectedRecipients(directory, d.devices.jpOp.certificate.cert, 'cn-mnd'),
      plaintext: { body: `通報 ${i}`, lang: 'ja' },
    });
    const acceptedAt = d.now + i * 1000 + 5;
    const { envelopeHash } = await import('../../../shared/crypto/envelope.js');
    add({ type: 'envelope.accepted', at: acceptedAt, envelopeHash: envelopeHash(env.header), header: env.header, signature: env.signature });
    const delivered = await signReceipt(d.devices.cnOp, env.header, 'delivered', acceptedAt + 100 * (i + 1));
    add({ type: 'receipt.accepted', at: acceptedAt + 100 * (i + 1), receipt: delivered });
    if (i !== 3) {
      const ack = await signReceipt(d.devices.cnOp, env.header, 'acknowledged', acceptedAt + 60_000 * (i + 1));
      add({ type: 'receipt.accepted', at: acceptedAt + 60_000 * (i + 1), receipt: ack });
    } else {
      add({ type: 'deadline.missed', at: acceptedAt + 21_600_000, messageId: env.header.id, rung: 'acknowledged', dueAt: acceptedAt + 21_600_000, level: 1 });
    }
  }
  add({ type: 'link.test', at: d.now + 10_000, from: 'jp-mod', to: 'cn-mnd', ok: true, roundTripMs: 40 });
  await checkpoint([d.devices.jpAud, d.devices.cnOp]);
  return {
    type: AUDIT_EXPORT_TYPE,
    v: 1,
    agreementHash: agreementHash(d.agreement),
    exportedAt: d.now + 100_000,
    entries,
    checkpoints,
    certificates: devices.map((x) => x.certificate),
    revocations: [],
  };
}

beforeAll(async () => {
  d = await makeDeployment();
  good = await buildExport();
});

const copy = () => structuredClone(good);
/** Change one character inside entry i (in a place that keeps it JSON). */
function flipByte(text: string): string {
  const at = text.indexOf('"at":') + 6;
  const ch = text[at] === '1' ? '2' : '1';
  return text.slice(0, at) + ch + text.slice(at + 1);
}

describe('verifyAuditExport', () => {
  it('verifies a whole exchange: every hash, signature, receipt and checkpoint', async () => {
    const r = await verifyAuditExport(d.agreement, JSON.parse(JSON.stringify(good)));
    expect(r.problem).toBeUndefined();
    expect(r).toMatchObject({ ok: true, envelopes: 4, receipts: 7, checkpoints: 2, verifiedSize: good.entries.length });
    expect(r.cosigners.sort()).toEqual(['cn-mnd/cn-op-1', 'jp-mod/jp-audit-1']);
  });

  it('names an entry whose bytes were changed (unsigned metadata)', async () => {
    for (const k of [0, 8, 12]) {
      const x = copy();
      x.entries[k] = flipByte(x.entries[k]!);
      const r = await verifyAuditExport(d.agreement, x);
      expect(r.ok).toBe(false);
      expect(r.problem?.index, `entry ${k}`).toBe(k);
    }
  });

  it('names an entry whose signed header or receipt was changed', async () => {
    const x = copy();
    const k = x.entries.findIndex((t) => t.includes('"envelope.accepted"'));
    x.entries[k] = x.entries[k]!.replace('"precedence":"FLASH"', '"precedence":"ROUTINE"');
    const r = await verifyAuditExport(d.agreement, x);
    expect(r.problem).toMatchObject({ index: k, code: 'HL_ERR_ENVELOPE_BAD_SIGNATURE' });

    const y = copy();
    const j = y.entries.findIndex((t) => t.includes('"acknowledged"'));
    y.entries[j] = y.entries[j]!.replace('"kind":"acknowledged"', '"kind":"will-comply"');
    const r2 = await verifyAuditExport(d.agreement, y);
    expect(r2.problem).toMatchObject({ index: j, code: 'HL_ERR_RECEIPT_BAD_SIGNATURE' });
  });

  it('names a deleted row, two reordered rows and a truncated log', async () => {
    const del = copy();
    del.entries.splice(9, 1);
    expect((await verifyAuditExport(d.agreement, del)).problem?.index).toBe(9);

    const swap = copy();
    [swap.entries[10], swap.entries[11]] = [swap.entries[11]!, swap.entries[10]!];
    expect((await verifyAuditExport(d.agreement, swap)).problem?.index).toBe(10);

    const cut = copy();
    cut.entries.length -= 3;
    const r = await verifyAuditExport(d.agreement, cut);
    expect(r.problem).toMatchObject({ code: 'HL_ERR_AUDIT_ROOT_MISMATCH', checkpoint: 1 });
    expect(r.problem?.message).toMatch(/truncated/);
  });

  it('catches the last entry changed with its link rewritten through the signed root', async () => {
    const x = copy();
    const last = x.entries.length - 1;
    x.entries[last] = flipByte(x.entries[last]!);
    const r = await verifyAuditExport(d.agreement, x);
    expect(r.problem).toMatchObject({ code: 'HL_ERR_AUDIT_ROOT_MISMATCH', index: last });
  });

  it('refuses a checkpoint with a forged log signature or cosignature, and an export for another agreement', async () => {
    const x = copy();
    // Characters 8.. of the base64 are past the 4-byte key ID, inside the timestamp and signature.
    x.checkpoints[1] = x.checkpoints[1]!.replace(/(\u2014 jp-mod\/jp-audit-1 .{30})(.)/, (_m, a: string, c: string) => a + (c === 'A' ? 'B' : 'A'));
    expect((await verifyAuditExport(d.agreement, x)).problem).toMatchObject({ code: 'HL_ERR_AUDIT_CHECKPOINT_SIGNATURE', checkpoint: 1 });

    const z = copy();
    z.checkpoints[0] = z.checkpoints[0]!.replace(/(\u2014 jp-cn\.hotline\.example .{30})(.)/, (_m, a: string, c: string) => a + (c === 'A' ? 'B' : 'A'));
    expect((await verifyAuditExport(d.agreement, z)).problem).toMatchObject({ code: 'HL_ERR_AUDIT_CHECKPOINT_SIGNATURE', checkpoint: 0 });

    const y = copy();
    y.agreementHash = '0'.repeat(64);
    expect((await verifyAuditExport(d.agreement, y)).problem?.code).toBe('HL_ERR_AUDIT_EXPORT_INVALID');
  });

  it('refuses a message accepted from a device after its revocation', async () => {
    const x = copy();
    const rev = await revokeDevice(d.jp, d.devices.jpOp.certificate.cert, { at: d.now + 500 });
    x.revocations.push(rev);
    const r = await verifyAuditExport(d.agreement, x);
    expect(r.problem?.code).toBe('HL_ERR_CERT_REVOKED');
    expect(r.problem?.index).toBe(x.entries.findIndex((t) => t.includes('"envelope.accepted"')) + 3);
  });

  it('reports progress up to the total', async () => {
    const seen: number[] = [];
    await verifyAuditExport(d.agreement, good, { onProgress: (done) => seen.push(done) });
    expect(seen.at(-1)).toBe(good.entries.length);
  });
});

describe('buildAuditReport', () => {
  it('counts per precedence, times to each rung, missed deadlines and link tests', () => {
    const r = buildAuditReport(good.entries);
    const flash = r.rows.find((x) => x.precedence === 'FLASH')!;
    expect(flash).toMatchObject({ sent: 2, delivered: 2, acknowledged: 2, deadlinesMissed: 0 });
    expect(flash.toDelivered).toEqual({ count: 2, medianMs: 100, p95Ms: 300, worstMs: 300 });
    expect(flash.toAcknowledged).toEqual({ count: 2, medianMs: 60_000, p95Ms: 180_000, worstMs: 180_000 });
    const routine = r.rows.find((x) => x.precedence === 'ROUTINE')!;
    expect(routine).toMatchObject({ sent: 1, delivered: 1, acknowledged: 0, deadlinesMissed: 1 });
    expect(routine.toAcknowledged.medianMs).toBeNull();
    expect(r.linkTests).toEqual({ passed: 1, failed: 0 });
  });
});
