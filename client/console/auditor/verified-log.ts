import { AUDIT_EXPORT_TYPE, verifyAuditExport, type AuditProblem, type AuditVerification } from '../../../shared/audit/log-verify.js';
import { buildAuditReport, type AuditReport } from '../../../shared/audit/report.js';
import type { Agreement } from '../../../shared/protocol/schemas.js';
import type { AuditSnapshot } from './audit-source.js';
import { parseEntries, type LogEntry } from './entries.js';

/**
 * The auditor console's one gate between an export and the screen (issue 10, problem 13: a
 * tampered file once showed 4 FLASH instead of 5, with no warning). Nothing of an export is shown
 * until {@link verifyAuditExport} passes on it; what is shown is then built from the very object
 * that was verified. A failure carries only what names the problem, never a report.
 */

/** A log that verified: everything the console shows of an export comes from here. */
export interface VerifiedLog {
  source: AuditSnapshot['source'];
  /** The export's bytes as verified (offered as the download). */
  text: string;
  entries: LogEntry[];
  checkpoints: string[];
  report: AuditReport;
  verification: AuditVerification;
}

export type VerifyOutcome =
  | { ok: true; log: VerifiedLog }
  | {
      ok: false;
      problem: AuditProblem;
      /** The text of the entry the problem names, as found (unverified, shown as evidence only). */
      entryText?: string;
    };

/**
 * Why a file is refused before verification: it is not JSON, or not a Hotline audit export at all
 * (a key file, an agreement). An export that then fails verification is not refused but failed.
 */
export type NotAnExport = 'file_not_json' | 'file_not_export';

/** Recognise an export by its `type` field; anything else is refused with a plain reason. */
export function recogniseExport(text: string): { ok: true; value: unknown } | { ok: false; reason: NotAnExport } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'file_not_json' };
  }
  const type = value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>).type : undefined;
  return type === AUDIT_EXPORT_TYPE ? { ok: true, value } : { ok: false, reason: 'file_not_export' };
}

/**
 * Verify a snapshot against the pinned agreement and, only if it passes, parse what the console
 * shows. The snapshot's value is frozen first so that what was verified is what is shown.
 */
export async function verifySnapshot(agreement: Agreement, snapshot: AuditSnapshot, onProgress?: (done: number, total: number) => void): Promise<VerifyOutcome> {
  const value = deepFreeze(snapshot.value);
  const verification = await verifyAuditExport(agreement, value, onProgress ? { onProgress } : {});
  const exp = value as { entries: string[]; checkpoints: string[] };
  if (!verification.ok) {
    const problem = verification.problem ?? { code: 'HL_ERR_AUDIT_EXPORT_INVALID', message: 'verification failed' };
    const entryText = problem.index === undefined || !Array.isArray(exp?.entries) ? undefined : exp.entries[problem.index];
    return { ok: false, problem, ...(typeof entryText === 'string' ? { entryText } : {}) };
  }
  const entries = parseEntries(exp.entries);
  return {
    ok: true,
    log: {
      source: snapshot.source,
      text: snapshot.text,
      entries,
      checkpoints: [...exp.checkpoints],
      report: buildAuditReport(exp.entries),
      verification,
    },
  };
}

function deepFreeze<T>(x: T): T {
  if (x && typeof x === 'object' && !Object.isFrozen(x)) {
    Object.freeze(x);
    for (const v of Object.values(x)) deepFreeze(v);
  }
  return x;
}
