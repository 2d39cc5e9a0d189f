import { PRECEDENCES, type Precedence } from '../protocol/schemas.js';

/**
 * The auditors' deadline-performance report (`hotline audit report`, the auditor console's table):
 * computed from the audit log entries alone, so anyone holding a verified export gets the same
 * figures.
 */

export interface RungStats {
  count: number;
  medianMs: number | null;
  p95Ms: number | null;
  worstMs: number | null;
}

export interface PrecedenceRow {
  precedence: Precedence;
  sent: number;
  delivered: number;
  acknowledged: number;
  toDelivered: RungStats;
  toAcknowledged: RungStats;
  /** Distinct (message, rung) deadlines that were missed. */
  deadlinesMissed: number;
}

export interface AuditReport {
  rows: PrecedenceRow[];
  linkTests: { passed: number; failed: number };
  /** Messages marked as exercises are counted apart. */
  exercises: number;
}

interface Parsed {
  type: string;
  at: number;
  [k: string]: unknown;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/**
 * Count, median, 95th percentile and worst of durations in ms (nearest rank), e.g. the round trips
 * of a link's tests in the auditor console.
 *
 * @example
 * durationStats([120, 80, 95]) // { count: 3, medianMs: 95, p95Ms: 120, worstMs: 120 }
 */
export function durationStats(values: number[]): RungStats {
  const sorted = [...values].sort((a, b) => a - b);
  return { count: sorted.length, medianMs: percentile(sorted, 50), p95Ms: percentile(sorted, 95), worstMs: sorted.at(-1) ?? null };
}

/**
 * Build the report from entries (canonical JSON text or parsed objects), in log order. Time to a
 * rung is measured from the server's acceptance to the first receipt of that rung by the
 * addressee; an `acknowledged` receipt also counts as delivery when no `delivered` came first.
 *
 * @example
 * const report = buildAuditReport(exportFile.entries);
 */
export function buildAuditReport(entries: readonly (string | Parsed)[]): AuditReport {
  const msgs = new Map<string, { precedence: Precedence; acceptedAt: number; to: string; delivered?: number; acknowledged?: number }>();
  const missed = new Map<Precedence, Set<string>>();
  const report: AuditReport = { rows: [], linkTests: { passed: 0, failed: 0 }, exercises: 0 };
  for (const raw of entries) {
    const e = (typeof raw === 'string' ? JSON.parse(raw) : raw) as Parsed;
    if (e.type === 'envelope.accepted') {
      const h = e['header'] as { id: string; precedence: Precedence; to: string; exercise?: boolean; linkTest?: boolean };
      if (h.linkTest) continue;
      if (h.exercise) report.exercises++;
      msgs.set(h.id, { precedence: h.precedence, acceptedAt: e.at, to: h.to });
    } else if (e.type === 'receipt.accepted') {
      const r = (e['receipt'] as { receipt: { messageId: string; kind: string; by: { party: string } } }).receipt;
      const m = msgs.get(r.messageId);
      if (!m || r.by.party !== m.to) continue;
      if (r.kind === 'delivered' || r.kind === 'acknowledged') m.delivered ??= e.at;
      if (r.kind === 'acknowledged') m.acknowledged ??= e.at;
    } else if (e.type === 'deadline.missed') {
      const m = msgs.get(String(e['messageId']));
      if (!m) continue;
      const set = missed.get(m.precedence) ?? new Set<string>();
      set.add(`${String(e['messageId'])}/${String(e['rung'])}`);
      missed.set(m.precedence, set);
    } else if (e.type === 'link.test') {
      if (e['ok'] === true) report.linkTests.passed++;
      else report.linkTests.failed++;
    }
  }
  for (const precedence of PRECEDENCES) {
    const list = [...msgs.values()].filter((m) => m.precedence === precedence);
    const toDelivered = list.filter((m) => m.delivered !== undefined).map((m) => m.delivered! - m.acceptedAt);
    const toAcknowledged = list.filter((m) => m.acknowledged !== undefined).map((m) => m.acknowledged! - m.acceptedAt);
    report.rows.push({
      precedence,
      sent: list.length,
      delivered: toDelivered.length,
      acknowledged: toAcknowledged.length,
      toDelivered: durationStats(toDelivered),
      toAcknowledged: durationStats(toAcknowledged),
      deadlinesMissed: missed.get(precedence)?.size ?? 0,
    });
  }
  return report;
}
