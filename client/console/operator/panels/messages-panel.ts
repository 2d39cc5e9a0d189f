import type { ClientState, InboxRecord } from '../../../storage/client-storage.js';
import { CANNOT_COMPLY_REASONS, type CannotComplyReason, type EnvelopeHeader, type Precedence } from '../../../../shared/protocol/schemas.js';
import type { AnswerKind } from '../../../hotline-client.js';
import type { Alarm } from '../alarm.js';
import { formatTime, h, replace } from '../../common/dom.js';
import { t, type MessageKey } from '../../common/i18n.js';
import { KeyedRows } from '../../common/keyed-rows.js';
import { errParams, type OperatorContext } from '../context.js';
import { crossesRelays, outRungs, unreadTitle, inboxRow, isFlashAlarm, isImmediateAlert, pendingIds, pendingItem, pendingRow, sentRow, type InboxRow, type OutboxRow } from '../model.js';
import { DueCells } from './due-cells.js';
import { HeldCells, ladder, lateMark, SenderOverdue, shortId } from './sender-view.js';
import { isFiltering, matches, sortKey, type FindRow } from '../find.js';
import { findPanel } from './find-panel.js';
import { contentView, translateControl } from './content-view.js';
import { inboxPrintable, outboxPrintable, printMessage, type PrintableMessage } from './print-sheet.js';
import { labelBannerEl, labelBannerText } from '../../common/label-banner.js';

/** Rows of ROUTINE and PRIORITY messages are drawn in batches at most this often. */
const ROUTINE_EVERY_MS = 250;

/**
 * Rows in each list's page at first, and how many more each "Show more" adds: the first in the
 * chosen order (newest first unless the operator sorts otherwise). Every message is kept and
 * counted; rows past the window are attached when asked for, and all of them while a filter is on
 * (hidden rows cost no layout). Without a window, each row added during a flood laid out every row
 * already there: key-press-to-paint grew with the history (keyed-rows.ts).
 */
export const ROWS_SHOWN = 100;

/** FLASH and IMMEDIATE: drawn ahead of the rest, and kept in the page while unacknowledged. */
const isUrgent = (p: Precedence | undefined) => p === 'FLASH' || p === 'IMMEDIATE';

/** The inbox, the outbox and the FLASH banners: one keyed row per message, drawn a frame at a time. */
const ANSWERS = ['will-comply', 'cannot-comply', 'have-complied'] as const;

function reasonKey(code: string): MessageKey {
  return `ladder_reason_${code.replace(/-/g, '_')}` as MessageKey;
}

/** "will comply (cn-mnd/op1)", "cannot comply: not feasible (…)": a reason code in the reader's language. */
function answerText(kind: (typeof ANSWERS)[number], who: string, reason?: string): string {
  const key = `ladder_answer_${kind.replace(/-/g, '_')}` as MessageKey;
  return t(key, { who, reason: reason === undefined ? '—' : (CANNOT_COMPLY_REASONS as readonly string[]).includes(reason) ? t(reasonKey(reason)) : reason });
}

export interface MessagesPanel {
  /** The find bar: unacknowledged counts, search, filters and order over both lists. */
  readonly findEl: HTMLElement;
  readonly inboxEl: HTMLElement;
  readonly outboxEl: HTMLElement;
  readonly bannerEl: HTMLElement;
  /** Banners of this console's own FLASH messages that are overdue (sender-view.ts). */
  readonly senderOverdueEl: HTMLElement;
  /** The tables' frames (headings, column names); the rows inside are kept. */
  drawTables(): void;
  /** Forget every row, so that the next frame draws them all again (their text is translated). */
  clear(): void;
  /** Compare every stored record with the rows in the next frame (start, reconnection, a refusal). */
  resync(): void;
  markInbox(id: string): void;
  markOutbox(id: string): void;
  /** Whether `id` is in this device's inbox (as last read from storage). */
  inInbox(id: string): boolean;
  /** Draw a FLASH's row and banner now, ahead of the next frame. */
  showFlash(id: string, rec: InboxRecord): void;
  /** One frame's share of rows, FLASH and IMMEDIATE first; true while rows are left. */
  drawRows(deadline: number): Promise<boolean>;
  /** The clock's second. */
  tick(): void;
}

