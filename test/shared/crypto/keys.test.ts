import { beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_DEADLINES,
  agreementHash,
  createAgreement,
  createParty,
  enrollDevice,
  parseAgreement,
  parseDeviceSecret,
  parsePartySecret,
  revokeDevice,
  signDeviceCertificate,
  verifyDeviceCertificate,
  verifyRevocation,
} from '../../../shared/crypto/keys.js';
import { makeDeployment, type TestDeployment } from '../../helpers/fixtures.js';

let d: TestDeployment;
beforeAll(async () => {
  d = await makeDeployment();
});

describe('createAgreement', () => {
  it('holds both parties, a log key and the default deadlines (docs/design.md "Deadlines")', () => {
    expect(d.agreement.parties.map((p) => p.id)).toEqual(['jp-mod', 'cn-mnd']);
    expect(d.agreement.deadlines.FLASH).toEqual({ deliveredMs: 30_000, acknowledgedMs: 600_000 });
    expect(d.agreement.deadlines.IMMEDIATE).toEqual({ deliveredMs: 120_000, acknowledgedMs: 1_800_000 });
    expect(d.agreement.deadlines.PRIORITY).toEqual({ deliveredMs: 900_000, acknowledgedMs: 10_800_000 });
    expect(d.agreement.deadlines.ROUTINE).toEqual({ deliveredMs: 3_600_000, acknowledgedMs: 21_600_000 });
    expect(d.agreement.logKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
  });

  it('lets the agreement override deadlines and uses a given log key without making one', () => {
    const { agreement, logSecret } = createAgreement({
      name: 'x',
      parties: d.agreement.parties,
      logKey: d.agreement.logKey,
      deadlines: { FLASH: { deliveredMs: 10_000, acknowledgedMs: 60_000 } },
      now: 1,
    });
    expect(logSecret).toBeUndefined();
    expect(agreement.deadlines.FLASH.deliveredMs).toBe(10_000);
    expect(agreement.deadlines.ROUTINE).toEqual(DEFAULT_DEADLINES.ROUTINE);
  });

  it('refuses duplicate parties, inverted deadlines and unknown fields', () => {
    const p = d.agreement.parties[0]!;
    expect(() => parseAgreement({ ...d.agreement, parties: [p, p] })).toThrow(expect.objectContaining({ code: 'HL_ERR_AGREEMENT_INVALID' }));
    expect(() =>
      parseAgreement({ ...d.agreement, deadlines: { ...d.agreement.deadlines, FLASH: { deliveredMs: 10, acknowledgedMs: 5 } } }),
    ).toThrow(expect.objectContaining({ code: 'HL_ERR_AGREEMENT_INVALID' }));
    expect(() => parseAgreement({ ...d.agreement, extra: 1 })).toThrow(expect.objectContaining({ code: 'HL_ERR_AGREEMENT_INVALID' }));
  });

  it('has a stable hash that changes with any field', () => {
    expect(agreementHash(d.agreement)).toBe(agreementHash(JSON.parse(JSON.stringify(d.agreement))));
    expect(agreementHash({ ...d.agreement, reminderIntervalMs: 1 })).not.toBe(agreementHash(d.agreement));
  });
});

describe('verifyDeviceCertificate', () => {
  const now = () => d.now + 1000;

  it('accepts a certificate that chains to its party root', async () => {
    const cert = await verifyDeviceCertificate(d.agreement, d.devices.cnOp.certificate, { now: now(), roles: ['operator'] });
    expect(cert).toMatchObject({ party: 'cn-mnd', device: 'cn-op-1', role: 'operator' });
  });

  it('refuses an unknown party with HL_ERR_CERT_UNKNOWN_PARTY', async () => {
    const stranger = createParty({ id: 'xx-mod', name: 'Stranger', languages: ['en'] });
    const dev = await enrollDevice(stranger, { device: 'op', role: 'operator', now: d.now });
    await expect(verifyDeviceCertificate(d.agreement, dev.certificate, { now: now() })).rejects.toMatchObject({ code: 'HL_ERR_CERT_UNKNOWN_PARTY' });
  });

  it('refuses a certificate signed by another root with HL_ERR_CERT_BAD_SIGNATURE', async () => {
    // An impostor makes its own "cn-mnd" root and signs a device with it.
    const impostor = createParty({ id: 'cn-mnd', name: 'Impostor', languages: ['zh'] });
    const dev = await enrollDevice(impostor, { device: 'cn-op-9', role: 'operator', now: d.now });
    await expect(verifyDeviceCertificate(d.agreement, dev.certificate, { now: now() })).rejects.toMatchObject({ code: 'HL_ERR_CERT_BAD_SIGNATURE' });
  });

  it('refuses a certificate whose body was changed (role raised) with HL_ERR_CERT_BAD_SIGNATURE', async () => {
    const forged = structuredClone(d.devices.cnAud.certificate);
    forged.cert.role = 'operator';
    await expect(verifyDeviceCertificate(d.agreement, forged, { now: now() })).rejects.toMatchObject({ code: 'HL_ERR_CERT_BAD_SIGNATURE' });
  });

  it('refuses before notBefore and at or after notAfter', async () => {
    const c = d.devices.cnOp.certificate;
    await expect(verifyDeviceCertificate(d.agreement, c, { now: c.cert.notBefore - 1 })).rejects.toMatchObject({ code: 'HL_ERR_CERT_NOT_YET_VALID' });
    await expect(verifyDeviceCertificate(d.agreement, c, { now: c.cert.notAfter })).rejects.toMatchObject({ code: 'HL_ERR_CERT_EXPIRED' });
    await expect(verifyDeviceCertificate(d.agreement, c, { now: c.cert.notAfter - 1 })).resolves.toBeDefined();
  });

  it('refuses a revoked certificate with HL_ERR_CERT_REVOKED', async () => {
    const rev = await revokeDevice(d.cn, d.devices.cnOp.certificate.cert, { at: d.now, reason: 'device lost' });
    const checked = await verifyRevocation(d.agreement, rev);
    const isRevoked = (c: { party: string; device: string; signKey: string }) =>
      c.party === checked.revocation.party && c.device === checked.revocation.device && c.signKey === checked.revocation.signKey;
    await expect(verifyDeviceCertificate(d.agreement, d.devices.cnOp.certificate, { now: now(), isRevoked })).rejects.toMatchObject({
      code: 'HL_ERR_CERT_REVOKED',
    });
    // The same device name re-enrolled with new keys is not revoked.
    const again = await enrollDevice(d.cn, { device: 'cn-op-1', role: 'operator', now: d.now });
    await expect(verifyDeviceCertificate(d.agreement, again.certificate, { now: now(), isRevoked })).resolves.toBeDefined();
  });

  it('refuses the wrong role with HL_ERR_CERT_WRONG_ROLE', async () => {
    await expect(verifyDeviceCertificate(d.agreement, d.devices.jpAud.certificate, { now: now(), roles: ['operator'] })).rejects.toMatchObject({
      code: 'HL_ERR_CERT_WRONG_ROLE',
    });
  });

  it('refuses malformed certificates with HL_ERR_CERT_MALFORMED', async () => {
    await expect(verifyDeviceCertificate(d.agreement, { cert: {}, signature: '' }, { now: now() })).rejects.toMatchObject({ code: 'HL_ERR_CERT_MALFORMED' });
    await expect(verifyDeviceCertificate(d.agreement, 'x', { now: now() })).rejects.toMatchObject({ code: 'HL_ERR_CERT_MALFORMED' });
  });
});

describe('revocations and secret files', () => {
  it('refuses a revocation not signed by the party root', async () => {
    const rev = await revokeDevice(d.cn, d.devices.cnOp.certificate.cert, { at: d.now });
    const forged = structuredClone(rev);
    forged.revocation.device = 'cn-op-2';
    await expect(verifyRevocation(d.agreement, forged)).rejects.toMatchObject({ code: 'HL_ERR_CERT_BAD_SIGNATURE' });
  });

  it('refuses to revoke or certify for another party', async () => {
    await expect(revokeDevice(d.jp, d.devices.cnOp.certificate.cert, { at: d.now })).rejects.toMatchObject({ code: 'HL_ERR_CERT_MALFORMED' });
    await expect(signDeviceCertificate(d.jp, d.devices.cnOp.certificate.cert)).rejects.toMatchObject({ code: 'HL_ERR_CERT_MALFORMED' });
  });

  it('refuses secret files whose secrets do not match their public keys', () => {
    const dev = structuredClone(d.devices.jpOp);
    dev.boxSecret = d.devices.cnOp.boxSecret;
    expect(() => parseDeviceSecret(dev)).toThrow(expect.objectContaining({ code: 'HL_ERR_KEY_INVALID' }));
    const party = structuredClone(d.jp);
    party.rootSecret = d.cn.rootSecret;
    expect(() => parsePartySecret(party)).toThrow(expect.objectContaining({ code: 'HL_ERR_KEY_INVALID' }));
    expect(parseDeviceSecret(structuredClone(d.devices.jpOp))).toEqual(d.devices.jpOp);
  });
});

describe('agreement name', () => {
  it('must be usable as the checkpoint origin and note key name (no spaces, no "+")', () => {
    expect(() => parseAgreement({ ...d.agreement, name: 'jp cn hotline' })).toThrow(expect.objectContaining({ code: 'HL_ERR_AGREEMENT_INVALID' }));
    expect(() => parseAgreement({ ...d.agreement, name: 'jp+cn' })).toThrow(expect.objectContaining({ code: 'HL_ERR_AGREEMENT_INVALID' }));
    expect(parseAgreement({ ...d.agreement, name: 'jp-cn.hotline.example/log' }).name).toBe('jp-cn.hotline.example/log');
  });
});
