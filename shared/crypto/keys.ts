import { HotlineError } from '../errors.js';
import { canonicalBytes } from '../encoding/canonical-json.js';
import { concatBytes, fromBase64, toBase64, toHex, utf8 } from '../encoding/base64.js';
import { sha256 } from './hash.js';
import { boxKeyPair, boxPublicKey } from './x25519.js';
import { ed25519Sign, ed25519Verify, generateSigningKeyPair, signingPublicKeyFromSeed } from './ed25519.js';
import { assertSchema } from '../protocol/validate.js';
import { checkLabelSet } from '../protocol/labels.js';
import { checkCatalogue } from '../protocol/catalogue.js';
import {
  Agreement,
  DeviceCertificate,
  DeviceSecretFile,
  LogSecretFile,
  PartySecretFile,
  RelayCertificate,
  RelaySecretFile,
  Revocation,
  type AgreementLabels,
  type RelayCertBody,
  type RelayEntry,
  type CatalogueEntry,
  type DeadlineTable,
  type DeviceCertBody,
  type PartyPublic,
  type Role,
} from '../protocol/schemas.js';

/** Signing-string context lines (PROTOCOL.md "Conventions": a context line, then JCS of the object). */
export const CONTEXT = {
  device: 'hotline/v1/device\n',
  revocation: 'hotline/v1/revocation\n',
  envelope: 'hotline/v1/envelope\n',
  receipt: 'hotline/v1/receipt\n',
  refusal: 'hotline/v1/refusal\n',
  login: 'hotline/v1/login\n',
  relay: 'hotline/v1/relay\n',
  relayLink: 'hotline/v1/relay-link\n',
} as const;

/** Context line of a party root's signature on the agreement (./agreement-signatures.ts). */
export const CONTEXT_AGREEMENT = 'hotline/v1/agreement\n';

