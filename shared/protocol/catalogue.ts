import { HotlineError } from '../errors.js';
import type { Agreement, CatalogueEntry } from './schemas.js';

/**
 * The catalogue of pre-agreed messages (PROTOCOL.md "Catalogue"): entries of the agreement, so
 * both parties hold the same codes and texts. A message sent by code carries only the code; each
 * side reads the entry from its own copy of the agreement, in its own language.
 */

/** Refuse a catalogue with a code twice (called by `parseAgreement`). */
export function checkCatalogue(entries: readonly CatalogueEntry[]): void {
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.code)) throw new HotlineError('HL_ERR_AGREEMENT_INVALID', `catalogue code ${e.code} appears twice`);
    seen.add(e.code);
  }
}

/** The entry with this code, or undefined. */
export function catalogueEntry(agreement: Agreement, code: string): CatalogueEntry | undefined {
  return agreement.catalogue?.find((e) => e.code === code);
}

/**
 * The entry a sender names by `code`: refused with `HL_ERR_CATALOGUE_UNKNOWN_CODE` when the
 * agreement has none, so that nothing is sealed that the recipient could not read.
 */
export function requireCatalogueEntry(agreement: Agreement, code: string): CatalogueEntry {
  const entry = catalogueEntry(agreement, code);
  if (entry) return entry;
  const codes = (agreement.catalogue ?? []).map((e) => e.code);
  throw new HotlineError('HL_ERR_CATALOGUE_UNKNOWN_CODE', `the agreement's catalogue has no code ${code}${codes.length === 0 ? ' (it has no catalogue)' : ` (codes: ${codes.join(', ')})`}`);
}

/**
 * An entry's text in the first of `languages` it has (the reader's preference order), else in the
 * first language it has at all.
 *
 * @example
 * catalogueText({ code: 'C07', text: { ja: '…', zh: '…' } }, ['zh', 'en']); // { lang: 'zh', text: '…' }
 */
export function catalogueText(entry: CatalogueEntry, languages: readonly string[]): { lang: string; text: string } {
  for (const lang of languages) {
    const text = entry.text[lang];
    if (text !== undefined) return { lang, text };
  }
  const [lang, text] = Object.entries(entry.text)[0]!;
  return { lang, text };
}

/** The languages a party reads, in its order (the agreement's `languages`), for {@link catalogueText}. */
export function partyLanguages(agreement: Agreement, party: string): readonly string[] {
  return agreement.parties.find((p) => p.id === party)?.languages ?? [];
}
