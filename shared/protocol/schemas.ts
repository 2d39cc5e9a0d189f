import { Type, type Static, type TSchema } from '@sinclair/typebox';

/**
 * Every wire shape of Hotline, declared once. TypeBox gives both the static type and the JSON
 * Schema; the server's Fastify routes, the WebSocket frame parser, the clients and the tests all use
 * these. shared/PROTOCOL.md describes them in prose; a change here is a change there.
 *
 * Conventions: binary values are standard base64 with padding (keys, signatures, nonces,
 * ciphertext); hashes are lowercase hex; times are integer milliseconds since the Unix epoch; no
 * floats anywhere in signed data.
 */

const b64 = (bytes?: number, description?: string) =>
  Type.String({
    pattern: '^[A-Za-z0-9+/]*={0,2}$',
    ...(bytes === undefined ? { maxLength: 1_000_000 } : { minLength: 4 * Math.ceil(bytes / 3), maxLength: 4 * Math.ceil(bytes / 3) }),
    ...(description ? { description } : {}),
  });
const hex = (bytes: number) => Type.String({ pattern: `^[0-9a-f]{${bytes * 2}}$` });

/** Party and device identifiers: lowercase letters, digits and dashes, 2–64 characters. */
export const Identifier = Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]$' });
export const MessageId = hex(16);
export const Hash256 = hex(32);
export const PublicKey = b64(32, '32-byte Ed25519 or X25519 public key');
export const Signature = b64(64, '64-byte Ed25519 signature');
export const Nonce24 = b64(24, '24-byte XSalsa20 nonce');
export const Millis = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });

export const Role = Type.Union([Type.Literal('operator'), Type.Literal('auditor'), Type.Literal('archive')]);
export type Role = Static<typeof Role>;

export const PRECEDENCES = ['FLASH', 'IMMEDIATE', 'PRIORITY', 'ROUTINE'] as const;
export const Precedence = Type.Union(PRECEDENCES.map((p) => Type.Literal(p)));
export type Precedence = Static<typeof Precedence>;

// ---------------------------------------------------------------------------------------------
// Parties, agreement, certificates, revocations

/** The public part of a party (ministry): what goes into the agreement. */
export const PartyPublic = Type.Object(
  {
    id: Identifier,
    name: Type.String({ minLength: 1, maxLength: 200 }),
    rootKey: PublicKey,
    languages: Type.Array(Type.String({ pattern: '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$' }), { minItems: 1, maxItems: 16 }),
  },
  { additionalProperties: false },
);
export type PartyPublic = Static<typeof PartyPublic>;

/**
 * One precedence's deadlines, each counted from the relay's acceptance. `answeredMs` (a
 * `will-comply` or `cannot-comply`) and `compliedMs` (`have-complied`) are optional: absent, that
 * rung has no deadline (agreements made before the ladder was complete have neither).
 */
