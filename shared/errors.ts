/**
 * One error type for everything Hotline refuses, and one table that maps each code to the HTTP
 * status and the WebSocket close code (4000–4999) it travels as. Adding a code without a row is a
 * compile error, so no refusal can go out without a defined status.
 *
 * @example
 * throw new HotlineError('HL_ERR_ENVELOPE_BAD_SIGNATURE', 'signature does not verify');
 */

/** HTTP status and WebSocket close code of each error code. */
export const ERROR_TABLE = {
  // Input and framing (attacker-controlled bytes)
  HL_ERR_INPUT_MALFORMED_JSON: { http: 400, ws: 4400 },
  HL_ERR_INPUT_TOO_LARGE: { http: 413, ws: 4413 },
  HL_ERR_INPUT_SCHEMA: { http: 400, ws: 4401 },
  HL_ERR_INPUT_UNKNOWN_FRAME: { http: 400, ws: 4402 },
  HL_ERR_INPUT_BASE64: { http: 400, ws: 4403 },
  HL_ERR_INPUT_NOT_CANONICAL: { http: 400, ws: 4404 },
  HL_ERR_INPUT_RATE_LIMITED: { http: 429, ws: 4429 },
  // Keys, certificates, revocations and the agreement
  HL_ERR_CERT_MALFORMED: { http: 400, ws: 4410 },
  HL_ERR_CERT_UNKNOWN_PARTY: { http: 403, ws: 4411 },
  HL_ERR_CERT_BAD_SIGNATURE: { http: 403, ws: 4412 },
  HL_ERR_CERT_NOT_YET_VALID: { http: 403, ws: 4414 },
  HL_ERR_CERT_EXPIRED: { http: 403, ws: 4415 },
  HL_ERR_CERT_REVOKED: { http: 403, ws: 4416 },
  HL_ERR_CERT_WRONG_ROLE: { http: 403, ws: 4417 },
  HL_ERR_CERT_UNKNOWN_DEVICE: { http: 404, ws: 4418 },
  HL_ERR_AGREEMENT_INVALID: { http: 400, ws: 4419 },
  HL_ERR_AGREEMENT_MISMATCH: { http: 409, ws: 4421 },
  HL_ERR_KEY_INVALID: { http: 400, ws: 4420 },
  // Envelopes
  HL_ERR_ENVELOPE_MALFORMED: { http: 400, ws: 4430 },
  HL_ERR_ENVELOPE_TOO_LARGE: { http: 413, ws: 4431 },
  HL_ERR_ENVELOPE_BAD_SIGNATURE: { http: 403, ws: 4432 },
  HL_ERR_ENVELOPE_NOT_FOR_ME: { http: 403, ws: 4433 },
  HL_ERR_ENVELOPE_UNWRAP_FAILED: { http: 400, ws: 4434 },
  HL_ERR_ENVELOPE_KEY_COMMITMENT: { http: 400, ws: 4435 },
  HL_ERR_ENVELOPE_CIPHERTEXT_HASH: { http: 400, ws: 4436 },
  HL_ERR_ENVELOPE_DECRYPT_FAILED: { http: 400, ws: 4437 },
  HL_ERR_ENVELOPE_PLAINTEXT_INVALID: { http: 400, ws: 4438 },
  HL_ERR_ENVELOPE_REPLAY: { http: 409, ws: 4439 },
  HL_ERR_ENVELOPE_DUPLICATE_ID: { http: 409, ws: 4440 },
  HL_ERR_ENVELOPE_RECIPIENTS: { http: 400, ws: 4441 },
  HL_ERR_ENVELOPE_SENDER_MISMATCH: { http: 403, ws: 4442 },
  HL_ERR_ENVELOPE_UNKNOWN_PARTY: { http: 400, ws: 4443 },
  // Receipts
  HL_ERR_RECEIPT_MALFORMED: { http: 400, ws: 4450 },
  HL_ERR_RECEIPT_BAD_SIGNATURE: { http: 403, ws: 4451 },
  HL_ERR_RECEIPT_UNKNOWN_MESSAGE: { http: 404, ws: 4452 },
  HL_ERR_RECEIPT_HASH_MISMATCH: { http: 400, ws: 4453 },
  HL_ERR_RECEIPT_NOT_RECIPIENT: { http: 403, ws: 4454 },
  HL_ERR_RECEIPT_SENDER_MISMATCH: { http: 403, ws: 4455 },
  // Authentication and authorisation
  HL_ERR_AUTH_CHALLENGE_INVALID: { http: 401, ws: 4460 },
  HL_ERR_AUTH_BAD_SIGNATURE: { http: 401, ws: 4461 },
  HL_ERR_AUTH_TOKEN_MISSING: { http: 401, ws: 4462 },
  HL_ERR_AUTH_TOKEN_INVALID: { http: 401, ws: 4463 },
  HL_ERR_AUTH_TOKEN_EXPIRED: { http: 401, ws: 4464 },
  HL_ERR_AUTH_FORBIDDEN: { http: 403, ws: 4465 },
  HL_ERR_AUTH_ORIGIN: { http: 403, ws: 4466 },
  // Audit log
  HL_ERR_AUDIT_PROOF_INVALID: { http: 400, ws: 4470 },
  HL_ERR_AUDIT_ROOT_MISMATCH: { http: 400, ws: 4471 },
  HL_ERR_AUDIT_LEAF_MISMATCH: { http: 400, ws: 4472 },
  HL_ERR_AUDIT_CHECKPOINT_MALFORMED: { http: 400, ws: 4473 },
  HL_ERR_AUDIT_CHECKPOINT_SIGNATURE: { http: 400, ws: 4474 },
  HL_ERR_AUDIT_EQUIVOCATION: { http: 409, ws: 4475 },
  HL_ERR_AUDIT_RANGE: { http: 400, ws: 4476 },
  HL_ERR_AUDIT_ENTRY_INVALID: { http: 400, ws: 4477 },
  HL_ERR_AUDIT_EXPORT_INVALID: { http: 400, ws: 4478 },
  // Server, storage, configuration, client
  HL_ERR_NOT_FOUND: { http: 404, ws: 4404 },
  HL_ERR_CONFIG_INVALID: { http: 500, ws: 4500 },
  HL_ERR_STORE_FAILED: { http: 503, ws: 4503 },
  HL_ERR_SERVER_SHUTTING_DOWN: { http: 503, ws: 4504 },
  HL_ERR_SERVER_SLOW_CONSUMER: { http: 503, ws: 4505 },
  HL_ERR_INTERNAL: { http: 500, ws: 4501 },
  HL_ERR_CLIENT_TIMEOUT: { http: 504, ws: 4506 },
  HL_ERR_CLIENT_REFUSED: { http: 400, ws: 4507 },
  HL_ERR_CLIENT_UNREACHABLE: { http: 503, ws: 4510 },
  HL_ERR_KEYSTORE_PASSPHRASE: { http: 400, ws: 4508 },
  HL_ERR_USAGE: { http: 400, ws: 4509 },
} as const satisfies Record<string, { http: number; ws: number }>;

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

/** True for a code in the table (for codes that arrive over the wire). */
export function isHotlineErrorCode(code: unknown): code is HotlineErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_TABLE, code);
}

/** Narrow `unknown` (a caught value) to a HotlineError. */
export function isHotlineError(err: unknown): err is HotlineError {
  return err instanceof HotlineError;
}
