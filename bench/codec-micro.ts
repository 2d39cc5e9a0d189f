/**
 * `node --import tsx bench/codec-micro.ts`: what the text codecs every message goes through cost
 * (issue 9; docs/performance.md, nineteenth session). A diagnostic, not a measurement of record:
 * `npm run bench` is the judge.
 *
 * On a real sealed envelope (bench/traffic.ts's body, one recipient): the canonical form of its
 * header and of an audit entry holding it (each signature check and each audit append makes one),
 * beside plain `JSON.stringify` of the same value as the floor; and the strict decoding of its
 * ciphertext, in JavaScript (browsers) and on Node's Buffer with the strictness checks
 * (shared/encoding/base64.ts), beside a bare `Buffer.from(text, 'base64')`. Each figure is the
 * median of five rounds of 20,000 calls, in this process, so the ratios hold on a loaded machine.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatAuditEntry } from '../shared/audit/log-verify.js';
import { canonicalizeSigned } from '../shared/encoding/canonical-json.js';
import { fromBase64, useNativeBase64 } from '../shared/encoding/base64.js';
import type { Envelope } from '../shared/protocol/schemas.js';
import { nodeBase64, useNodeCrypto } from '../server/node-crypto.js';
import { makeBenchDeployment } from './deployment.js';
import { prepareMessages } from './traffic.js';

const CALLS = 20_000;
const ROUNDS = 5;

/** Median over the rounds of the mean µs per call. */
function time(fn: () => unknown): number {
  const rounds: number[] = [];
  let sink = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < CALLS; i++) sink += (fn() as { length: number }).length;
    rounds.push(Number(process.hrtime.bigint() - t0) / 1000 / CALLS);
  }
  if (sink === 0) throw new Error('nothing was produced');
  return rounds.sort((a, b) => a - b)[Math.floor(ROUNDS / 2)]!;
}

useNodeCrypto();
const dir = mkdtempSync(join(tmpdir(), 'hotline-codec-'));
try {
  const dep = await makeBenchDeployment(1, dir);
  const [prepared] = await prepareMessages(dep.pairs[0]!, dep.operators, 1, 1, 'ROUTINE');
  const envelope = (JSON.parse(prepared!.frame) as { envelope: Envelope }).envelope;
  const header = envelope.header;
  const entry = { type: 'envelope.accepted', at: Date.now(), header, envelopeHash: 'ab'.repeat(32) };
  const prev = new Uint8Array(32).fill(7);
  const rows: [string, number, string, number][] = [
    ['canonical header', time(() => canonicalizeSigned(header)), 'JSON.stringify', time(() => JSON.stringify(header))],
    ['canonical audit entry', time(() => formatAuditEntry(entry, 12, prev)), 'JSON.stringify', time(() => JSON.stringify({ ...entry, idx: 12, prev: 'ab'.repeat(32) }))],
  ];
  const text = envelope.ciphertext;
  const bare = time(() => Buffer.from(text, 'base64'));
  useNativeBase64(undefined);
  rows.push([`ciphertext decoded, JavaScript (${text.length} chars)`, time(() => fromBase64(text)), 'Buffer.from', bare]);
  useNativeBase64(nodeBase64);
  rows.push([`ciphertext decoded, Node's Buffer, strict (${text.length} chars)`, time(() => fromBase64(text)), 'Buffer.from', bare]);
  console.log('| codec | µs per call | floor | floor µs | ratio |');
  console.log('| --- | ---: | --- | ---: | ---: |');
  for (const [what, us, floor, floorUs] of rows) console.log(`| ${what} | ${us.toFixed(2)} | ${floor} | ${floorUs.toFixed(2)} | ${(us / floorUs).toFixed(2)}× |`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
