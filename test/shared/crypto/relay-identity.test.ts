import { beforeAll, describe, expect, it } from 'vitest';
import {
  agreementHash,
  createAgreement,
  createLogKey,
  createParty,
  enrolRelay,
  logKeyOf,
  parseAgreement,
  parseRelaySecret,
  relayOf,
  revokeRelay,
  verifyRelayCertificate,
  verifyRevocation,
} from '../../../shared/crypto/keys.js';
import { revocationKey } from '../../../shared/crypto/directory.js';
import type { Agreement, PartySecretFile } from '../../../shared/protocol/schemas.js';

const now = Date.UTC(2026, 11, 1);
let jp: PartySecretFile;
let cn: PartySecretFile;
let jpLog: ReturnType<typeof createLogKey>;
let cnLog: ReturnType<typeof createLogKey>;
let agreement: Agreement;

beforeAll(() => {
  jp = createParty({ id: 'jp-mod', name: 'Japan', languages: ['ja'] });
  cn = createParty({ id: 'cn-mnd', name: 'China', languages: ['zh'] });
  jpLog = createLogKey();
  cnLog = createLogKey();
  agreement = createAgreement({
    name: 'jp-cn.hotline.test',
    parties: [jp.party, cn.party],
    logKey: jpLog.logKey,
    relays: [
      { party: 'jp-mod', urls: ['https://hotline.mod.go.jp'], logKey: jpLog.logKey },
      { party: 'cn-mnd', urls: ['https://hotline.mod.gov.cn', 'https://hotline-b.mod.gov.cn'], logKey: cnLog.logKey },
    ],
    now,
  }).agreement;
});

describe('agreement version 2 (relays)', () => {
  it('names each party’s relay and log key; a version-1 agreement is one shared relay', () => {
    expect(agreement.v).toBe(2);
    expect(relayOf(agreement, 'cn-mnd')?.urls).toHaveLength(2);
    expect(logKeyOf(agreement, 'cn-mnd')).toBe(cnLog.logKey);
    expect(logKeyOf(agreement, 'jp-mod')).toBe(jpLog.logKey);
    const v1 = createAgreement({ name: 'x', parties: [jp.party, cn.party], now }).agreement;
    expect(v1.v).toBe(1);
    expect('relays' in v1).toBe(false);
    expect(relayOf(v1, 'jp-mod')).toBeUndefined();
    expect(logKeyOf(v1, 'jp-mod')).toBe(v1.logKey);
    // A version-1 file loads unchanged, with the hash clients pinned.
    expect(agreementHash(parseAgreement(JSON.parse(JSON.stringify(v1))))).toBe(agreementHash(v1));
  });

  it('refuses relays in a version-1 file, a relay of an unknown party, two relays for one party and a bad URL', () => {
    const base = JSON.parse(JSON.stringify(agreement));
    expect(() => parseAgreement({ ...base, v: 1 })).toThrow(/version 2/);
    expect(() => parseAgreement({ ...base, relays: [{ ...base.relays[0], party: 'us-dod' }] })).toThrow(/no such party/);
    expect(() => parseAgreement({ ...base, relays: [base.relays[0], base.relays[0]] })).toThrow(/two relay entries/);
    expect(() => parseAgreement({ ...base, relays: [{ ...base.relays[0], urls: ['ftp://x'] }] })).toThrow(expect.objectContaining({ code: 'HL_ERR_AGREEMENT_INVALID' }));
  });
});

describe('relay certificates', () => {
  it('a relay enrolled by its party root verifies, with its log key', async () => {
    const relay = await enrolRelay(cn, { relay: 'cn-relay-1', logKey: cnLog.logKey, now });
    parseRelaySecret(JSON.parse(JSON.stringify(relay)));
    const cert = await verifyRelayCertificate(agreement, relay.certificate, { now: now + 1 });
    expect(cert).toMatchObject({ type: 'relay', party: 'cn-mnd', relay: 'cn-relay-1', logKey: cnLog.logKey });
  });

  it('refuses a forged party, a foreign signature, dates, revocation and a log key the agreement does not name', async () => {
    const relay = await enrolRelay(cn, { relay: 'cn-relay-1', logKey: cnLog.logKey, now, validForMs: 1000 });
    const forged = { ...relay.certificate, cert: { ...relay.certificate.cert, party: 'jp-mod' } };
    await expect(verifyRelayCertificate(agreement, forged, { now })).rejects.toMatchObject({ code: 'HL_ERR_CERT_BAD_SIGNATURE' });
    await expect(verifyRelayCertificate(agreement, relay.certificate, { now: now + 1000 })).rejects.toMatchObject({ code: 'HL_ERR_CERT_EXPIRED' });
    await expect(verifyRelayCertificate(agreement, relay.certificate, { now: now - 1 })).rejects.toMatchObject({ code: 'HL_ERR_CERT_NOT_YET_VALID' });
    const rev = await verifyRevocation(agreement, await revokeRelay(cn, relay.certificate.cert, { at: now, reason: 'host lost' }));
    const revoked = new Set([revocationKey(rev.revocation)]);
    await expect(
      verifyRelayCertificate(agreement, relay.certificate, { now, isRevoked: (c) => revoked.has(revocationKey(c)) }),
    ).rejects.toMatchObject({ code: 'HL_ERR_CERT_REVOKED' });
    const otherLog = await enrolRelay(cn, { relay: 'cn-relay-2', logKey: jpLog.logKey, now });
    await expect(verifyRelayCertificate(agreement, otherLog.certificate, { now })).rejects.toMatchObject({ code: 'HL_ERR_CERT_WRONG_ROLE' });
    const shared = createAgreement({ name: 'x', parties: [jp.party, cn.party], now }).agreement;
    await expect(verifyRelayCertificate(shared, relay.certificate, { now })).rejects.toMatchObject({ code: 'HL_ERR_CERT_WRONG_ROLE' });
  });
});