/** The bytes a signature covers: context line ‖ canonical JSON. */
export function signingBytes(context: string, value: unknown): Uint8Array {
  return concatBytes(utf8(context), canonicalBytes(value));
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** Default deadlines (docs/design.md "Deadlines": the acknowledgement objectives of allied message handling). */
export const DEFAULT_DEADLINES: DeadlineTable = {
  FLASH: { deliveredMs: 30_000, acknowledgedMs: 10 * MINUTE },
  IMMEDIATE: { deliveredMs: 2 * MINUTE, acknowledgedMs: 30 * MINUTE },
  PRIORITY: { deliveredMs: 15 * MINUTE, acknowledgedMs: 3 * HOUR },
  ROUTINE: { deliveredMs: HOUR, acknowledgedMs: 6 * HOUR },
};
export const DEFAULT_REMINDER_INTERVAL_MS = 5 * MINUTE;
export const DEFAULT_LINK_TEST = { intervalMs: HOUR, timeoutMs: 2 * MINUTE };

/** First 8 bytes of SHA-256(boxKey), hex: the `keyId` of a recipient entry. */
export function keyIdOf(boxKey: Uint8Array): string {
  return toHex(sha256(boxKey).subarray(0, 8));
}

/** Hex SHA-256 of a 32-byte public key, the fingerprint operators compare by voice. */
export function fingerprint(publicKey: Uint8Array): string {
  return toHex(sha256(publicKey));
}

/**
 * Create a party's root key. The secret file must be kept offline (the CLI writes it mode 0600).
 *
 * @example
 * const jp = createParty({ id: 'jp-mod', name: 'Japan Ministry of Defense', languages: ['ja', 'en'] });
 */
export function createParty(options: { id: string; name: string; languages: string[] }): PartySecretFile {
  const kp = generateSigningKeyPair();
  const file: PartySecretFile = {
    type: 'hotline-party-secret',
    v: 1,
    party: { id: options.id, name: options.name, rootKey: toBase64(kp.publicKey), languages: options.languages },
    rootSecret: toBase64(kp.secretKey),
  };
  return parsePartySecret(file);
}

/** Validate a party secret file read from disk; checks that the secret matches the public key. */
export function parsePartySecret(value: unknown): PartySecretFile {
  const file = assertSchema(PartySecretFile, value, 'HL_ERR_KEY_INVALID');
  const pub = signingPublicKeyFromSeed(fromBase64(file.rootSecret, 32));
  if (toBase64(pub) !== file.party.rootKey) throw new HotlineError('HL_ERR_KEY_INVALID', 'root secret does not match its public key');
  return file;
}

/** Create a server log key (checkpoint signing key). */
export function createLogKey(): LogSecretFile {
  const kp = generateSigningKeyPair();
  return { type: 'hotline-log-secret', v: 1, logKey: toBase64(kp.publicKey), logSecret: toBase64(kp.secretKey) };
}

/** Validate a log secret file. */
export function parseLogSecret(value: unknown): LogSecretFile {
  const file = assertSchema(LogSecretFile, value, 'HL_ERR_KEY_INVALID');
  if (toBase64(signingPublicKeyFromSeed(fromBase64(file.logSecret, 32))) !== file.logKey) {
    throw new HotlineError('HL_ERR_KEY_INVALID', 'log secret does not match its public key');
  }
  return file;
}

export interface CreateAgreementOptions {
  name: string;
  parties: PartyPublic[];
  /** The server's log public key; when omitted a new log key is made and returned. */
  logKey?: string;
  deadlines?: Partial<DeadlineTable>;
  reminderIntervalMs?: number;
  linkTest?: { intervalMs: number; timeoutMs: number };
  now: number;
  /**
   * The parties that run their own relay (agreement v2): where each answers and its log key.
   * Omitted: a version-1 agreement, one relay shared by every party.
   */
  relays?: RelayEntry[];
  /** The security labels messages may carry (PROTOCOL.md "Security labels"). */
  labels?: AgreementLabels;
  /** The pre-agreed messages (PROTOCOL.md "Catalogue"). */
  catalogue?: CatalogueEntry[];
  /** How often devices rotate their prekeys (PROTOCOL.md "Prekeys and forward secrecy"); omitted: 7 days. */
  prekeyRotationMs?: number;
}

/**
 * Make the agreement from the parties' public parts. Returns the log secret when it made one.
 *
 * @example
 * const { agreement, logSecret } = createAgreement({ name: 'jp-cn hotline', parties: [jp.party, cn.party], now: Date.now() });
 */
export function createAgreement(options: CreateAgreementOptions): { agreement: Agreement; logSecret?: LogSecretFile } {
  const logSecret = options.logKey === undefined ? createLogKey() : undefined;
  const agreement: Agreement = {
    v: 1,
    name: options.name,
    parties: options.parties,
    logKey: options.logKey ?? logSecret!.logKey,
    deadlines: { ...DEFAULT_DEADLINES, ...options.deadlines },
    reminderIntervalMs: options.reminderIntervalMs ?? DEFAULT_REMINDER_INTERVAL_MS,
    linkTest: options.linkTest ?? DEFAULT_LINK_TEST,
    createdAt: options.now,
    ...(options.relays === undefined ? {} : { v: 2 as const, relays: options.relays }),
    ...(options.labels === undefined ? {} : { labels: options.labels }),
    ...(options.catalogue === undefined ? {} : { catalogue: options.catalogue }),
    ...(options.prekeyRotationMs === undefined ? {} : { prekeyRotationMs: options.prekeyRotationMs }),
  };
  return logSecret ? { agreement: parseAgreement(agreement), logSecret } : { agreement: parseAgreement(agreement) };
}

/** Validate an agreement (schema, unique party ids, sane deadlines). */
export function parseAgreement(value: unknown): Agreement {
  const a = assertSchema(Agreement, value, 'HL_ERR_AGREEMENT_INVALID');
  const ids = new Set(a.parties.map((p) => p.id));
  if (ids.size !== a.parties.length) throw new HotlineError('HL_ERR_AGREEMENT_INVALID', 'duplicate party id');
  for (const p of a.parties) fromBase64(p.rootKey, 32);
  fromBase64(a.logKey, 32);
  if (a.v === 1 && a.relays !== undefined) {
    throw new HotlineError('HL_ERR_AGREEMENT_INVALID', 'relays need an agreement of version 2 ("v": 2)');
  }
  const seen = new Set<string>();
  for (const r of a.relays ?? []) {
    if (!ids.has(r.party)) throw new HotlineError('HL_ERR_AGREEMENT_INVALID', `relay of ${r.party}: no such party in the agreement`);
    if (seen.has(r.party)) throw new HotlineError('HL_ERR_AGREEMENT_INVALID', `${r.party} has two relay entries`);
    seen.add(r.party);
    fromBase64(r.logKey, 32);
  }
  if (a.labels !== undefined) checkLabelSet(a.labels);
  checkCatalogue(a.catalogue ?? []);
  for (const [prec, row] of Object.entries(a.deadlines)) {
    if (row.deliveredMs > row.acknowledgedMs) {
      throw new HotlineError('HL_ERR_AGREEMENT_INVALID', `${prec}: delivered deadline is after the acknowledged deadline`);
    }
    // The ladder's later rungs, when set, come no earlier than the rungs they imply.
    if (row.answeredMs !== undefined && row.answeredMs < row.acknowledgedMs) {
      throw new HotlineError('HL_ERR_AGREEMENT_INVALID', `${prec}: answered deadline is before the acknowledged deadline`);
    }
    if (row.compliedMs !== undefined && row.compliedMs < (row.answeredMs ?? row.acknowledgedMs)) {
      throw new HotlineError('HL_ERR_AGREEMENT_INVALID', `${prec}: complied deadline is before the ${row.answeredMs === undefined ? 'acknowledged' : 'answered'} deadline`);
    }
  }
  return a;
}

/**
 * Hex SHA-256 of the agreement's canonical JSON without its `signatures` member: what clients pin
 * and show, and what the parties' roots sign, so adding a signature does not change it.
 */
export function agreementHash(agreement: Agreement): string {
  return toHex(sha256(canonicalBytes(agreementBody(agreement))));
}

/** The agreement without its `signatures` member: what is hashed and what the roots sign. */
export function agreementBody(agreement: Agreement): Omit<Agreement, 'signatures'> {
  const { signatures: _signatures, ...body } = agreement;
  return body;
}

/** The party entry of `id`, or HL_ERR_CERT_UNKNOWN_PARTY. */
export function findParty(agreement: Agreement, id: string): PartyPublic {
  const p = agreement.parties.find((x) => x.id === id);
  if (!p) throw new HotlineError('HL_ERR_CERT_UNKNOWN_PARTY', `party ${id} is not in the agreement`);
  return p;
}

export interface EnrollDeviceOptions {
  device: string;
  role: Role;
  now: number;
  /** Default one year. */
  validForMs?: number;
}

/**
 * Make a device's key pairs (Ed25519 for signing, X25519 for box) and its certificate signed by the
 * party root. The returned file holds the device secrets.
 */
export async function enrollDevice(party: PartySecretFile, options: EnrollDeviceOptions): Promise<DeviceSecretFile> {
  const sign = generateSigningKeyPair();
  const box = boxKeyPair();
  const cert: DeviceCertBody = {
    v: 1,
    party: party.party.id,
    device: options.device,
    role: options.role,
    signKey: toBase64(sign.publicKey),
    boxKey: toBase64(box.publicKey),
    notBefore: options.now,
    notAfter: options.now + (options.validForMs ?? 365 * 24 * HOUR),
  };
  const certificate = await signDeviceCertificate(party, cert);
  return parseDeviceSecret({
    type: 'hotline-device',
    v: 1,
    certificate,
    signSecret: toBase64(sign.secretKey),
    boxSecret: toBase64(box.secretKey),
  });
}

/** Sign a certificate body with the party root (the body's party must be this party). */
export async function signDeviceCertificate(party: PartySecretFile, cert: DeviceCertBody): Promise<DeviceCertificate> {
  if (cert.party !== party.party.id) throw new HotlineError('HL_ERR_CERT_MALFORMED', 'certificate names another party');
  const signature = await ed25519Sign(fromBase64(party.rootSecret, 32), signingBytes(CONTEXT.device, cert));
  return assertSchema(DeviceCertificate, { cert, signature: toBase64(signature) }, 'HL_ERR_CERT_MALFORMED');
}

/** Validate a device secret file; checks both secrets match the certificate's public keys. */
export function parseDeviceSecret(value: unknown): DeviceSecretFile {
  const file = assertSchema(DeviceSecretFile, value, 'HL_ERR_KEY_INVALID');
  const c = file.certificate.cert;
  if (toBase64(signingPublicKeyFromSeed(fromBase64(file.signSecret, 32))) !== c.signKey) {
    throw new HotlineError('HL_ERR_KEY_INVALID', 'device sign secret does not match its certificate');
  }
  if (toBase64(boxPublicKey(fromBase64(file.boxSecret, 32))) !== c.boxKey) {
    throw new HotlineError('HL_ERR_KEY_INVALID', 'device box secret does not match its certificate');
  }
  return file;
}

/** Revoke a device certificate (signed by the party root). */
export async function revokeDevice(
  party: PartySecretFile,
  cert: DeviceCertBody,
  options: { at: number; reason?: string },
): Promise<Revocation> {
  if (cert.party !== party.party.id) throw new HotlineError('HL_ERR_CERT_MALFORMED', 'cannot revoke another party’s device');
  const revocation = {
    v: 1 as const,
    party: cert.party,
    device: cert.device,
    signKey: cert.signKey,
    at: options.at,
    ...(options.reason === undefined ? {} : { reason: options.reason }),
  };
  const signature = await ed25519Sign(fromBase64(party.rootSecret, 32), signingBytes(CONTEXT.revocation, revocation));
  return assertSchema(Revocation, { revocation, signature: toBase64(signature) }, 'HL_ERR_CERT_MALFORMED');
}

/** Verify a revocation against the agreement; returns it typed. */
export async function verifyRevocation(agreement: Agreement, value: unknown): Promise<Revocation> {
  const rev = assertSchema(Revocation, value, 'HL_ERR_CERT_MALFORMED');
  const party = findParty(agreement, rev.revocation.party);
  const ok = await ed25519Verify(
    fromBase64(party.rootKey, 32),
    signingBytes(CONTEXT.revocation, rev.revocation),
    fromBase64(rev.signature, 64),
  );
  if (!ok) throw new HotlineError('HL_ERR_CERT_BAD_SIGNATURE', 'revocation signature does not verify against the party root');
  return rev;
}

/** Is this certificate revoked? Implemented by the server's directory and by clients' caches. */
export type RevocationCheck = (cert: DeviceCertBody) => boolean;

export interface VerifyCertificateOptions {
  now: number;
  isRevoked?: RevocationCheck;
  /** Accepted roles; omitted means any role. */
  roles?: readonly Role[];
}

/**
 * Verify a device certificate chains to the pinned agreement: party known, root signature valid, in
 * date, not revoked, role allowed. Each failure has its own code. Input is attacker-controlled.
 *
 * @example
 * const cert = await verifyDeviceCertificate(agreement, incoming, { now: Date.now(), roles: ['operator'] });
 */
export async function verifyDeviceCertificate(
  agreement: Agreement,
  value: unknown,
  options: VerifyCertificateOptions,
): Promise<DeviceCertBody> {
  const certificate = assertSchema(DeviceCertificate, value, 'HL_ERR_CERT_MALFORMED');
  const cert = certificate.cert;
  const party = findParty(agreement, cert.party);
  const ok = await ed25519Verify(fromBase64(party.rootKey, 32), signingBytes(CONTEXT.device, cert), fromBase64(certificate.signature, 64));
  if (!ok) throw new HotlineError('HL_ERR_CERT_BAD_SIGNATURE', `certificate of ${cert.party}/${cert.device} is not signed by its party root`);
  fromBase64(cert.signKey, 32);
  fromBase64(cert.boxKey, 32);
  if (options.now < cert.notBefore) throw new HotlineError('HL_ERR_CERT_NOT_YET_VALID', `certificate of ${cert.party}/${cert.device} is not yet valid`);
  if (options.now >= cert.notAfter) throw new HotlineError('HL_ERR_CERT_EXPIRED', `certificate of ${cert.party}/${cert.device} has expired`);
  if (options.isRevoked?.(cert)) throw new HotlineError('HL_ERR_CERT_REVOKED', `certificate of ${cert.party}/${cert.device} is revoked`);
  if (options.roles && !options.roles.includes(cert.role)) {
    throw new HotlineError('HL_ERR_CERT_WRONG_ROLE', `${cert.party}/${cert.device} is an ${cert.role}, not ${options.roles.join(' or ')}`);
  }
  return cert;
}

// ---------------------------------------------------------------------------------------------
// Relays (agreement v2, PROTOCOL.md "Relays")

/**
 * The relay entry of `party`: its own relay in a version-2 agreement, or undefined when the party
 * is served by the shared relay (every party of a version-1 agreement).
 */
export function relayOf(agreement: Agreement, party: string): RelayEntry | undefined {
  return agreement.relays?.find((r) => r.party === party);
}

/** The log key that signs the checkpoints of the relay serving `party` (the shared relay's: `logKey`). */
export function logKeyOf(agreement: Agreement, party?: string): string {
  return (party === undefined ? undefined : relayOf(agreement, party)?.logKey) ?? agreement.logKey;
}

export interface EnrolRelayOptions {
  relay: string;
  /** The relay's log public key: the agreement's `relays[party].logKey`. */
  logKey: string;
  now: number;
  /** Default one year. */
  validForMs?: number;
}

/**
 * Make a relay's link key and its certificate signed by the party root. The returned file holds
 * the link secret (the log secret stays in its own file).
 *
 * @example
 * const relay = await enrolRelay(jp, { relay: 'jp-relay', logKey: jpLog.logKey, now: Date.now() });
 */
export async function enrolRelay(party: PartySecretFile, options: EnrolRelayOptions): Promise<RelaySecretFile> {
  fromBase64(options.logKey, 32);
  const sign = generateSigningKeyPair();
  const cert: RelayCertBody = {
    v: 1,
    type: 'relay',
    party: party.party.id,
    relay: options.relay,
    signKey: toBase64(sign.publicKey),
    logKey: options.logKey,
    notBefore: options.now,
    notAfter: options.now + (options.validForMs ?? 365 * 24 * HOUR),
  };
  const signature = await ed25519Sign(fromBase64(party.rootSecret, 32), signingBytes(CONTEXT.relay, cert));
  const certificate = assertSchema(RelayCertificate, { cert, signature: toBase64(signature) }, 'HL_ERR_CERT_MALFORMED');
  return parseRelaySecret({ type: 'hotline-relay', v: 1, certificate, signSecret: toBase64(sign.secretKey) });
}

/** Validate a relay secret file; checks the link secret matches the certificate's signKey. */
export function parseRelaySecret(value: unknown): RelaySecretFile {
  const file = assertSchema(RelaySecretFile, value, 'HL_ERR_KEY_INVALID');
  if (toBase64(signingPublicKeyFromSeed(fromBase64(file.signSecret, 32))) !== file.certificate.cert.signKey) {
    throw new HotlineError('HL_ERR_KEY_INVALID', 'relay sign secret does not match its certificate');
  }
  return file;
}

/** Revoke a relay certificate: a revocation whose `device` is the relay's id (signed by the party root). */
export async function revokeRelay(party: PartySecretFile, cert: RelayCertBody, options: { at: number; reason?: string }): Promise<Revocation> {
  return revokeDevice(party, { v: 1, party: cert.party, device: cert.relay, role: 'operator', signKey: cert.signKey, boxKey: cert.signKey, notBefore: cert.notBefore, notAfter: cert.notAfter }, options);
}

/**
 * Verify a relay certificate against the pinned agreement: schema, party known, root signature,
 * in date, not revoked, and its log key is the one the agreement names for the party's relay.
 * Input is attacker-controlled (it arrives on the relay-to-relay link).
 */
export async function verifyRelayCertificate(
  agreement: Agreement,
  value: unknown,
  options: { now: number; isRevoked?: RevocationCheck },
): Promise<RelayCertBody> {
  const certificate = assertSchema(RelayCertificate, value, 'HL_ERR_CERT_MALFORMED');
  const cert = certificate.cert;
  const name = `relay ${cert.party}/${cert.relay}`;
  const party = findParty(agreement, cert.party);
  const ok = await ed25519Verify(fromBase64(party.rootKey, 32), signingBytes(CONTEXT.relay, cert), fromBase64(certificate.signature, 64));
  if (!ok) throw new HotlineError('HL_ERR_CERT_BAD_SIGNATURE', `certificate of ${name} is not signed by its party root`);
  fromBase64(cert.signKey, 32);
  if (options.now < cert.notBefore) throw new HotlineError('HL_ERR_CERT_NOT_YET_VALID', `certificate of ${name} is not yet valid`);
  if (options.now >= cert.notAfter) throw new HotlineError('HL_ERR_CERT_EXPIRED', `certificate of ${name} has expired`);
  const asDevice = { v: 1 as const, party: cert.party, device: cert.relay, role: 'operator' as const, signKey: cert.signKey, boxKey: cert.signKey, notBefore: cert.notBefore, notAfter: cert.notAfter };
  if (options.isRevoked?.(asDevice)) throw new HotlineError('HL_ERR_CERT_REVOKED', `certificate of ${name} is revoked`);
  const entry = relayOf(agreement, cert.party);
  if (!entry) throw new HotlineError('HL_ERR_CERT_WRONG_ROLE', `${cert.party} runs no relay of its own in the agreement`);
  if (entry.logKey !== cert.logKey) throw new HotlineError('HL_ERR_CERT_WRONG_ROLE', `the log key of ${name} is not the one the agreement names for ${cert.party}`);
  return cert;
}
