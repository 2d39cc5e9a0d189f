import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { envelopeHash, openEnvelope } from '../../shared/crypto/envelope.js';
import { parseAgreement } from '../../shared/crypto/keys.js';
import { fromBase64, fromUtf8 } from '../../shared/encoding/base64.js';
import { catalogueEntry, catalogueText, partyLanguages } from '../../shared/protocol/catalogue.js';
import { checkTranslation } from '../../shared/protocol/translation.js';

// The worked examples of PROTOCOL.md "Attachments", "Catalogue" and "Translations" come from this file.
const ex = JSON.parse(readFileSync(new URL('../vectors/examples-v1.json', import.meta.url), 'utf8'));
const SPEC = readFileSync(new URL('../../shared/PROTOCOL.md', import.meta.url), 'utf8');
const msg = JSON.parse(readFileSync(new URL('../vectors/examples-messages.json', import.meta.url), 'utf8'));

describe('PROTOCOL.md message-content examples (test/vectors/examples-messages.json)', () => {
  it('the agreement with its catalogue parses; the coded message opens to the code, the free text and the attachment; cn reads the entry in Chinese', async () => {
    const agreement = parseAgreement({ ...ex.agreement, catalogue: msg.catalogue });
    const { plaintext } = await openEnvelope(msg.coded, { device: ex.devices.cnOp, senderCert: ex.devices.jpOp.certificate.cert });
    expect(plaintext).toMatchObject({ code: 'C12', body: '巡視船一隻が接近中。', lang: 'ja' });
    expect(fromUtf8(fromBase64(plaintext.attachments![0]!.data))).toBe('N 30°12′ E 123°45′\n');
    expect(envelopeHash(msg.coded.header)).toBe(msg.codedHash);
    const entry = catalogueEntry(agreement, plaintext.code!)!;
    expect(catalogueText(entry, partyLanguages(agreement, 'cn-mnd'))).toEqual({ lang: 'zh', text: '海上发生事件，无敌对意图。' });
    expect(catalogueText(entry, partyLanguages(agreement, 'jp-mod'))).toEqual({ lang: 'ja', text: '海上で事案発生、敵対意図なし。' });
    // PROTOCOL.md quotes this plaintext and hash as they are.
    expect(SPEC).toContain(`\`${JSON.stringify(plaintext)}\``);
    expect(SPEC).toContain(`envelope hash \`${msg.codedHash.slice(0, 8)}…\``);
  });

  it('the translation opens, names the FLASH message by id and envelope hash, and binds to it alone', async () => {
    const { header, plaintext } = await openEnvelope(msg.translation, { device: ex.devices.jpOp, senderCert: ex.devices.cnOp.certificate.cert });
    expect(plaintext).toEqual({ body: '今天十四时起变更演习区域。', lang: 'zh' });
    expect(header.translationOf).toEqual({ id: ex.envelope.header.id, envelopeHash: ex.envelopeHash });
    expect(envelopeHash(header)).toBe(msg.translationHash);
    expect(() => checkTranslation(header, { envelopeHash: ex.envelopeHash })).not.toThrow();
    expect(() => checkTranslation(header, { envelopeHash: msg.codedHash })).toThrow(expect.objectContaining({ code: 'HL_ERR_TRANSLATION_MISMATCH' }));
    expect(SPEC).toContain(`\`${JSON.stringify(plaintext)}\``);
    expect(SPEC).toContain(`envelope hash \`${msg.translationHash.slice(0, 8)}…\``);
    expect(SPEC).toContain(JSON.stringify({ translationOf: header.translationOf }, null, 2).slice(2, -2).replace(/^ {2}/gm, ''));
    expect(() => checkTranslation(header, undefined)).toThrow(expect.objectContaining({ code: 'HL_ERR_TRANSLATION_UNKNOWN_ORIGINAL' }));
  });
});
