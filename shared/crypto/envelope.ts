import nacl from 'tweetnacl';
import { HotlineError } from '../errors.js';
import { canonicalBytes } from '../encoding/canonical-json.js';
import { bytesEqual, concatBytes, fromBase64, fromHex, fromUtf8, toBase64, toHex, utf8 } from '../encoding/base64.js';
import { assertSchema, parseJson } from '../protocol/validate.js';
import {
  Envelope,
  MAX_CIPHERTEXT_BYTES,
  Plaintext,
  type DeviceCertBody,
  type DeviceSecretFile,
  type EnvelopeHeader,
  type Precedence,
  type RecipientEntry,
  type SecurityLabel,
} from '../protocol/schemas.js';
import { sha256 } from './hash.js';
import { ed25519Sign, ed25519Verify, type Ed25519Verifier } from './ed25519.js';
import { CONTEXT, keyIdOf } from './keys.js';
import { randomBytes, randomId } from './random.js';
import { box, boxKeyPair, boxOpen, discardBoxSecret } from './x25519.js';
import { seqVerdict } from './replay-window.js';
import type { HeldPrekey } from './prekey.js';

const KEY_COMMITMENT_PREFIX = utf8('hotline/v1/key');
const ENVELOPE_CONTEXT = utf8(CONTEXT.envelope);

/**
 * The bytes an envelope's signature covers: its context and the header's canonical form. One
 * place, so that a check started ahead of admission (server/relay/admit.ts) asks about the very
 * bytes the admission's own check does.
 */
export function envelopeSignedBytes(canonicalHeader: Uint8Array): Uint8Array {
  return concatBytes(ENVELOPE_CONTEXT, canonicalHeader);
}

/** Size limit of a whole serialized envelope, checked before any parsing or crypto. */
export const MAX_ENVELOPE_BYTES = 60 * 1024;

/**
 * How far a new envelope's `sentAt` may be from the relay's clock, either way (PROTOCOL.md
 * "`sentAt` window"): a day covers a device clock set in the wrong time zone (at most 14 h) and an
 * outbox sealed while offline for hours; an older envelope is resealed by its client.
 */
export const SENT_AT_WINDOW_MS = 24 * 60 * 60 * 1000;

/** Whether `sentAt` is inside the window around the relay's `now`. */
export function sentAtInWindow(sentAt: number, now: number): boolean {
  return Math.abs(sentAt - now) <= SENT_AT_WINDOW_MS;
}

/** hex SHA-256("hotline/v1/key" ‖ K): binds the header to one content key (secretbox is not key-committing). */
export function keyCommitment(contentKey: Uint8Array): string {
  return toHex(sha256(KEY_COMMITMENT_PREFIX, contentKey));
}

/**
 * The identity of a message: hex SHA-256 of the canonical header. Receipts bind to it. Never use
 * signature bytes as an identity (Ed25519 signatures can be malleable in some libraries).
 */
export function envelopeHash(header: EnvelopeHeader): string {
  return toHex(sha256(canonicalBytes(header)));
}

export interface SealEnvelopeOptions {
  sender: DeviceSecretFile;
  to: string;
  precedence: Precedence;
  /** Per-device counter, strictly increasing. */
  seq: number;
  sentAt: number;
  /** Every device that gets a wrapped content key (see {@link expectedRecipients}). */
  recipients: readonly DeviceCertBody[];
  /**
   * The box key (base64) to wrap to, by `party/device`, where it is not the certificate's: the
   * device's newest prekey (`wrapKeyFor` in prekey.ts, PROTOCOL.md "Prekeys and forward secrecy").
   */
  wrapKeys?: ReadonlyMap<string, string>;
  plaintext: Plaintext;
  id?: string;
  replyTo?: string;
  exercise?: boolean;
  linkTest?: boolean;
  /** The security label, from the agreement's `labels` (PROTOCOL.md "Security labels"). */
  label?: SecurityLabel;
  /** This message translates the one named (PROTOCOL.md "Translations"). */
  translationOf?: { id: string; envelopeHash: string };
}

/**
 * Encrypt and sign a message (PROTOCOL.md "Envelope v1"): a fresh content key K, secretbox of the
 * plaintext, K boxed to each recipient from a fresh ephemeral X25519 key, the key commitment, and
 * the sender device's signature over the canonical header.
 *
 * @example
 * const env = await sealEnvelope({ sender, to: 'cn-mnd', precedence: 'FLASH', seq: 1, sentAt: Date.now(),
 *   recipients, plaintext: { body: '至急', lang: 'zh' } });
 */
