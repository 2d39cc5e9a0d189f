import type { AuditReport } from '../../../shared/audit/report.js';
import type { Agreement } from '../../../shared/protocol/schemas.js';
import { formatDuration, h } from '../common/dom.js';
import { t, type MessageKey } from '../common/i18n.js';

/**
 * The deadline-performance report of a verified log: a table per precedence and a chart. It is
 * only ever drawn from a {@link VerifiedLog}'s report (verified-log.ts), never from a file as read.
 */
export function reportView(report: AuditReport, agreement: Agreement): HTMLElement {
  // Deliveries take well under a minute: tenths of a second say more there than mm:ss.
  const ms = (x: number | null) => (x === null ? '—' : x < 60_000 ? t('rep_seconds', { n: (x / 1000).toFixed(1) }) : formatDuration(x));
  // Two header rows: the rung groups, then count, median and 95th percentile under each, so that
  // every column keeps a short label and the table fits the card (at 390 px it is stacked, CSS).
  const groups = [
    ['delivered', 'rep_to_delivery'],
    ['acknowledged', 'rep_to_ack'],
  ] as const;
  const sub = ['rep_count', 'col_median', 'rep_p95'] as const;
  const cell = (col: string, label: string, ...children: (string | number | HTMLElement)[]) => h('td', { 'data-col': col, 'data-label': label }, ...children);
  return h(
    'div',
    {},
    h(
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
              return [cell(rung, label('rep_count'), count), cell(`${rung}-median`, label('col_median'), ms(s.medianMs)), cell(`${rung}-p95`, label('rep_p95'), ms(s.p95Ms))];
            }),
            h('td', { 'data-col': 'late', 'data-label': t('col_late'), class: row.deadlinesMissed > 0 ? 'problem' : '' }, row.deadlinesMissed),
          );
        }),
      ),
    ),
    h('p', { class: 'small muted' }, t('chart_title')),
    reportChart(report, agreement),
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
  const W = 360;
  const rowH = 34;
  const left = 90;
  const plotW = W - left - 20;
  const H = 10 + rowH * report.rows.length + 20;
  const max = 1.5; // the axis runs to 150 % of the deadline; longer bars are clipped and marked
  const x = (share: number) => left + (Math.min(share, max) / max) * plotW;
  const svg = el('svg', { class: 'chart', id: 'report-chart', viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img', 'aria-label': t('chart_title') });
  svg.appendChild(el('title', {}, t('chart_title')));
  report.rows.forEach((row, i) => {
    const y = 6 + i * rowH;
    const deadline = agreement.deadlines[row.precedence].acknowledgedMs;
    svg.appendChild(el('text', { x: 0, y: y + 16 }, row.precedence));
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
