import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { envelopeHash, openEnvelope } from '../../shared/crypto/envelope.js';
import { checkReceiptReason, verifyReceipt } from '../../shared/crypto/receipt.js';
import {
  agreementHash,
  CONTEXT,
  parseAgreement,
  parseDeviceSecret,
  parsePartySecret,
  parseRelaySecret,
  signingBytes,
  verifyDeviceCertificate,
  verifyRelayCertificate,
  verifyRevocation,
} from '../../shared/crypto/keys.js';
import { ed25519Verify } from '../../shared/crypto/ed25519.js';
import { verifyAgreementSignatures } from '../../shared/crypto/agreement-signatures.js';
import { checkLabel, labelBanner } from '../../shared/protocol/labels.js';
import { fromBase64 } from '../../shared/encoding/base64.js';
import { canonicalize } from '../../shared/encoding/canonical-json.js';

// The worked examples in shared/PROTOCOL.md come from this file; this test keeps them true.
const ex = JSON.parse(readFileSync(new URL('../vectors/examples-v1.json', import.meta.url), 'utf8'));

describe('PROTOCOL.md worked examples (test/vectors/examples-v1.json)', () => {
  it('the party files, agreement and certificates verify', async () => {
    parsePartySecret(ex.partySecret.jp);
    parsePartySecret(ex.partySecret.cn);
    const agreement = parseAgreement(ex.agreement);
    expect(agreementHash(agreement)).toMatch(/^[0-9a-f]{64}$/);
    const at = ex.envelope.header.sentAt;
    for (const dev of [ex.devices.jpOp, ex.devices.cnOp]) {
      parseDeviceSecret(dev);
      await expect(verifyDeviceCertificate(agreement, dev.certificate, { now: at })).resolves.toBeDefined();
    }
  });

  it('the envelope opens with the quoted plaintext and hash; the receipt and revocation verify', async () => {
    const agreement = parseAgreement(ex.agreement);
    const senderCert = ex.devices.jpOp.certificate.cert;
    const { plaintext } = await openEnvelope(ex.envelope, { device: ex.devices.cnOp, senderCert });
    expect(plaintext.body).toBe('本日一四〇〇時、演習区域を変更する。/ 今天十四时起变更演习区域。');
    expect(envelopeHash(ex.envelope.header)).toBe(ex.envelopeHash);
    await expect(verifyReceipt(ex.receipt, ex.devices.cnOp.certificate.cert, ex.envelope.header)).resolves.toBeDefined();
    await expect(verifyRevocation(agreement, ex.revocation)).resolves.toBeDefined();
    // The signing string of the header, as PROTOCOL.md shows it, is the context line and JCS.
    expect(canonicalize(ex.envelope.header).startsWith('{"ciphertextHash":"')).toBe(true);
  });
});

describe('PROTOCOL.md response-ladder examples (examples-v1.json "ladder")', () => {
  it('an agreement with answered and complied deadlines parses; the cannot-comply receipt verifies and names its reason', async () => {
    const agreement = parseAgreement({ ...ex.agreement, deadlines: { ...ex.agreement.deadlines, FLASH: ex.ladder.deadlinesFLASH } });
    expect(agreement.deadlines.FLASH).toEqual({ deliveredMs: 30_000, acknowledgedMs: 600_000, answeredMs: 1_800_000, compliedMs: 7_200_000 });
    const r = await verifyReceipt(ex.ladder.cannotComply, ex.devices.cnOp.certificate.cert, ex.envelope.header);
    expect(r.receipt).toMatchObject({ kind: 'cannot-comply', reason: 'not-feasible' });
    expect(() => checkReceiptReason(r.receipt)).not.toThrow();
    // Without its reason the signature no longer covers the receipt.
    const { reason: _reason, ...bare } = ex.ladder.cannotComply.receipt;
    await expect(verifyReceipt({ ...ex.ladder.cannotComply, receipt: bare }, ex.devices.cnOp.certificate.cert, ex.envelope.header)).rejects.toMatchObject({ code: 'HL_ERR_RECEIPT_BAD_SIGNATURE' });
  });
});

// The two-relay examples (PROTOCOL.md "Relays" and "The relay-to-relay link").
const ex2 = JSON.parse(readFileSync(new URL('../vectors/examples-v2.json', import.meta.url), 'utf8'));

describe('PROTOCOL.md two-relay examples (test/vectors/examples-v2.json)', () => {
  it('the version-2 agreement, both relay certificates and the relay-auth signature verify', async () => {
    const agreement = parseAgreement(ex2.agreement);
    expect(agreement.v).toBe(2);
    expect(agreementHash(agreement)).toBe(ex2.agreementHash);
    // The parties are those of the version-1 example.
    expect(agreement.parties).toEqual(ex.agreement.parties);
    for (const r of [ex2.relays.jp, ex2.relays.cn]) {
      parseRelaySecret(r);
      await expect(verifyRelayCertificate(agreement, r.certificate, { now: agreement.createdAt })).resolves.toBeDefined();
    }
    const { statement, signature } = ex2.handshake;
    expect(statement.agreement).toBe(ex2.agreementHash);
    const ok = await ed25519Verify(fromBase64(ex2.relays.jp.certificate.cert.signKey, 32), signingBytes(CONTEXT.relayLink, statement), fromBase64(signature, 64));
    expect(ok).toBe(true);
  });
});