export async function sealEnvelope(options: SealEnvelopeOptions): Promise<Envelope> {
  return (await sealEnvelopeWithHash(options)).envelope;
}

/**
 * {@link sealEnvelope}, and the envelope's hash ({@link envelopeHash}) from the same canonical
 * header the signature is over: the sender checks the relay's `accepted` against it without
 * canonicalising the header again (issue 9, "parse once, verify once").
 */
export async function sealEnvelopeWithHash(options: SealEnvelopeOptions): Promise<{ envelope: Envelope; hash: string }> {
  const plaintext = assertSchema(Plaintext, options.plaintext, 'HL_ERR_ENVELOPE_PLAINTEXT_INVALID');
  const body = utf8(JSON.stringify(plaintext));
  const contentKey = randomBytes(nacl.secretbox.keyLength);
  const payloadNonce = randomBytes(nacl.secretbox.nonceLength);
  const boxed = nacl.secretbox(body, payloadNonce, contentKey);
  const ciphertext = new Uint8Array(payloadNonce.length + boxed.length);
  ciphertext.set(payloadNonce, 0);
  ciphertext.set(boxed, payloadNonce.length);
  if (ciphertext.length > MAX_CIPHERTEXT_BYTES) {
    throw new HotlineError('HL_ERR_ENVELOPE_TOO_LARGE', `message is ${ciphertext.length} bytes encrypted; the limit is ${MAX_CIPHERTEXT_BYTES}`);
  }

  const ephemeral = boxKeyPair();
  const recipients: RecipientEntry[] = [];
  for (const cert of options.recipients) {
    const boxKey = fromBase64(options.wrapKeys?.get(`${cert.party}/${cert.device}`) ?? cert.boxKey, 32);
    const nonce = randomBytes(nacl.box.nonceLength);
    recipients.push({
      party: cert.party,
      device: cert.device,
      keyId: keyIdOf(boxKey),
      nonce: toBase64(nonce),
      wrappedKey: toBase64(await box(contentKey, nonce, boxKey, ephemeral.secretKey)),
    });
  }
  discardBoxSecret(ephemeral.secretKey);

  const sender = options.sender.certificate.cert;
  const header: EnvelopeHeader = {
    v: 1,
    id: options.id ?? randomId(),
    from: { party: sender.party, device: sender.device },
    to: options.to,
    precedence: options.precedence,
    seq: options.seq,
    sentAt: options.sentAt,
    ephemeralKey: toBase64(ephemeral.publicKey),
    keyCommitment: keyCommitment(contentKey),
    ciphertextHash: toHex(sha256(ciphertext)),
    recipients,
    ...(options.replyTo === undefined ? {} : { replyTo: options.replyTo }),
    ...(options.exercise ? { exercise: true as const } : {}),
    ...(options.label === undefined ? {} : { label: options.label }),
    ...(options.linkTest ? { linkTest: true as const } : {}),
    ...(options.translationOf === undefined ? {} : { translationOf: options.translationOf }),
  };
  contentKey.fill(0);
  const canonical = canonicalBytes(header);
  const signature = await ed25519Sign(fromBase64(options.sender.signSecret, 32), envelopeSignedBytes(canonical));
  const envelope = assertSchema(Envelope, { header, signature: toBase64(signature), ciphertext: toBase64(ciphertext) }, 'HL_ERR_ENVELOPE_MALFORMED');
  // Refused here rather than by the relay after it sat in the outbox: base64 makes the envelope's
  // text the tighter limit for a large plaintext (PROTOCOL.md "Limits").
  const textBytes = JSON.stringify(envelope).length;
  if (textBytes > MAX_ENVELOPE_BYTES) {
    throw new HotlineError('HL_ERR_ENVELOPE_TOO_LARGE', `the sealed envelope is ${textBytes} bytes of JSON; the limit is ${MAX_ENVELOPE_BYTES}`);
  }
  return { envelope, hash: toHex(sha256(canonical)) };
}

