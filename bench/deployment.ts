import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { createAgreement, createParty, enrollDevice, signDeviceCertificate } from '../shared/crypto/keys.js';
import { signAgreementByAll } from '../shared/crypto/agreement-signatures.js';
import type { Agreement, DeviceCertBody, DeviceCertificate, DeviceSecretFile, PartySecretFile, Role } from '../shared/protocol/schemas.js';
import { call } from '../test/helpers/ws-client.js';

/** A sender and its addressee, each the only operator of its party. */
export interface Pair {
  from: DeviceSecretFile;
  to: DeviceSecretFile;
}

/**
 * The deployment of the raw-link phases: one operator per party, so that a message has exactly
 * one recipient device and exactly one `delivered` receipt, and costs the server exactly two
 * Ed25519 verifications (the capacity goal's "verifications per second ÷ 2"). Many parties give
 * many devices sending at once. Parties: `pairs` stream pairs, a FLASH sender whose addressee is
 * the first stream addressee, and a pair whose addressee stays offline (backlog, open deadlines).
 */
export interface BenchDeployment {
  agreement: Agreement;
  agreementPath: string;
  parties: PartySecretFile[];
  operators: DeviceSecretFile[];
  pairs: Pair[];
  flash: Pair;
  offline: Pair;
  now: number;
}

export async function makeBenchDeployment(pairs: number, dir: string): Promise<BenchDeployment> {
  const now = Date.now() - 60_000;
  const names = [...Array.from({ length: 2 * pairs }, (_, i) => `p${String(i).padStart(2, '0')}`), 'flash', 'backlog-from', 'backlog-to'];
  if (names.length > 64) throw new Error(`at most 30 pairs (an agreement has at most 64 parties), got ${pairs}`);
  const parties = names.map((id) => createParty({ id, name: `Bench party ${id}`, languages: ['en'] }));
  const agreement = await signAgreementByAll(createAgreement({ name: 'bench.hotline.test', parties: parties.map((p) => p.party), now }).agreement, parties);
  const operators: DeviceSecretFile[] = [];
  for (const p of parties) operators.push(await enrollDevice(p, { device: 'op', role: 'operator', now }));
  const agreementPath = join(dir, 'bench-agreement.json');
  writeFileSync(agreementPath, JSON.stringify(agreement));
  const op = (i: number) => operators[i]!;
  return {
    agreement,
    agreementPath,
    parties,
    operators,
    pairs: Array.from({ length: pairs }, (_, i) => ({ from: op(2 * i), to: op(2 * i + 1) })),
    flash: { from: op(2 * pairs), to: op(1) },
    offline: { from: op(2 * pairs + 1), to: op(2 * pairs + 2) },
    now,
  };
}

/**
 * A raw 32-byte key pair from random bytes, its public key derived by node:crypto (DER, RFC 8410).
 * Not generateKeyPairSync + export('jwk'): that export can deadlock on Node 20 (server/node-crypto.ts).
 */
function rawKeys(type: 'ed25519' | 'x25519'): { secret: string; public: string } {
  const secret = randomBytes(32);
  const pkcs8 = Buffer.from(type === 'ed25519' ? '302e020100300506032b657004220420' : '302e020100300506032b656e04220420', 'hex');
  const spki = createPublicKey(createPrivateKey({ key: Buffer.concat([pkcs8, secret]), format: 'der', type: 'pkcs8' })).export({ format: 'der', type: 'spki' });
  return { secret: secret.toString('base64'), public: spki.subarray(spki.length - 32).toString('base64') };
}

/**
 * `count` more devices of `role`, spread over the parties (auditors receive no copies, so the
 * traffic is unchanged). Keys come straight from node:crypto: `enrollDevice` checks each secret
 * against its certificate in JavaScript, which costs minutes at ten thousand devices.
 */
export async function makeDevices(dep: BenchDeployment, count: number, role: Role, prefix: string): Promise<DeviceSecretFile[]> {
  const out: DeviceSecretFile[] = [];
  for (let i = 0; i < count; i++) {
    const party = dep.parties[i % dep.parties.length]!;
    const sign = rawKeys('ed25519');
    const box = rawKeys('x25519');
    const cert: DeviceCertBody = {
      v: 1,
      party: party.party.id,
      device: `${prefix}-${i}`,
      role,
      signKey: sign.public,
      boxKey: box.public,
      notBefore: dep.now,
      notAfter: dep.now + 365 * 24 * 3600_000,
    };
    out.push({ type: 'hotline-device', v: 1, certificate: await signDeviceCertificate(party, cert), signSecret: sign.secret, boxSecret: box.secret });
  }
  return out;
}

/** Run `fn` over `items` with at most `concurrency` at once, in order of start. */
export async function forEachLimited<T>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/** Enrol certificates through the public endpoint (the bench server's directory limit is lifted). */
export async function enrolCertificates(url: string, certificates: readonly DeviceCertificate[], deadline = Infinity): Promise<number> {
  let enrolled = 0;
  await forEachLimited(certificates, 8, async (c) => {
    if (Date.now() > deadline) return;
    const r = await call(url, 'POST', '/v1/directory/devices', c);
    if (r.status !== 201) throw new Error(`enrolment refused: ${r.status} ${JSON.stringify(r.body)}`);
    enrolled++;
  });
  return enrolled;
}
