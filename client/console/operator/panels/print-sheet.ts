import type { EnvelopeHeader } from '../../../../shared/protocol/schemas.js';
import type { InboxRecord } from '../../../storage/client-storage.js';
import { formatDuration, formatTime, h } from '../../common/dom.js';
import { t, type MessageKey } from '../../common/i18n.js';
import type { InboxRow, MessageText, OutboxRow } from '../model.js';

/**
 * One message printed (or saved as PDF through the browser's print dialog) with its signed rungs:
 * the print stylesheet (style.css, `body.print-one`) hides everything but this sheet.
 */
export interface PrintableMessage {
  id: string;
  header: Pick<EnvelopeHeader, 'precedence' | 'exercise' | 'from' | 'to' | 'sentAt'>;
  text?: MessageText;
  rungs: PrintRung[];
  /** The security label banner, as shown (PROTOCOL.md "Security labels"); printed at the top and the foot. */
  labelText?: string;
}

/** A rung as printed: when, and who signed it (`by` absent: the relay's acceptance, which it does not sign). */
export interface PrintRung {
  rung: 'sent' | 'accepted' | 'relayed' | 'delivered' | 'received' | 'acknowledged';
  at?: number;
  by?: string;
  /** `relayed`: the party whose relay stored it (it reports the rung; it does not sign it). */
  relayOf?: string;
  lateMs?: number;
}

const device = (d: { party: string; device: string }) => `${d.party}/${d.device}`;

/** A received message: signed by its sender, accepted by the relay, received and acknowledged here (or by a colleague). */
export function inboxPrintable(r: InboxRow, rec: InboxRecord | undefined, me: string): PrintableMessage {
  return {
    id: r.id,
    header: r.header,
    ...(r.text ? { text: r.text } : {}),
    rungs: [
      { rung: 'sent', at: r.header.sentAt, by: device(r.header.from) },
      { rung: 'accepted', at: r.acceptedAt },
      { rung: 'received', ...(rec ? { at: rec.receivedAt, by: me } : {}), ...(r.late.delivered === undefined ? {} : { lateMs: r.late.delivered }) },
      { rung: 'acknowledged', ...(r.acknowledged ? { at: r.acknowledged.at, by: r.acknowledged.by === 'me' ? me : r.acknowledged.by } : {}), ...(r.late.acknowledged === undefined ? {} : { lateMs: r.late.acknowledged }) },
    ],
  };
}

/**
 * A sent message: signed here, accepted by the relay, stored by the addressee's relay where it
 * crosses two (`twoRelays`), then each verified receipt with its signer.
 */
export function outboxPrintable(r: OutboxRow, me: { party: string; device: string }, twoRelays = false): PrintableMessage {
  const from = r.header.from ?? me;
  const receipt = (kind: 'delivered' | 'acknowledged'): PrintRung => {
    const x = r.receipts.find((rc) => rc.kind === kind);
    return { rung: kind, ...(x ? { at: x.at, by: x.by } : {}), ...(r.late[kind] === undefined ? {} : { lateMs: r.late[kind] }) };
  };
  return {
    id: r.id,
    header: { ...r.header, from },
    ...(r.text ? { text: r.text } : {}),
    rungs: [
      { rung: 'sent', at: r.header.sentAt, by: device(from) },
      { rung: 'accepted', ...(r.acceptedAt === undefined ? {} : { at: r.acceptedAt }) },
      ...(twoRelays ? [{ rung: 'relayed' as const, relayOf: r.header.to, ...(r.rungAt.relayed === undefined ? {} : { at: r.rungAt.relayed }) }] : []),
      receipt('delivered'),
      receipt('acknowledged'),
    ],
  };
}

/** The sheet of one message, in the interface language. */
export function printSheet(m: PrintableMessage, printedBy: string, now: number): HTMLElement {
  const prec = t(`prec_${m.header.precedence}` as MessageKey);
  const row = (label: string, ...value: (Node | string)[]) => [h('dt', {}, label), h('dd', {}, ...value)];
  return h(
    'section',
    { id: 'print-sheet', 'data-id': m.id, class: m.header.exercise ? 'exercise' : '' },
    m.header.exercise ? h('p', { class: 'exercise-words' }, t('exercise_banner')) : null,
    m.labelText === undefined ? null : h('p', { class: 'label-banner', id: 'print-label' }, t('label_banner', { label: m.labelText })),
    h('h1', {}, t('print_heading', { id: m.id })),
    h(
      'dl',
      {},
      ...row(t('col_precedence'), prec),
      ...row(t('col_from'), device(m.header.from)),
      ...row(t('col_to'), m.header.to),
      ...row(t('col_time'), formatTime(m.header.sentAt)),
      ...(m.text?.subject ? row(t('col_subject'), h('span', { lang: m.text.lang, id: 'print-subject' }, m.text.subject)) : []),
    ),
    h('div', { class: 'print-text', lang: m.text?.lang ?? '', id: 'print-text' }, m.text?.body ?? '…'),
    h('h2', {}, t('print_rungs')),
    h(
      'ol',
      { id: 'print-rungs' },
      ...m.rungs.map((r) =>
        h(
          'li',
          { 'data-rung': r.rung, 'data-reached': String(r.at !== undefined) },
          h('b', {}, t(`rung_${r.rung}` as MessageKey)),
          ': ',
          r.at === undefined
            ? t('print_not_yet')
            : r.relayOf !== undefined
              ? t('print_rung_peer_relay', { time: formatTime(r.at), party: r.relayOf })
              : r.by === undefined
                ? t('print_rung_relay', { time: formatTime(r.at) }) : t('print_rung', { time: formatTime(r.at), who: r.by }),
          r.lateMs === undefined ? null : h('span', { class: 'late' }, ` ⚠ ${t('late_by', { t: formatDuration(r.lateMs) })}`),
        ),
      ),
    ),
    h('p', { class: 'small' }, t('print_made', { time: formatTime(now), who: printedBy })),
    m.labelText === undefined ? null : h('p', { class: 'label-banner' }, t('label_banner', { label: m.labelText })),
  );
}

/**
 * Print `m` alone: its sheet goes into the page (hidden on screen), the page is marked so that
 * print shows only the sheet, and the browser's print dialog opens (Save as PDF is one of its
 * printers). After printing the page prints whole again.
 */
export function printMessage(m: PrintableMessage, printedBy: string): void {
  document.getElementById('print-sheet')?.remove();
  document.body.append(printSheet(m, printedBy, Date.now()));
  document.body.classList.add('print-one');
  window.addEventListener('afterprint', () => document.body.classList.remove('print-one'), { once: true });
  window.print();
}
