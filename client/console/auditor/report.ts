import { parseCheckpoint } from '../../../shared/audit/checkpoint.js';
import { durationStats, type AuditReport, type RungStats } from '../../../shared/audit/report.js';
import { toHex } from '../../../shared/encoding/base64.js';
import type { Agreement } from '../../../shared/protocol/schemas.js';
import { formatDuration, h } from '../common/dom.js';
import { t, type MessageKey } from '../common/i18n.js';
import type { LogEntry } from './entries.js';
import type { VerifiedLog } from './verified-log.js';
import { labelCodes } from '../../../shared/protocol/labels.js';
import { labelBannerText } from '../common/label-banner.js';

/**
 * The deadline-performance report of a verified log: times to delivery and to acknowledgement per
 * precedence, the link tests beside them, a chart, and what the figures rest on (agreement, entries
 * and checkpoint verified). It is only ever drawn from a {@link VerifiedLog} (verified-log.ts),
 * never from a file as read; the same view prints (style.css, `@media print`).
 */
export function reportView(log: VerifiedLog, agreement: Agreement, actions: HTMLElement): HTMLElement {
  return h(
    'div',
    {},
    reportMeta(log, agreement),
    actions,
    deadlineTable(log.report),
    labelTable(log.report, agreement),
    h('h3', {}, t('rep_link_tests')),
    linkTable(linkTestStats(log.entries)),
    h('p', { class: 'small muted' }, t('chart_title')),
    reportChart(log.report, agreement),
    translationList(log.report.translations),
  );
}

/** Translations under their original (PROTOCOL.md "Translations"): the original is authoritative. */
function translationList(translations: AuditReport['translations']): HTMLElement | null {
  const originals = Object.entries(translations);
  if (originals.length === 0) return null;
  return h(
    'section',
    { id: 'report-translations' },
    h('h3', {}, t('rep_translations')),
    h(
      'ul',
      {},
      ...originals.map(([original, list]) =>
        h('li', { 'data-original': original }, h('code', {}, original), ' ', t('original_authoritative'), h('ul', {}, ...list.map((x) => h('li', { 'data-id': x.id }, t('rep_translation_line', { id: x.id, by: x.by }))))),
      ),
    ),
  );
}

/**
 * Messages by security label (PROTOCOL.md "Security labels"), the label shown as the operators
 * see it, in the interface language; only when some message carries one.
 */
function labelTable(report: AuditReport, agreement: Agreement): HTMLElement | null {
  if (report.labels.length === 0) return null;
  const col = t('report_label');
  const sent = t('rep_count');
  return h(
    'table',
    { id: 'report-labels', class: 'stack' },
    h('thead', {}, h('tr', {}, h('th', {}, col), h('th', {}, sent), h('th', {}, t('exercise_mark')))),
    h(
      'tbody',
      {},
      ...report.labels.map((l) =>
        h(
          'tr',
          { 'data-label': l.label === undefined ? '' : labelCodes(l.label) },
          cell('label', col, labelBannerText(agreement, l.label === undefined ? {} : { label: l.label }) ?? t('label_none')),
          cell('sent', sent, l.sent),
          cell('exercises', t('exercise_mark'), l.exercises),
        ),
      ),
    ),
  );
}

/** What the report rests on, printed with it: which log, verified how far, and when. */
function reportMeta(log: VerifiedLog, agreement: Agreement): HTMLElement {
  const last = log.checkpoints.at(-1);
  const cp = last === undefined ? undefined : parseCheckpoint(last);
  const item = (k: MessageKey, v: string, id: string) => [h('dt', {}, t(k)), h('dd', { id }, v)];
  return h(
    'dl',
    { class: 'report-meta', id: 'report-meta' },
    ...item('agreement', agreement.name, 'meta-agreement'),
    ...item('rep_basis', t('rep_basis_value', { entries: log.verification.entries, checkpoints: log.verification.checkpoints }), 'meta-basis'),
    ...item('rep_checkpoint', cp ? t('rep_checkpoint_value', { size: cp.size, root: toHex(cp.rootHash).slice(0, 16) }) : t('none'), 'meta-checkpoint'),
    ...item('rep_source', t(log.source === 'server' ? 'source_server' : 'source_file'), 'meta-source'),
    ...item('rep_generated', `${new Date().toISOString().slice(0, 19).replace('T', ' ')} UTC`, 'meta-generated'),
  );
}

