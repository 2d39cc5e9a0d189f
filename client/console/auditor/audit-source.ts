import { HotlineError } from '../../../shared/errors.js';
import { parseAuditExport } from '../../../shared/audit/log-verify.js';
import type { DeviceCertificate, Revocation } from '../../../shared/protocol/schemas.js';
import { requestJson } from '../common/auth.js';

/**
 * Where the auditor console gets its data: the one module that knows the audit API's URLs. The
 * rest of the console works on an export-shaped object (entries, checkpoints, certificates,
 * revocations), so the log browses and verifies the same whether it came from the server
 * (`GET /v1/audit/export`, issue 5) or from an export file the auditor opened.
 */
export interface AuditSnapshot {
  source: 'server' | 'file';
  /** The export as received: verification checks its shape, nothing here trusts it. */
  value: unknown;
}

/** The server's export, or undefined when this server has no audit API yet (404). */
export async function loadServerExport(token: string): Promise<AuditSnapshot | undefined> {
  try {
    return { source: 'server', value: await requestJson('GET', '/v1/audit/export', token) };
  } catch (err) {
    if (err instanceof HotlineError && err.code === 'HL_ERR_NOT_FOUND') return undefined;
    throw err;
  }
}

/** An export file chosen by the auditor. */
export function loadFileExport(text: string): AuditSnapshot {
  return { source: 'file', value: parseAuditExport(text) };
}

/** The directory as the server serves it (verified by the caller against the agreement). */
export async function loadDirectory(token: string): Promise<{ certificates: DeviceCertificate[]; revocations: Revocation[] }> {
  const dir = (await requestJson('GET', '/v1/directory', token)) as { certificates?: unknown; revocations?: unknown };
  if (!Array.isArray(dir.certificates) || !Array.isArray(dir.revocations)) throw new HotlineError('HL_ERR_INPUT_SCHEMA', 'malformed directory');
  return { certificates: dir.certificates as DeviceCertificate[], revocations: dir.revocations as Revocation[] };
}
