/**
 * One error type for everything Hotline refuses, and one table that maps each code to the HTTP
 * status and the WebSocket close code (4000–4999) it travels as. Adding a code without a row is a
 * compile error, so no refusal can go out without a defined status.
 *
 * @example
 * throw new HotlineError('HL_ERR_ENVELOPE_BAD_SIGNATURE', 'signature does not verify');
 */

/**
 * What a client does with the request that got a code — the one policy source: the client library
 * and the link plugin derive their behaviour from this column, never from hand-kept lists.
 * - `stop`: this device cannot use the link at all (its identity or the agreement is refused);
 *   the client stops connecting and says so.
 * - `later`: transient (the relay is busy, full, restarting, or the token or challenge expired);
 *   the request is kept and tried again on the next connection.
 * - `reseal`: the envelope was sealed against a stale view (recipients changed, seq used
 *   elsewhere); the client fetches the directory and seals it once more.
 * - `never`: this request will never succeed as it is; it is reported and not retried.
 */
export type RetryPolicy = 'stop' | 'later' | 'reseal' | 'never';

/** One row of the table: how a code travels and what it means for the connection and the client. */
export interface ErrorRow {
  /** HTTP status. */
  readonly http: number;
  /** WebSocket close code (4000–4999), unique per code so a close names its cause. */
  readonly ws: number;
  /** A frame refused with this code ends the connection: the link itself is at fault, not the frame. */
  readonly closesLink: boolean;
  readonly retry: RetryPolicy;
}

