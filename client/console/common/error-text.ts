import { isHotlineErrorCode, type HotlineErrorCode } from '../../../shared/errors.js';
import type { MessageKey } from './i18n.js';

/**
 * What each error code means to the person at the console, as an i18n key: every code of
 * `shared/errors.ts` (server and client ones) has a row, so a new code without words is a compile
 * error. The code itself stays off the screen (it is kept in a `data-code` attribute for support);
 * the server's English message is never shown, the words come from the interface language.
 */
const ERROR_KEYS: Record<HotlineErrorCode, MessageKey> = {
  HL_ERR_INPUT_MALFORMED_JSON: 'err_input',
  HL_ERR_INPUT_TOO_LARGE: 'err_too_large',
  HL_ERR_INPUT_SCHEMA: 'err_input',
  HL_ERR_INPUT_UNKNOWN_FRAME: 'err_input',
  HL_ERR_INPUT_BASE64: 'err_input',
  HL_ERR_INPUT_NOT_CANONICAL: 'err_input',
  HL_ERR_INPUT_RATE_LIMITED: 'err_rate',
  HL_ERR_CERT_MALFORMED: 'err_cert',
  HL_ERR_CERT_UNKNOWN_PARTY: 'err_cert',
  HL_ERR_CERT_BAD_SIGNATURE: 'err_cert',
  HL_ERR_CERT_NOT_YET_VALID: 'err_cert',
  HL_ERR_CERT_EXPIRED: 'err_cert',
  HL_ERR_CERT_REVOKED: 'err_cert',
  HL_ERR_CERT_WRONG_ROLE: 'err_cert',
  HL_ERR_CERT_UNKNOWN_DEVICE: 'err_cert',
  HL_ERR_AGREEMENT_INVALID: 'err_agreement',
  HL_ERR_AGREEMENT_MISMATCH: 'err_agreement',
  HL_ERR_KEY_INVALID: 'err_key',
  HL_ERR_KEY_PASSPHRASE: 'err_key',
  HL_ERR_PEER_KEY_UNCONFIRMED: 'err_key',
  HL_ERR_ENVELOPE_MALFORMED: 'err_envelope',
  HL_ERR_ENVELOPE_TOO_LARGE: 'err_too_large',
  HL_ERR_ENVELOPE_SENT_AT: 'err_sent_at',
  HL_ERR_ENVELOPE_BAD_SIGNATURE: 'err_envelope',
  HL_ERR_ENVELOPE_NOT_FOR_ME: 'err_envelope',
  HL_ERR_ENVELOPE_UNWRAP_FAILED: 'err_envelope',
  HL_ERR_ENVELOPE_KEY_COMMITMENT: 'err_envelope',
  HL_ERR_ENVELOPE_CIPHERTEXT_HASH: 'err_envelope',
  HL_ERR_ENVELOPE_DECRYPT_FAILED: 'err_envelope',
  HL_ERR_ENVELOPE_PLAINTEXT_INVALID: 'err_envelope',
  HL_ERR_ENVELOPE_REPLAY: 'err_replay',
  HL_ERR_ENVELOPE_DUPLICATE_ID: 'err_replay',
  HL_ERR_ENVELOPE_RECIPIENTS: 'err_recipients',
  HL_ERR_ENVELOPE_SENDER_MISMATCH: 'err_envelope',
  HL_ERR_ENVELOPE_UNKNOWN_PARTY: 'err_envelope',
  HL_ERR_RECEIPT_MALFORMED: 'err_receipt',
  HL_ERR_RECEIPT_BAD_SIGNATURE: 'err_receipt',
  HL_ERR_RECEIPT_UNKNOWN_MESSAGE: 'err_receipt',
  HL_ERR_RECEIPT_HASH_MISMATCH: 'err_receipt',
  HL_ERR_RECEIPT_NOT_RECIPIENT: 'err_receipt',
  HL_ERR_RECEIPT_SENDER_MISMATCH: 'err_receipt',
  HL_ERR_REFUSAL_MALFORMED: 'err_refusal',
  HL_ERR_REFUSAL_BAD_SIGNATURE: 'err_refusal',
  HL_ERR_REFUSAL_UNKNOWN_MESSAGE: 'err_refusal',
  HL_ERR_REFUSAL_HASH_MISMATCH: 'err_refusal',
  HL_ERR_REFUSAL_NOT_RECIPIENT: 'err_refusal',
  HL_ERR_REFUSAL_SENDER_MISMATCH: 'err_refusal',
  HL_ERR_REFUSAL_CONFLICT: 'err_refusal',
  HL_ERR_RECEIPT_REASON_REQUIRED: 'err_receipt',
  HL_ERR_RECEIPT_REASON_UNEXPECTED: 'err_receipt',
  HL_ERR_CLIENT_CANNOT_COMPLY: 'err_receipt',
  HL_ERR_ATTACHMENT_TOO_LARGE: 'err_attachment',
  HL_ERR_ATTACHMENT_TOO_MANY: 'err_attachment',
  HL_ERR_CATALOGUE_UNKNOWN_CODE: 'err_catalogue',
  HL_ERR_TRANSLATION_UNKNOWN_ORIGINAL: 'err_translation',
  HL_ERR_TRANSLATION_MISMATCH: 'err_translation',
  HL_ERR_AUTH_CHALLENGE_INVALID: 'err_auth',
  HL_ERR_AUTH_BAD_SIGNATURE: 'err_auth',
  HL_ERR_AUTH_TOKEN_MISSING: 'err_auth',
  HL_ERR_AUTH_TOKEN_INVALID: 'err_auth',
  HL_ERR_AUTH_TOKEN_EXPIRED: 'err_auth',
  HL_ERR_AUTH_FORBIDDEN: 'err_auth',
  HL_ERR_AUTH_ORIGIN: 'err_auth',
  HL_ERR_AUDIT_PROOF_INVALID: 'err_audit',
  HL_ERR_AUDIT_ROOT_MISMATCH: 'err_audit',
  HL_ERR_AUDIT_LEAF_MISMATCH: 'err_audit',
  HL_ERR_AUDIT_CHECKPOINT_MALFORMED: 'err_audit',
  HL_ERR_AUDIT_CHECKPOINT_SIGNATURE: 'err_audit',
  HL_ERR_AUDIT_EQUIVOCATION: 'err_audit',
  HL_ERR_AUDIT_RANGE: 'err_audit',
  HL_ERR_AUDIT_ENTRY_INVALID: 'err_audit',
  HL_ERR_AUDIT_EXPORT_INVALID: 'err_audit',
  HL_ERR_NOT_FOUND: 'err_not_found',
  HL_ERR_CONFIG_INVALID: 'err_server',
  HL_ERR_STORE_FAILED: 'err_server',
  HL_ERR_STORE_DATA_LOST: 'err_server',
  HL_ERR_STORE_LOCKED: 'err_server',
  HL_ERR_RELAY_HASH_MISMATCH: 'err_relay_hash',
  // Only on the relay-to-relay link; a console sees them only in a peer relay's refusal it is told of.
  HL_ERR_RELAY_WRONG_PARTY: 'err_relay_link',
  HL_ERR_RELAY_FRAME_REPLAY: 'err_relay_link',
  HL_ERR_SERVER_SHUTTING_DOWN: 'err_unreachable',
  HL_ERR_SERVER_SLOW_CONSUMER: 'err_server',
  HL_ERR_INTERNAL: 'err_server',
  HL_ERR_CLIENT_TIMEOUT: 'err_unreachable',
  HL_ERR_CLIENT_REFUSED: 'err_refused',
  HL_ERR_CLIENT_UNREACHABLE: 'err_unreachable',
  HL_ERR_KEYSTORE_PASSPHRASE: 'err_key',
  HL_ERR_USAGE: 'err_input',
  HL_ERR_METRICS_FORBIDDEN: 'err_auth',
  HL_ERR_AGREEMENT_UNSIGNED: 'err_agreement_unsigned',
  HL_ERR_AGREEMENT_BAD_SIGNATURE: 'err_agreement_unsigned',
  HL_ERR_ENVELOPE_LABEL: 'err_label',
  HL_ERR_ESCALATION_CONFIG_UNREADABLE: 'err_server',
  HL_ERR_ESCALATION_CONFIG_INVALID: 'err_server',
  HL_ERR_ESCALATION_SECRET: 'err_server',
  HL_ERR_PREKEY_MALFORMED: 'err_cert',
  HL_ERR_PREKEY_BAD_SIGNATURE: 'err_cert',
  HL_ERR_PREKEY_WRONG_DEVICE: 'err_cert',
  HL_ERR_PREKEY_VALIDITY: 'err_cert',
  HL_ERR_PREKEY_SECRET_GONE: 'err_envelope',
};

