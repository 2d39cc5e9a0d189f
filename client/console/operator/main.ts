import { HotlineClient, type WebSocketConstructorLike } from '../../hotline-client.js';
import { BrowserStorage } from '../../storage/browser-storage.js';
import type { ClientState } from '../../storage/client-storage.js';
import { fingerprint } from '../../../shared/crypto/keys.js';
import { agreementHash } from '../../../shared/crypto/keys.js';
import { fromBase64 } from '../../../shared/encoding/base64.js';
import { PRECEDENCES, type Agreement, type Precedence } from '../../../shared/protocol/schemas.js';
import type { HotlineEvent } from '../../../shared/protocol/frames.js';
import { KeyStore, type UnlockedKey } from '../key-store.js';
import { openIndexedDb, type KeyValueStore, type RecordStore } from '../../storage/kv.js';
import { formatDuration, formatTime, groupHex, h, replace } from '../common/dom.js';
import { initLanguage, language, onLanguageChange, t, type MessageKey } from '../common/i18n.js';
import { fatalView, pageHeader, pinAgreement, SealedNotes, SealedRecord } from '../common/shell.js';
import { showUnlock } from '../common/unlock-view.js';
import { HotlineError } from '../../../shared/errors.js';
import type { LinkPairStatus } from '../../../shared/protocol/status.js';
import { startAlarm, type Alarm } from './alarm.js';
import { FrameScheduler } from '../common/frame-scheduler.js';
import { KeyedRows } from '../common/keyed-rows.js';
import {
  MAX_EVENTS,
  OUT_RUNGS,
  addAlarm,
  applyNote,
  inboxRow,
  initialConsoleData,
  isFlashAlarm,
  latestTest,
  noteOf,
  notedIds,
  withoutNotes,
  linkPairs as orderedLinkPairs,
  pendingIds,
  pendingItem,
  pendingRow,
  peerKeys,
  peerTrust,
  sentRow,
  unconfirmedRecipients,
  type ConsoleData,
  type MessageNote,
  type LastTest,
  type ConsoleEvent,
  type InboxRow,
  type OutboxRow,
} from './model.js';

const DIRECTORY_REFRESH_MS = 5 * 60_000;
/** Rows of ROUTINE and PRIORITY messages are drawn in batches at most this often. */
const ROUTINE_EVERY_MS = 250;

async function main(): Promise<void> {
  initLanguage();
  const root = document.getElementById('app')!;
  const kv = await openIndexedDb();
  const store = new KeyStore(kv, 'operator');
  const showLock = () => {
    const body = h('main', {});
    replace(root, pageHeader('app_operator', null), body);
    return body;
  };
  let lockBody = showLock();
  const offLang = onLanguageChange(() => {
    lockBody = showLock();
    void showUnlock(lockBody, store, ['operator']).then(start);
  });
  const start = async (unlocked: UnlockedKey) => {
    offLang();
    try {
      await runConsole(root, kv, unlocked);
    } catch (err) {
      replace(root, pageHeader('app_operator', null), fatalView(err));
    }
  };
  void showUnlock(lockBody, store, ['operator']).then(start);
}