/** HTTP status, WebSocket close code and policy of each error code. */
export const ERROR_TABLE = {
  // Input and framing (attacker-controlled bytes)
  HL_ERR_INPUT_MALFORMED_JSON: { http: 400, ws: 4400, closesLink: true, retry: 'never' },
  HL_ERR_INPUT_TOO_LARGE: { http: 413, ws: 4413, closesLink: true, retry: 'never' },
  HL_ERR_INPUT_SCHEMA: { http: 400, ws: 4401, closesLink: false, retry: 'never' },
  HL_ERR_INPUT_UNKNOWN_FRAME: { http: 400, ws: 4402, closesLink: true, retry: 'never' },
  HL_ERR_INPUT_BASE64: { http: 400, ws: 4403, closesLink: false, retry: 'never' },
  HL_ERR_INPUT_NOT_CANONICAL: { http: 400, ws: 4404, closesLink: false, retry: 'never' },
  HL_ERR_INPUT_RATE_LIMITED: { http: 429, ws: 4429, closesLink: false, retry: 'later' },
  // Keys, certificates, revocations and the agreement
  HL_ERR_CERT_MALFORMED: { http: 400, ws: 4410, closesLink: false, retry: 'stop' },
  HL_ERR_CERT_UNKNOWN_PARTY: { http: 403, ws: 4411, closesLink: false, retry: 'stop' },
  HL_ERR_CERT_BAD_SIGNATURE: { http: 403, ws: 4412, closesLink: false, retry: 'stop' },
  HL_ERR_CERT_NOT_YET_VALID: { http: 403, ws: 4414, closesLink: false, retry: 'stop' },
  HL_ERR_CERT_EXPIRED: { http: 403, ws: 4415, closesLink: false, retry: 'stop' },
  HL_ERR_CERT_REVOKED: { http: 403, ws: 4416, closesLink: false, retry: 'stop' },
  HL_ERR_CERT_WRONG_ROLE: { http: 403, ws: 4417, closesLink: false, retry: 'stop' },
  HL_ERR_CERT_UNKNOWN_DEVICE: { http: 404, ws: 4418, closesLink: false, retry: 'never' },
  HL_ERR_AGREEMENT_INVALID: { http: 400, ws: 4419, closesLink: false, retry: 'stop' },
  HL_ERR_AGREEMENT_MISMATCH: { http: 409, ws: 4421, closesLink: false, retry: 'stop' },
  HL_ERR_KEY_INVALID: { http: 400, ws: 4420, closesLink: false, retry: 'stop' },
  // A sealed key file (CLI) opened with a wrong passphrase, or damaged.
  HL_ERR_KEY_PASSPHRASE: { http: 400, ws: 4422, closesLink: false, retry: 'stop' },
  // A client refused to seal for a peer device whose keys its operator has not confirmed (CLI, consoles hold instead).
  HL_ERR_PEER_KEY_UNCONFIRMED: { http: 409, ws: 4423, closesLink: false, retry: 'never' },
  // Envelopes
  HL_ERR_ENVELOPE_MALFORMED: { http: 400, ws: 4430, closesLink: false, retry: 'never' },
  HL_ERR_ENVELOPE_TOO_LARGE: { http: 413, ws: 4431, closesLink: false, retry: 'never' },
  HL_ERR_ENVELOPE_BAD_SIGNATURE: { http: 403, ws: 4432, closesLink: false, retry: 'never' },
  HL_ERR_ENVELOPE_NOT_FOR_ME: { http: 403, ws: 4433, closesLink: false, retry: 'never' },
  HL_ERR_ENVELOPE_UNWRAP_FAILED: { http: 400, ws: 4434, closesLink: false, retry: 'never' },
  HL_ERR_ENVELOPE_KEY_COMMITMENT: { http: 400, ws: 4435, closesLink: false, retry: 'never' },
  HL_ERR_ENVELOPE_CIPHERTEXT_HASH: { http: 400, ws: 4436, closesLink: false, retry: 'never' },
  HL_ERR_ENVELOPE_DECRYPT_FAILED: { http: 400, ws: 4437, closesLink: false, retry: 'never' },
  HL_ERR_ENVELOPE_PLAINTEXT_INVALID: { http: 400, ws: 4438, closesLink: false, retry: 'never' },
  HL_ERR_ENVELOPE_REPLAY: { http: 409, ws: 4439, closesLink: false, retry: 'reseal' },
  HL_ERR_ENVELOPE_DUPLICATE_ID: { http: 409, ws: 4440, closesLink: false, retry: 'never' },
  HL_ERR_ENVELOPE_RECIPIENTS: { http: 400, ws: 4441, closesLink: false, retry: 'reseal' },
  HL_ERR_ENVELOPE_SENDER_MISMATCH: { http: 403, ws: 4442, closesLink: false, retry: 'never' },
  HL_ERR_ENVELOPE_UNKNOWN_PARTY: { http: 400, ws: 4443, closesLink: false, retry: 'never' },
  HL_ERR_ENVELOPE_SENT_AT: { http: 400, ws: 4444, closesLink: false, retry: 'reseal' },
  // Receipts
  HL_ERR_RECEIPT_MALFORMED: { http: 400, ws: 4450, closesLink: false, retry: 'never' },
  HL_ERR_RECEIPT_BAD_SIGNATURE: { http: 403, ws: 4451, closesLink: false, retry: 'never' },
  HL_ERR_RECEIPT_UNKNOWN_MESSAGE: { http: 404, ws: 4452, closesLink: false, retry: 'never' },
  HL_ERR_RECEIPT_HASH_MISMATCH: { http: 400, ws: 4453, closesLink: false, retry: 'never' },
  HL_ERR_RECEIPT_NOT_RECIPIENT: { http: 403, ws: 4454, closesLink: false, retry: 'never' },
  HL_ERR_RECEIPT_SENDER_MISMATCH: { http: 403, ws: 4455, closesLink: false, retry: 'never' },
  // Refusals: a device's signed statement that it could not accept a message delivered to it
  HL_ERR_REFUSAL_MALFORMED: { http: 400, ws: 4480, closesLink: false, retry: 'never' },
  HL_ERR_REFUSAL_BAD_SIGNATURE: { http: 403, ws: 4481, closesLink: false, retry: 'never' },
  HL_ERR_REFUSAL_UNKNOWN_MESSAGE: { http: 404, ws: 4482, closesLink: false, retry: 'never' },
  HL_ERR_REFUSAL_HASH_MISMATCH: { http: 400, ws: 4483, closesLink: false, retry: 'never' },
  HL_ERR_REFUSAL_NOT_RECIPIENT: { http: 403, ws: 4484, closesLink: false, retry: 'never' },
  HL_ERR_REFUSAL_SENDER_MISMATCH: { http: 403, ws: 4485, closesLink: false, retry: 'never' },
  HL_ERR_REFUSAL_CONFLICT: { http: 409, ws: 4486, closesLink: false, retry: 'never' },
  // The response ladder (h15-ladder): a cannot-comply names its reason, no other rung has one
  HL_ERR_RECEIPT_REASON_REQUIRED: { http: 400, ws: 4490, closesLink: false, retry: 'never' },
  HL_ERR_RECEIPT_REASON_UNEXPECTED: { http: 400, ws: 4491, closesLink: false, retry: 'never' },
  // `send --wait have-complied` (or answered-only waits) ended by a cannot-comply: it will never come
  HL_ERR_CLIENT_CANNOT_COMPLY: { http: 409, ws: 4492, closesLink: false, retry: 'never' },
  // Attachments, the catalogue and translations (h15-msg)
  HL_ERR_ATTACHMENT_TOO_LARGE: { http: 413, ws: 4600, closesLink: false, retry: 'never' },
  HL_ERR_ATTACHMENT_TOO_MANY: { http: 400, ws: 4601, closesLink: false, retry: 'never' },
  HL_ERR_CATALOGUE_UNKNOWN_CODE: { http: 400, ws: 4602, closesLink: false, retry: 'never' },
  HL_ERR_TRANSLATION_UNKNOWN_ORIGINAL: { http: 404, ws: 4603, closesLink: false, retry: 'never' },
  HL_ERR_TRANSLATION_MISMATCH: { http: 409, ws: 4604, closesLink: false, retry: 'never' },
  // Authentication and authorisation
  HL_ERR_AUTH_CHALLENGE_INVALID: { http: 401, ws: 4460, closesLink: false, retry: 'later' },
  HL_ERR_AUTH_BAD_SIGNATURE: { http: 401, ws: 4461, closesLink: false, retry: 'stop' },
  HL_ERR_AUTH_TOKEN_MISSING: { http: 401, ws: 4462, closesLink: false, retry: 'later' },
  HL_ERR_AUTH_TOKEN_INVALID: { http: 401, ws: 4463, closesLink: false, retry: 'later' },
  HL_ERR_AUTH_TOKEN_EXPIRED: { http: 401, ws: 4464, closesLink: false, retry: 'later' },
  HL_ERR_AUTH_FORBIDDEN: { http: 403, ws: 4465, closesLink: false, retry: 'stop' },
  HL_ERR_AUTH_ORIGIN: { http: 403, ws: 4466, closesLink: false, retry: 'stop' },
  // Audit log
  HL_ERR_AUDIT_PROOF_INVALID: { http: 400, ws: 4470, closesLink: false, retry: 'never' },
  HL_ERR_AUDIT_ROOT_MISMATCH: { http: 400, ws: 4471, closesLink: false, retry: 'never' },
  HL_ERR_AUDIT_LEAF_MISMATCH: { http: 400, ws: 4472, closesLink: false, retry: 'never' },
  HL_ERR_AUDIT_CHECKPOINT_MALFORMED: { http: 400, ws: 4473, closesLink: false, retry: 'never' },
  HL_ERR_AUDIT_CHECKPOINT_SIGNATURE: { http: 400, ws: 4474, closesLink: false, retry: 'never' },
  HL_ERR_AUDIT_EQUIVOCATION: { http: 409, ws: 4475, closesLink: false, retry: 'never' },
  HL_ERR_AUDIT_RANGE: { http: 400, ws: 4476, closesLink: false, retry: 'never' },
  HL_ERR_AUDIT_ENTRY_INVALID: { http: 400, ws: 4477, closesLink: false, retry: 'never' },
  HL_ERR_AUDIT_EXPORT_INVALID: { http: 400, ws: 4478, closesLink: false, retry: 'never' },
  // Server, storage, configuration, client
  HL_ERR_NOT_FOUND: { http: 404, ws: 4511, closesLink: false, retry: 'never' },
  HL_ERR_CONFIG_INVALID: { http: 500, ws: 4500, closesLink: false, retry: 'never' },
  HL_ERR_STORE_FAILED: { http: 503, ws: 4503, closesLink: false, retry: 'later' },
  HL_ERR_STORE_DATA_LOST: { http: 503, ws: 4512, closesLink: false, retry: 'later' },
  HL_ERR_STORE_LOCKED: { http: 503, ws: 4513, closesLink: false, retry: 'later' },
  HL_ERR_RELAY_HASH_MISMATCH: { http: 502, ws: 4514, closesLink: false, retry: 'later' },
  // The relay-to-relay link (h11): a peer relay, or what it forwards, is not of the party it must be.
  HL_ERR_RELAY_WRONG_PARTY: { http: 403, ws: 4530, closesLink: true, retry: 'stop' },
  // A relay-to-relay frame whose number is not above the last one of its connection.
  HL_ERR_RELAY_FRAME_REPLAY: { http: 409, ws: 4531, closesLink: true, retry: 'never' },
  HL_ERR_SERVER_SHUTTING_DOWN: { http: 503, ws: 4504, closesLink: false, retry: 'later' },
  HL_ERR_SERVER_SLOW_CONSUMER: { http: 503, ws: 4505, closesLink: false, retry: 'later' },
  HL_ERR_INTERNAL: { http: 500, ws: 4501, closesLink: false, retry: 'later' },
  HL_ERR_CLIENT_TIMEOUT: { http: 504, ws: 4506, closesLink: false, retry: 'later' },
  HL_ERR_CLIENT_REFUSED: { http: 400, ws: 4507, closesLink: false, retry: 'never' },
  HL_ERR_CLIENT_UNREACHABLE: { http: 503, ws: 4510, closesLink: false, retry: 'later' },
  HL_ERR_KEYSTORE_PASSPHRASE: { http: 400, ws: 4508, closesLink: false, retry: 'never' },
  HL_ERR_USAGE: { http: 400, ws: 4509, closesLink: false, retry: 'never' },
  // The agreement's root signatures and the security labels it defines (issue 15).
  HL_ERR_AGREEMENT_UNSIGNED: { http: 403, ws: 4580, closesLink: false, retry: 'stop' },
  HL_ERR_AGREEMENT_BAD_SIGNATURE: { http: 403, ws: 4581, closesLink: false, retry: 'stop' },
  HL_ERR_ENVELOPE_LABEL: { http: 400, ws: 4582, closesLink: false, retry: 'never' },
  // /metrics asked from another host without the metrics bearer token (docs/operations-endpoints.md).
  HL_ERR_METRICS_FORBIDDEN: { http: 403, ws: 4540, closesLink: false, retry: 'never' },
  // Escalation beyond the console (docs/escalation.md): the relay refuses to start on a bad
  // webhooks file (HOTLINE_WEBHOOKS) rather than run without the alarms it was asked to send.
  HL_ERR_ESCALATION_CONFIG_UNREADABLE: { http: 500, ws: 4570, closesLink: false, retry: 'never' },
  HL_ERR_ESCALATION_CONFIG_INVALID: { http: 500, ws: 4571, closesLink: false, retry: 'never' },
  HL_ERR_ESCALATION_SECRET: { http: 500, ws: 4572, closesLink: false, retry: 'never' },
  // Prekeys (PROTOCOL.md "Prekeys and forward secrecy")
  HL_ERR_PREKEY_MALFORMED: { http: 400, ws: 4620, closesLink: false, retry: 'never' },
  HL_ERR_PREKEY_BAD_SIGNATURE: { http: 400, ws: 4621, closesLink: false, retry: 'never' },
  HL_ERR_PREKEY_WRONG_DEVICE: { http: 400, ws: 4622, closesLink: false, retry: 'never' },
  HL_ERR_PREKEY_VALIDITY: { http: 400, ws: 4623, closesLink: false, retry: 'never' },
  HL_ERR_PREKEY_SECRET_GONE: { http: 400, ws: 4624, closesLink: false, retry: 'never' },
} as const satisfies Record<string, ErrorRow>;