/** Deliveries and round trips take well under a minute: ms and tenths of a second say more there than mm:ss. */
function duration(x: number | null): string {
  if (x === null) return '—';
  if (x < 1000) return t('rep_ms', { n: Math.round(x) });
  return x < 60_000 ? t('rep_seconds', { n: (x / 1000).toFixed(1) }) : formatDuration(x);
}

function cell(col: string, label: string, ...children: (string | number | HTMLElement)[]): HTMLTableCellElement {
  return h('td', { 'data-col': col, 'data-label': label }, ...children);
}

/** A count that should be 0 (deadlines missed, failed tests): shown as a problem otherwise. */
function badCount(col: string, label: string, n: number): HTMLTableCellElement {
  const td = cell(col, label, n);
  if (n > 0) td.className = 'problem';
  return td;
}

function deadlineTable(report: AuditReport): HTMLElement {
  // Two header rows: the rung groups, then count, median and 95th percentile under each, so that
  // every column keeps a short label and the table fits the card (at 390 px it is stacked, CSS).
  const groups = [
    ['delivered', 'rep_to_delivery'],
    ['acknowledged', 'rep_to_ack'],
  ] as const;
  const sub = ['rep_count', 'col_median', 'rep_p95'] as const;
  return h(
      'table',
      { id: 'report-table', class: 'stack' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { rowspan: 2, scope: 'col' }, t('col_precedence')),
          h('th', { rowspan: 2, scope: 'col' }, t('col_count')),
          ...groups.map(([, k]) => h('th', { colspan: 3, scope: 'colgroup', class: 'group' }, t(k))),
          h('th', { rowspan: 2, scope: 'col' }, t('col_late')),
        ),
        h('tr', {}, ...groups.flatMap(() => sub.map((k) => h('th', { scope: 'col' }, t(k))))),
      ),
      h(
        'tbody',
        {},
        ...report.rows.map((row) => {
          const stats = { delivered: [row.delivered, row.toDelivered], acknowledged: [row.acknowledged, row.toAcknowledged] } as const;
          return h(
            'tr',
            { 'data-precedence': row.precedence },
            cell('precedence', t('col_precedence'), h('span', { class: `prec prec-${row.precedence.toLowerCase()}` }, t(`prec_${row.precedence}` as MessageKey))),
            cell('sent', t('col_count'), row.sent),
            ...groups.flatMap(([rung, k]) => {
              const [count, s] = stats[rung];
              const label = (x: MessageKey) => `${t(k)} · ${t(x)}`;
              return [cell(rung, label('rep_count'), count), cell(`${rung}-median`, label('col_median'), duration(s.medianMs)), cell(`${rung}-p95`, label('rep_p95'), duration(s.p95Ms))];
            }),
            badCount('late', t('col_late'), row.deadlinesMissed),
          );
        }),
      ),
  );
}

export interface LinkTestStats {
  from: string;
  to: string;
  passed: number;
  failed: number;
  roundTrip: RungStats;
}