/** Parse an envelope from wire text: size limit first, then JSON, then schema. */
export function parseEnvelopeText(text: string): Envelope {
  // Counted in UTF-8 bytes (PROTOCOL.md "Limits"), the cheap bound first: at most 3 bytes per UTF-16 unit.
  if (text.length > MAX_ENVELOPE_BYTES || (text.length * 3 > MAX_ENVELOPE_BYTES && utf8(text).length > MAX_ENVELOPE_BYTES)) {
    throw new HotlineError('HL_ERR_ENVELOPE_TOO_LARGE', `envelopes are limited to ${MAX_ENVELOPE_BYTES} bytes of UTF-8`);
  }
  return assertSchema(Envelope, parseJson(text), 'HL_ERR_ENVELOPE_MALFORMED');
}

/** An envelope whose signature and ciphertext hash hold, with its identity (the header hash). */
export interface VerifiedEnvelope {
  envelope: Envelope;
  /** hex SHA-256 of the canonical header, as {@link envelopeHash} computes it. */
  hash: string;
}

/**
 * Verify an envelope against its sender's certificate (which the caller has already verified
 * against the agreement): schema, sizes, that `from` names that certificate, the ciphertext hash and
 * the signature. Input is attacker-controlled; each failure has its own code. Returns the envelope
 * with its hash, both from one canonicalisation of the header.
 */
export async function verifyEnvelope(value: unknown, senderCert: DeviceCertBody): Promise<VerifiedEnvelope> {
  return verifyCheckedEnvelope(assertSchema(Envelope, value, 'HL_ERR_ENVELOPE_MALFORMED'), senderCert);
}

/**
 * {@link verifyEnvelope} for an envelope that has already passed the Envelope schema (inside a
 * frame from `decodeClientFrame`): everything but the schema check, which is not repeated.
 */
export async function verifyCheckedEnvelope(env: Envelope, senderCert: DeviceCertBody, verify: Ed25519Verifier = ed25519Verify): Promise<VerifiedEnvelope> {
  const h = env.header;
  if (h.from.party !== senderCert.party || h.from.device !== senderCert.device) {
    throw new HotlineError('HL_ERR_ENVELOPE_SENDER_MISMATCH', 'envelope names a different sender than the certificate');
  }
  const ciphertext = fromBase64(env.ciphertext);
  if (ciphertext.length > MAX_CIPHERTEXT_BYTES) throw new HotlineError('HL_ERR_ENVELOPE_TOO_LARGE', 'ciphertext exceeds the size limit');
  if (ciphertext.length < nacl.secretbox.nonceLength + nacl.secretbox.overheadLength) {
    throw new HotlineError('HL_ERR_ENVELOPE_MALFORMED', 'ciphertext too short');
  }
  const seen = new Set<string>();
  for (const r of h.recipients) {
    const k = `${r.party}/${r.device}`;
    if (seen.has(k)) throw new HotlineError('HL_ERR_ENVELOPE_RECIPIENTS', `recipient ${k} appears twice`);
    seen.add(k);
    fromBase64(r.nonce, 24);
    fromBase64(r.wrappedKey, 48);
  }
  fromBase64(h.ephemeralKey, 32);
  // One canonicalisation serves both the signature and the identity.
  const canonical = canonicalBytes(h);
  await verifyCanonicalHeader(h, canonical, env.signature, senderCert, verify);
  if (!bytesEqual(sha256(ciphertext), fromHex(h.ciphertextHash, 32))) {
    throw new HotlineError('HL_ERR_ENVELOPE_CIPHERTEXT_HASH', `envelope ${h.id} ciphertext does not match its signed hash`);
  }
  return { envelope: env, hash: toHex(sha256(canonical)) };
}

/**
 * Check only the sender's signature over a header (the audit log keeps headers without their
 * ciphertext). The caller has checked the header's schema and the certificate.
 */
export async function verifyHeaderSignature(header: EnvelopeHeader, signature: string, senderCert: DeviceCertBody): Promise<void> {
  if (header.from.party !== senderCert.party || header.from.device !== senderCert.device) {
    throw new HotlineError('HL_ERR_ENVELOPE_SENDER_MISMATCH', 'envelope names a different sender than the certificate');
  }
  await verifyCanonicalHeader(header, canonicalBytes(header), signature, senderCert);
}

