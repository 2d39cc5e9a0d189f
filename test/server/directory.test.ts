import { describe, expect, it } from 'vitest';
import { generateSigningKeyPair } from '../../shared/crypto/ed25519.js';
import { boxKeyPair } from '../../shared/crypto/x25519.js';
import { revokeDevice, signDeviceCertificate } from '../../shared/crypto/keys.js';
import { toBase64 } from '../../shared/encoding/base64.js';
import type { HotlineError } from '../../shared/errors.js';
import type { DeviceCertBody, DeviceCertificate, Revocation, Role } from '../../shared/protocol/schemas.js';
import { Directory } from '../../server/directory.js';
import type { Store } from '../../server/store/store.js';
import { CN, JP, createDeployment } from '../helpers/deployment.js';

const HOUR = 3_600_000;
const T = Date.UTC(2026, 0, 1);

/** The directory as it was before issue 9, recomputed from scratch at each question: the reference. */
function reference(certs: readonly DeviceCertificate[], revoked: readonly Revocation[], now: number) {
  const isRevoked = (c: DeviceCertBody) => revoked.some((r) => r.revocation.party === c.party && r.revocation.device === c.device && r.revocation.signKey === c.signKey);
  const inDate = (c: DeviceCertBody) => now >= c.notBefore && now < c.notAfter;
  const byDevice = new Map<string, DeviceCertificate>();
  for (const c of certs) {
    if (!inDate(c.cert) || isRevoked(c.cert)) continue;
    const k = `${c.cert.party}/${c.cert.device}`;
    const prev = byDevice.get(k);
    if (!prev || c.cert.notBefore >= prev.cert.notBefore) byDevice.set(k, c);
  }
  const valid = [...byDevice.values()].sort((a, b) => (`${a.cert.party}/${a.cert.device}` < `${b.cert.party}/${b.cert.device}` ? -1 : 1));
  const current = (party: string, device: string): DeviceCertBody | string => {
    const mine = certs.map((c) => c.cert).filter((c) => c.party === party && c.device === device).sort((a, b) => b.notBefore - a.notBefore);
    const ok = mine.find((c) => inDate(c) && !isRevoked(c));
    if (ok) return ok;
    const newest = mine[0];
    if (!newest) return 'HL_ERR_CERT_UNKNOWN_DEVICE';
    if (isRevoked(newest)) return 'HL_ERR_CERT_REVOKED';
    return now < newest.notBefore ? 'HL_ERR_CERT_NOT_YET_VALID' : 'HL_ERR_CERT_EXPIRED';
  };
  return { valid, current };
}

describe('Directory (cached valid set)', () => {
  it('enrolment, revocation, expiry, not-yet-valid and re-enrolment change the answers exactly as a recomputation does', async () => {
    const dep = await createDeployment(T - HOUR);
    const stored: DeviceCertificate[] = [];
    const revoked: Revocation[] = [];
    const store = {
      listDevices: async () => [],
      listRevocations: async () => [],
      listPrekeys: async () => [],
      putDevice: async (c: DeviceCertificate) => (stored.includes(c) ? false : (stored.push(c), true)),
      putRevocation: async (r: Revocation) => (revoked.push(r), true),
    } as unknown as Store;
    const dir = new Directory(dep.agreement, store);
    await dir.load();

    const cert = async (party: string, device: string, role: Role, notBefore: number, notAfter: number) =>
      signDeviceCertificate(dep.parties[party]!, {
        v: 1, party, device, role, signKey: toBase64(generateSigningKeyPair().publicKey), boxKey: toBase64(boxKeyPair().publicKey), notBefore, notAfter,
      });
    const names = new Set<string>(['jp-mod/nobody']);
    const compare = (now: number) => {
      const want = reference(stored, revoked, now);
      expect(dir.validCertificates(now)).toEqual(want.valid);
      expect(dir.validBodies(now)).toEqual(want.valid.map((c) => c.cert));
      for (const parties of [[JP], [CN], [JP, CN], [CN, JP, CN]]) {
        expect(dir.validBodies(now, parties)).toEqual(want.valid.map((c) => c.cert).filter((c) => parties.includes(c.party)));
        for (const roles of [['operator'], ['operator', 'archive'], ['operator', 'auditor']] as const) {
          expect(dir.validBodies(now, parties, roles)).toEqual(want.valid.map((c) => c.cert).filter((c) => parties.includes(c.party) && (roles as readonly string[]).includes(c.role)));
        }
      }
      for (const name of names) {
        const [party, device] = name.split('/') as [string, string];
        let got: DeviceCertBody | string;
        try {
          got = dir.current(party, device, now);
        } catch (e) {
          got = (e as HotlineError).code;
        }
        expect(got).toEqual(want.current(party, device));
      }
    };
    const enrol = async (c: DeviceCertificate, now: number) => {
      names.add(`${c.cert.party}/${c.cert.device}`);
      await dir.enrol(c, now);
    };

    // Ask first, so that the cache exists and must be patched rather than built afresh.
    compare(T);
    const op1a = await cert(JP, 'op1', 'operator', T, T + 10 * HOUR);
    await enrol(op1a, T);
    compare(T);
    await enrol(await cert(CN, 'op1', 'operator', T, T + 5 * HOUR), T);
    await enrol(await cert(CN, 'archive1', 'archive', T - HOUR, T + 50 * HOUR), T);
    const op2 = await cert(JP, 'op2', 'operator', T, T + 30 * HOUR);
    await enrol(op2, T);
    compare(T);
    for (let i = 0; i < 40; i++) {
      const start = T - HOUR + (i % 7) * HOUR;
      await enrol(await cert(i % 2 ? JP : CN, `d${i % 13}`, i % 3 ? 'operator' : 'auditor', start, start + (3 + (i % 11)) * HOUR), start);
      if (i % 10 === 0) compare(T + HOUR);
    }
    compare(T + 30 * 60_000);
    // Re-enrolment: a newer certificate for jp-mod/op1 wins from its notBefore on; the old one is
    // still the valid one before that.
    const op1b = await cert(JP, 'op1', 'operator', T + HOUR, T + 20 * HOUR);
    await enrol(op1b, T + HOUR);
    await enrol(op1b, T + HOUR); // idempotent
    for (const t of [T, T + HOUR - 1, T + HOUR, T + 2 * HOUR]) compare(t);
    await dir.revoke(await revokeDevice(dep.parties[JP]!, op2.cert, { at: T + 2 * HOUR }), T + 2 * HOUR);
    await dir.revoke(await revokeDevice(dep.parties[JP]!, op1b.cert, { at: T + 2 * HOUR }), T + 2 * HOUR);
    // Every boundary (expiry of cn-mnd/op1 at +5 h, of op1a at +10 h, …), one before, and time going back.
    for (const t of [T + 2 * HOUR, T + 5 * HOUR - 1, T + 5 * HOUR, T + 9 * HOUR, T + 10 * HOUR, T + 20 * HOUR, T + 50 * HOUR, T + HOUR, T - 2 * HOUR, T + 3 * HOUR]) {
      compare(t);
    }
    expect(() => dir.current(JP, 'op2', T + 3 * HOUR)).toThrow(expect.objectContaining({ code: 'HL_ERR_CERT_REVOKED' }));
    expect(dir.current(JP, 'op1', T + 3 * HOUR)).toEqual(op1a.cert);
    expect(() => dir.current(CN, 'op1', T + 5 * HOUR)).toThrow(expect.objectContaining({ code: 'HL_ERR_CERT_EXPIRED' }));
  });
});
