import { beforeAll, describe, expect, it } from 'vitest';
import { isHotlineError } from '../../shared/errors.js';
import { fromBase64, utf8 } from '../../shared/encoding/base64.js';
import { canonicalize } from '../../shared/encoding/canonical-json.js';
import { envelopeHash, expectedRecipients, openEnvelope, parseEnvelopeText, sealEnvelope, verifyCheckedEnvelope } from '../../shared/crypto/envelope.js';
import { signReceipt, verifyCheckedReceipt, verifyReceipt } from '../../shared/crypto/receipt.js';
import { decodeClientFrame, decodeServerFrame } from '../../shared/protocol/codec.js';
import { revokeDevice, verifyDeviceCertificate, verifyRevocation } from '../../shared/crypto/keys.js';
import { parseNote, verifyCheckpoint } from '../../shared/audit/checkpoint.js';
import { verifyConsistency, verifyInclusion } from '../../shared/audit/merkle.js';
import type { Envelope, Revocation, SignedReceipt } from '../../shared/protocol/schemas.js';
import { makeDeployment, type TestDeployment } from '../helpers/fixtures.js';
import { mutate, prng } from '../helpers/mutate.js';

// Bounded fuzzing of every parser and verifier that takes attacker-controlled input: each mutated
// input is either accepted or refused with a HotlineError (a code), never a TypeError, a hang or a
// crash. Counts are fixed and the PRNG is seeded, so a failure names a reproducible case.
const ROUNDS = 300;

let d: TestDeployment;
let env: Envelope;
let receipt: SignedReceipt;
let revocation: Revocation;

beforeAll(async () => {
  d = await makeDeployment(Date.now() - 60_000);
  const directory = Object.values(d.devices).map((x) => x.certificate.cert);
  env = await sealEnvelope({
    sender: d.devices.jpOp,
    to: 'cn-mnd',
    precedence: 'FLASH',
    seq: 1,
    sentAt: d.now,
    recipients: expectedRecipients(directory, d.devices.jpOp.certificate.cert, 'cn-mnd'),
    plaintext: { subject: '件名', body: '本文 / 正文', lang: 'ja' },
  });
  receipt = await signReceipt(d.devices.cnOp, env.header, 'acknowledged', d.now + 1000);
  revocation = await revokeDevice(d.cn, d.devices.cnOp.certificate.cert, { at: d.now });
});

/** Run `fn`; a throw must be a HotlineError. Returns whether it was accepted. */
async function refusesCleanly(fn: () => unknown, seed: number): Promise<boolean> {
  try {
    await fn();
    return true;
  } catch (err) {
    if (!isHotlineError(err)) throw new Error(`seed ${seed}: ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`, { cause: err });
    return false;
  }
}

describe('fuzzing peer input', () => {
  it('envelopes: mutated envelopes are refused with a code (or, if the change is harmless, open)', async () => {
    let refused = 0;
    for (let i = 0; i < ROUNDS; i++) {
      const rnd = prng(1000 + i);
      const bad = mutate(env, rnd);
      const ok = await refusesCleanly(() => openEnvelope(bad, { device: d.devices.cnOp, senderCert: d.devices.jpOp.certificate.cert }), 1000 + i);
      if (!ok) refused++;
      await refusesCleanly(() => parseEnvelopeText(JSON.stringify(bad) ?? ''), 1000 + i);
    }
    // Every field is covered by the signature, the schema or a hash: nearly all mutations fail.
    expect(refused).toBeGreaterThan(ROUNDS * 0.9);
  });

  it('receipts, certificates and revocations', async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const rnd = prng(2000 + i);
      await refusesCleanly(() => verifyReceipt(mutate(receipt, rnd), d.devices.cnOp.certificate.cert, env.header), 2000 + i);
      await refusesCleanly(() => verifyDeviceCertificate(d.agreement, mutate(d.devices.cnOp.certificate, rnd), { now: d.now + 1 }), 2000 + i);
      await refusesCleanly(() => verifyRevocation(d.agreement, mutate(revocation, rnd)), 2000 + i);
    }
  });

  it('raw text: base64, JSON frames, checkpoint notes', async () => {
    const alphabet = 'AZaz09+/=\n— \u0000\ud800é{}[]":,';
    for (let i = 0; i < ROUNDS * 3; i++) {
      const rnd = prng(3000 + i);
      const len = Math.floor(rnd() * 80);
      let text = '';
      for (let j = 0; j < len; j++) text += alphabet[Math.floor(rnd() * alphabet.length)];
      await refusesCleanly(() => fromBase64(text), 3000 + i);
      await refusesCleanly(() => parseEnvelopeText(text), 3000 + i);
      await refusesCleanly(() => decodeClientFrame(text), 3000 + i);
      await refusesCleanly(() => decodeServerFrame(text), 3000 + i);
      await refusesCleanly(() => decodeClientFrame(utf8(text).subarray(0, Math.max(0, text.length - 1))), 3000 + i);
      await refusesCleanly(() => parseNote(text), 3000 + i);
      await refusesCleanly(() => verifyCheckpoint(`origin\n1\n${text}\n\n\u2014 origin ${text}\n`, [{ name: 'origin', publicKey: new Uint8Array(32) }]), 3000 + i);
    }
  });

  it('the frame codec: mutated frames decode to a typed frame or a coded refusal, and a decoded envelope verifies or is refused with a code', async () => {
    const bases = [{ t: 'envelope', envelope: env }, { t: 'receipt', receipt }, { t: 'ack', cursor: 1 }, { t: 'ack', cursors: [1, 2] }];
    for (let i = 0; i < ROUNDS; i++) {
      const rnd = prng(5000 + i);
      const text = JSON.stringify(mutate(bases[i % bases.length], rnd)) ?? '';
      let frame: ReturnType<typeof decodeClientFrame> | undefined;
      await refusesCleanly(() => (frame = decodeClientFrame(text)), 5000 + i);
      if (frame?.t === 'envelope') await refusesCleanly(() => verifyCheckedEnvelope(frame!.t === 'envelope' ? frame!.envelope : env, d.devices.jpOp.certificate.cert), 5000 + i);
      if (frame?.t === 'receipt') {
        await refusesCleanly(() => verifyCheckedReceipt(frame!.t === 'receipt' ? frame!.receipt : receipt, d.devices.cnOp.certificate.cert, { header: env.header, envelopeHash: envelopeHash(env.header) }), 5000 + i);
      }
    }
  });

  it('Merkle proofs with random shapes and sizes', async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const rnd = prng(4000 + i);
      const size = Math.floor(rnd() * 40);
      const index = Math.floor(rnd() * 45) - 2;
      const proof = Array.from({ length: Math.floor(rnd() * 8) }, () => new Uint8Array(rnd() < 0.9 ? 32 : 31).map(() => Math.floor(rnd() * 256)));
      const h = new Uint8Array(32).map(() => Math.floor(rnd() * 256));
      expect(await refusesCleanly(() => verifyInclusion(h, index, size, proof, h), 4000 + i)).toBe(size === 1 && index === 0 && proof.length === 0);
      await refusesCleanly(() => verifyConsistency(index, size, proof, h, h), 4000 + i);
    }
  });

  it('canonical JSON of arbitrary mutated values never throws anything but a code', async () => {
    for (let i = 0; i < ROUNDS; i++) {
      await refusesCleanly(() => canonicalize(mutate({ a: [1, 'x', { b: null }] }, prng(5000 + i))), 5000 + i);
    }
  });
});
