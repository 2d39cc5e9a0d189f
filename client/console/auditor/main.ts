import { HotlineError } from '../../../shared/errors.js';
import { fingerprint } from '../../../shared/crypto/keys.js';
import { verifyDirectory } from '../../../shared/crypto/directory.js';
import { fromBase64, toHex } from '../../../shared/encoding/base64.js';
import { parseCheckpoint, parseNote } from '../../../shared/audit/checkpoint.js';
import type { AuditProblem } from '../../../shared/audit/log-verify.js';
import type { Agreement, DeviceCertBody, Revocation } from '../../../shared/protocol/schemas.js';
import type { UnlockedKey } from '../key-store.js';
import type { KeyValueStore, RecordStore } from '../../storage/kv.js';
import type { CosignResult } from '../../hotline-client.js';
import { formatTime, groupHex, h, replace } from '../common/dom.js';
import { onLanguageChange, t } from '../common/i18n.js';
import { pageHeader } from '../common/shell.js';
import { bootConsole, openSession } from '../common/boot.js';
import { loadFileExport, loadServerExport, type AuditSnapshot } from './audit-source.js';
import { entryMessageId, entrySummary, entryTypeLabel, trailOf, wordLabel } from './entries.js';
import { parseFilterTime } from './filter-time.js';
import { downloadFile, exportFileName, reportCsv, reportFileName } from './export.js';
import { DEFAULT_PAGE_SIZE, pageOf, pagerView } from './paging.js';
import { problemKey } from './problems.js';
import { reportView } from './report.js';
import { verifySnapshot, type NotAnExport, type VerifiedLog } from './verified-log.js';

/**
 * Where the last load stands. Every load starts from a fresh view, so no notice of an earlier
 * load (a cosignature, an error, a filter) outlives it; only a verified log is ever shown.
 */
type LoadState =
  | { phase: 'none' }
  | { phase: 'unavailable' }
  | { phase: 'error'; code: string }
  | { phase: 'refused'; reason: NotAnExport }
  | { phase: 'verifying'; source: AuditSnapshot['source']; done: number; total: number }
  | { phase: 'failed'; source: AuditSnapshot['source']; problem: AuditProblem; entryText?: string }
  | { phase: 'verified'; log: VerifiedLog };

interface View {
  state: LoadState;
  snapshot?: AuditSnapshot;
  trail?: string;
  cosign?: { running: boolean; result?: CosignResult; error?: { code: string; message: string } };
  filter: { from?: number; to?: number; type?: string; message?: string };
  page: number;
  pageSize: number;
}

