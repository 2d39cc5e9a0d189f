import { HotlineError } from '../../../shared/errors.js';
import { fingerprint } from '../../../shared/crypto/keys.js';
import { verifyDirectory } from '../../../shared/crypto/directory.js';
import { fromBase64, toHex } from '../../../shared/encoding/base64.js';
import { parseCheckpoint, parseNote } from '../../../shared/audit/checkpoint.js';
import { verifyAuditExport, type AuditVerification } from '../../../shared/audit/log-verify.js';
import { buildAuditReport, type AuditReport } from '../../../shared/audit/report.js';
import { PRECEDENCES, type Agreement, type DeviceCertBody, type Revocation } from '../../../shared/protocol/schemas.js';
import type { UnlockedKey } from '../key-store.js';
import type { KeyValueStore, RecordStore } from '../../storage/kv.js';
import type { CosignResult } from '../../hotline-client.js';
import { formatDuration, formatTime, groupHex, h, replace } from '../common/dom.js';
import { onLanguageChange, t, type MessageKey } from '../common/i18n.js';
import { pageHeader } from '../common/shell.js';
import { bootConsole, openSession } from '../common/boot.js';
import { loadFileExport, loadServerExport, type AuditSnapshot } from './audit-source.js';
import { entryMessageId, entrySummary, parseEntries, trailOf, type LogEntry } from './entries.js';

const MAX_ROWS = 500;

interface View {
  snapshot?: AuditSnapshot;
  entries: LogEntry[];
  checkpoints: string[];
  report?: AuditReport;
  verification?: AuditVerification;
  progress?: { done: number; total: number };
  trail?: string;
  cosign?: { running: boolean; result?: CosignResult; error?: { code: string; message: string } };
  filter: { from?: number; to?: number; type?: string; message?: string };
  unavailable: boolean;
  loadError?: string;
}

