import { HotlineError } from '../errors.js';
import type { Agreement, AgreementLabels, LabelEntry, SecurityLabel } from './schemas.js';

/**
 * Security labels (PROTOCOL.md "Security labels"): the agreement defines the classifications (from
 * the lowest to the highest) and caveats a message may carry; the header names one classification
 * and any caveats by code. Pure: the relay and every client check a header with the same function.
 */

/** An agreement's label set is usable: no code twice among the classifications, nor the caveats. */
export function checkLabelSet(labels: AgreementLabels): void {
  for (const [what, list] of [['classification', labels.classifications], ['caveat', labels.caveats]] as const) {
    const codes = new Set<string>();
    for (const entry of list) {
      if (codes.has(entry.code)) throw new HotlineError('HL_ERR_AGREEMENT_INVALID', `the ${what} ${entry.code} is defined twice`);
      codes.add(entry.code);
    }
  }
}

/**
 * Refuse a header label the agreement does not define (HL_ERR_ENVELOPE_LABEL): a label under an
 * agreement without labels, an unknown classification or caveat, a caveat given twice.
 */
export function checkLabel(agreement: Agreement, label: SecurityLabel | undefined): void {
  if (label === undefined) return;
  const set = agreement.labels;
  if (set === undefined) throw new HotlineError('HL_ERR_ENVELOPE_LABEL', 'the message has a security label but the agreement defines none');
  if (!set.classifications.some((c) => c.code === label.classification)) {
    throw new HotlineError('HL_ERR_ENVELOPE_LABEL', `the classification ${label.classification} is not one the agreement defines`);
  }
  const seen = new Set<string>();
  for (const caveat of label.caveats ?? []) {
    if (!set.caveats.some((c) => c.code === caveat)) throw new HotlineError('HL_ERR_ENVELOPE_LABEL', `the caveat ${caveat} is not one the agreement defines`);
    if (seen.has(caveat)) throw new HotlineError('HL_ERR_ENVELOPE_LABEL', `the caveat ${caveat} is given twice`);
    seen.add(caveat);
  }
}

/** What `entry` is called in `lang` (then its base language, then English, then its code). */
export function labelName(entry: LabelEntry, lang: string): string {
  const base = lang.split('-')[0] ?? lang;
  return entry.names[lang] ?? entry.names[base] ?? entry.names.en ?? entry.code;
}

/**
 * The banner text of a label in `lang`: the classification, then the caveats after `//`, e.g.
 * `RESTRICTED // JP-CN EYES ONLY`. Codes the agreement does not define are shown as they are.
 */
export function labelBanner(agreement: Agreement, label: SecurityLabel, lang: string): string {
  const name = (list: readonly LabelEntry[] | undefined, code: string) => {
    const entry = list?.find((e) => e.code === code);
    return entry ? labelName(entry, lang) : code;
  };
  return joinLabel(name(agreement.labels?.classifications, label.classification), (label.caveats ?? []).map((c) => name(agreement.labels?.caveats, c)));
}

/** The label by its codes, e.g. `RESTRICTED // HOTLINE-ONLY`: the same in every language. */
export function labelCodes(label: SecurityLabel): string {
  return joinLabel(label.classification, label.caveats ?? []);
}

function joinLabel(classification: string, caveats: readonly string[]): string {
  return caveats.length === 0 ? classification : `${classification} // ${caveats.join(' / ')}`;
}

/** Parse `--label CLASS` and `--caveat X` (repeatable) into a header label; undefined when no class. */
export function makeLabel(classification: string | undefined, caveats: readonly string[] = []): SecurityLabel | undefined {
  if (classification === undefined) {
    if (caveats.length > 0) throw new HotlineError('HL_ERR_ENVELOPE_LABEL', 'a caveat needs a classification (--label)');
    return undefined;
  }
  return caveats.length === 0 ? { classification } : { classification, caveats: [...caveats] };
}