async function runConsole(root: HTMLElement, kv: KeyValueStore & RecordStore, unlocked: UnlockedKey): Promise<void> {
  const device = unlocked.device;
  const c = device.certificate.cert;
  const me = { party: c.party, device: c.device };
  const key = `${c.party}/${c.device}`;
  // Created inside the unlock click, so that the browser lets it sound later.
  const alarm: Alarm = startAlarm();

  const data = await SealedRecord.open<ConsoleData>(kv, unlocked.data, `console-data/${key}`, initialConsoleData, withoutNotes);
  const notes = await SealedNotes.open<MessageNote>(kv, unlocked.data, `console/${key}`);
  for (const [id, note] of notes.values) applyNote(data.value, id, note);
  // Data stored before notes existed keeps every message's text in its one record: move them out once.
  const unsaved = notedIds(data.value).filter((id) => !notes.values.has(id));
  if (unsaved.length > 0) {
    await notes.save(unsaved.map((id) => [id, noteOf(data.value, id)]));
    await data.save(() => undefined);
  }
  const saveNote = (id: string) => notes.save([[id, noteOf(data.value, id)]]);
  const agreement: Agreement = await pinAgreement(data.value.agreement, device, Date.now());
  if (!data.value.agreement) await data.save((d) => (d.agreement = agreement));

  const storage = new BrowserStorage(kv, unlocked.data);
  const client = new HotlineClient({
    serverUrl: location.origin,
    agreement,
    device,
    storage,
    WebSocket: WebSocket as unknown as WebSocketConstructorLike,
    testAgent: data.value.testAgent === true,
    // Every party witnesses the audit log: a checkpoint that fails its checks is an alarm here.
    cosign: true,
    // Checked at every seal, the automatic reseal after a directory change included: nothing is
    // encrypted to a peer key the operator has not confirmed (link tests carry no content).
    approveRecipients: (recipients, draft) => {
      if (draft.linkTest) return;
      const unknown = unconfirmedRecipients(recipients, me, data.value.confirmed);
      if (unknown.length > 0) {
        throw new HotlineError('HL_ERR_ENVELOPE_RECIPIENTS', `not sealed: the keys of ${unknown.map((x) => `${x.party}/${x.device}`).join(', ')} are not confirmed on this console`);
      }
    },
  });

  let state: ClientState = await storage.read(key);
  let connected = false;
  let lastTest: LastTest | undefined;
  let lastSent: { to: string; at: number } | undefined;
  let lastCosigned: { size: number; at: number } | undefined;
  let linkPairs: LinkPairStatus[] = [];
  // Deadlines run on the server's clock: countdowns use the offset measured at each connection.
  let serverOffset = 0;
  let composeError = '';

  const addEvent = (ev: ConsoleEvent) => {
    const saved = data.save((d) => {
      d.events.unshift(ev);
      d.events.length = Math.min(d.events.length, MAX_EVENTS);
    });
    markSections(drawEvents);
    return saved;
  };

  // ----- sections (each redrawn on its own so that the compose form keeps its input) -----
  const statusEl = h('div', { class: 'status', id: 'link-status', 'aria-live': 'polite' });
  const bannerEl = h('div', { id: 'alert-slot' });
  const auditAlarmEl = h('div', { id: 'audit-alarm-slot' });
  const linkEl = h('section', { class: 'card', id: 'link-panel' });
  const peersEl = h('section', { class: 'card', id: 'peers' });
  const composeEl = h('section', { class: 'card', id: 'compose' });
  const inboxEl = h('section', { class: 'card', id: 'inbox' });
  const outboxEl = h('section', { class: 'card', id: 'outbox' });
  const eventsEl = h('section', { class: 'card', id: 'events' });

  const lock = () => {
    void client.stop().finally(() => location.reload());
  };
  const layout = () =>
    replace(
      root,
      pageHeader('app_operator', statusEl, lock),
      auditAlarmEl,
      bannerEl,
      h('main', { class: 'grid' }, h('div', { class: 'col' }, inboxEl, outboxEl), h('div', { class: 'col side' }, composeEl, linkEl, peersEl, eventsEl)),
    );

  const trust = () => peerTrust(peerKeys(client.directory(), me, data.value.confirmed), data.value.confirmed);

  const drawStatus = () => {
    replace(
      statusEl,
      h('span', { class: `pill ${connected ? 'ok' : 'bad'}`, id: 'link-state', 'data-connected': String(connected) }, `${t('link')}: ${t(connected ? 'connected' : 'disconnected')}`),
      h(
        'span',
        { class: `pill ${lastTest ? (lastTest.ok ? 'ok' : 'bad') : 'idle'}`, id: 'link-test' },
        `${t('last_test')}: `,
        lastTest
          ? `${formatTime(lastTest.at)} ${t(lastTest.ok ? 'test_ok' : 'test_failed')}${lastTest.roundTripMs === undefined ? '' : `, ${t('round_trip', { ms: lastTest.roundTripMs })}`}`
          : t('no_test'),
      ),
      ...linkPairs.map((p) =>
        h('span', { class: `pill ${p.status === 'up' ? 'ok' : p.status === 'down' ? 'bad' : 'idle'}`, 'data-pair': `${p.from}>${p.to}`, 'data-status': p.status }, `${p.from} → ${p.to}: ${t(`link_${p.status}` as MessageKey)}`),
      ),
      h('span', { class: 'who' }, `${t('me')}: ${key}`),
    );
  };

  /**
   * The link tests the server has judged so far (`GET /v1/status`, through the client's own
   * session: no second login), so that the answer is on screen at once.
   */
  const loadStatus = async () => {
    try {
      const status = await client.status();
      linkPairs = orderedLinkPairs(agreement, me, status.links);
      lastTest = latestTest(lastTest, status.links.map((p) => p.last));
      drawStatus();
      drawLink();
    } catch {
      // An older server without /v1/status: the link events alone fill the status in.
    }
  };

  /** The link-test agent switch (remembered sealed, per device), the last test and the audit witness. */
  const drawLink = () => {
    const toggle = h('input', { type: 'checkbox', id: 'test-agent', role: 'switch' });
    toggle.checked = data.value.testAgent === true;
    toggle.addEventListener('change', () => {
      const on = toggle.checked;
      void data.save((d) => (d.testAgent = on)).then(() => {
        client.setTestAgent(on);
        drawLink();
      });
    });
    replace(
      linkEl,
      h('h2', {}, t('link_test')),
      h('label', { class: 'check' }, toggle, ' ', t('test_agent', { party: me.party })),
      h('p', { class: 'small muted' }, t('test_agent_help')),
      h(
        'p',
        { id: 'link-result', 'data-ok': lastTest ? String(lastTest.ok) : '', ...(lastTest?.roundTripMs === undefined ? {} : { 'data-rtt': lastTest.roundTripMs }) },
        `${t('last_test')}: `,
        lastTest
          ? `${formatTime(lastTest.at)} ${t(lastTest.ok ? 'test_ok' : 'test_failed')}${lastTest.roundTripMs === undefined ? '' : `, ${t('round_trip', { ms: lastTest.roundTripMs })}`}`
          : t('no_test'),
      ),
      lastSent ? h('p', { class: 'small', id: 'test-sent' }, t('test_sent', { to: lastSent.to, at: formatTime(lastSent.at) })) : null,
      h(
        'p',
        { class: 'small', id: 'cosign-state', ...(lastCosigned ? { 'data-size': lastCosigned.size } : {}) },
        lastCosigned ? t('cosigned_at', { size: lastCosigned.size, at: formatTime(lastCosigned.at) }) : t('cosign_none'),
      ),
    );
  };

  /** An audit alarm stays on screen, in red, until the operator dismisses it (and across reloads). */
  const drawAuditAlarm = () => {
    const alarms = data.value.alarms ?? [];
    if (alarms.length === 0) {
      replace(auditAlarmEl);
      return;
    }
    replace(
      auditAlarmEl,
      h(
        'div',
        { class: 'audit-alarm', role: 'alert', id: 'audit-alarm', 'data-count': alarms.length },
        h('strong', {}, t('audit_alarm_title')),
        h('ul', {}, ...alarms.map((a) => h('li', {}, `${formatTime(a.at)} `, t('audit_alarm', { reason: a.reason })))),
        h(
          'button',
          {
            type: 'button',
            id: 'dismiss-alarm',
            onclick: () => void data.save((d) => (d.alarms = [])).then(drawAuditAlarm),
          },
          t('dismiss'),
        ),
      ),
    );
  };

  const drawPeers = () => {
    const keys = peerKeys(client.directory(), me, data.value.confirmed);
    const status = trust();
    const warning =
      status === 'changed'
        ? h('p', { class: 'warning', role: 'alert', id: 'peer-warning', 'data-trust': status }, t('peer_changed'))
        : status === 'unconfirmed'
          ? h('p', { class: 'notice', id: 'peer-warning', 'data-trust': status }, t('peer_unconfirmed'))
          : status === 'none'
            ? h('p', { class: 'notice', id: 'peer-warning', 'data-trust': status }, t('no_peer_devices'))
            : h('p', { class: 'ok-note', id: 'peer-ok', 'data-trust': status }, t('keys_confirmed'));
    replace(
      peersEl,
      h('h2', {}, t('peer_keys')),
      warning,
      h(
        'ul',
        { class: 'keys' },
        ...keys.map((k) =>
          h(
            'li',
            { class: k.confirmed ? '' : 'unconfirmed' },
            h('b', {}, `${k.party}/${k.device}`),
            ` (${k.role})`,
            k.confirmed ? null : h('span', { class: 'tag bad' }, t('peer_new')),
            h('code', { title: `box ${k.boxFingerprint}` }, groupHex(k.signFingerprint)),
          ),
        ),
      ),
      status === 'changed' || status === 'unconfirmed'
        ? h('button', {
            type: 'button',
            id: 'confirm-keys',
            onclick: async () => {
              await data.save((d) => (d.confirmed = keys.map((k) => k.identity)));
              drawPeers();
              drawCompose();
            },
          }, t('confirm_keys'))
        : null,
      h('p', { class: 'small' }, `${t('me')} ${key}: `, h('code', {}, groupHex(fingerprint(fromBase64(c.signKey))))),
      h('p', { class: 'small' }, `${t('agreement')}: `, h('code', {}, groupHex(agreementHash(agreement).slice(0, 32)))),
    );
  };

  const others = agreement.parties.filter((p) => p.id !== me.party);
  const toSel = h('select', { id: 'to' }, ...others.map((p) => h('option', { value: p.id }, `${p.name} (${p.id})`)));
  const precSel = h('select', { id: 'precedence' }, ...PRECEDENCES.map((p) => h('option', { value: p }, p)));
  precSel.value = 'ROUTINE';
  const subject = h('input', { id: 'subject', maxlength: 200, autocomplete: 'off' });
  const body = h('textarea', { id: 'body', rows: 5, required: true });
  const exercise = h('input', { type: 'checkbox', id: 'exercise' });

  const drawCompose = () => {
    for (const opt of Array.from(precSel.options)) opt.textContent = t(`prec_${opt.value as Precedence}` as MessageKey);
    const blocked = trust() !== 'ok';
    const form = h(
      'form',
      { id: 'compose-form' },
      h('h2', {}, t('compose')),
      h('label', {}, t('to'), toSel),
      h('label', {}, t('precedence'), precSel),
      h('label', {}, t('subject'), subject),
      h('label', {}, t('body'), body),
      h('label', { class: 'check' }, exercise, ' ', t('exercise')),
      h('button', { type: 'submit', id: 'send', disabled: blocked }, t('send')),
      blocked ? h('p', { class: 'warning small', id: 'send-blocked' }, t('send_blocked')) : null,
      composeError ? h('p', { class: 'error', role: 'alert', id: 'send-error' }, composeError) : null,
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (trust() !== 'ok' || body.value.trim() === '') return;
      const text = { body: body.value, lang: language(), ...(subject.value ? { subject: subject.value } : {}) };
      client
        .send({ to: toSel.value, precedence: precSel.value as Precedence, body: text.body, lang: text.lang, exercise: exercise.checked, ...(text.subject ? { subject: text.subject } : {}) })
        .then(async ({ id }) => {
          composeError = '';
          data.value.texts[id] = text;
          await saveNote(id);
          subject.value = '';
          body.value = '';
          exercise.checked = false;
          drawCompose();
          markOutbox(id);
        })
        .catch((err: unknown) => {
          composeError = t('send_failed', { error: err instanceof Error ? err.message : String(err) });
          drawCompose();
        });
    });
    replace(composeEl, form);
  };

  const precBadge = (p: Precedence, exerciseFlag?: boolean) =>
    h('span', {}, h('span', { class: `prec prec-${p.toLowerCase()}`, 'data-precedence': p }, t(`prec_${p}` as MessageKey)), exerciseFlag ? h('span', { class: 'tag exercise' }, t('exercise_mark')) : null);

  // ----- keyed rows, drawn a frame at a time -----
  // Each message has one row, replaced in place when it changes; events only mark what changed
  // and the frame scheduler draws it, within a time budget per frame, higher precedence first.
  const inboxBody = h('tbody', {});
  const outboxBody = h('tbody', {});
  const inboxRowsByKey = new KeyedRows(inboxBody);
  const outboxRowsByKey = new KeyedRows(outboxBody);
  const banners = new KeyedRows(bannerEl);
  /** Countdown cells by `in:`/`out:` + message id; the clock tick updates those in view only. */
  const dueCells = new Map<string, HTMLElement>();
  const visibleDue = new Set<Element>();
  const dueObserver = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (e.isIntersecting) {
        visibleDue.add(e.target);
        dueText(e.target as HTMLElement);
      } else {
        visibleDue.delete(e.target);
      }
    }
  });
  const forgetDue = (slot: string) => {
    const cell = dueCells.get(slot);
    if (!cell) return;
    dueObserver.unobserve(cell);
    visibleDue.delete(cell);
    dueCells.delete(slot);
  };
  const dirtyInbox = new Set<string>();
  const dirtyOutbox = new Set<string>();
  const dirtySections = new Set<() => void>();
  // Compare every stored record with the rows: at start, on (re)connection, on a language change.
  let resync = true;

  const dueText = (cell: HTMLElement) => {
    const left = Number(cell.dataset.due) - (Date.now() + serverOffset);
    cell.textContent = left >= 0 ? t('due_in', { t: formatDuration(left) }) : t('overdue', { t: formatDuration(-left) });
    cell.classList.toggle('overdue', left < 0);
  };

  const dueCell = (slot: string, dueAt: number | undefined) => {
    forgetDue(slot);
    if (dueAt === undefined) return h('td', { class: 'due' }, '—');
    const cell = h('td', { class: 'due', 'data-due': dueAt });
    dueText(cell);
    dueCells.set(slot, cell);
    dueObserver.observe(cell);
    return cell;
  };

  const messageText = (text: { subject?: string; body: string; lang: string } | undefined) =>
    text ? h('div', { class: 'text', lang: text.lang }, text.subject ? h('b', {}, text.subject) : null, h('p', {}, text.body)) : h('div', { class: 'text muted' }, '…');

  const acknowledge = async (id: string) => {
    try {
      await client.acknowledge(id);
    } catch (err) {
      await addEvent({ at: Date.now(), kind: 'error', params: errParams(err) });
    }
    markInbox(id);
  };

  const inboxTr = (r: InboxRow) =>
    h(
      'tr',
      { class: `msg prec-row-${r.header.precedence.toLowerCase()}`, 'data-id': r.id, 'data-rung': r.acknowledged ? 'acknowledged' : 'received' },
      h('td', {}, precBadge(r.header.precedence, r.header.exercise)),
      h('td', {}, `${r.header.from.party}/${r.header.from.device}`),
      h('td', {}, messageText(r.text)),
      h('td', {}, formatTime(r.acceptedAt)),
      h('td', { class: 'rung' }, r.acknowledged ? t('acknowledged_by', { who: r.acknowledged.by === 'me' ? key : r.acknowledged.by }) : t('rung_received')),
      dueCell(`in:${r.id}`, r.dueAt),
      h('td', {}, r.answerable && !r.acknowledged ? h('button', { type: 'button', class: 'ack', onclick: () => void acknowledge(r.id) }, t('acknowledge')) : null),
    );

  const ladder = (rung: OutboxRow['rung']) =>
    h('ol', { class: 'ladder' }, ...OUT_RUNGS.map((x, i) => h('li', { class: i <= OUT_RUNGS.indexOf(rung) ? 'done' : '' }, t(`rung_${x}` as MessageKey))));

  const outboxTr = (r: OutboxRow) => {
    const last = [...r.receipts].reverse().find((x) => x.kind === r.rung);
    return h(
      'tr',
      { class: `msg prec-row-${r.header.precedence.toLowerCase()}`, 'data-id': r.id, 'data-rung': r.rung },
      h('td', {}, precBadge(r.header.precedence, r.header.exercise)),
      h('td', {}, r.header.to),
      h('td', {}, messageText(r.text)),
      h('td', {}, formatTime(r.acceptedAt ?? r.header.sentAt)),
      h(
        'td',
        { class: 'rung' },
        h('span', { class: 'rung-label' }, t(`rung_${r.rung}` as MessageKey)),
        ladder(r.rung),
        last ? h('div', { class: 'receipt small', 'data-verified': 'true' }, '✔ ', t('receipt_verified', { who: last.by })) : null,
      ),
      dueCell(`out:${r.id}`, r.dueAt),
    );
  };

  const bannerDiv = (r: InboxRow) =>
    h(
      'div',
      { class: 'flash-banner', role: 'alert', 'data-id': r.id },
      h('strong', {}, t('flash_alert', { from: `${r.header.from.party}/${r.header.from.device}` })),
      r.text ? h('span', { class: 'text', lang: r.text.lang }, ` — ${r.text.subject ?? r.text.body}`) : null,
      h('button', { type: 'button', class: 'ack', onclick: () => void acknowledge(r.id) }, t('acknowledge')),
    );

  /** The banner and the alarm follow the rows: on while any unacknowledged FLASH to this party is shown. */
  const putInboxRow = (id: string, r: InboxRow | undefined) => {
    forgetDue(`in:${id}`);
    if (r) inboxRowsByKey.put(id, r.acceptedAt, inboxTr(r));
    else inboxRowsByKey.delete(id);
    if (r && isFlashAlarm(r)) banners.put(id, r.acceptedAt, bannerDiv(r));
    else banners.delete(id);
    if (banners.size > 0) alarm.start();
    else alarm.stop();
  };

  const drawInboxRow = (id: string) => {
    const rec = state.inbox[id];
    putInboxRow(id, rec && inboxRow(id, rec, data.value, agreement, me));
  };

  const drawOutboxRow = (id: string) => {
    forgetDue(`out:${id}`);
    const rec = state.sent[id];
    const item = rec ? undefined : pendingItem(state, id);
    const r = rec ? sentRow(id, rec, data.value, agreement) : item && pendingRow(item, data.value, agreement);
    if (r) outboxRowsByKey.put(id, r.header.sentAt, outboxTr(r));
    else outboxRowsByKey.delete(id);
  };

  const inboxEmpty = h('p', { class: 'muted' });
  const outboxEmpty = h('p', { class: 'muted' });
  const inboxTable = h('table', {});
  const outboxTable = h('table', {});
  const showEmpty = () => {
    inboxEmpty.hidden = inboxRowsByKey.size > 0;
    inboxTable.hidden = inboxRowsByKey.size === 0;
    outboxEmpty.hidden = outboxRowsByKey.size > 0;
    outboxTable.hidden = outboxRowsByKey.size === 0;
  };
  /** The tables' frames (headings, column names); the rows inside are kept across redraws. */
  const drawTables = () => {
    inboxEmpty.textContent = t('empty');
    outboxEmpty.textContent = t('empty');
    const head = (keys: readonly MessageKey[], extra: boolean) => h('thead', {}, h('tr', {}, ...keys.map((k) => h('th', {}, t(k))), extra ? h('th', {}) : null));
    replace(inboxTable, head(['col_precedence', 'col_from', 'col_subject', 'col_time', 'col_status', 'col_deadline'], true), inboxBody);
    replace(outboxTable, head(['col_precedence', 'col_to', 'col_subject', 'col_time', 'col_status', 'col_deadline'], false), outboxBody);
    replace(inboxEl, h('h2', {}, t('inbox')), inboxEmpty, inboxTable);
    replace(outboxEl, h('h2', {}, t('outbox')), outboxEmpty, outboxTable);
    showEmpty();
  };

  const drawEvents = () => {
    replace(
      eventsEl,
      h('h2', {}, t('events')),
      data.value.events.length === 0
        ? h('p', { class: 'muted' }, t('empty'))
        : h('ul', { class: 'events' }, ...data.value.events.slice(0, 20).map((e) => h('li', { class: `ev ev-${e.kind.replace('.', '-')}` }, `${formatTime(e.at)} `, eventText(e)))),
    );
  };

  const tick = () => {
    for (const cell of visibleDue) dueText(cell as HTMLElement);
  };

  /** One frame's drawing: sections first, then changed rows, FLASH and IMMEDIATE before the rest. */
  const drawFrame = async (deadline: number): Promise<boolean> => {
    const sections = [...dirtySections];
    dirtySections.clear();
    for (const draw of sections) draw();
    if (resync || dirtyInbox.size > 0 || dirtyOutbox.size > 0) state = await storage.read(key);
    if (resync) {
      resync = false;
      for (const id of [...inboxRowsByKey.keys(), ...Object.keys(state.inbox)]) dirtyInbox.add(id);
      for (const id of [...outboxRowsByKey.keys(), ...Object.keys(state.sent), ...pendingIds(state)]) dirtyOutbox.add(id);
    }
    let n = 0;
    const due = () => ++n % 16 === 0 && performance.now() > deadline;
    // Urgent rows now; the rest at most every ROUTINE_EVERY_MS, so that a flood costs a few
    // layouts a second rather than one per message.
    const routineWait = lastRoutine + ROUTINE_EVERY_MS - performance.now();
    for (const urgent of routineWait > 0 ? [true] : [true, false]) {
      for (const id of dirtyInbox) {
        const p = state.inbox[id]?.header.precedence;
        if (urgent !== (p === 'FLASH' || p === 'IMMEDIATE')) continue;
        dirtyInbox.delete(id);
        drawInboxRow(id);
        if (due()) break;
      }
    }
    if (routineWait <= 0) {
      lastRoutine = performance.now();
      for (const id of dirtyOutbox) {
        if (performance.now() > deadline) break;
        dirtyOutbox.delete(id);
        drawOutboxRow(id);
      }
    }
    showEmpty();
    const left = dirtyInbox.size > 0 || dirtyOutbox.size > 0;
    if (left && routineWait > 0) {
      clearTimeout(routineTimer);
      routineTimer = setTimeout(() => frames.schedule(), routineWait);
      return false;
    }
    return left;
  };
  let lastRoutine = 0;
  let routineTimer: ReturnType<typeof setTimeout> | undefined;
  const frames = new FrameScheduler(drawFrame);

  function markInbox(id: string): void {
    dirtyInbox.add(id);
    frames.schedule();
  }
  function markOutbox(id: string): void {
    dirtyOutbox.add(id);
    frames.schedule();
  }
  function markSections(...draws: (() => void)[]): void {
    for (const d of draws) dirtySections.add(d);
    frames.schedule();
  }
  const drawAll = () => {
    resync = true;
    markSections(drawStatus, drawAuditAlarm, drawLink, drawPeers, drawCompose, drawEvents);
  };

  // What the client stored, here or in another tab of this console: redraw those rows.
  storage.onChange((device, change) => {
    if (device !== key) return;
    for (const id of change.inbox) dirtyInbox.add(id);
    for (const id of change.sent) dirtyOutbox.add(id);
    for (const k of change.outbox) if (k.startsWith('e:')) dirtyOutbox.add(k.slice(2));
    frames.schedule();
  });

  // ----- client events -----
  client.on('connected', ({ serverTime }) => {
    connected = true;
    serverOffset = serverTime - Date.now();
    drawStatus();
    drawAll();
    void loadStatus();
  });
  client.on('disconnected', () => {
    connected = false;
    drawStatus();
  });
  client.on('message', (m) => {
    const id = m.header.id;
    data.value.texts[id] = { body: m.plaintext.body, lang: m.plaintext.lang, ...(m.plaintext.subject === undefined ? {} : { subject: m.plaintext.subject }) };
    data.value.inboxAcceptedAt[id] = m.acceptedAt;
    void saveNote(id);
    // A FLASH is drawn now, banner and alarm included, ahead of whatever routine drawing waits
    // for the next frame (the stored record is the one the client just wrote).
    if (m.header.precedence === 'FLASH') {
      const rec = state.inbox[id] ?? { header: m.header, envelopeHash: m.envelopeHash, receivedAt: m.acceptedAt };
      putInboxRow(id, inboxRow(id, rec, data.value, agreement, me));
      showEmpty();
    }
    markInbox(id);
  });
  client.on('receipt', (r) => {
    const b = r.receipt.receipt;
    if (!r.verified) {
      void addEvent({ at: Date.now(), kind: 'error', params: { code: r.error?.code ?? 'HL_ERR_RECEIPT_BAD_SIGNATURE', message: `receipt for ${b.messageId} from ${b.by.party}/${b.by.device} does not verify` } });
      return;
    }
    if (b.kind === 'acknowledged' && b.by.party === me.party && state.inbox[b.messageId]) {
      data.value.ackedByColleague[b.messageId] = { by: `${b.by.party}/${b.by.device}`, at: b.at };
      void saveNote(b.messageId);
      markInbox(b.messageId);
      return;
    }
    markOutbox(b.messageId);
  });
  client.on('accepted', ({ id }) => markOutbox(id));
  client.on('receipt-accepted', ({ messageId }) => {
    markInbox(messageId);
    markOutbox(messageId);
  });
  client.on('refused', (e) => {
    // The recipients changed (a peer device enrolled or revoked): look at the directory again,
    // so that a changed peer key blocks sending at once.
    if (e.code === 'HL_ERR_ENVELOPE_RECIPIENTS') void client.refreshDirectory().catch(() => undefined);
    void addEvent({ at: Date.now(), kind: 'error', params: { code: e.code, message: e.message } });
    // The refused item may have left the outbox.
    resync = true;
    frames.schedule();
  });
  client.on('error', (e) => void addEvent({ at: Date.now(), kind: 'error', params: errParams(e) }));
  // Fetched again at each connection, after a refusal and on the timer: peer keys are compared
  // with the confirmed set every time, and a change blocks sending until confirmed again.
  client.on('directory', () => markSections(drawPeers, drawCompose));
  client.on('link', (ev) => {
    if (ev.type === 'link.test') lastTest = latestTest(lastTest, [ev]);
    markSections(drawStatus, drawLink);
    void loadStatus();
  });
  client.on('link-test-sent', (s) => {
    lastSent = { to: s.to, at: s.at };
    markSections(drawLink);
  });
  client.on('cosigned', (c) => {
    lastCosigned = { size: c.size, at: c.at };
    markSections(drawLink);
  });
  client.on('event', (ev) => {
    // Raised here by the cosigner, or reported by another device of this party through the server.
    if (ev.type === 'audit.alarm') void data.save((d) => (d.alarms = addAlarm(d.alarms, { at: ev.at, party: ev.party, reason: ev.reason }))).then(() => markSections(drawAuditAlarm));
    void addEvent(toConsoleEvent(ev));
  });

  const relayout = () => {
    layout();
    drawTables();
    // Every row carries translated text: draw them all again.
    inboxRowsByKey.clear();
    outboxRowsByKey.clear();
    banners.clear();
    for (const slot of [...dueCells.keys()]) forgetDue(slot);
    drawAll();
  };
  onLanguageChange(relayout);
  relayout();
  setInterval(tick, 1000);
  setInterval(() => {
    if (client.connected) void client.refreshDirectory().then(drawAll, () => undefined);
  }, DIRECTORY_REFRESH_MS);
  await client.start();
  // The directory was fetched and verified as part of connecting: show the peers' keys now.
  drawAll();
}