async function verifyCanonicalHeader(header: EnvelopeHeader, canonical: Uint8Array, signature: string, senderCert: DeviceCertBody, verify: Ed25519Verifier = ed25519Verify): Promise<void> {
  const ok = await verify(fromBase64(senderCert.signKey, 32), envelopeSignedBytes(canonical), fromBase64(signature, 64));
  if (!ok) throw new HotlineError('HL_ERR_ENVELOPE_BAD_SIGNATURE', `envelope ${header.id} signature does not verify`);
}

export interface OpenEnvelopeOptions {
  /** The recipient device's secrets. */
  device: DeviceSecretFile;
  /** The sender's certificate, already verified against the agreement. */
  senderCert: DeviceCertBody;
  /**
   * The prekey secrets this device still holds (PROTOCOL.md "Prekeys and forward secrecy"). An
   * entry wrapped to a prekey whose secret is not among them (deleted) fails with
   * HL_ERR_PREKEY_SECRET_GONE.
   */
  prekeys?: readonly Pick<HeldPrekey, 'keyId' | 'boxSecret'>[];
}

/**
 * Verify first, then unwrap the content key, check the key commitment, decrypt, validate the
 * plaintext (jose's compactVerify order: nothing is decoded before the signature holds).
 */
export async function openEnvelope(
  value: unknown,
  options: OpenEnvelopeOptions,
): Promise<{ header: EnvelopeHeader; plaintext: Plaintext; envelopeHash: string }> {
  const { envelope: env, hash } = await verifyEnvelope(value, options.senderCert);
  const h = env.header;
  const me = options.device.certificate.cert;
  const entry = h.recipients.find((r) => r.party === me.party && r.device === me.device);
  if (!entry) throw new HotlineError('HL_ERR_ENVELOPE_NOT_FOR_ME', `envelope ${h.id} has no key for ${me.party}/${me.device}`);
  const boxSecret = entry.keyId === keyIdOf(fromBase64(me.boxKey, 32)) ? options.device.boxSecret : options.prekeys?.find((p) => p.keyId === entry.keyId)?.boxSecret;
  if (boxSecret === undefined) {
    if (options.prekeys === undefined) throw new HotlineError('HL_ERR_ENVELOPE_NOT_FOR_ME', `envelope ${h.id} is wrapped for another box key of this device`);
    throw new HotlineError('HL_ERR_PREKEY_SECRET_GONE', `envelope ${h.id} is wrapped for box key ${entry.keyId}, whose secret this device does not hold (deleted, or never its own)`);
  }
  const contentKey = await boxOpen(
    fromBase64(entry.wrappedKey, 48),
    fromBase64(entry.nonce, 24),
    fromBase64(h.ephemeralKey, 32),
    fromBase64(boxSecret, 32),
  );
  if (!contentKey || contentKey.length !== nacl.secretbox.keyLength) {
    throw new HotlineError('HL_ERR_ENVELOPE_UNWRAP_FAILED', `cannot unwrap the content key of ${h.id}`);
  }
  if (keyCommitment(contentKey) !== h.keyCommitment) {
    throw new HotlineError('HL_ERR_ENVELOPE_KEY_COMMITMENT', `content key of ${h.id} does not match the signed commitment`);
  }
  const ciphertext = fromBase64(env.ciphertext);
  const nonce = ciphertext.subarray(0, nacl.secretbox.nonceLength);
  const opened = nacl.secretbox.open(ciphertext.subarray(nacl.secretbox.nonceLength), nonce, contentKey);
  contentKey.fill(0);
  if (!opened) throw new HotlineError('HL_ERR_ENVELOPE_DECRYPT_FAILED', `cannot decrypt ${h.id}`);
  const plaintext = assertSchema(Plaintext, parseJson(fromUtf8(opened)), 'HL_ERR_ENVELOPE_PLAINTEXT_INVALID');
  return { header: h, plaintext, envelopeHash: hash };
}

/**
 * Who must receive a wrapped key (docs/design.md "Envelopes and recipients"): the addressee party's operator and archive devices,
 * and the sender party's other operator devices and archive devices. `directory` holds the
 * currently valid (in date, not revoked) certificates.
 */
export function expectedRecipients(directory: readonly DeviceCertBody[], from: { party: string; device: string }, to: string): DeviceCertBody[] {
  return directory
    .filter((c) => c.party === to || c.party === from.party)
    .filter((c) => c.role === 'operator' || c.role === 'archive')
    .filter((c) => !(c.party === from.party && c.device === from.device))
    .sort((a, b) => (a.party + '/' + a.device < b.party + '/' + b.device ? -1 : 1));
}

