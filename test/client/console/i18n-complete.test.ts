import { describe, expect, it } from 'vitest';
import { dictionaries, type MessageKey } from '../../../client/console/common/i18n.js';
import { alarmReason, errorKey } from '../../../client/console/common/error-text.js';
import { ERROR_TABLE } from '../../../shared/errors.js';

/**
 * Issue 10, "every string translated": a key missing in a language, left empty, or left in
 * English fails here (the compiler checks the keys too; a dictionary built at run time would not
 * be checked by it).
 */
const dicts = dictionaries();
/** Latin words that are the same in every language: precedence names, EXERCISE (issue 10), acronyms and formats. */
const SAME_IN_EVERY_LANGUAGE = new Set(['FLASH', 'IMMEDIATE', 'PRIORITY', 'ROUTINE', 'EXERCISE', 'UTC', 'CSV', 'PDF', 'YYYY', 'Hotline', 'API', 'JSON']);

describe('interface dictionaries', () => {
  it('have every English key in ja and zh, none empty, none left in English, with the same placeholders', () => {
    const left: string[] = [];
    const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    for (const lang of ['ja', 'zh'] as const) {
      const other = dicts[lang] as Record<string, string | undefined>;
      expect(Object.keys(other).sort(), `${lang}: keys`).toEqual(Object.keys(dicts.en).sort());
      for (const [key, en] of Object.entries(dicts.en) as [MessageKey, string][]) {
        const text = other[key];
        expect(text, `${lang}.${key}`).toBeTypeOf('string');
        expect(text!.trim(), `${lang}.${key}`).not.toBe('');
        expect(placeholders(text!), `${lang}.${key}`).toEqual(placeholders(en));
        // English left in place: a Latin word of three letters or more that is not a placeholder.
        const latin = (text!.replace(/\{\w+\}/g, '').match(/[A-Za-z]{3,}/g) ?? []).filter((w) => !SAME_IN_EVERY_LANGUAGE.has(w));
        if (latin.length > 0) left.push(`${lang}.${key} = "${text}"`);
      }
    }
    expect(left, 'left in English').toEqual([]);
  });

  it('give every error code of shared/errors.ts words in every language, and read audit alarm reasons', () => {
    for (const code of Object.keys(ERROR_TABLE)) {
      const key = errorKey(code);
      for (const lang of ['en', 'ja', 'zh'] as const) expect(dicts[lang][key], `${lang}: ${code}`).toMatch(/\S/);
    }
    expect(errorKey('HL_ERR_FROM_A_NEWER_SERVER')).toBe('err_server');
    expect(alarmReason('cn-mnd/op1: HL_ERR_AUDIT_EQUIVOCATION: two roots for size 7')).toEqual({ who: 'cn-mnd/op1', key: 'problem_checkpoint' });
    expect(alarmReason('jp-mod/op2: HL_ERR_AUDIT_PROOF_INVALID: bad proof')).toEqual({ who: 'jp-mod/op2', key: 'problem_changed' });
    expect(alarmReason('something odd')).toEqual({ key: 'problem_other' });
  });
});