/** The message a reply answers, as the compose form shows it. */
export interface ReplyTarget {
  id: string;
  /** The party the reply goes to. */
  to: string;
  /** Who sent the message answered (party/device). */
  from: string;
  /** Its subject, else its text. */
  subject: string;
}

/**
 * `stored` is the client's state as read at the start, `alarm` sounds while a FLASH banner is
 * shown, `schedule` asks for a frame, `reply` starts a reply in the compose form.
 */
export function messagesPanel(ctx: OperatorContext, stored: ClientState, alarm: Alarm, schedule: () => void, reply: (target: ReplyTarget) => void): MessagesPanel {
  const inboxEl = h('section', { class: 'card', id: 'inbox' });
  const outboxEl = h('section', { class: 'card', id: 'outbox' });
  const bannerEl = h('div', { id: 'alert-slot' });
  // The client's stored state as last read: read again before drawing the rows that changed.
  let state = stored;

  // Each message has one row, replaced in place when it changes; events only mark what changed
  // and the frame scheduler draws it, within a time budget per frame, higher precedence first.
  const inboxBody = h('tbody', {});
  const outboxBody = h('tbody', {});
  const inboxRows = new KeyedRows(inboxBody, { limit: ROWS_SHOWN });
  const outboxRows = new KeyedRows(outboxBody, { limit: ROWS_SHOWN });
  // How many rows of each list the operator has asked to see (ROWS_SHOWN more per "Show more").
  const windows = { inbox: ROWS_SHOWN, outbox: ROWS_SHOWN };
  // FLASH banners first and assertive (role alert); IMMEDIATE ones below them, announced politely.
  const flashSlot = h('div', {});
  const immediateSlot = h('div', {});
  bannerEl.append(flashSlot, immediateSlot);
  // A banner whose row changed (a receipt, a reply, a due time) but not itself stays the element in
  // the page: a screen reader announces each live-region element inserted, and replacing the FLASH's
  // role=alert banner with its like announced the FLASH again.
  const banners = new KeyedRows(flashSlot, { keepUnchanged: true });
  const immediates = new KeyedRows(immediateSlot, { keepUnchanged: true });
  /** IMMEDIATE messages already chimed for, so that a redraw does not chime again. */
  const chimed = new Set<string>();
  const due = new DueCells(() => ctx.live.serverOffset);
  const held = new HeldCells(ctx);
  const overdue = new SenderOverdue(() => ctx.live.serverOffset);
  /** Unacknowledged messages to this party, by id: the tab title counts them. */
  const open = new Map<string, Precedence>();
  const dirtyInbox = new Set<string>();
  const dirtyOutbox = new Set<string>();
  // Compare every stored record with the rows: at start, on (re)connection, on a language change.
  let resync = true;
  let lastRoutine = 0;
  let routineTimer: ReturnType<typeof setTimeout> | undefined;

  // Find: each row's facts, so that a change of filter only hides and shows rows; a change of
  // order draws every row again under its new sort key.
  const inboxFind = new Map<string, FindRow>();
  const outboxFind = new Map<string, FindRow>();
  const serverNow = () => Date.now() + ctx.live.serverOffset;
  const applyFind = (tr: Element, row: FindRow) => ((tr as HTMLElement).hidden = !matches(find.query, row, serverNow()));
  const refilter = () => {
    for (const [map, rows] of [[inboxFind, inboxRows], [outboxFind, outboxRows]] as const) {
      for (const [id, row] of map) {
        const tr = rows.get(id);
        if (tr) applyFind(tr, row);
      }
    }
    showWindows();
    countShown();
  };
  const countShown = () => {
    const total = inboxFind.size + outboxFind.size;
    if (!isFiltering(find.query)) return find.setShown(total, total);
    const now = serverNow();
    let n = 0;
    for (const map of [inboxFind, outboxFind]) for (const row of map.values()) if (matches(find.query, row, now)) n++;
    find.setShown(n, total);
  };
  const find = findPanel((reordered) => {
    if (!reordered) return refilter();
    inboxRows.clear();
    outboxRows.clear();
    inboxFind.clear();
    outboxFind.clear();
    due.clear();
    resync = true;
    schedule();
  });

  // Threads: the replies known for each message (either list), so that each shows under it.
  const repliesOf = new Map<string, Set<string>>();
  /** Note `id` as a reply to `parent`; a reply seen for the first time redraws its parent's rows. */
  const noteReply = (id: string, parent: string | undefined) => {
    if (parent === undefined || parent === id) return;
    const set = repliesOf.get(parent) ?? new Set<string>();
    if (set.has(id)) return;
    set.add(id);
    repliesOf.set(parent, set);
    dirtyInbox.add(parent);
    dirtyOutbox.add(parent);
  };
  const summary = (text: { subject?: string; body: string } | undefined, id: string) => (text ? (text.subject ?? text.body).slice(0, 80) : id.slice(0, 8));
  /** "↳ in reply to: …" on a reply's own row. */
  const replyLine = (parent: string | undefined) =>
    parent === undefined ? null : h('p', { class: 'in-reply-to small', 'data-reply-to': parent }, t('in_reply_to', { subject: summary(ctx.data.value.texts[parent], parent) }));
  /** The replies to `id`, oldest first, under its text: who, when, what. */
  const threadList = (id: string) => {
    const ids = repliesOf.get(id);
    if (!ids || ids.size === 0) return null;
    const items = [...ids].flatMap((c) => {
      const inRec = state.inbox[c];
      const pending = pendingItem(state, c);
      const header = inRec?.header ?? state.sent[c]?.header ?? (pending?.kind === 'envelope' ? pending.envelope.header : undefined);
      if (!header) return [];
      const at = inRec ? (ctx.data.value.inboxAcceptedAt[c] ?? inRec.receivedAt) : header.sentAt;
      return [{ c, at, header, incoming: inRec !== undefined }];
    });
    items.sort((a, b) => a.at - b.at);
    return h(
      'div',
      { class: 'thread', 'data-replies': items.length },
      h('p', { class: 'small muted' }, t('thread')),
      h(
        'ul',
        {},
        ...items.map((x) =>
          h(
            'li',
            { 'data-id': x.c, 'data-precedence': x.header.precedence },
            h('span', { class: `prec prec-${x.header.precedence.toLowerCase()}` }, t(`prec_${x.header.precedence}` as MessageKey)),
            ' ',
            x.incoming ? t('thread_from', { who: `${x.header.from.party}/${x.header.from.device}` }) : t('thread_to', { who: x.header.to }),
            ` · ${formatTime(x.at)} · `,
            h('span', { lang: ctx.data.value.texts[x.c]?.lang ?? '' }, summary(ctx.data.value.texts[x.c], x.c)),
          ),
        ),
      ),
    );
  };
  const subjectOf = (text: { subject?: string; body: string } | undefined) => (text ? (text.subject ?? text.body) : '…');
  const replyButton = (target: ReplyTarget, prec: Precedence) =>
    h('button', {
      type: 'button',
      class: 'secondary reply',
      'aria-label': t('reply_label', { prec: t(`prec_${prec}` as MessageKey), from: target.from, subject: target.subject }),
      onclick: () => reply(target),
    }, t('reply'));
  const printButton = (prec: Precedence, subject: string, print: () => void) =>
    h('button', { type: 'button', class: 'secondary print', 'aria-label': t('print_label', { prec: t(`prec_${prec}` as MessageKey), subject }), onclick: print }, t('print'));

  /** A sheet to print, with the message's label banner in the interface language. */
  const withLabel = (m: PrintableMessage, header: Pick<EnvelopeHeader, 'label'>): PrintableMessage => {
    const labelText = labelBannerText(ctx.agreement, header);
    return labelText === undefined ? m : { ...m, labelText };
  };

  const precBadge = (p: Precedence, exerciseFlag?: boolean) =>
    h('span', {}, h('span', { class: `prec prec-${p.toLowerCase()}`, 'data-precedence': p }, t(`prec_${p}` as MessageKey)), exerciseFlag ? h('span', { class: 'tag exercise' }, t('exercise_mark')) : null);

  const acknowledge = async (id: string, kind: AnswerKind = 'acknowledged', reason?: CannotComplyReason) => {
    try {
      // Only the tab that holds the link signs and sends: from another tab, take it over first.
      if (ctx.live.elsewhere) await ctx.takeOver();
      await ctx.client.acknowledge(id, kind, reason === undefined ? {} : { reason });
    } catch (err) {
      await ctx.addEvent({ at: Date.now(), kind: 'error', params: errParams(err) });
    }
    markInbox(id);
  };

  /** The answers given here, one line each (the addressee's side of the ladder). */
  const answerLines = (answers: InboxRow['answers'], who: string) =>
    ANSWERS.flatMap((kind) => {
      const a = answers?.[kind];
      if (!a) return [];
      return [h('div', { class: 'answer small', 'data-answer': kind }, answerText(kind, who, a.reason))];
    });

  /**
   * The ladder's buttons on an inbox row: will comply / cannot comply (with its reason, picked
   * first) until one is given, have complied until given or refused.
   */
  const ladderButtons = (r: InboxRow) => {
    if (!r.answerable) return [];
    const a = r.answers ?? {};
    const label = (key: MessageKey) => t(key, { prec: t(`prec_${r.header.precedence}` as MessageKey), from: `${r.header.from.party}/${r.header.from.device}`, subject: r.text ? (r.text.subject ?? r.text.body) : '…' });
    const out: HTMLElement[] = [];
    const answered = a['will-comply'] !== undefined || a['cannot-comply'] !== undefined || a['have-complied'] !== undefined;
    if (!answered) {
      out.push(h('button', { type: 'button', class: 'secondary ladder will-comply', 'aria-label': label('ladder_will_comply_label'), onclick: () => void acknowledge(r.id, 'will-comply') }, t('ladder_will_comply')));
      const select = h(
        'select',
        { class: 'ladder-reason', 'data-keep': 'ladder-reason', 'aria-label': t('ladder_reason_label') },
        h('option', { value: '' }, `${t('ladder_reason_label')}…`),
        ...CANNOT_COMPLY_REASONS.map((code) => h('option', { value: code }, t(reasonKey(code)))),
      ) as HTMLSelectElement;
      out.push(select);
      out.push(
        h('button', {
          type: 'button',
          class: 'secondary ladder cannot-comply',
          'aria-label': label('ladder_cannot_comply_label'),
          onclick: () => {
            // A cannot-comply names its reason (PROTOCOL.md "Receipts"): pick one first.
            if (select.value === '') return select.focus();
            void acknowledge(r.id, 'cannot-comply', select.value as CannotComplyReason);
          },
        }, t('ladder_cannot_comply')),
      );
    }
    if (a['have-complied'] === undefined && a['cannot-comply'] === undefined) {
      out.push(h('button', { type: 'button', class: 'secondary ladder have-complied', 'aria-label': label('ladder_have_complied_label'), onclick: () => void acknowledge(r.id, 'have-complied') }, t('ladder_have_complied')));
    }
    return out;
  };

  const inboxTr = (r: InboxRow) =>
    h(
      'tr',
      { class: `msg prec-row-${r.header.precedence.toLowerCase()}${r.header.exercise ? ' exercise' : ''}`, 'data-id': r.id, 'data-rung': r.acknowledged ? 'acknowledged' : 'received' },
      h('td', {}, precBadge(r.header.precedence, r.header.exercise)),
      h(
        'td',
        {},
        `${r.header.from.party}/${r.header.from.device}`,
        r.senderRevokedAt === undefined ? null : h('div', { class: 'revoked', 'data-revoked-at': r.senderRevokedAt }, t('msg_sender_revoked', { time: formatTime(r.senderRevokedAt) })),
      ),
      h('td', {}, labelBannerEl(ctx.agreement, r.header), contentView(ctx, r.text, r.id), replyLine(r.header.replyTo), threadList(r.id)),
      h('td', {}, formatTime(r.acceptedAt)),
      h(
        'td',
        { class: 'rung' },
        r.acknowledged ? t('acknowledged_by', { who: r.acknowledged.by === 'me' ? ctx.key : r.acknowledged.by }) : t('rung_received'),
        lateMark(r.late.acknowledged),
        ...answerLines(r.answers, ctx.key),
      ),
      due.cell(`in:${r.id}`, r.dueAt),
      h(
        'td',
        { class: 'actions' },
        r.answerable && !r.acknowledged ? ackButton(r) : null,
        ...ladderButtons(r),
        replyButton({ id: r.id, to: r.header.from.party, from: `${r.header.from.party}/${r.header.from.device}`, subject: subjectOf(r.text) }, r.header.precedence),
        printButton(r.header.precedence, subjectOf(r.text), () => printMessage(withLabel(inboxPrintable(r, state.inbox[r.id], ctx.key), r.header), ctx.key)),
        translateControl(ctx, r.id, r.text),
      ),
    );

  /** An Acknowledge button says, to a screen reader too, which message it acknowledges. */
  const ackButton = (r: InboxRow) =>
    h(
      'button',
      {
        type: 'button',
        class: 'ack',
        'aria-label': t('ack_label', { prec: t(`prec_${r.header.precedence}` as MessageKey), from: `${r.header.from.party}/${r.header.from.device}`, subject: r.text ? (r.text.subject ?? r.text.body) : '…' }),
        onclick: () => void acknowledge(r.id),
      },
      t('acknowledge'),
    );

  const outboxTr = (r: OutboxRow) => {
    const last = [...r.receipts].reverse().find((x) => x.kind === r.rung);
    return h(
      'tr',
      { class: `msg prec-row-${r.header.precedence.toLowerCase()}${r.header.exercise ? ' exercise' : ''}`, 'data-id': r.id, 'data-rung': r.rung },
      h('td', {}, precBadge(r.header.precedence, r.header.exercise)),
      h('td', {}, r.header.to),
      h('td', {}, labelBannerEl(ctx.agreement, r.header), contentView(ctx, r.text, r.id), replyLine(r.header.replyTo), threadList(r.id)),
      // The short id is how Events and the overdue banner cite the message.
      h('td', {}, formatTime(r.acceptedAt ?? r.header.sentAt), h('div', { class: 'msg-id small muted' }, t('msg_id', { id: shortId(r.id) }))),
      r.rung === 'held'
        ? h('td', { class: 'rung held-cell' }, ...held.content(r))
        : h(
            'td',
            { class: 'rung' },
            h('span', { class: 'rung-label' }, t(`rung_${r.rung}` as MessageKey)),
            ladder(r, outRungs(ctx.agreement, (r.header.from ?? ctx.me).party, r.header.to)),
            last ? h('div', { class: 'receipt small', 'data-verified': 'true' }, '✔ ', t('receipt_verified', { who: last.by })) : null,
            // The answers of the ladder, verified like every receipt, one line each (the first of each kind).
            ...ANSWERS.flatMap((kind) => {
              const x = r.receipts.find((y) => y.kind === kind);
              return x ? [h('div', { class: 'answer small', 'data-answer': kind, 'data-verified': 'true' }, '✔ ', answerText(kind, x.by, x.reason))] : [];
            }),
            // A receipt signed before its signer was revoked stays valid: shown with the revocation.
            last?.signerRevokedAt === undefined ? null : h('div', { class: 'revoked', 'data-revoked-at': last.signerRevokedAt }, t('rung_signer_revoked', { time: formatTime(last.signerRevokedAt) })),
          ),
      due.cell(`out:${r.id}`, r.dueAt),
      h(
        'td',
        { class: 'actions' },
        // A follow-up to one's own message goes to the same party, threaded under it.
        replyButton({ id: r.id, to: r.header.to, from: `${(r.header.from ?? ctx.me).party}/${(r.header.from ?? ctx.me).device}`, subject: subjectOf(r.text) }, r.header.precedence),
        printButton(r.header.precedence, subjectOf(r.text), () => printMessage(withLabel(outboxPrintable(r, ctx.me, crossesRelays(ctx.agreement, (r.header.from ?? ctx.me).party, r.header.to)), r.header), ctx.key)),
      ),
    );
  };

  // An exercise is never mistaken for the real thing: its own words first, its own colour and stripes.
  const bannerDiv = (r: InboxRow) =>
    h(
      'div',
      { class: `flash-banner${r.header.exercise ? ' exercise' : ''}`, role: 'alert', 'data-id': r.id, 'data-exercise': String(r.header.exercise === true) },
      r.header.exercise ? h('strong', { class: 'exercise-words' }, t('exercise_banner')) : null,
      h('strong', {}, t('flash_alert', { from: `${r.header.from.party}/${r.header.from.device}` })),
      labelBannerEl(ctx.agreement, r.header),
      r.text ? h('span', { class: 'text', lang: r.text.lang }, ` — ${r.text.subject ?? r.text.body}`) : null,
      ackButton(r),
    );

  const immediateDiv = (r: InboxRow) =>
    h(
      'div',
      { class: `immediate-banner${r.header.exercise ? ' exercise' : ''}`, role: 'status', 'aria-live': 'polite', 'data-id': r.id },
      r.header.exercise ? h('strong', { class: 'exercise-words' }, t('exercise_banner')) : null,
      h('strong', {}, t('immediate_alert', { from: `${r.header.from.party}/${r.header.from.device}` })),
      labelBannerEl(ctx.agreement, r.header),
      r.text ? h('span', { class: 'text', lang: r.text.lang }, ` — ${r.text.subject ?? r.text.body}`) : null,
      ackButton(r),
    );

  /** The banner and the alarm follow the rows: on while any unacknowledged FLASH to this party is shown. */
  const putInboxRow = (id: string, r: InboxRow | undefined) => {
    due.forget(`in:${id}`);
    if (r && r.answerable && !r.acknowledged) open.set(id, r.header.precedence);
    else open.delete(id);
    // What waits for this watch shows in the tab's title too, when the tab is in the background.
    document.title = unreadTitle(open.values()) + t('app_operator');
    find.setUnread(open.values());
    if (r) {
      noteReply(id, r.header.replyTo);
      const row: FindRow = { precedence: r.header.precedence, open: r.answerable && !r.acknowledged, ...(r.dueAt === undefined ? {} : { dueAt: r.dueAt }), text: `${r.header.from.party}/${r.header.from.device} ${r.text?.subject ?? ''} ${r.text?.body ?? ''}` };
      inboxFind.set(id, row);
      const tr = inboxTr(r);
      applyFind(tr, row);
      // An unacknowledged FLASH or IMMEDIATE stays in the page however many rows came after it.
      inboxRows.put(id, sortKey(find.query.sort, r.header.precedence, r.acceptedAt, r.header.seq), tr, row.open && isUrgent(r.header.precedence));
    } else {
      inboxFind.delete(id);
      inboxRows.delete(id);
    }
    if (r && isFlashAlarm(r)) banners.put(id, r.acceptedAt, bannerDiv(r));
    else banners.delete(id);
    if (r && isImmediateAlert(r)) {
      immediates.put(id, r.acceptedAt, immediateDiv(r));
      if (!chimed.has(id)) alarm.chime();
      chimed.add(id);
    } else immediates.delete(id);
    if (banners.size > 0) alarm.start();
    else alarm.stop();
  };

  const drawInboxRow = (id: string) => {
    const rec = state.inbox[id];
    putInboxRow(id, rec && inboxRow(id, rec, ctx.data.value, ctx.agreement, ctx.me));
  };

  const drawOutboxRow = (id: string) => {
    due.forget(`out:${id}`);
    const rec = state.sent[id];
    const item = rec ? undefined : pendingItem(state, id);
    const r = rec ? sentRow(id, rec, ctx.data.value, ctx.agreement) : item && pendingRow(item, ctx.data.value, ctx.agreement);
    if (r) {
      noteReply(id, r.header.replyTo);
      const row: FindRow = { precedence: r.header.precedence, open: r.rung !== 'acknowledged', ...(r.dueAt === undefined ? {} : { dueAt: r.dueAt }), text: `${r.header.to} ${r.text?.subject ?? ''} ${r.text?.body ?? ''}` };
      outboxFind.set(id, row);
      const tr = outboxTr(r);
      applyFind(tr, row);
      outboxRows.put(id, sortKey(find.query.sort, r.header.precedence, r.header.sentAt, r.header.seq ?? 0), tr, row.open && isUrgent(r.header.precedence));
    } else {
      outboxFind.delete(id);
      outboxRows.delete(id);
    }
    overdue.update(id, r);
  };

  const inboxEmpty = h('p', { class: 'muted' });
  const outboxEmpty = h('p', { class: 'muted' });
  const inboxMore = h('p', { class: 'more' });
  const outboxMore = h('p', { class: 'more' });
  /** The window of each list (all rows while filtering), and under it what is left out and "Show more". */
  const showWindows = () => {
    const all = isFiltering(find.query);
    for (const [list, rows, more, el] of [['inbox', inboxRows, inboxMore, inboxEl], ['outbox', outboxRows, outboxMore, outboxEl]] as const) {
      rows.setLimit(all ? Infinity : windows[list]);
      el.dataset.rows = String(rows.size);
      el.dataset.shown = String(rows.shown);
      const left = rows.size - rows.shown;
      more.hidden = left === 0;
      if (left === 0) continue;
      const shown = t('find_shown', { n: rows.shown, total: rows.size });
      const label = t('rows_more', { n: Math.min(left, ROWS_SHOWN) });
      // Redrawn only when its figures change: a flood must not rebuild it on every batch.
      if (more.dataset.text === shown + label) continue;
      more.dataset.text = shown + label;
      replace(
        more,
        h('span', {}, shown),
        ' ',
        h('button', {
          type: 'button',
          class: 'show-more secondary',
          onclick: () => {
            windows[list] = rows.shown + ROWS_SHOWN;
            showWindows();
          },
        }, label),
      );
    }
  };
  const inboxTable = h('table', {});
  const outboxTable = h('table', {});
  const showEmpty = () => {
    inboxEmpty.hidden = inboxRows.size > 0;
    inboxTable.hidden = inboxRows.size === 0;
    outboxEmpty.hidden = outboxRows.size > 0;
    outboxTable.hidden = outboxRows.size === 0;
    showWindows();
    countShown();
  };

  const drawTables = () => {
    inboxEmpty.textContent = t('empty');
    outboxEmpty.textContent = t('empty');
    const head = (keys: readonly MessageKey[], extra: boolean) => h('thead', {}, h('tr', {}, ...keys.map((k) => h('th', {}, t(k))), extra ? h('th', {}) : null));
    replace(inboxTable, head(['col_precedence', 'col_from', 'col_subject', 'col_time', 'col_status', 'col_deadline'], true), inboxBody);
    replace(outboxTable, head(['col_precedence', 'col_to', 'col_subject', 'col_time', 'col_status', 'col_deadline'], true), outboxBody);
    replace(inboxEl, h('h2', {}, t('inbox')), inboxEmpty, inboxTable, inboxMore);
    replace(outboxEl, h('h2', {}, t('outbox')), outboxEmpty, outboxTable, outboxMore);
    inboxMore.dataset.text = outboxMore.dataset.text = '';
    showEmpty();
    find.draw();
  };

  const drawRows = async (deadline: number): Promise<boolean> => {
    if (resync || dirtyInbox.size > 0 || dirtyOutbox.size > 0) state = await ctx.storage.read(ctx.key);
    if (resync) {
      resync = false;
      for (const id of [...inboxRows.keys(), ...Object.keys(state.inbox)]) dirtyInbox.add(id);
      for (const id of [...outboxRows.keys(), ...Object.keys(state.sent), ...pendingIds(state)]) dirtyOutbox.add(id);
    }
    // Checked after every row: a row costs 1–3 ms to build on a slow machine, and sixteen of them
    // between two checks made draw frames of 25–37 ms of script during a flood (docs/performance.md).
    const overBudget = () => performance.now() > deadline;
    // Urgent rows now; the rest at most every ROUTINE_EVERY_MS, so that a flood costs a few
    // layouts a second rather than one per message.
    const routineWait = lastRoutine + ROUTINE_EVERY_MS - performance.now();
    for (const urgent of routineWait > 0 ? [true] : [true, false]) {
      for (const id of dirtyInbox) {
        if (urgent !== isUrgent(state.inbox[id]?.header.precedence)) continue;
        dirtyInbox.delete(id);
        drawInboxRow(id);
        if (overBudget()) break;
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
      routineTimer = setTimeout(schedule, routineWait);
      return false;
    }
    return left;
  };

  function markInbox(id: string): void {
    dirtyInbox.add(id);
    schedule();
  }
  function markOutbox(id: string): void {
    dirtyOutbox.add(id);
    schedule();
  }

  return {
    findEl: find.el,
    inboxEl,
    outboxEl,
    bannerEl,
    senderOverdueEl: overdue.el,
    drawTables,
    clear() {
      overdue.clear();
      inboxRows.clear();
      outboxRows.clear();
      inboxFind.clear();
      outboxFind.clear();
      banners.clear();
      immediates.clear();
      open.clear();
      due.clear();
      resync = true;
    },
    resync() {
      resync = true;
      schedule();
    },
    markInbox,
    markOutbox,
    inInbox: (id) => state.inbox[id] !== undefined,
    showFlash(id, rec) {
      putInboxRow(id, inboxRow(id, state.inbox[id] ?? rec, ctx.data.value, ctx.agreement, ctx.me));
      showEmpty();
    },
    drawRows,
    tick: () => {
      due.tick();
      overdue.tick();
      // What is overdue changes with the clock.
      if (find.query.state === 'overdue') refilter();
    },
  };
}