/** Every error code Hotline uses: `HL_ERR_<AREA>_<WHAT>`. */
export type HotlineErrorCode = keyof typeof ERROR_TABLE;

/** A refusal with a stable code; tests and clients match on `code`, never on `message`. */
export class HotlineError extends Error {
  readonly code: HotlineErrorCode;
  /** Optional machine-readable detail (an entry index, a field name). Never secrets. */
  readonly detail: Record<string, unknown> | undefined;

  constructor(
    code: HotlineErrorCode,
    message: string,
    options?: { cause?: unknown; detail?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HotlineError';
    this.code = code;
    this.detail = options?.detail;
  }

  get httpStatus(): number {
    return ERROR_TABLE[this.code].http;
  }

  get wsCloseCode(): number {
    return ERROR_TABLE[this.code].ws;
  }
}

/** What a client does after this code (see {@link RetryPolicy}). */
export function retryPolicy(code: HotlineErrorCode): RetryPolicy {
  return ERROR_TABLE[code].retry;
}

/** True when a frame refused with this code ends the connection. */
export function closesLink(code: HotlineErrorCode): boolean {
  return ERROR_TABLE[code].closesLink;
}

/** The code whose WebSocket close code this is, if any (close codes are unique in the table). */
export function codeOfCloseCode(wsCode: number): HotlineErrorCode | undefined {
  return CODE_BY_CLOSE.get(wsCode);
}

const CODE_BY_CLOSE: ReadonlyMap<number, HotlineErrorCode> = new Map(
  (Object.keys(ERROR_TABLE) as HotlineErrorCode[]).map((code) => [ERROR_TABLE[code].ws, code]),
);

/** True for a code in the table (for codes that arrive over the wire). */
export function isHotlineErrorCode(code: unknown): code is HotlineErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_TABLE, code);
}

/** Narrow `unknown` (a caught value) to a HotlineError. */
export function isHotlineError(err: unknown): err is HotlineError {
  return err instanceof HotlineError;
}