export const DeadlineRow = Type.Object(
  {
    deliveredMs: Type.Integer({ minimum: 1 }),
    acknowledgedMs: Type.Integer({ minimum: 1 }),
    answeredMs: Type.Optional(Type.Integer({ minimum: 1 })),
    compliedMs: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);
export type DeadlineRow = Static<typeof DeadlineRow>;

export const DeadlineTable = Type.Object(
  { FLASH: DeadlineRow, IMMEDIATE: DeadlineRow, PRIORITY: DeadlineRow, ROUTINE: DeadlineRow },
  { additionalProperties: false },
);
export type DeadlineTable = Static<typeof DeadlineTable>;

/** A URL where a relay answers: http(s) for the API, the same origin for its links. */
export const RelayUrl = Type.String({ pattern: '^https?://[^\\s/?#]+(/[^\\s?#]*)?$', maxLength: 300 });

/**
 * Agreement v2: the relay of one party (PROTOCOL.md "Relays"): where it answers and which log key
 * signs its checkpoints. A party with no entry is served by the shared relay (top-level `logKey`).
 */
export const RelayEntry = Type.Object(
  {
    party: Identifier,
    urls: Type.Array(RelayUrl, { minItems: 1, maxItems: 8 }),
    /** The Ed25519 public key that signs this relay's audit checkpoints. */
    logKey: PublicKey,
  },
  { additionalProperties: false },
);
export type RelayEntry = Static<typeof RelayEntry>;

/**
 * One party root's signature over the agreement (PROTOCOL.md "Agreement signatures"): Ed25519 over
 * "hotline/v1/agreement\n" ‖ JCS(the agreement without `signatures`).
 */
export const AgreementSignature = Type.Object({ party: Identifier, signature: Signature }, { additionalProperties: false });
export type AgreementSignature = Static<typeof AgreementSignature>;

const LabelName = Type.String({ pattern: '^[A-Z0-9][A-Z0-9 _-]{0,38}[A-Z0-9]$' });

/** A classification or caveat the agreement defines: its code and what each language calls it. */
export const LabelEntry = Type.Object(
  {
    /** The code carried in the header, e.g. `RESTRICTED`, `JP-CN-EYES-ONLY`. */
    code: LabelName,
    /** Display names by language tag (e.g. `{"en": "Restricted", "ja": "取扱注意", "zh": "内部"}`). */
    names: Type.Record(Type.String({ pattern: '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$' }), Type.String({ minLength: 1, maxLength: 100 })),
  },
  { additionalProperties: false },
);
export type LabelEntry = Static<typeof LabelEntry>;

/**
 * The security labels an agreement allows (PROTOCOL.md "Security labels"): classifications ordered
 * from the lowest to the highest, and handling caveats.
 */
export const AgreementLabels = Type.Object(
  {
    classifications: Type.Array(LabelEntry, { minItems: 1, maxItems: 16 }),
    caveats: Type.Array(LabelEntry, { maxItems: 32 }),
  },
  { additionalProperties: false },
);
export type AgreementLabels = Static<typeof AgreementLabels>;

/** A message's security label, in its signed header: one classification and its caveats. */
export const SecurityLabel = Type.Object(
  { classification: LabelName, caveats: Type.Optional(Type.Array(LabelName, { minItems: 1, maxItems: 32 })) },
  { additionalProperties: false },
);
export type SecurityLabel = Static<typeof SecurityLabel>;
/** A catalogue code (PROTOCOL.md "Catalogue"): upper-case letters, digits and dashes, e.g. `C07`. */
export const CatalogueCode = Type.String({ pattern: '^[A-Z0-9][A-Z0-9-]{0,15}$' });

/**
 * One pre-agreed message of the agreement's catalogue: its code and its text in each language the
 * parties agreed on (keys are BCP 47 tags as in `languages`).
 */
export const CatalogueEntry = Type.Object(
  {
    code: CatalogueCode,
    text: Type.Record(Type.String({ pattern: '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$' }), Type.String({ minLength: 1, maxLength: 2000 }), { minProperties: 1 }),
  },
  { additionalProperties: false },
);
export type CatalogueEntry = Static<typeof CatalogueEntry>;

/** The agreement: every client and the server load the same file; clients pin it. */
export const Agreement = Type.Object(
  {
    /** 1: one shared relay; 2: adds `relays` (one relay per party, or a shared one). */
    v: Type.Union([Type.Literal(1), Type.Literal(2)]),
    /**
     * Name of the hotline, also the audit log's checkpoint origin and note key name, so it follows
     * C2SP signed-note key-name rules: no spaces, no '+'. E.g. `jp-cn.hotline.example`.
     */
    name: Type.String({ minLength: 1, maxLength: 200, pattern: '^[\\x21-\\x2a\\x2c-\\x7e]+$' }),
    parties: Type.Array(PartyPublic, { minItems: 2, maxItems: 64 }),
    /** The server's Ed25519 log (checkpoint) public key. */
    logKey: PublicKey,
    deadlines: DeadlineTable,
    /** Interval between reminders of a missed deadline. */
    reminderIntervalMs: Type.Integer({ minimum: 1 }),
    linkTest: Type.Object(
      { intervalMs: Type.Integer({ minimum: 1 }), timeoutMs: Type.Integer({ minimum: 1 }) },
      { additionalProperties: false },
    ),
    createdAt: Millis,
    /** Version 2 only: the parties that run their own relay. */
    relays: Type.Optional(Type.Array(RelayEntry, { maxItems: 64 })),
    /** The security labels messages may carry (PROTOCOL.md "Security labels"); absent: none. */
    labels: Type.Optional(AgreementLabels),
    /** The parties' root signatures; not part of what is signed nor of `agreementHash`. */
    signatures: Type.Optional(Type.Array(AgreementSignature, { maxItems: 64 })),
    /**
     * How often each device publishes a new signed prekey (PROTOCOL.md "Prekeys and forward
     * secrecy"); absent: {@link DEFAULT_PREKEY_ROTATION_MS} (7 days).
     */
    prekeyRotationMs: Type.Optional(Type.Integer({ minimum: 60_000, maximum: 366 * 24 * 3_600_000 })),
    /** The pre-agreed messages, sent by code (PROTOCOL.md "Catalogue"); optional. */
    catalogue: Type.Optional(Type.Array(CatalogueEntry, { maxItems: 500 })),
  },
  { additionalProperties: false },
);
export type Agreement = Static<typeof Agreement>;

/** What the root signs for a device. */
export const DeviceCertBody = Type.Object(
  {
    v: Type.Literal(1),
    party: Identifier,
    device: Identifier,
    role: Role,
    signKey: PublicKey,
    boxKey: PublicKey,
    notBefore: Millis,
    notAfter: Millis,
  },
  { additionalProperties: false },
);
export type DeviceCertBody = Static<typeof DeviceCertBody>;

/** A device certificate: the body and the party root's signature over "hotline/v1/device\n" ‖ JCS(body). */
export const DeviceCertificate = Type.Object(
  { cert: DeviceCertBody, signature: Signature },
  { additionalProperties: false },
);
export type DeviceCertificate = Static<typeof DeviceCertificate>;

/**
 * A device's medium-term box key (PROTOCOL.md "Prekeys and forward secrecy"), signed by the device's
 * own certificate key: `signKey` names that certificate.
 */
export const PrekeyBody = Type.Object(
  {
    v: Type.Literal(1),
    party: Identifier,
    device: Identifier,
    signKey: PublicKey,
    boxKey: PublicKey,
    notBefore: Millis,
    notAfter: Millis,
  },
  { additionalProperties: false },
);
export type PrekeyBody = Static<typeof PrekeyBody>;
export const SignedPrekey = Type.Object({ prekey: PrekeyBody, signature: Signature }, { additionalProperties: false });
export type SignedPrekey = Static<typeof SignedPrekey>;

export const RevocationBody = Type.Object(
  {
    v: Type.Literal(1),
    party: Identifier,
    device: Identifier,
    /** The revoked certificate's signKey: a re-enrolled device of the same name is not revoked. */
    signKey: PublicKey,
    at: Millis,
    reason: Type.Optional(Type.String({ maxLength: 500 })),
  },
  { additionalProperties: false },
);
export type RevocationBody = Static<typeof RevocationBody>;

/** A revocation signed by the party root over "hotline/v1/revocation\n" ‖ JCS(body). */
export const Revocation = Type.Object({ revocation: RevocationBody, signature: Signature }, { additionalProperties: false });
export type Revocation = Static<typeof Revocation>;

/**
 * What a party root signs for one of its relays (PROTOCOL.md "Relay certificates"): the key the
 * relay proves itself with on the relay-to-relay link, and the key that signs its checkpoints.
 */
export const RelayCertBody = Type.Object(
  {
    v: Type.Literal(1),
    type: Type.Literal('relay'),
    party: Identifier,
    relay: Identifier,
    /** Ed25519 key of the relay-to-relay link's challenge–response. */
    signKey: PublicKey,
    /** Ed25519 key of the relay's checkpoints: the agreement's `relays[party].logKey`. */
    logKey: PublicKey,
    notBefore: Millis,
    notAfter: Millis,
  },
  { additionalProperties: false },
);
export type RelayCertBody = Static<typeof RelayCertBody>;

/** A relay certificate: the body and the party root's signature over "hotline/v1/relay\n" ‖ JCS(body). */
export const RelayCertificate = Type.Object({ cert: RelayCertBody, signature: Signature }, { additionalProperties: false });
export type RelayCertificate = Static<typeof RelayCertificate>;

// ---------------------------------------------------------------------------------------------
// Secret files (never sent over the network)

/** A relay's secret file (`hotline relay enrol --out`, mode 0600): its certificate and link key. */
export const RelaySecretFile = Type.Object(
  { type: Type.Literal('hotline-relay'), v: Type.Literal(1), certificate: RelayCertificate, signSecret: b64(32) },
  { additionalProperties: false },
);
export type RelaySecretFile = Static<typeof RelaySecretFile>;

export const PartySecretFile = Type.Object(
  { type: Type.Literal('hotline-party-secret'), v: Type.Literal(1), party: PartyPublic, rootSecret: b64(32) },
  { additionalProperties: false },
);
export type PartySecretFile = Static<typeof PartySecretFile>;

export const DeviceSecretFile = Type.Object(
  {
    type: Type.Literal('hotline-device'),
    v: Type.Literal(1),
    certificate: DeviceCertificate,
    signSecret: b64(32),
    boxSecret: b64(32),
  },
  { additionalProperties: false },
);
export type DeviceSecretFile = Static<typeof DeviceSecretFile>;

export const LogSecretFile = Type.Object(
  { type: Type.Literal('hotline-log-secret'), v: Type.Literal(1), logKey: PublicKey, logSecret: b64(32) },
  { additionalProperties: false },
);
export type LogSecretFile = Static<typeof LogSecretFile>;

// ---------------------------------------------------------------------------------------------
// Envelope v1

export const DeviceRef = Type.Object({ party: Identifier, device: Identifier }, { additionalProperties: false });
export type DeviceRef = Static<typeof DeviceRef>;

export const RecipientEntry = Type.Object(
  {
    party: Identifier,
    device: Identifier,
    /** First 8 bytes of SHA-256(boxKey), hex: names the box key used so that box keys can rotate. */
    keyId: hex(8),
    nonce: Nonce24,
    /** box(K, nonce, deviceBoxKey, ephemeralSecret): 32 + 16 bytes. */
    wrappedKey: b64(48),
  },
  { additionalProperties: false },
);
export type RecipientEntry = Static<typeof RecipientEntry>;

export const EnvelopeHeader = Type.Object(
  {
    v: Type.Literal(1),
    id: MessageId,
    from: DeviceRef,
    to: Identifier,
    precedence: Precedence,
    seq: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
    sentAt: Millis,
    ephemeralKey: PublicKey,
    /** hex SHA-256("hotline/v1/key" ‖ K) */
    keyCommitment: Hash256,
    /** hex SHA-256 of the decoded `ciphertext` bytes (nonce ‖ secretbox output) */
    ciphertextHash: Hash256,
    recipients: Type.Array(RecipientEntry, { minItems: 1, maxItems: 256 }),
    replyTo: Type.Optional(MessageId),
    exercise: Type.Optional(Type.Literal(true)),
    /** Marks the automatic link test message (docs/design.md "Link test"). */
    linkTest: Type.Optional(Type.Literal(true)),
    /** The message's security label, from the agreement's `labels` (PROTOCOL.md "Security labels"). */
    label: Type.Optional(SecurityLabel),
    /**
     * This message is a translation of the one named (PROTOCOL.md "Translations"): its id and its
     * envelope hash, which binds the translation to exactly that envelope.
     */
    translationOf: Type.Optional(Type.Object({ id: MessageId, envelopeHash: Hash256 }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);
export type EnvelopeHeader = Static<typeof EnvelopeHeader>;

/** Maximum size of an envelope's decoded ciphertext (nonce ‖ secretbox output). */
export const MAX_CIPHERTEXT_BYTES = 48 * 1024;

export const Envelope = Type.Object(
  {
    header: EnvelopeHeader,
    /** Sender device's Ed25519 signature over "hotline/v1/envelope\n" ‖ JCS(header). */
    signature: Signature,
    /** base64(nonce(24) ‖ secretbox(plaintext, nonce, K)) */
    ciphertext: b64(undefined),
  },
  { additionalProperties: false },
);
export type Envelope = Static<typeof Envelope>;

export const Attachment = Type.Object(
  { name: Type.String({ maxLength: 255 }), type: Type.String({ maxLength: 255 }), data: b64(undefined) },
  { additionalProperties: false },
);

/** The decrypted content. */
export const Plaintext = Type.Object(
  {
    subject: Type.Optional(Type.String({ maxLength: 500 })),
    body: Type.String({ maxLength: 40_000 }),
    lang: Type.String({ pattern: '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$' }),
    attachments: Type.Optional(Type.Array(Attachment, { maxItems: 8 })),
    /** A catalogue entry's code (PROTOCOL.md "Catalogue"): the entry is the message, `body` any free text beside it. */
    code: Type.Optional(CatalogueCode),
  },
  { additionalProperties: false },
);
export type Plaintext = Static<typeof Plaintext>;

// ---------------------------------------------------------------------------------------------
// Receipts

export const RECEIPT_KINDS = ['delivered', 'acknowledged', 'will-comply', 'cannot-comply', 'have-complied'] as const;
export const ReceiptKind = Type.Union(RECEIPT_KINDS.map((k) => Type.Literal(k)));
export type ReceiptKind = Static<typeof ReceiptKind>;

/**
 * Why a party cannot comply (PROTOCOL.md "Receipts"): a code, not free text, because a receipt is
 * not encrypted (the relays and the audit log read it) and because each side reads it in its own
 * language. The explanation, if any, goes in an encrypted reply.
 */
export const CANNOT_COMPLY_REASONS = ['no-authority', 'not-feasible', 'not-understood', 'declined', 'other'] as const;
export const CannotComplyReason = Type.Union(CANNOT_COMPLY_REASONS.map((k) => Type.Literal(k)));
export type CannotComplyReason = Static<typeof CannotComplyReason>;

export const ReceiptBody = Type.Object(
  {
    v: Type.Literal(1),
    messageId: MessageId,
    /** hex SHA-256 of JCS(envelope header) */
    envelopeHash: Hash256,
    kind: ReceiptKind,
    /**
     * `cannot-comply` only, and required there for receipts a relay accepts now (older logs may
     * hold a `cannot-comply` without it, so the schema alone does not demand it).
     */
    reason: Type.Optional(CannotComplyReason),
    by: DeviceRef,
    at: Millis,
  },
  { additionalProperties: false },
);
export type ReceiptBody = Static<typeof ReceiptBody>;

/** A receipt signed by the recipient device over "hotline/v1/receipt\n" ‖ JCS(receipt). */
export const SignedReceipt = Type.Object({ receipt: ReceiptBody, signature: Signature }, { additionalProperties: false });
export type SignedReceipt = Static<typeof SignedReceipt>;

// ---------------------------------------------------------------------------------------------
// Refusals

/**
 * A device's statement that it could not accept a message delivered to it (PROTOCOL.md
 * "Refusals"): bound to the envelope's header hash, naming the error code it refused it with.
 */
export const RefusalBody = Type.Object(
  {
    v: Type.Literal(1),
    messageId: MessageId,
    /** hex SHA-256 of JCS(envelope header), as delivered */
    envelopeHash: Hash256,
    /** The `HL_ERR_…` code the device refused the message with. */
    code: Type.String({ pattern: '^HL_ERR_[A-Z0-9_]{1,56}$' }),
    by: DeviceRef,
    at: Millis,
  },
  { additionalProperties: false },
);
export type RefusalBody = Static<typeof RefusalBody>;

/** A refusal signed by the refusing device over "hotline/v1/refusal\n" ‖ JCS(refusal). */
export const SignedRefusal = Type.Object({ refusal: RefusalBody, signature: Signature }, { additionalProperties: false });
export type SignedRefusal = Static<typeof SignedRefusal>;

/** Re-export for modules that build their own schemas from these. */
export type { TSchema, Static };