// The sealed-file and receipt-file examples (PROTOCOL.md "Sealed files and receipt files"), around an exercise reply.
const files = JSON.parse(readFileSync(new URL('../vectors/examples-files.json', import.meta.url), 'utf8'));

describe('PROTOCOL.md sealed-file and receipt-file examples (test/vectors/examples-files.json)', () => {
  it('the sealed file names its type, carries a verifiable sender certificate and an exercise reply that opens', async () => {
    const agreement = parseAgreement(ex.agreement);
    const sealed = files.sealedFile;
    expect(Object.keys(sealed).sort()).toEqual(['envelope', 'senderCertificate', 'type', 'v']);
    expect(sealed).toMatchObject({ type: 'hotline-sealed', v: 1 });
    const h = sealed.envelope.header;
    const senderCert = await verifyDeviceCertificate(agreement, sealed.senderCertificate, { now: h.sentAt });
    expect(h).toMatchObject({ exercise: true, replyTo: ex.envelope.header.id, from: { party: senderCert.party, device: senderCert.device } });
    const { plaintext } = await openEnvelope(sealed.envelope, { device: ex.devices.jpOp, senderCert });
    expect(plaintext).toEqual({ body: '演习：收到，遵照执行。', lang: 'zh' });
    expect(envelopeHash(h)).toBe(files.envelopeHash);
    // PROTOCOL.md quotes the hash and the exercise header members.
    const spec = readFileSync(new URL('../../shared/PROTOCOL.md', import.meta.url), 'utf8');
    expect(spec).toContain(files.envelopeHash);
    expect(spec).toContain(`"replyTo": "${h.replyTo}"`);
    expect(spec).toContain('"exercise": true');
    expect(spec).toContain(sealed.envelope.signature);
  });

  it('the receipt file names its type and carries a receipt its signer certificate verifies', async () => {
    const agreement = parseAgreement(ex.agreement);
    const rf = files.receiptFile;
    expect(Object.keys(rf).sort()).toEqual(['receipt', 'signerCertificate', 'type', 'v']);
    expect(rf).toMatchObject({ type: 'hotline-receipt', v: 1 });
    const signer = await verifyDeviceCertificate(agreement, rf.signerCertificate, { now: rf.receipt.receipt.at });
    await expect(verifyReceipt(rf.receipt, signer, files.sealedFile.envelope.header)).resolves.toBeDefined();
    expect(rf.receipt.receipt.envelopeHash).toBe(files.envelopeHash);
    const spec = readFileSync(new URL('../../shared/PROTOCOL.md', import.meta.url), 'utf8');
    expect(spec).toContain(rf.receipt.signature);
  });
});

// The agreement-signature and security-label examples (PROTOCOL.md "Agreement signatures", "Security labels").
const exA = JSON.parse(readFileSync(new URL('../vectors/examples-agreement.json', import.meta.url), 'utf8'));

describe('PROTOCOL.md agreement-signature and label examples (test/vectors/examples-agreement.json)', () => {
  it('both roots signed the version-1 example; signing left its hash as it was; PROTOCOL.md quotes both signatures', async () => {
    const signed = parseAgreement(exA.signedAgreement);
    await expect(verifyAgreementSignatures(signed)).resolves.toHaveLength(2);
    expect(agreementHash(signed)).toBe(exA.agreementHash);
    expect(agreementHash(parseAgreement(ex.agreement))).toBe(exA.agreementHash);
    const { signatures: _s, ...body } = signed;
    expect(body).toEqual(ex.agreement);
    // The signing string: the context line, then JCS of the agreement without its signatures.
    const jp = signed.parties[0]!;
    const bytes = signingBytes('hotline/v1/agreement\n', ex.agreement);
    expect(await ed25519Verify(fromBase64(jp.rootKey, 32), bytes, fromBase64(signed.signatures![0]!.signature, 64))).toBe(true);
    const spec = readFileSync(new URL('../../shared/PROTOCOL.md', import.meta.url), 'utf8');
    for (const s of signed.signatures!) expect(spec).toContain(s.signature);
    expect(spec).toContain(exA.agreementHash);
  });

  it('the labelled agreement is signed; the labelled header verifies and its label is one the agreement defines', async () => {
    const agreement = parseAgreement(exA.labelledAgreement);
    await expect(verifyAgreementSignatures(agreement)).resolves.toHaveLength(2);
    expect(agreementHash(agreement)).toBe(exA.labelledAgreementHash);
    expect(agreement.labels).toEqual(exA.labels);
    const env = exA.labelledEnvelope;
    expect(envelopeHash(env.header)).toBe(exA.labelledEnvelopeHash);
    const cnOp = parseDeviceSecret(ex.devices.cnOp);
    const sender = await verifyDeviceCertificate(agreement, ex.devices.jpOp.certificate, { now: env.header.sentAt });
    const opened = await openEnvelope(env, { device: cnOp, senderCert: sender });
    expect(opened.header.label).toEqual({ classification: 'RESTRICTED', caveats: ['HOTLINE-ONLY'] });
    expect(() => checkLabel(agreement, opened.header.label)).not.toThrow();
    expect(labelBanner(agreement, opened.header.label!, 'zh')).toBe('内部 // 仅限热线');
    const spec = readFileSync(new URL('../../shared/PROTOCOL.md', import.meta.url), 'utf8');
    expect(spec).toContain(exA.labelledAgreementHash);
    expect(spec).toContain(exA.labelledEnvelopeHash);
    expect(spec).toContain('"code": "HOTLINE-ONLY"');
  });
});
