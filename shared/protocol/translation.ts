import { HotlineError } from '../errors.js';
import type { EnvelopeHeader } from './schemas.js';

/**
 * A translation (PROTOCOL.md "Translations") names its original by id and envelope hash in its
 * signed header. A client shows it beside the original only when it holds a message of that id
 * whose envelope hash is the one named: otherwise it names a message this client does not have
 * (`HL_ERR_TRANSLATION_UNKNOWN_ORIGINAL`) or another envelope than the one held under that id
 * (`HL_ERR_TRANSLATION_MISMATCH`), and is refused.
 *
 * @example
 * checkTranslation(header, state.inbox[header.translationOf.id]);
 */
export function checkTranslation(header: EnvelopeHeader, original: { envelopeHash: string } | undefined): void {
  const of = header.translationOf;
  if (of === undefined) return;
  if (original === undefined) {
    throw new HotlineError('HL_ERR_TRANSLATION_UNKNOWN_ORIGINAL', `a translation of message ${of.id}, which this device does not hold`);
  }
  if (original.envelopeHash !== of.envelopeHash) {
    throw new HotlineError('HL_ERR_TRANSLATION_MISMATCH', `a translation bound to envelope ${of.envelopeHash.slice(0, 16)}…, not to the message ${of.id} held here (${original.envelopeHash.slice(0, 16)}…)`);
  }
}

/**
 * The party a translation of `original` goes to, from `myParty`: the other party of the two the
 * original was between (its addressee when my party sent it, else its sender's party). The
 * translation's own recipients then cover both parties, as every envelope's do.
 */
export function translationAddressee(original: EnvelopeHeader, myParty: string): string {
  return original.from.party === myParty ? original.to : original.from.party;
}
