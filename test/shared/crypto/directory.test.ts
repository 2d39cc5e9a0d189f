import { beforeAll, describe, expect, it } from 'vitest';
import { deviceName, isInDate, newestValid, requireValid, revocationKey, verifyDirectory } from '../../../shared/crypto/directory.js';
import { CONTEXT, createParty, enrollDevice, revokeDevice, signDeviceCertificate, signingBytes } from '../../../shared/crypto/keys.js';
import { ed25519Sign } from '../../../shared/crypto/ed25519.js';
import { fromBase64, toBase64 } from '../../../shared/encoding/base64.js';
import type { DeviceCertificate } from '../../../shared/protocol/schemas.js';
import { makeDeployment, type TestDeployment } from '../../helpers/fixtures.js';

const DAY = 24 * 3600_000;
let d: TestDeployment;
let all: DeviceCertificate[];

beforeAll(async () => {
  d = await makeDeployment();
  all = Object.values(d.devices).map((x) => x.certificate);
});

const names = (certs: readonly { cert: { party: string; device: string } }[]) => certs.map((c) => deviceName(c.cert));
const codes = (rejected: readonly { kind: string; index: number; error: { code: string } }[]) => rejected.map((r) => [r.kind, r.index, r.error.code]);

describe('verifyDirectory', () => {
  it('keeps every good certificate, one per device, in party/device order, and rejects nothing', async () => {
    const dir = await verifyDirectory(d.agreement, { certificates: [...all].reverse(), revocations: [] }, { now: d.now + 1 });
    expect(names(dir.certificates)).toEqual(['cn-mnd/cn-archive', 'cn-mnd/cn-audit-1', 'cn-mnd/cn-op-1', 'jp-mod/jp-archive', 'jp-mod/jp-audit-1', 'jp-mod/jp-op-1', 'jp-mod/jp-op-2']);
    expect(dir.rejected).toEqual([]);
    expect(dir.bodies('jp-mod', ['operator', 'archive']).map(deviceName)).toEqual(['jp-mod/jp-archive', 'jp-mod/jp-op-1', 'jp-mod/jp-op-2']);
    expect(dir.bodies().length).toBe(7);
  });

  it('leaves out a revoked certificate, but not the same device re-enrolled with a new key', async () => {
    const rev = await revokeDevice(d.jp, d.devices.jpOp2.certificate.cert, { at: d.now + 1 });
    const again = await enrollDevice(d.jp, { device: 'jp-op-2', role: 'operator', now: d.now + 2 });
    const certs = [d.devices.jpOp.certificate, d.devices.jpOp2.certificate];
    const dir = await verifyDirectory(d.agreement, { certificates: certs, revocations: [rev] }, { now: d.now + 10 });
    expect(names(dir.certificates)).toEqual(['jp-mod/jp-op-1']);
    expect(codes(dir.rejected)).toEqual([['certificate', 1, 'HL_ERR_CERT_REVOKED']]);
    expect(dir.isRevoked(d.devices.jpOp2.certificate.cert)).toBe(true);
    expect(dir.revocations).toEqual([rev]);

    const renewed = await verifyDirectory(d.agreement, { certificates: [...certs, again.certificate], revocations: [rev] }, { now: d.now + 10 });
    expect(renewed.certificates.map((c) => c.cert.signKey)).toEqual([d.devices.jpOp.certificate.cert.signKey, again.certificate.cert.signKey]);
  });

  it('leaves out expired and not yet valid certificates', async () => {
    const later = await enrollDevice(d.jp, { device: 'jp-op-3', role: 'operator', now: d.now + DAY });
    const short = await enrollDevice(d.cn, { device: 'cn-op-2', role: 'operator', now: d.now - 2 * DAY, validForMs: DAY });
    const dir = await verifyDirectory(d.agreement, { certificates: [d.devices.cnOp.certificate, later.certificate, short.certificate], revocations: [] }, { now: d.now });
    expect(names(dir.certificates)).toEqual(['cn-mnd/cn-op-1']);
    expect(codes(dir.rejected)).toEqual([
      ['certificate', 1, 'HL_ERR_CERT_NOT_YET_VALID'],
      ['certificate', 2, 'HL_ERR_CERT_EXPIRED'],
    ]);
    // A certificate is valid from notBefore up to, not including, notAfter.
    const atEnd = await verifyDirectory(d.agreement, { certificates: [d.devices.cnOp.certificate], revocations: [] }, { now: d.devices.cnOp.certificate.cert.notAfter });
    expect(codes(atEnd.rejected)).toEqual([['certificate', 0, 'HL_ERR_CERT_EXPIRED']]);
  });

  it('rejects a certificate signed by another party’s root, and one of a party outside the agreement', async () => {
    const body = { ...d.devices.cnOp.certificate.cert, party: 'jp-mod', device: 'jp-impostor' };
    const crossSigned = { cert: body, signature: toBase64(await ed25519Sign(fromBase64(d.cn.rootSecret, 32), signingBytes(CONTEXT.device, body))) };
    const stranger = createParty({ id: 'xx-mod', name: 'Not a party', languages: ['en'] });
    const outsider = await enrollDevice(stranger, { device: 'xx-op-1', role: 'operator', now: d.now });
    const outsiderRev = await revokeDevice(stranger, outsider.certificate.cert, { at: d.now });
    const dir = await verifyDirectory(d.agreement, { certificates: [crossSigned, outsider.certificate, d.devices.jpOp.certificate], revocations: [outsiderRev] }, { now: d.now + 1 });
    expect(names(dir.certificates)).toEqual(['jp-mod/jp-op-1']);
    expect(codes(dir.rejected)).toEqual([
      ['revocation', 0, 'HL_ERR_CERT_UNKNOWN_PARTY'],
      ['certificate', 0, 'HL_ERR_CERT_BAD_SIGNATURE'],
      ['certificate', 1, 'HL_ERR_CERT_UNKNOWN_PARTY'],
    ]);
  });

  it('rejects badly signed and malformed entries, and a forged revocation revokes nothing', async () => {
    const good = d.devices.cnArc.certificate;
    const tampered = { ...good, cert: { ...good.cert, role: 'operator' } };
    const rev = await revokeDevice(d.jp, d.devices.jpOp.certificate.cert, { at: d.now + 1 });
    const forged = { ...rev, revocation: { ...rev.revocation, device: 'jp-op-2', signKey: d.devices.jpOp2.certificate.cert.signKey } };
    const dir = await verifyDirectory(
      d.agreement,
      { certificates: [tampered, { cert: good.cert }, 'nonsense', d.devices.jpOp2.certificate], revocations: [forged, { revocation: 1 }] },
      { now: d.now + 2 },
    );
    expect(names(dir.certificates)).toEqual(['jp-mod/jp-op-2']);
    expect(dir.revocations).toEqual([]);
    expect(codes(dir.rejected)).toEqual([
      ['revocation', 0, 'HL_ERR_CERT_BAD_SIGNATURE'],
      ['revocation', 1, 'HL_ERR_CERT_MALFORMED'],
      ['certificate', 0, 'HL_ERR_CERT_BAD_SIGNATURE'],
      ['certificate', 1, 'HL_ERR_CERT_MALFORMED'],
      ['certificate', 2, 'HL_ERR_CERT_MALFORMED'],
    ]);
  });

  it('keeps the newest valid certificate of a re-enrolled device', async () => {
    const older = await signDeviceCertificate(d.jp, { ...d.devices.jpOp.certificate.cert, notBefore: d.now - DAY });
    const dir = await verifyDirectory(d.agreement, { certificates: [d.devices.jpOp.certificate, older], revocations: [] }, { now: d.now + 1 });
    expect(dir.certificates).toEqual([d.devices.jpOp.certificate]);
    expect(dir.rejected).toEqual([]);
  });
});