/** The i18n key that says what `code` means; an unknown code (from a newer server) is an internal problem. */
export function errorKey(code: unknown): MessageKey {
  return isHotlineErrorCode(code) ? ERROR_KEYS[code] : 'err_server';
}

/** The code of a caught error, HL_ERR_INTERNAL when it has none. */
export function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'HL_ERR_INTERNAL';
}

/**
 * An audit alarm's reason ("party/device: HL_ERR_…: text", as server/plugins/audit.ts relays
 * it; a local alarm has its `code` beside the reason) as who raised it and the i18n key of what
 * was found.
 */
export function alarmReason(reason: string, code?: string): { who?: string; key: MessageKey } {
  const m = /^(\S+): (HL_ERR_[A-Z0-9_]+)\b/.exec(reason);
  if (m) return { who: m[1]!, key: alarmKey(m[2]!) };
  code ??= /HL_ERR_[A-Z0-9_]+/.exec(reason)?.[0];
  return { key: code ? alarmKey(code) : 'problem_other' };
}

/** What an audit alarm's code found, more precisely than "the log is inconsistent" (which the banner already says). */
function alarmKey(code: string): MessageKey {
  if (code.endsWith('_SIGNATURE')) return 'problem_signature';
  if (code === 'HL_ERR_AUDIT_PROOF_INVALID' || code === 'HL_ERR_AUDIT_ROOT_MISMATCH' || code === 'HL_ERR_AUDIT_LEAF_MISMATCH') return 'problem_changed';
  if (code.startsWith('HL_ERR_AUDIT_')) return 'problem_checkpoint';
  return errorKey(code);
}