async function runConsole(root: HTMLElement, kv: KeyValueStore & RecordStore, unlocked: UnlockedKey): Promise<void> {
  const device = unlocked.device;
  const c = device.certificate.cert;
  // One session for everything this console reads and the cosignatures it posts. The WebSocket
  // is never opened: an auditor device only reads and cosigns.
  const { client, agreement } = await openSession<{ v: 1; agreement?: Agreement }>(kv, unlocked, { initial: () => ({ v: 1 }) });

  let view: View = { state: { phase: 'none' }, filter: {}, page: 1, pageSize: DEFAULT_PAGE_SIZE };
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
      h('main', { class: 'grid' }, h('div', { class: 'col' }, sourceEl, verifyEl, reportEl, logEl, trailEl), h('div', { class: 'col side' }, checkpointsEl, directoryEl)),
    );

  const verified = (): VerifiedLog | undefined => (view.state.phase === 'verified' ? view.state.log : undefined);

  // Loads are numbered: a slow verification of an earlier file never lands over a later one.
  let loads = 0;
  const beginLoad = (): number => {
    view = { state: { phase: 'none' }, filter: {}, page: 1, pageSize: view.pageSize };
    return ++loads;
  };
  const verifyAndShow = async (seq: number, snapshot: AuditSnapshot) => {
    const entries = (snapshot.value as { entries?: unknown } | null)?.entries;
    view.snapshot = snapshot;
    view.state = { phase: 'verifying', source: snapshot.source, done: 0, total: Array.isArray(entries) ? entries.length : 0 };
    drawAll();
    const outcome = await verifySnapshot(agreement, snapshot, (done, total) => {
      if (seq !== loads || view.state.phase !== 'verifying') return;
      view.state = { ...view.state, done, total };
      const bar = document.getElementById('verify-progress') as HTMLProgressElement | null;
      if (bar) {
        bar.max = Math.max(1, total);
        bar.value = done;
      }
    });
    if (seq !== loads) return;
    view.state = outcome.ok ? { phase: 'verified', log: outcome.log } : { phase: 'failed', source: snapshot.source, ...outcome };
    drawAll();
  };

  const reverify = () => {
    const snapshot = view.snapshot;
    if (snapshot) void verifyAndShow(beginLoad(), snapshot);
  };

  const fromFile = async (file: File) => {
    const seq = beginLoad();
    drawAll();
    let text: string;
    try {
      text = await file.text();
    } catch {
      if (seq === loads) view.state = { phase: 'refused', reason: 'file_not_json' };
      return drawAll();
    }
    if (seq !== loads) return;
    const r = loadFileExport(text);
    if (!r.ok) {
      view.state = { phase: 'refused', reason: r.reason };
      return drawAll();
    }
    await verifyAndShow(seq, r.snapshot);
  };

  const fromServer = async () => {
    const seq = beginLoad();
    drawAll();
    try {
      const snap = await loadServerExport(() => client.auditExport());
      if (seq !== loads) return;
      if (snap) return await verifyAndShow(seq, snap);
      view.state = { phase: 'unavailable' };
    } catch (err) {
      if (seq !== loads) return;
      view.state = { phase: 'error', code: err instanceof HotlineError ? err.code : 'HL_ERR_INTERNAL' };
    }
    drawAll();
  };

  const drawSource = () => {
    // The browser draws a file field's own button and note in its own language, not the console's:
    // the field is hidden in a label that says what it does (still focusable, still a file field).
    const file = h('input', { type: 'file', id: 'export-file', accept: '.json,application/json' });
    file.addEventListener('change', () => {
      const f = file.files?.[0];
      if (f) void fromFile(f);
    });
    const s = view.state;
    const log = verified();
    replace(
      sourceEl,
      h('h2', {}, t('audit_log')),
      s.phase === 'unavailable' ? h('p', { class: 'notice', id: 'audit-unavailable' }, t('audit_unavailable')) : null,
      s.phase === 'error' ? h('p', { class: 'error', role: 'alert', id: 'load-error', 'data-code': s.code }, t('load_failed', { reason: t(problemKey(s.code)) })) : null,
      s.phase === 'refused' ? h('p', { class: 'error', role: 'alert', id: 'load-refused', 'data-reason': s.reason }, t(s.reason)) : null,
      log ? h('p', { id: 'loaded' }, t('loaded_from', { source: t(log.source === 'server' ? 'source_server' : 'source_file'), entries: log.entries.length, checkpoints: log.checkpoints.length })) : null,
      log ? h('button', { type: 'button', id: 'download-export', class: 'secondary', onclick: () => downloadFile(exportFileName(agreement, log), 'application/json', log.text) }, t('rep_download_export')) : null,
      h('div', { class: 'row' }, h('button', { type: 'button', id: 'load-server', class: 'secondary', onclick: () => void fromServer() }, t('load_server')), h('label', { class: 'file-button' }, file, t('open_export'))),
    );
  };

  const drawLog = () => {
    const log = verified();
    if (!log) return replace(logEl);
    const types = [...new Set(log.entries.map((e) => e.type))].sort();
    const timeIn = (id: string) => h('input', { id, placeholder: t('filter_time_hint'), autocomplete: 'off', inputmode: 'numeric', size: 19 });
    const fromIn = timeIn('filter-from');
    const toIn = timeIn('filter-to');
    const typeSel = h('select', { id: 'filter-type' }, h('option', { value: '' }, t('all_types')), ...types.map((x) => h('option', { value: x }, entryTypeLabel(x))));
    const msgIn = h('input', { id: 'filter-message', placeholder: '0123abcd…', maxlength: 32, autocomplete: 'off' });
    if (view.filter.from !== undefined) fromIn.value = formatTime(view.filter.from);
    if (view.filter.to !== undefined) toIn.value = formatTime(view.filter.to);
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
      h('p', { class: 'error', id: 'filter-error', role: 'alert' }),
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const from = parseFilterTime(fromIn.value);
      const to = parseFilterTime(toIn.value);
      if (from === null || to === null) {
        (from === null ? fromIn : toIn).focus();
        return replace(form.querySelector('#filter-error')!, t('filter_time_invalid'));
      }
      view.filter = {
        ...(from === undefined ? {} : { from }),
        ...(to === undefined ? {} : { to }),
        ...(typeSel.value ? { type: typeSel.value } : {}),
        ...(msgIn.value.trim() ? { message: msgIn.value.trim().toLowerCase() } : {}),
      };
      view.page = 1;
      drawLog();
    });
    const f = view.filter;
    const rows = log.entries.filter(
      (e) =>
        (f.from === undefined || e.at >= f.from) &&
        (f.to === undefined || e.at <= f.to) &&
        (f.type === undefined || e.type === f.type) &&
        (f.message === undefined || (entryMessageId(e) ?? '').startsWith(f.message)),
    );
    const p = pageOf(rows, view.page, view.pageSize);
    view.page = p.page;
    const pager = pagerView(
      p,
      view.pageSize,
      (page) => {
        view.page = page;
        drawLog();
      },
      (size) => {
        // Keep the first row shown in view at the new page size.
        view.page = Math.floor(Math.max(0, p.first - 1) / size) + 1;
        view.pageSize = size;
        drawLog();
      },
    );
    const heads = ['col_index', 'col_at', 'col_type', 'col_summary'] as const;
    replace(
      logEl,
      form,
      h('p', { class: 'small muted', id: 'shown', 'data-first': p.first, 'data-last': p.last, 'data-total': p.total }, t('shown_range', { first: p.first, last: p.last, total: p.total })),
      pager,
      h(
        'table',
        { id: 'entries', class: 'stack' },
        h('thead', {}, h('tr', {}, ...heads.map((k) => h('th', {}, t(k))), h('th', {}))),
        h(
          'tbody',
          {},
          ...p.rows.map((e) => {
            const id = entryMessageId(e);
            return h(
              'tr',
              { 'data-index': e.index, 'data-type': e.type },
              h('td', { class: 'num', 'data-label': t(heads[0]) }, e.index),
              h('td', { class: 'when', 'data-label': t(heads[1]) }, e.at ? formatTime(e.at) : '—'),
              h('td', { 'data-label': t(heads[2]) }, entryTypeLabel(e.type)),
              h('td', { class: 'small', 'data-label': t(heads[3]) }, entrySummary(e)),
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
    const log = verified();
    if (!view.trail || !log) return replace(trailEl);
    const steps = trailOf(log.entries, view.trail);
    replace(
      trailEl,
      h('h2', {}, t('message_trail', { id: view.trail.slice(0, 16) })),
      h('ol', { class: 'trail', id: 'trail-steps' }, ...steps.map((s) => h('li', { 'data-step': s.step }, h('b', {}, s.label), ` — ${formatTime(s.entry.at)} (#${s.entry.index}) `, h('span', { class: 'small' }, entrySummary(s.entry))))),
    );
  };

  /**
   * Cosign as this ministry's auditor: the client verifies the latest checkpoint's signature, that
   * no checkpoint seen has another root for its size, and a consistency proof from the last one
   * this device cosigned; then the log is loaded (and verified) again to show the new
   * cosignature, and the result is shown once that load is done (a load clears older notices).
   */
  const cosign = async () => {
    view.cosign = { running: true };
    drawCheckpoints();
    let outcome: NonNullable<View['cosign']>;
    try {
      outcome = { running: false, result: await client.cosignLatest() };
      await fromServer();
    } catch (err) {
      outcome = { running: false, error: { code: err instanceof HotlineError ? err.code : 'HL_ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) } };
    }
    view.cosign = outcome;
    drawCheckpoints();
  };

  const cosignView = () => {
    const s = view.cosign;
    if (!s || s.running) return null;
    if (s.error) return h('p', { class: 'problem', role: 'alert', id: 'cosign-result', 'data-status': 'failed', 'data-code': s.error.code }, t('cosign_failed_reason', { reason: t(problemKey(s.error.code)) }));
    const r = s.result!;
    return h(
      'p',
      { class: r.status === 'cosigned' ? 'verified' : 'small', id: 'cosign-result', 'data-status': r.status, ...(r.status === 'none' ? {} : { 'data-size': r.size }) },
      r.status === 'cosigned' ? `✔ ${t('cosign_cosigned', { size: r.size })}` : r.status === 'unchanged' ? t('cosign_unchanged', { size: r.size }) : t('cosign_nothing'),
    );
  };

  const drawCheckpoints = () => {
    const log = verified();
    const verifiedNames = new Set(log ? [agreement.name, ...log.verification.cosigners] : []);
    replace(
      checkpointsEl,
      h('h2', {}, t('checkpoints')),
      h('button', { type: 'button', id: 'cosign-run', class: 'secondary', disabled: view.cosign?.running === true, onclick: () => void cosign() }, t('cosign_latest')),
      cosignView(),
      !log || log.checkpoints.length === 0
        ? h('p', { class: 'muted' }, t('none'))
        : h(
            'table',
            { id: 'checkpoint-table' },
            h('thead', {}, h('tr', {}, h('th', {}, t('col_size')), h('th', {}, t('col_root')), h('th', {}, t('col_signatures')))),
            h(
              'tbody',
              {},
              ...log.checkpoints.map((note) => {
                const cp = parseCheckpoint(note);
                const names = parseNote(note).signatures.map((s) => s.name);
                return h(
                  'tr',
                  { 'data-size': cp.size },
                  h('td', {}, cp.size),
                  h('td', {}, h('code', {}, toHex(cp.rootHash).slice(0, 16) + '…')),
                  h('td', { class: 'small' }, ...names.map((n) => h('div', {}, verifiedNames.has(n) ? '✔ ' : '', n))),
                );
              }),
            ),
          ),
    );
  };

  const drawVerify = () => {
    const s = view.state;
    const problem = s.phase === 'failed' ? s.problem : undefined;
    replace(
      verifyEl,
      h('h2', {}, t('verify')),
      h('button', { type: 'button', id: 'verify-run', class: 'secondary', disabled: !view.snapshot || s.phase === 'verifying', onclick: () => reverify() }, t('verify_again')),
      s.phase === 'verifying' ? h('progress', { class: 'progress', id: 'verify-progress', max: Math.max(1, s.total), value: s.done }) : null,
      s.phase === 'verifying' ? h('p', { class: 'small', id: 'verify-running' }, t('verify_running', { done: s.done, total: s.total })) : null,
      s.phase === 'verified'
        ? h('p', { class: 'verified', id: 'verify-result', 'data-ok': 'true' }, '✔ ', t('verify_ok', { entries: s.log.verification.entries, checkpoints: s.log.verification.checkpoints }))
        : null,
      problem
        ? h(
            'div',
            { class: 'failure', id: 'verify-result', role: 'alert', 'data-ok': 'false', 'data-index': problem.index ?? '', 'data-checkpoint': problem.checkpoint ?? '', 'data-code': problem.code },
            h('p', { class: 'failure-title' }, '✘ ', t('verify_failed')),
            h(
              'p',
              {},
              problem.index !== undefined
                ? t('verify_failed_entry', { index: problem.index, reason: t(problemKey(problem.code)) })
                : problem.checkpoint !== undefined
                  ? t('verify_failed_checkpoint', { checkpoint: problem.checkpoint, reason: t(problemKey(problem.code)) })
                  : t(problemKey(problem.code)),
            ),
            s.phase === 'failed' && s.entryText !== undefined
              ? h('details', { id: 'problem-entry' }, h('summary', {}, t('verify_failed_evidence', { index: problem.index ?? '' })), h('pre', {}, s.entryText))
              : null,
          )
        : null,
    );
  };

  const drawReport = () => {
    const s = view.state;
    const log = verified();
    replace(
      reportEl,
      h('h2', {}, t('report')),
      log
        ? reportView(
            log,
            agreement,
            h(
              'div',
              { class: 'row report-actions' },
              h('button', { type: 'button', id: 'download-csv', class: 'secondary', onclick: () => downloadFile(reportFileName(agreement, log), 'text/csv;charset=utf-8', reportCsv(log, agreement)) }, t('rep_download_csv')),
              // The browser's print dialog also saves as PDF; the print stylesheet keeps only the report.
              h('button', { type: 'button', id: 'print-report', class: 'secondary', onclick: () => window.print() }, t('rep_print')),
            ),
          )
        : s.phase === 'failed'
          ? h('p', { class: 'problem', id: 'report-withheld' }, t('report_withheld'))
          : h('p', { class: 'muted', id: 'report-pending' }, t('report_pending')),
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
            h('tr', {}, h('td', {}, `${x.party}/${x.device}`), h('td', {}, wordLabel(x.role)), h('td', {}, h('code', {}, groupHex(fingerprint(fromBase64(x.signKey)).slice(0, 16)))), h('td', { class: 'small' }, formatTime(x.notAfter))),
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

void bootConsole('auditor', 'app_auditor', runConsole);
