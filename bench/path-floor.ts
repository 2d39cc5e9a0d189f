import { createPublicKey, verify } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { expectedRecipients, openEnvelope, sealEnvelope, verifyEnvelope } from '../shared/crypto/envelope.js';
import { signReceipt, verifyReceipt } from '../shared/crypto/receipt.js';
import { CONTEXT, signingBytes } from '../shared/crypto/keys.js';
import { fromBase64 } from '../shared/encoding/base64.js';
import type { DeviceSecretFile } from '../shared/protocol/schemas.js';
import { percentile } from './raw-ws.js';
import { BODY } from './traffic.js';

/** The steps of the path floor, in the order a message goes through them. */
export const FLOOR_STEPS = [
  'seal',
  'serverVerifyEnvelope',
  'commitEnvelope',
  'openEnvelope',
  'signReceipt',
  'serverVerifyReceipt',
  'commitReceipt',
  'senderVerifyReceipt',
] as const;
export type FloorStep = (typeof FLOOR_STEPS)[number];

export interface PathFloorResult {
  iterations: number;
  /** p50 and p99 of the per-message sum of all steps, milliseconds. */
  p50Ms: number;
  p99Ms: number;
  /** p50 of each step on its own, milliseconds. */
  stepsP50Ms: Record<FloorStep, number>;
}

/**
 * The sequential cost of what one message cannot avoid, measured in this process: the sender seals
 * (one Ed25519 signature, the recipients' key wraps); the server verifies the envelope and commits
 * it (one fsync'd SQLite transaction); the addressee opens it (`openEnvelope`: its own verification,
 * unwrapping, decryption) and signs its `delivered` receipt; the server verifies the receipt and
 * commits it; the sender verifies the receipt. Four Ed25519 verifications and two fsyncs, as on the
 * real path, through the same shared functions; no network, no queueing, no JSON framing.
 * The database is better-sqlite3 in WAL with synchronous=FULL, one small row per commit, like the
 * server's store; `dir` is a temporary directory.
 */
export async function measurePathFloor(options: { sender: DeviceSecretFile; addressee: DeviceSecretFile; directory: readonly DeviceSecretFile[]; iterations: number; dir: string; deadlineMs: number }): Promise<PathFloorResult> {
  const db = new Database(join(options.dir, 'path-floor.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE rows (id INTEGER PRIMARY KEY, v BLOB NOT NULL)');
  const insert = db.prepare('INSERT INTO rows (v) VALUES (?)');
  const row = Buffer.alloc(64, 1);
  const senderCert = options.sender.certificate.cert;
  const addresseeCert = options.addressee.certificate.cert;
  const recipients = expectedRecipients(options.directory.map((d) => d.certificate.cert), senderCert, addresseeCert.party);

  const sums: number[] = [];
  const steps = Object.fromEntries(FLOOR_STEPS.map((s) => [s, [] as number[]])) as Record<FloorStep, number[]>;
  for (let i = 0; i < options.iterations && Date.now() < options.deadlineMs; i++) {
    const t: bigint[] = [process.hrtime.bigint()];
    const mark = () => t.push(process.hrtime.bigint());
    const env = await sealEnvelope({ sender: options.sender, to: addresseeCert.party, precedence: 'FLASH', seq: i + 1, sentAt: Date.now(), recipients, plaintext: { body: BODY, lang: 'ja' } });
    mark();
    await verifyEnvelope(env, senderCert);
    mark();
    insert.run(row);
    mark();
    const opened = await openEnvelope(env, { device: options.addressee, senderCert });
    mark();
    const receipt = await signReceipt(options.addressee, opened.header, 'delivered', Date.now());
    mark();
    await verifyReceipt(receipt, addresseeCert, env.header);
    mark();
    insert.run(row);
    mark();
    await verifyReceipt(receipt, addresseeCert, env.header);
    mark();
    sums.push(Number(t[t.length - 1]! - t[0]!) / 1e6);
    FLOOR_STEPS.forEach((s, k) => steps[s].push(Number(t[k + 1]! - t[k]!) / 1e6));
  }
  db.close();
  const p = (xs: number[], q: number) => percentile([...xs].sort((a, b) => a - b), q);
  return {
    iterations: sums.length,
    p50Ms: p(sums, 50),
    p99Ms: p(sums, 99),
    stepsP50Ms: Object.fromEntries(FLOOR_STEPS.map((s) => [s, p(steps[s], 50)])) as Record<FloorStep, number>,
  };
}

/**
 * Single-core Ed25519 verifications per second with node:crypto, over the signing bytes of a real
 * envelope header (what the server verifies), for about `seconds`.
 */
export async function measureVerifyRate(sender: DeviceSecretFile, addressee: DeviceSecretFile, seconds: number): Promise<{ perSecond: number; count: number }> {
  const cert = sender.certificate.cert;
  const env = await sealEnvelope({ sender, to: addressee.certificate.cert.party, precedence: 'FLASH', seq: 1, sentAt: Date.now(), recipients: [addressee.certificate.cert], plaintext: { body: BODY, lang: 'ja' } });
  const message = signingBytes(CONTEXT.envelope, env.header);
  const signature = fromBase64(env.signature, 64);
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(fromBase64(cert.signKey, 32)).toString('base64url') }, format: 'jwk' });
  const budgetNs = BigInt(Math.round(seconds * 1e9));
  const t0 = process.hrtime.bigint();
  let count = 0;
  let elapsed = 0n;
  while (elapsed < budgetNs) {
    for (let k = 0; k < 100; k++) if (!verify(null, message, key, signature)) throw new Error('the bench envelope does not verify');
    count += 100;
    elapsed = process.hrtime.bigint() - t0;
  }
  return { perSecond: count / (Number(elapsed) / 1e9), count };
}