/** Link tests per direction (`from` is the party whose test agent sent them), from the log's `link.test` entries. */
export function linkTestStats(entries: readonly LogEntry[]): LinkTestStats[] {
  const pairs = new Map<string, { from: string; to: string; passed: number; failed: number; rtt: number[] }>();
  for (const e of entries) {
    const v = e.value;
    if (e.type !== 'link.test' || !v || typeof v.from !== 'string' || typeof v.to !== 'string') continue;
    const key = `${v.from}\u0000${v.to}`;
    const p = pairs.get(key) ?? { from: v.from, to: v.to, passed: 0, failed: 0, rtt: [] };
    if (v.ok === true) p.passed++;
    else p.failed++;
    if (v.ok === true && typeof v.roundTripMs === 'number') p.rtt.push(v.roundTripMs);
    pairs.set(key, p);
  }
  return [...pairs.values()].map(({ rtt, ...p }) => ({ ...p, roundTrip: durationStats(rtt) }));
}

function linkTable(stats: LinkTestStats[]): HTMLElement {
  if (stats.length === 0) return h('p', { class: 'muted', id: 'link-stats-none' }, t('rep_no_link_tests'));
  const heads = ['rep_link', 'test_ok', 'test_failed', 'col_median', 'rep_p95'] as const;
  return h(
    'table',
    { id: 'link-stats', class: 'stack' },
    h('thead', {}, h('tr', {}, ...heads.map((k) => h('th', { scope: 'col' }, k === 'col_median' || k === 'rep_p95' ? `${t('rep_round_trip')} · ${t(k)}` : t(k))))),
    h(
      'tbody',
      {},
      ...stats.map((s) =>
        h(
          'tr',
          { 'data-from': s.from, 'data-to': s.to },
          cell('link', t('rep_link'), `${s.from} → ${s.to}`),
          cell('passed', t('test_ok'), s.passed),
          badCount('failed', t('test_failed'), s.failed),
          cell('rtt-median', `${t('rep_round_trip')} · ${t('col_median')}`, duration(s.roundTrip.medianMs)),
          cell('rtt-p95', `${t('rep_round_trip')} · ${t('rep_p95')}`, duration(s.roundTrip.p95Ms)),
        ),
      ),
    ),
  );
}

/** Bars: median and p95 time to acknowledge per precedence, as a share of its deadline (100 % line). */
function reportChart(report: AuditReport, agreement: Agreement): SVGSVGElement {
  const NS = 'http://www.w3.org/2000/svg';
  const el = <K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, text?: string) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const W = 400;
  const rowH = 34;
  const left = 130;
  const plotW = W - left - 20;
  const H = 10 + rowH * report.rows.length + 20;
  const max = 1.5; // the axis runs to 150 % of the deadline; longer bars are clipped and marked
  const x = (share: number) => left + (Math.min(share, max) / max) * plotW;
  const svg = el('svg', { class: 'chart', id: 'report-chart', viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img', 'aria-label': t('chart_title') });
  svg.appendChild(el('title', {}, t('chart_title')));
  report.rows.forEach((row, i) => {
    const y = 6 + i * rowH;
    const deadline = agreement.deadlines[row.precedence].acknowledgedMs;
    svg.appendChild(el('text', { x: 0, y: y + 16 }, t(`prec_${row.precedence}` as MessageKey)));
    const bars: [number | null, string, number][] = [
      [row.toAcknowledged.p95Ms, 'bar-p95', 0],
      [row.toAcknowledged.medianMs, `bar-${row.precedence.toLowerCase()}`, 6],
    ];
    for (const [value, cls, inset] of bars) {
      if (value === null) continue;
      const share = value / deadline;
      svg.appendChild(el('rect', { x: left, y: y + 4 + inset / 2, width: Math.max(1, x(share) - left), height: 20 - inset, class: cls, 'data-share': share.toFixed(3) }));
    }
    const label = row.toAcknowledged.medianMs === null ? '—' : `${Math.round((row.toAcknowledged.medianMs / deadline) * 100)} %`;
    svg.appendChild(el('text', { x: left + 4, y: y + 18 }, label));
  });
  svg.appendChild(el('line', { x1: x(1), x2: x(1), y1: 4, y2: H - 16, class: 'deadline-line' }));
  svg.appendChild(el('text', { x: x(1) - 20, y: H - 4 }, t('deadline_line')));
  return svg;
}