async function runConsole(root: HTMLElement, kv: KeyValueStore & RecordStore, unlocked: UnlockedKey): Promise<void> {
  const device = unlocked.device;
  const c = device.certificate.cert;
  // One session for everything this console reads and the cosignatures it posts. The WebSocket
  // is never opened: an auditor device only reads and cosigns.
  const { client, agreement } = await openSession<{ v: 1; agreement?: Agreement }>(kv, unlocked, { initial: () => ({ v: 1 }) });

  const view: View = { entries: [], checkpoints: [], filter: {}, unavailable: false };
  let directory: { certs: DeviceCertBody[]; revocations: Revocation[] } = { certs: [], revocations: [] };

  const sourceEl = h('section', { class: 'card', id: 'source' });
  const logEl = h('section', { class: 'card', id: 'log' });
  const trailEl = h('section', { class: 'card', id: 'trail' });
  const checkpointsEl = h('section', { class: 'card', id: 'checkpoints' });
  const verifyEl = h('section', { class: 'card', id: 'verify' });
  const reportEl = h('section', { class: 'card', id: 'report' });
  const directoryEl = h('section', { class: 'card', id: 'directory' });

  const layout = () =>
    replace(
      root,
      pageHeader('app_auditor', h('div', { class: 'status' }, h('span', { class: 'who' }, `${t('me')}: ${c.party}/${c.device}`)), () => location.reload()),
      h('main', { class: 'grid' }, h('div', { class: 'col' }, sourceEl, logEl, trailEl), h('div', { class: 'col side' }, verifyEl, checkpointsEl, reportEl, directoryEl)),
    );

  const setSnapshot = (snapshot: AuditSnapshot) => {
    const v = snapshot.value as { entries?: unknown; checkpoints?: unknown };
    view.snapshot = snapshot;
    view.entries = parseEntries(Array.isArray(v.entries) ? v.entries : []);
    view.checkpoints = Array.isArray(v.checkpoints) ? v.checkpoints.filter((x): x is string => typeof x === 'string') : [];
    view.report = buildAuditReport(view.entries.filter((e) => e.value).map((e) => e.value!));
    view.verification = undefined;
    view.progress = undefined;
    view.trail = undefined;
    drawAll();
  };

  const drawSource = () => {
    const file = h('input', { type: 'file', id: 'export-file', accept: '.json,application/json' });
    file.addEventListener('change', () => {
      const f = file.files?.[0];
      if (!f) return;
      void f.text().then(
        (text) => setSnapshot(loadFileExport(text)),
        (err: unknown) => {
          view.loadError = err instanceof Error ? err.message : String(err);
          drawSource();
        },
      );
    });
    const loaded = view.snapshot
      ? h('p', { id: 'loaded' }, t('loaded_from', { source: t(view.snapshot.source === 'server' ? 'source_server' : 'source_file'), entries: view.entries.length, checkpoints: view.checkpoints.length }))
      : null;
    replace(
      sourceEl,
      h('h2', {}, t('audit_log')),
      view.unavailable ? h('p', { class: 'notice', id: 'audit-unavailable' }, t('audit_unavailable')) : null,
      view.loadError ? h('p', { class: 'error', role: 'alert' }, view.loadError) : null,
      loaded,
      h('div', { class: 'row' }, h('button', { type: 'button', id: 'load-server', class: 'secondary', onclick: () => void fromServer() }, t('load_server')), h('label', {}, t('open_export'), file)),
    );
  };

  const drawLog = () => {
    const types = [...new Set(view.entries.map((e) => e.type))].sort();
    const fromIn = h('input', { type: 'datetime-local', id: 'filter-from', step: 1 });
    const toIn = h('input', { type: 'datetime-local', id: 'filter-to', step: 1 });
    const typeSel = h('select', { id: 'filter-type' }, h('option', { value: '' }, t('all_types')), ...types.map((x) => h('option', { value: x }, x)));
    const msgIn = h('input', { id: 'filter-message', placeholder: '0123abcd…', maxlength: 32, autocomplete: 'off' });
    if (view.filter.from !== undefined) fromIn.value = toLocalInput(view.filter.from);
    if (view.filter.to !== undefined) toIn.value = toLocalInput(view.filter.to);
    typeSel.value = view.filter.type ?? '';
    msgIn.value = view.filter.message ?? '';
    const form = h(
      'form',
      { class: 'filters', id: 'filters' },
      h('label', {}, t('filter_from'), fromIn),
      h('label', {}, t('filter_to'), toIn),
      h('label', {}, t('filter_type'), typeSel),
      h('label', {}, t('filter_message'), msgIn),
      h('button', { type: 'submit', id: 'apply-filter' }, t('load')),
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      view.filter = {
        ...(fromIn.value ? { from: new Date(fromIn.value).getTime() } : {}),
        ...(toIn.value ? { to: new Date(toIn.value).getTime() } : {}),
        ...(typeSel.value ? { type: typeSel.value } : {}),
        ...(msgIn.value.trim() ? { message: msgIn.value.trim().toLowerCase() } : {}),
      };
      drawLog();
    });
    const f = view.filter;
    const rows = view.entries.filter(
      (e) =>
        (f.from === undefined || e.at >= f.from) &&
        (f.to === undefined || e.at <= f.to) &&
        (f.type === undefined || e.type === f.type) &&
        (f.message === undefined || (entryMessageId(e) ?? '').startsWith(f.message)),
    );
    const bad = view.verification?.problem?.index;
    replace(
      logEl,
      form,
      h('p', { class: 'small muted', id: 'shown' }, t('shown', { n: Math.min(rows.length, MAX_ROWS), total: rows.length })),
      h(
        'table',
        { id: 'entries' },
        h('thead', {}, h('tr', {}, ...(['col_index', 'col_at', 'col_type', 'col_summary'] as const).map((k) => h('th', {}, t(k))), h('th', {}))),
        h(
          'tbody',
          {},
          ...rows.slice(0, MAX_ROWS).map((e) => {
            const id = entryMessageId(e);
            return h(
              'tr',
              { class: e.index === bad ? 'problem' : '', 'data-index': e.index, 'data-type': e.type },
              h('td', {}, e.index),
              h('td', {}, e.at ? formatTime(e.at) : '—'),
              h('td', {}, h('code', {}, e.type)),
              h('td', { class: 'small' }, entrySummary(e)),
              h('td', {}, id ? h('button', { type: 'button', class: 'secondary follow', onclick: () => follow(id) }, t('follow')) : null),
            );
          }),
        ),
      ),
    );
  };

  const follow = (id: string) => {
    view.trail = id;
    drawTrail();
    trailEl.scrollIntoView({ block: 'nearest' });
  };

  const drawTrail = () => {
    if (!view.trail) return replace(trailEl);
    const steps = trailOf(view.entries, view.trail);
    replace(
      trailEl,
      h('h2', {}, t('message_trail', { id: view.trail.slice(0, 16) })),
      h('ol', { class: 'trail', id: 'trail-steps' }, ...steps.map((s) => h('li', { 'data-step': s.step }, h('b', {}, s.step), ` — ${formatTime(s.entry.at)} (#${s.entry.index}) `, h('span', { class: 'small' }, entrySummary(s.entry))))),
    );
  };

  /**
   * Cosign as this ministry's auditor: the client verifies the latest checkpoint's signature, that
   * no checkpoint seen has another root for its size, and a consistency proof from the last one
   * this device cosigned; then the log is loaded again to show the new cosignature.
   */
  const cosign = async () => {
    view.cosign = { running: true };
    drawCheckpoints();
    try {
      const result = await client.cosignLatest();
      view.cosign = { running: false, result };
      await fromServer();
    } catch (err) {
      view.cosign = { running: false, error: { code: err instanceof HotlineError ? err.code : 'HL_ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) } };
    }
    drawCheckpoints();
  };

  const cosignView = () => {
    const s = view.cosign;
    if (!s || s.running) return null;
    if (s.error) return h('p', { class: 'problem', role: 'alert', id: 'cosign-result', 'data-status': 'failed', 'data-code': s.error.code }, t('cosign_failed', s.error));
    const r = s.result!;
    return h(
      'p',
      { class: r.status === 'cosigned' ? 'verified' : 'small', id: 'cosign-result', 'data-status': r.status, ...(r.status === 'none' ? {} : { 'data-size': r.size }) },
      r.status === 'cosigned' ? `✔ ${t('cosign_cosigned', { size: r.size })}` : r.status === 'unchanged' ? t('cosign_unchanged', { size: r.size }) : t('cosign_nothing'),
    );
  };

  const drawCheckpoints = () => {
    const verifiedNames = new Set(view.verification?.ok ? [agreement.name, ...view.verification.cosigners] : []);
    replace(
      checkpointsEl,
      h('h2', {}, t('checkpoints')),
      h('button', { type: 'button', id: 'cosign-run', class: 'secondary', disabled: view.cosign?.running === true, onclick: () => void cosign() }, t('cosign_latest')),
      cosignView(),
      view.checkpoints.length === 0
        ? h('p', { class: 'muted' }, t('none'))
        : h(
            'table',
            { id: 'checkpoint-table' },
            h('thead', {}, h('tr', {}, h('th', {}, t('col_size')), h('th', {}, t('col_root')), h('th', {}, t('col_signatures')))),
            h(
              'tbody',
              {},
              ...view.checkpoints.map((note) => {
                try {
                  const cp = parseCheckpoint(note);
                  const names = parseNote(note).signatures.map((s) => s.name);
                  return h(
                    'tr',
                    { 'data-size': cp.size },
                    h('td', {}, cp.size),
                    h('td', {}, h('code', {}, toHex(cp.rootHash).slice(0, 16) + '…')),
                    h('td', { class: 'small' }, ...names.map((n) => h('div', {}, verifiedNames.has(n) ? '✔ ' : '', n))),
                  );
                } catch (err) {
                  return h('tr', { class: 'problem' }, h('td', { colspan: 3 }, err instanceof Error ? err.message : String(err)));
                }
              }),
            ),
          ),
    );
  };

  const drawVerify = () => {
    const v = view.verification;
    const p = view.progress;
    replace(
      verifyEl,
      h('h2', {}, t('verify')),
      h('button', { type: 'button', id: 'verify-run', disabled: !view.snapshot || (p !== undefined && !v), onclick: () => void runVerify() }, t('verify')),
      p ? h('progress', { class: 'progress', id: 'verify-progress', max: Math.max(1, p.total), value: p.done }) : null,
      p && !v ? h('p', { class: 'small' }, t('verify_running', { done: p.done, total: p.total })) : null,
      v
        ? v.ok
          ? h('p', { class: 'verified', id: 'verify-result', 'data-ok': 'true' }, '✔ ', t('verify_ok', { entries: v.entries, checkpoints: v.checkpoints }))
          : h(
              'p',
              { class: 'problem', id: 'verify-result', 'data-ok': 'false', 'data-index': v.problem?.index ?? '', 'data-code': v.problem?.code ?? '' },
              '✘ ',
              t('verify_problem', { index: v.problem?.index ?? '—', code: v.problem?.code ?? '', message: v.problem?.message ?? '' }),
            )
        : null,
    );
  };

  const runVerify = async () => {
    if (!view.snapshot) return;
    view.verification = undefined;
    view.progress = { done: 0, total: view.entries.length };
    drawVerify();
    const result = await verifyAuditExport(agreement, view.snapshot.value, {
      onProgress: (done, total) => {
        view.progress = { done, total };
        const bar = document.getElementById('verify-progress') as HTMLProgressElement | null;
        if (bar) {
          bar.max = Math.max(1, total);
          bar.value = done;
        }
      },
    });
    view.verification = result;
    view.progress = { done: view.progress.total, total: view.progress.total };
    if (!result.ok && result.problem?.index !== undefined) view.filter = {};
    drawAll();
  };

  const drawReport = () => {
    const r = view.report;
    const ms = (x: number | null) => (x === null ? '—' : formatDuration(x));
    replace(
      reportEl,
      h('h2', {}, t('report')),
      !r
        ? h('p', { class: 'muted' }, t('none'))
        : h(
            'div',
            {},
            h(
              'table',
              { id: 'report-table' },
              h('thead', {}, h('tr', {}, ...(['col_precedence', 'col_count', 'rung_delivered', 'rung_acknowledged', 'col_median', 'col_late'] as const).map((k) => h('th', {}, t(k))))),
              h(
                'tbody',
                {},
                ...r.rows.map((row) =>
                  h(
                    'tr',
                    { 'data-precedence': row.precedence },
                    h('td', {}, h('span', { class: `prec prec-${row.precedence.toLowerCase()}` }, t(`prec_${row.precedence}` as MessageKey))),
                    h('td', {}, row.sent),
                    h('td', {}, row.delivered),
                    h('td', {}, row.acknowledged),
                    h('td', {}, ms(row.toAcknowledged.medianMs)),
                    h('td', { class: row.deadlinesMissed > 0 ? 'problem' : '' }, row.deadlinesMissed),
                  ),
                ),
              ),
            ),
            h('p', { class: 'small muted' }, t('chart_title')),
            reportChart(r, agreement),
          ),
    );
  };

  const drawDirectory = () => {
    replace(
      directoryEl,
      h('h2', {}, t('directory')),
      h(
        'table',
        { id: 'directory-table' },
        h('thead', {}, h('tr', {}, ...(['col_device', 'col_role', 'col_fingerprint', 'col_valid'] as const).map((k) => h('th', {}, t(k))))),
        h(
          'tbody',
          {},
          ...directory.certs.map((x) =>
            h('tr', {}, h('td', {}, `${x.party}/${x.device}`), h('td', {}, x.role), h('td', {}, h('code', {}, groupHex(fingerprint(fromBase64(x.signKey)).slice(0, 16)))), h('td', { class: 'small' }, formatTime(x.notAfter))),
          ),
        ),
      ),
      h('h2', {}, t('revocations')),
      directory.revocations.length === 0
        ? h('p', { class: 'muted' }, t('none'))
        : h('ul', {}, ...directory.revocations.map((r) => h('li', {}, `${r.revocation.party}/${r.revocation.device} — ${formatTime(r.revocation.at)}${r.revocation.reason ? ` (${r.revocation.reason})` : ''}`))),
    );
  };

  const drawAll = () => {
    drawSource();
    drawLog();
    drawTrail();
    drawVerify();
    drawCheckpoints();
    drawReport();
    drawDirectory();
  };

  const fromServer = async () => {
    try {
      const snap = await loadServerExport(() => client.auditExport());
      view.unavailable = snap === undefined;
      view.loadError = undefined;
      if (snap) setSnapshot(snap);
      else drawSource();
    } catch (err) {
      view.loadError = err instanceof Error ? err.message : String(err);
      drawSource();
    }
  };

  // The directory is verified here against the pinned agreement, not taken on the server's word.
  // (HotlineClient leaves out every certificate that does not chain to the pinned agreement.)
  // A revocation that does not verify is not listed: it revokes nothing.
  const certs = await client.refreshDirectory();
  const snapshot = { certificates: [], revocations: (await client.directorySnapshot())?.revocations ?? [] };
  directory = { certs, revocations: (await verifyDirectory(agreement, snapshot, { now: Date.now() })).revocations };

  onLanguageChange(() => {
    layout();
    drawAll();
  });
  layout();
  drawAll();
  await fromServer();
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
  const H = 10 + rowH * PRECEDENCES.length + 20;
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

function toLocalInput(ms: number): string {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 19);
}

void bootConsole('auditor', 'app_auditor', runConsole);
