import { HotlineError } from '../../../shared/errors.js';
import { recogniseExport, type NotAnExport } from './verified-log.js';

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
  /** Its bytes: the file as opened, or the server's export serialised (what a download saves). */
  text: string;
}

/**
 * The server's export (fetched through the console's HotlineClient session, e.g.
 * `() => client.auditExport()`), or undefined when this server has no audit API yet (404).
 */
export async function loadServerExport(fetchExport: () => Promise<unknown>): Promise<AuditSnapshot | undefined> {
  try {
    const value = await fetchExport();
    return { source: 'server', value, text: JSON.stringify(value) };
  } catch (err) {
    if (err instanceof HotlineError && err.code === 'HL_ERR_NOT_FOUND') return undefined;
    throw err;
  }
}

/** An export file chosen by the auditor, or why it is not one (refused before verification). */
export function loadFileExport(text: string): { ok: true; snapshot: AuditSnapshot } | { ok: false; reason: NotAnExport } {
  const r = recogniseExport(text);
  return r.ok ? { ok: true, snapshot: { source: 'file', value: r.value, text } } : r;
}