/**
 * The server's and recipients' check that an envelope is wrapped for exactly the expected devices,
 * each with its current box key. A missing archive copy would blind the auditors; an extra device
 * would leak the message. With `prekeyIds`, a device that has prekeys in date must be wrapped to
 * one of them (their keyIds); only a device with none may be wrapped to its certificate's box key
 * (PROTOCOL.md "Prekeys and forward secrecy").
 */
export function checkRecipients(header: EnvelopeHeader, expected: readonly DeviceCertBody[], prekeyIds?: (cert: DeviceCertBody) => readonly string[]): void {
  const want = new Map(expected.map((c) => [`${c.party}/${c.device}`, c]));
  if (header.recipients.length !== want.size) {
    throw new HotlineError('HL_ERR_ENVELOPE_RECIPIENTS', `envelope has ${header.recipients.length} recipients; the directory has ${want.size}`);
  }
  const seen = new Set<string>();
  for (const r of header.recipients) {
    const name = `${r.party}/${r.device}`;
    const cert = want.get(name);
    if (cert === undefined) throw new HotlineError('HL_ERR_ENVELOPE_RECIPIENTS', `${name} is not an expected recipient`);
    // A device listed twice would leave another expected one out with the count still right.
    if (seen.has(name)) throw new HotlineError('HL_ERR_ENVELOPE_RECIPIENTS', `${name} is listed twice`);
    seen.add(name);
    const prekeys = prekeyIds?.(cert) ?? [];
    if (prekeys.length > 0 ? !prekeys.includes(r.keyId) : boxKeyId(cert.boxKey) !== r.keyId) {
      throw new HotlineError('HL_ERR_ENVELOPE_RECIPIENTS', `${r.party}/${r.device} is wrapped for a stale box key`);
    }
  }
}

export { REPLAY_WINDOW } from './replay-window.js';

// Key ids of the directory's box keys, which the relay checks on every envelope: decoded and
// hashed once per key instead of per message. Bounded; a key not seen for long is simply recomputed.
const boxKeyIds = new Map<string, string>();
function boxKeyId(boxKey: string): string {
  let id = boxKeyIds.get(boxKey);
  if (id === undefined) {
    id = keyIdOf(fromBase64(boxKey, 32));
    if (boxKeyIds.size >= 4096) boxKeyIds.clear();
    boxKeyIds.set(boxKey, id);
  }
  return id;
}

/** What the server (and a client) remembers to refuse replays. */
export interface ReplayGuard {
  /** Highest `seq` accepted from this device, 0 if none. */
  lastSeq(party: string, device: string): number;
  /** Whether an envelope with this `(device, seq)` was accepted (asked only inside the window). */
  seqUsed(party: string, device: string, seq: number): boolean;
  /** The envelope hash stored under this message id, if any. */
  hashOf(id: string): string | undefined;
}

/**
 * Replay rules (PROTOCOL.md "Replay window"): a reused `id` is refused unless it is the very same
 * envelope (then the resend is idempotent and the result is 'duplicate'); a `(device, seq)` already
 * used, or a seq at or below the device's highest − REPLAY_WINDOW, is refused. `hash` is the
 * header's hash when the caller has it (from {@link verifyEnvelope}), saving a canonicalisation.
 */
export function checkReplay(header: EnvelopeHeader, guard: ReplayGuard, hash?: string): 'new' | 'duplicate' {
  const stored = guard.hashOf(header.id);
  if (stored !== undefined) {
    if (stored === (hash ?? envelopeHash(header))) return 'duplicate';
    throw new HotlineError('HL_ERR_ENVELOPE_DUPLICATE_ID', `message id ${header.id} is already used by another envelope`);
  }
  const { party, device } = header.from;
  const verdict = seqVerdict(header.seq, guard.lastSeq(party, device), (seq) => guard.seqUsed(party, device, seq));
  if (verdict === 'reused') throw new HotlineError('HL_ERR_ENVELOPE_REPLAY', `seq ${header.seq} of ${party}/${device} was already used`);
  if (verdict === 'below-window') {
    throw new HotlineError('HL_ERR_ENVELOPE_REPLAY', `seq ${header.seq} of ${party}/${device} is below the replay window`);
  }
  return 'new';
}
