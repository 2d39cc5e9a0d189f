import type { MessageKey } from '../common/i18n.js';

/**
 * What the auditor is told about an error, in their language: the verifier's and the client's
 * messages are English and technical, and codes are for machines (kept in `data-code`). Each code
 * falls into one plain sentence by what it means for the log.
 */
export function problemKey(code: string): MessageKey {
  if (code === 'HL_ERR_AUDIT_LEAF_MISMATCH' || code === 'HL_ERR_AUDIT_ROOT_MISMATCH') return 'problem_changed';
  if (code === 'HL_ERR_AUDIT_ENTRY_INVALID') return 'problem_entry';
  if (code.endsWith('_SIGNATURE') || code.startsWith('HL_ERR_RECEIPT_') || code === 'HL_ERR_ENVELOPE_CIPHERTEXT_HASH') return 'problem_signature';
  if (code.startsWith('HL_ERR_CERT_')) return 'problem_certificate';
  if (code.startsWith('HL_ERR_AUDIT_')) return code === 'HL_ERR_AUDIT_EXPORT_INVALID' ? 'problem_export' : 'problem_checkpoint';
  if (code.startsWith('HL_ERR_AGREEMENT_') || code.startsWith('HL_ERR_INPUT_')) return 'problem_export';
  if (code === 'HL_ERR_CLIENT_UNREACHABLE' || code === 'HL_ERR_CLIENT_TIMEOUT' || code === 'HL_ERR_SERVER_SHUTTING_DOWN') return 'problem_unreachable';
  if (code.startsWith('HL_ERR_AUTH_')) return 'problem_auth';
  return 'problem_other';
}
