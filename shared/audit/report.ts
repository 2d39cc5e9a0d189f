import { PRECEDENCES, type Precedence, type ReceiptKind, type SecurityLabel } from '../protocol/schemas.js';
import { labelCodes } from '../protocol/labels.js';
import { rungsReached } from '../protocol/deadlines.js';

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
  /** Messages that reached each rung, by any receipt of that rung or a higher one from the addressee. */
  delivered: number;
  acknowledged: number;
  /** Answered: a will-comply or a cannot-comply (or a have-complied, which implies the answer). */
  answered: number;
  /** Of the answered, those whose first answer was will-comply / cannot-comply. */
  willComply: number;
  cannotComply: number;
  complied: number;
  toDelivered: RungStats;
  toAcknowledged: RungStats;
  toAnswered: RungStats;
  toComplied: RungStats;
  /** Distinct (message, rung) deadlines that were missed. */
  deadlinesMissed: number;
}

export interface AuditReport {
  /** Real traffic: neither exercises nor link tests. */
  rows: PrecedenceRow[];
  linkTests: { passed: number; failed: number };
  /** How many messages were marked as exercises: counted apart, in {@link AuditReport.exerciseRows}. */
  exercises: number;
  /** The exercises, per precedence, in the same form as {@link AuditReport.rows}. */
  exerciseRows: PrecedenceRow[];
  /**
   * Messages (link tests left out) by security label (PROTOCOL.md "Security labels"), in the order
   * first seen; `label` is the codes (`RESTRICTED // HOTLINE-ONLY`), absent for unlabelled messages.
   * Empty when no message carries a label.
   */
  labels: LabelRow[];
  /**
   * Translations (PROTOCOL.md "Translations"), by the id of their original, in log order: each
   * translation's id, its translator device and when it was accepted. They are messages too, and
   * are counted in the rows as well.
   */
  translations: Record<string, { id: string; by: string; at: number }[]>;
}

export interface LabelRow {
  label?: SecurityLabel;
  /** Real traffic and exercises, counted apart as in the rows above. */
  sent: number;
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

interface Tracked {
  precedence: Precedence;
  acceptedAt: number;
  to: string;
  exercise: boolean;
  delivered?: number;
  acknowledged?: number;
  answered?: number;
  answer?: 'will-comply' | 'cannot-comply';
  complied?: number;
}

/**
 * Build the report from entries (canonical JSON text or parsed objects), in log order. Time to a
 * rung is measured from the server's acceptance to the first receipt from the addressee that
 * reaches it; each rung reaches the ones below it (PROTOCOL.md "Deadlines"), so a will-comply
 * counts as acknowledged and delivered, a have-complied as all four. Exercises are counted apart
 * ({@link AuditReport.exerciseRows}), link tests only as link tests.
 *
 * @example
 * const report = buildAuditReport(exportFile.entries);
 */
export function buildAuditReport(entries: readonly (string | Parsed)[]): AuditReport {
  const msgs = new Map<string, Tracked>();
  const missed = new Map<string, Set<string>>();
  const report: AuditReport = { rows: [], linkTests: { passed: 0, failed: 0 }, exercises: 0, exerciseRows: [], labels: [], translations: {} };
  const byLabel = new Map<string, LabelRow>();
  let labelled = false;
  for (const raw of entries) {
    const e = (typeof raw === 'string' ? JSON.parse(raw) : raw) as Parsed;
    if (e.type === 'envelope.accepted') {
      const h = e['header'] as { id: string; precedence: Precedence; to: string; from: { party: string; device: string }; exercise?: boolean; linkTest?: boolean; translationOf?: { id: string }; label?: SecurityLabel };
      if (h.linkTest) continue;
      if (h.translationOf) (report.translations[h.translationOf.id] ??= []).push({ id: h.id, by: `${h.from.party}/${h.from.device}`, at: e.at });
      if (h.exercise) report.exercises++;
      const key = h.label === undefined ? '' : labelCodes(h.label);
      if (h.label !== undefined) labelled = true;
      const lr = byLabel.get(key) ?? { ...(h.label === undefined ? {} : { label: h.label }), sent: 0, exercises: 0 };
      if (h.exercise) lr.exercises++;
      else lr.sent++;
      byLabel.set(key, lr);
      msgs.set(h.id, { precedence: h.precedence, acceptedAt: e.at, to: h.to, exercise: h.exercise === true });
    } else if (e.type === 'receipt.accepted') {
      const r = (e['receipt'] as { receipt: { messageId: string; kind: ReceiptKind; by: { party: string } } }).receipt;
      const m = msgs.get(r.messageId);
      if (!m || r.by.party !== m.to) continue;
      const reached = rungsReached(r.kind);
      if (reached.includes('delivered')) m.delivered ??= e.at;
      if (reached.includes('acknowledged')) m.acknowledged ??= e.at;
      if (reached.includes('answered') && m.answered === undefined) {
        m.answered = e.at;
        if (r.kind === 'will-comply' || r.kind === 'have-complied') m.answer = 'will-comply';
        if (r.kind === 'cannot-comply') m.answer = 'cannot-comply';
      }
      if (reached.includes('complied')) m.complied ??= e.at;
    } else if (e.type === 'deadline.missed') {
      const id = String(e['messageId']);
      if (!msgs.has(id)) continue;
      const set = missed.get(id) ?? new Set<string>();
      set.add(String(e['rung']));
      missed.set(id, set);
    } else if (e.type === 'link.test') {
      if (e['ok'] === true) report.linkTests.passed++;
      else report.linkTests.failed++;
    }
  }
  const row = (precedence: Precedence, list: { id: string; m: Tracked }[]): PrecedenceRow => {
    const times = (rung: 'delivered' | 'acknowledged' | 'answered' | 'complied') => list.flatMap(({ m }) => (m[rung] === undefined ? [] : [m[rung] - m.acceptedAt]));
    const toDelivered = times('delivered');
    const toAcknowledged = times('acknowledged');
    const toAnswered = times('answered');
    const toComplied = times('complied');
    return {
      precedence,
      sent: list.length,
      delivered: toDelivered.length,
      acknowledged: toAcknowledged.length,
      answered: toAnswered.length,
      willComply: list.filter(({ m }) => m.answer === 'will-comply').length,
      cannotComply: list.filter(({ m }) => m.answer === 'cannot-comply').length,
      complied: toComplied.length,
      toDelivered: durationStats(toDelivered),
      toAcknowledged: durationStats(toAcknowledged),
      toAnswered: durationStats(toAnswered),
      toComplied: durationStats(toComplied),
      deadlinesMissed: list.reduce((n, { id }) => n + (missed.get(id)?.size ?? 0), 0),
    };
  };
  const all = [...msgs.entries()].map(([id, m]) => ({ id, m }));
  for (const precedence of PRECEDENCES) {
    report.rows.push(row(precedence, all.filter((x) => x.m.precedence === precedence && !x.m.exercise)));
    report.exerciseRows.push(row(precedence, all.filter((x) => x.m.precedence === precedence && x.m.exercise)));
  }
  if (labelled) report.labels = [...byLabel.values()];
  return report;
}
