import { beforeAll, describe, expect, it } from 'vitest';
import { agreementHash, createAgreement, createParty } from '../../../shared/crypto/keys.js';
import { checkAgreementSignatures, requireSignedAgreement, signAgreement, signAgreementByAll, verifyAgreementSignatures } from '../../../shared/crypto/agreement-signatures.js';
import type { Agreement, PartySecretFile } from '../../../shared/protocol/schemas.js';

let jp: PartySecretFile;
let cn: PartySecretFile;
let unsigned: Agreement;
beforeAll(() => {
  jp = createParty({ id: 'jp-mod', name: 'Japan Ministry of Defense', languages: ['ja', 'en'] });
  cn = createParty({ id: 'cn-mnd', name: 'China Ministry of National Defense', languages: ['zh', 'en'] });
  unsigned = createAgreement({ name: 'jp-cn.hotline.test', parties: [jp.party, cn.party], now: 1 }).agreement;
});

const code = (c: string) => expect.objectContaining({ code: c });

describe('agreement signatures (PROTOCOL.md "Agreement signatures")', () => {
  it('each root adds its signature; the hash and what the other signed stay the same', async () => {
    const once = await signAgreement(unsigned, cn);
    expect(once.signatures?.map((s) => s.party)).toEqual(['cn-mnd']);
    expect(await checkAgreementSignatures(once)).toEqual({ signed: ['cn-mnd'], missing: ['jp-mod'] });
    const both = await signAgreement(once, jp);
    // In the parties' order, whoever signed first; cn-mnd's signature is untouched by jp-mod's.
    expect(both.signatures?.map((s) => s.party)).toEqual(['jp-mod', 'cn-mnd']);
    expect(both.signatures?.[1]).toEqual(once.signatures?.[0]);
    expect(agreementHash(both)).toBe(agreementHash(unsigned));
    await expect(verifyAgreementSignatures(both)).resolves.toHaveLength(2);
    // Signing again replaces, never duplicates.
    expect((await signAgreement(both, jp)).signatures).toHaveLength(2);
  });

  it('refuses an agreement missing a party signature, a forged one, a duplicate and an outsider', async () => {
    await expect(verifyAgreementSignatures(unsigned)).rejects.toThrow(code('HL_ERR_AGREEMENT_UNSIGNED'));
    const onlyJp = await signAgreement(unsigned, jp);
    await expect(verifyAgreementSignatures(onlyJp)).rejects.toThrow(code('HL_ERR_AGREEMENT_UNSIGNED'));
    const both = await signAgreementByAll(unsigned, [jp, cn]);
    // A signature over another body (a changed deadline) does not verify.
    const changed = { ...both, reminderIntervalMs: both.reminderIntervalMs + 1 };
    await expect(verifyAgreementSignatures(changed)).rejects.toThrow(code('HL_ERR_AGREEMENT_BAD_SIGNATURE'));
    // jp-mod's signature presented as cn-mnd's.
    const swapped = { ...both, signatures: [both.signatures![0]!, { party: 'cn-mnd', signature: both.signatures![0]!.signature }] };
    await expect(verifyAgreementSignatures(swapped)).rejects.toThrow(code('HL_ERR_AGREEMENT_BAD_SIGNATURE'));
    const twice = { ...both, signatures: [both.signatures![0]!, both.signatures![0]!] };
    await expect(verifyAgreementSignatures(twice)).rejects.toThrow(code('HL_ERR_AGREEMENT_BAD_SIGNATURE'));
    const outsider = { ...both, signatures: [...both.signatures!, { party: 'kr-mnd', signature: both.signatures![0]!.signature }] };
    await expect(verifyAgreementSignatures(outsider)).rejects.toThrow(code('HL_ERR_AGREEMENT_BAD_SIGNATURE'));
  });

  it('a root whose key the agreement does not name cannot sign for its party', async () => {
    const impostor = createParty({ id: 'jp-mod', name: 'Japan Ministry of Defense', languages: ['ja'] });
    await expect(signAgreement(unsigned, impostor)).rejects.toThrow(code('HL_ERR_AGREEMENT_BAD_SIGNATURE'));
  });

  it('the development flag lets an unsigned agreement through with a warning, never a bad signature', async () => {
    const warnings: string[] = [];
    await expect(requireSignedAgreement(unsigned, { allowUnsigned: true, warn: (t) => warnings.push(t) })).resolves.toBe(unsigned);
    expect(warnings.join('\n')).toContain('for development only');
    await expect(requireSignedAgreement(unsigned)).rejects.toThrow(code('HL_ERR_AGREEMENT_UNSIGNED'));
    const both = await signAgreementByAll(unsigned, [jp, cn]);
    const changed = { ...both, reminderIntervalMs: 7 };
    await expect(requireSignedAgreement(changed, { allowUnsigned: true })).rejects.toThrow(code('HL_ERR_AGREEMENT_BAD_SIGNATURE'));
  });
});
