import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeBenchDeployment } from '../bench/deployment.js';
import { BODY, prepareBacklog } from '../bench/traffic.js';
import { openEnvelope, verifyEnvelope } from '../shared/crypto/envelope.js';
import type { Envelope } from '../shared/protocol/schemas.js';

const dir = mkdtempSync(join(tmpdir(), 'hotline-bench-backlog-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The bench's backlog is sealed the fast way (copies of one sealed message, each header signed
// again): it must still be a backlog of valid envelopes, or the drain would measure refusals.
describe('prepareBacklog (bench)', () => {
  it('gives envelopes with their own ids and consecutive seqs, each signature verifying and each recipient opening it', async () => {
    const dep = await makeBenchDeployment(1, dir);
    const backlog = await prepareBacklog(dep.offline, dep.operators, 7, 5);
    expect(backlog).toHaveLength(5);
    const envelopes = backlog.map((m) => (JSON.parse(m.frame) as { t: string; envelope: Envelope }).envelope);
    expect(new Set(envelopes.map((e) => e.header.id)).size).toBe(5);
    expect(envelopes.map((e) => e.header.seq)).toEqual([7, 8, 9, 10, 11]);
    expect(backlog.map((m) => m.id)).toEqual(envelopes.map((e) => e.header.id));
    const sender = dep.offline.from.certificate;
    const addressee = dep.offline.to;
    for (const e of envelopes) {
      await expect(verifyEnvelope(e, sender.cert)).resolves.toBeDefined();
      const opened = await openEnvelope(e, { device: addressee, senderCert: sender.cert });
      expect(opened.plaintext.body).toBe(BODY);
    }
    // A header changed after signing is caught: the copies really are signed one by one.
    const forged = { ...envelopes[1]!, header: { ...envelopes[1]!.header, seq: 99 } };
    await expect(verifyEnvelope(forged, sender.cert)).rejects.toThrow();
  });
});
