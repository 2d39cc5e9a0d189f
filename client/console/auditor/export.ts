import type { Agreement } from '../../../shared/protocol/schemas.js';
import type { RungStats } from '../../../shared/audit/report.js';
import { h } from '../common/dom.js';
import { linkTestStats } from './report.js';
import type { VerifiedLog } from './verified-log.js';

/**
 * What the auditor takes away from the console: the export exactly as verified (to archive, or to
 * check again with `hotline audit verify`), and the deadline report as CSV. Only a
 * {@link VerifiedLog} can be downloaded. The CSV's column names are stable identifiers in English
 * (a data file for spreadsheets and scripts, the same in every interface language); times in ms.
 */

/** Save `text` as a file through the browser's download. */
export function downloadFile(name: string, type: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.appendChild(a);
  a.click();
  a.remove();
  // The download has its own reference once started; the URL is only needed for the click.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** `hotline-audit-<agreement>-<entries>.json`: which hotline and how far the log went. */
export function exportFileName(agreement: Agreement, log: VerifiedLog): string {
  return `hotline-audit-${safeName(agreement.name)}-${log.verification.entries}.json`;
}

export function reportFileName(agreement: Agreement, log: VerifiedLog): string {
  return `hotline-deadlines-${safeName(agreement.name)}-${log.verification.entries}.csv`;
}

const DEADLINE_COLUMNS = [
  'precedence', 'messages',
  'delivered', 'delivered_median_ms', 'delivered_p95_ms', 'delivered_worst_ms', 'delivered_deadline_ms',
  'acknowledged', 'acknowledged_median_ms', 'acknowledged_p95_ms', 'acknowledged_worst_ms', 'acknowledged_deadline_ms',
  'deadlines_missed',
];
const LINK_COLUMNS = ['link_from', 'link_to', 'tests_passed', 'tests_failed', 'round_trip_median_ms', 'round_trip_p95_ms', 'round_trip_worst_ms'];

/**
 * The deadline report as CSV (RFC 4180, CRLF): one row per precedence, then a blank line and one
 * row per link-test direction, each block with its header row.
 */
export function reportCsv(log: VerifiedLog, agreement: Agreement): string {
  const stats = (s: RungStats) => [s.medianMs, s.p95Ms, s.worstMs];
  const rows: (string | number | null)[][] = [DEADLINE_COLUMNS];
  for (const r of log.report.rows) {
    const d = agreement.deadlines[r.precedence];
    rows.push([r.precedence, r.sent, r.delivered, ...stats(r.toDelivered), d.deliveredMs, r.acknowledged, ...stats(r.toAcknowledged), d.acknowledgedMs, r.deadlinesMissed]);
  }
  rows.push([], LINK_COLUMNS);
  for (const l of linkTestStats(log.entries)) rows.push([l.from, l.to, l.passed, l.failed, l.roundTrip.medianMs, l.roundTrip.p95Ms, l.roundTrip.worstMs]);
  return rows.map((r) => r.map(csvField).join(',')).join('\r\n') + '\r\n';
}

function csvField(x: string | number | null): string {
  const s = x === null ? '' : String(x);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** An agreement name may hold characters a file name should not (it is a note key name). */
function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]+/g, '_');
}