describe('requireValid', () => {
  const ref = { party: 'jp-mod', device: 'jp-op-1' };
  const none = () => false;

  it('returns the newest valid certificate, or says why the newest is not valid', () => {
    const c = d.devices.jpOp.certificate;
    expect(requireValid(ref, [c], d.now, none)).toBe(c);
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return (err as { code: string }).code;
      }
      return 'none';
    };
    expect(code(() => requireValid(ref, [], d.now, none))).toBe('HL_ERR_CERT_UNKNOWN_DEVICE');
    expect(code(() => requireValid(ref, [c], d.now, () => true))).toBe('HL_ERR_CERT_REVOKED');
    expect(code(() => requireValid(ref, [c], d.now - 1, none))).toBe('HL_ERR_CERT_NOT_YET_VALID');
    expect(code(() => requireValid(ref, [c], c.cert.notAfter, none))).toBe('HL_ERR_CERT_EXPIRED');
  });
});

describe('newestValid / isInDate / revocationKey', () => {
  it('prefers the later notBefore, and the later entry on a tie', () => {
    const a = { cert: { ...d.devices.jpOp.certificate.cert, notBefore: d.now } };
    const b = { cert: { ...d.devices.jpOp.certificate.cert, notBefore: d.now, signKey: 'other' } };
    const c = { cert: { ...d.devices.jpOp.certificate.cert, notBefore: d.now - 1 } };
    expect(newestValid([a, b, c], d.now, () => false)).toBe(b);
    expect(newestValid([a, b, c], d.now, (x) => x.signKey === 'other')).toBe(a);
    expect(newestValid([a, b, c], d.now - 1, () => false)).toBe(c);
    expect(isInDate(a.cert, a.cert.notAfter - 1)).toBe(true);
    expect(revocationKey(a.cert)).toBe(`jp-mod/jp-op-1/${a.cert.signKey}`);
  });
});
