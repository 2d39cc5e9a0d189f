import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { contentLines, saveAttachments } from '../../client/cli/content.js';
import { createAgreement, createParty } from '../../shared/crypto/keys.js';
import { toBase64, utf8 } from '../../shared/encoding/base64.js';
import { safeFileName } from '../../shared/protocol/attachments.js';
import type { EnvelopeHeader } from '../../shared/protocol/schemas.js';
import { tempDir } from '../helpers/deployment.js';
import { onCleanup } from '../helpers/test-server.js';

describe('safeFileName', () => {
  it('keeps attacker-controlled names inside the folder, visible and unique', () => {
    const none = new Set<string>();
    expect(safeFileName('../../etc/passwd', none)).toBe('passwd');
    expect(safeFileName('..\\..\\boot.ini', none)).toBe('boot.ini');
    expect(safeFileName('.bashrc', none)).toBe('bashrc');
    expect(safeFileName('..', none)).toBe('attachment');
    expect(safeFileName('', none)).toBe('attachment');
    expect(safeFileName('CON.txt', none)).toBe('attachment-CON.txt');
    expect(safeFileName('a\nb\u202ecod.exe', none)).toBe('a_b_cod.exe');
    expect(safeFileName(`${'x'.repeat(300)}.pdf`, none)).toBe(`${'x'.repeat(96)}.pdf`);
    expect(safeFileName('Report.pdf', new Set(['report.pdf', 'report (2).pdf']))).toBe('Report (3).pdf');
  });
});

describe('saveAttachments', () => {
  it('never overwrites a file already there', () => {
    const dir = tempDir();
    onCleanup(() => dir.remove());
    writeFileSync(join(dir.path, 'orders.txt'), 'mine');
    const saved = saveAttachments(dir.path, [
      { name: '../orders.txt', type: 'text/plain', data: toBase64(utf8('theirs')) },
      { name: 'orders.txt', type: 'text/plain', data: toBase64(utf8('theirs too')) },
    ]);
    expect(saved).toEqual([join(dir.path, 'orders (2).txt'), join(dir.path, 'orders (3).txt')]);
    expect(readFileSync(join(dir.path, 'orders.txt'), 'utf8')).toBe('mine');
    expect(readdirSync(dir.path).sort()).toEqual(['orders (2).txt', 'orders (3).txt', 'orders.txt']);
  });
});

describe('contentLines', () => {
  it('shows a code the reader\'s agreement lacks plainly as unknown, and quotes attachment names', () => {
    const jp = createParty({ id: 'jp-mod', name: 'Japan', languages: ['ja', 'en'] });
    const cn = createParty({ id: 'cn-mnd', name: 'China', languages: ['zh', 'en'] });
    const { agreement } = createAgreement({ name: 't', parties: [jp.party, cn.party], now: 0, catalogue: [{ code: 'C07', text: { en: 'Request immediate contact.', ja: '直ちに連絡を求む。' } }] });
    const header = { from: { party: 'jp-mod', device: 'op1' } } as EnvelopeHeader;
    const view = { agreement, party: 'cn-mnd' };
    expect(contentLines(header, { body: '', lang: 'ja', code: 'C99' }, view).before).toEqual(["   [C99] unknown code: not in this agreement's catalogue"]);
    // cn reads zh, then en: the entry has no zh, so en.
    expect(contentLines(header, { body: '', lang: 'ja', code: 'C07' }, view).before).toEqual(['   [C07] Request immediate contact. (catalogue, en)']);
    expect(() => createAgreement({ name: 't', parties: [jp.party, cn.party], now: 0, catalogue: [{ code: 'C07', text: { en: 'a' } }, { code: 'C07', text: { en: 'b' } }] })).toThrow(
      expect.objectContaining({ code: 'HL_ERR_AGREEMENT_INVALID' }),
    );
    const fake = contentLines(header, { body: '', lang: 'ja', attachments: [{ name: 'a\n   [C07] forged', type: 'text/plain', data: 'AAAA' }] }, view).after;
    expect(fake).toEqual(['   attachment "a\\n   [C07] forged" (text/plain, 3 bytes)']);
  });
});