function errParams(err: unknown): Record<string, string> {
  const code = (err as { code?: unknown }).code;
  return { code: typeof code === 'string' ? code : 'HL_ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) };
}

function toConsoleEvent(ev: HotlineEvent): ConsoleEvent {
  switch (ev.type) {
    case 'deadline.missed':
      return { at: ev.at, kind: 'deadline.missed', params: { rung: ev.rung, id: ev.messageId.slice(0, 8), prec: ev.precedence, late: formatDuration(ev.lateMs), level: ev.level } };
    case 'deadline.met':
      return { at: ev.at, kind: 'deadline.met', params: { rung: ev.rung, id: ev.messageId.slice(0, 8), prec: ev.precedence } };
    case 'audit.alarm':
      return { at: ev.at, kind: 'alarm', params: { party: ev.party, reason: ev.reason } };
    default:
      return { at: ev.at, kind: 'link', params: { type: ev.type, from: ev.from, to: ev.to, ok: ev.ok ? '✔' : '✘', ...(ev.roundTripMs === undefined ? {} : { rtt: ev.roundTripMs }) } };
  }
}

function eventText(e: ConsoleEvent): string {
  const key: MessageKey =
    e.kind === 'deadline.missed' ? 'ev_deadline_missed' : e.kind === 'deadline.met' ? 'ev_deadline_met' : e.kind === 'link' ? 'ev_link' : e.kind === 'alarm' ? 'ev_alarm' : 'ev_error';
  return t(key, e.params);
}

void main();
