import { HotlineError } from '../errors.js';
import { fromBase64, toBase64 } from '../encoding/base64.js';
import { ed25519Sign, ed25519Verify } from './ed25519.js';
import { agreementBody, CONTEXT_AGREEMENT, findParty, parseAgreement, signingBytes } from './keys.js';
import type { Agreement, AgreementSignature, PartySecretFile } from '../protocol/schemas.js';

/**
 * The parties' root signatures on the agreement (PROTOCOL.md "Agreement signatures"). What a root
 * signs is the agreement without its `signatures` member, so adding a signature changes neither
 * what the others signed nor `agreementHash`.
 *
 * @example
 * let a = await signAgreement(agreement, jpRoot);
 * a = await signAgreement(a, cnRoot);
 * await verifyAgreementSignatures(a); // every party has signed
 */

/**
 * Add (or replace) `root`'s party's signature. The root must be that of a party of the agreement,
 * with the root key the agreement names for it. Signatures stay in the agreement's party order.
 */
export async function signAgreement(agreement: Agreement, root: PartySecretFile): Promise<Agreement> {
  const party = findParty(agreement, root.party.id);
  if (party.rootKey !== root.party.rootKey) {
    throw new HotlineError('HL_ERR_AGREEMENT_BAD_SIGNATURE', `the agreement names another root key for ${party.id} than this root file's`);
  }
  const signature = toBase64(await ed25519Sign(fromBase64(root.rootSecret, 32), signingBytes(CONTEXT_AGREEMENT, agreementBody(agreement))));
  const others = (agreement.signatures ?? []).filter((s) => s.party !== party.id);
  const order = agreement.parties.map((p) => p.id);
  const signatures = [...others, { party: party.id, signature }].sort((a, b) => order.indexOf(a.party) - order.indexOf(b.party));
  return parseAgreement({ ...agreement, signatures });
}

/** Sign with every root given, in turn (demo and tests: each root signs once). */
export async function signAgreementByAll(agreement: Agreement, roots: readonly PartySecretFile[]): Promise<Agreement> {
  let signed = agreement;
  for (const root of roots) signed = await signAgreement(signed, root);
  return signed;
}

/** What `verifyAgreementSignatures` found: the parties that signed and those still missing. */
export interface AgreementSignatureStatus {
  signed: string[];
  missing: string[];
}

/**
 * Check every signature present (each names a party of the agreement once and verifies against its
 * root key: else HL_ERR_AGREEMENT_BAD_SIGNATURE) and report which parties have not signed yet.
 * Input is attacker-controlled (an agreement served by a relay).
 */
export async function checkAgreementSignatures(agreement: Agreement): Promise<AgreementSignatureStatus> {
  const bytes = signingBytes(CONTEXT_AGREEMENT, agreementBody(agreement));
  const seen = new Set<string>();
  for (const s of agreement.signatures ?? []) {
    if (seen.has(s.party)) throw new HotlineError('HL_ERR_AGREEMENT_BAD_SIGNATURE', `${s.party} has signed the agreement twice`);
    seen.add(s.party);
    const party = agreement.parties.find((p) => p.id === s.party);
    if (!party) throw new HotlineError('HL_ERR_AGREEMENT_BAD_SIGNATURE', `a signature names ${s.party}, which is not a party of the agreement`);
    if (!(await ed25519Verify(fromBase64(party.rootKey, 32), bytes, fromBase64(s.signature, 64)))) {
      throw new HotlineError('HL_ERR_AGREEMENT_BAD_SIGNATURE', `the signature of ${s.party} does not verify against its root key`);
    }
  }
  const ids = agreement.parties.map((p) => p.id);
  return { signed: ids.filter((id) => seen.has(id)), missing: ids.filter((id) => !seen.has(id)) };
}

/** Refuse an agreement unless every party's root has signed it (HL_ERR_AGREEMENT_UNSIGNED). */
export async function verifyAgreementSignatures(agreement: Agreement): Promise<AgreementSignature[]> {
  const { missing } = await checkAgreementSignatures(agreement);
  if (missing.length > 0) {
    throw new HotlineError('HL_ERR_AGREEMENT_UNSIGNED', `the agreement is not signed by ${missing.join(', ')}: every party's root must sign it (hotline agreement sign --root FILE)`, {
      detail: { missing },
    });
  }
  return agreement.signatures ?? [];
}

/** The development-only switch (`HOTLINE_ALLOW_UNSIGNED_AGREEMENT=1`) and its warning. */
export const ALLOW_UNSIGNED_ENV = 'HOTLINE_ALLOW_UNSIGNED_AGREEMENT';
export const UNSIGNED_WARNING =
  'WARNING: running with an agreement that is not signed by every party (HOTLINE_ALLOW_UNSIGNED_AGREEMENT / --allow-unsigned-agreement): for development only, never on a real link';

/**
 * Accept the agreement if every party signed it; when `allowUnsigned` (development only), accept
 * it anyway after calling `warn` with {@link UNSIGNED_WARNING}. Bad signatures are refused either way.
 */
export async function requireSignedAgreement(agreement: Agreement, options: { allowUnsigned?: boolean; warn?: (text: string) => void } = {}): Promise<Agreement> {
  try {
    await verifyAgreementSignatures(agreement);
  } catch (error) {
    if (!(options.allowUnsigned && error instanceof HotlineError && error.code === 'HL_ERR_AGREEMENT_UNSIGNED')) throw error;
    options.warn?.(`${UNSIGNED_WARNING}: ${error.message}`);
  }
  return agreement;
}
