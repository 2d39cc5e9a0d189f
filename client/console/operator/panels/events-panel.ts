import type { HotlineEvent } from '../../../../shared/protocol/frames.js';
import { formatDuration, formatTime, h, replace } from '../../common/dom.js';
import { t, type MessageKey } from '../../common/i18n.js';
import { alarmReason, errorKey } from '../../common/error-text.js';
import type { OperatorContext, Panel } from '../context.js';
import type { ConsoleEvent } from '../model.js';

/** The last 20 of the stored Events, newest first. */
export function eventsPanel(ctx: OperatorContext): Panel {
  const el = h('section', { class: 'card', id: 'events' });
  const draw = () => {
    const events = ctx.data.value.events;
    replace(
      el,
      h('h2', {}, t('events')),
      events.length === 0
        ? h('p', { class: 'muted' }, t('empty'))
        : h('ul', { class: 'events' }, ...events.slice(0, 20).map((e) => h('li', { class: `ev ev-${e.kind.replace('.', '-')}`, ...(e.kind === 'error' ? { 'data-code': e.params.code } : {}) }, `${formatTime(e.at)} `, eventText(e)))),
    );
  };
  return { el, draw };
}

/** A server event as the console stores it for Events. */
export function toConsoleEvent(ev: HotlineEvent): ConsoleEvent {
  switch (ev.type) {
    case 'deadline.missed':
      return { at: ev.at, kind: 'deadline.missed', params: { rung: ev.rung, id: ev.messageId.slice(0, 8), prec: ev.precedence, late: formatDuration(ev.lateMs), level: ev.level } };
    case 'deadline.met':
      return ev.late
        ? { at: ev.at, kind: 'deadline.late', params: { rung: ev.rung, id: ev.messageId.slice(0, 8), prec: ev.precedence, late: formatDuration(ev.lateMs) } }
        : { at: ev.at, kind: 'deadline.met', params: { rung: ev.rung, id: ev.messageId.slice(0, 8), prec: ev.precedence } };
    case 'deadline.closed':
      // `detail` names devices and error codes (no message text): shown as it is, beside the translated reason.
      return { at: ev.at, kind: 'deadline.closed', params: { rung: ev.rung, id: ev.messageId.slice(0, 8), prec: ev.precedence, reason: ev.reason, detail: ev.detail } };
    case 'audit.alarm':
      return { at: ev.at, kind: 'alarm', params: { party: ev.party, reason: ev.reason, ...('code' in ev && typeof ev.code === 'string' ? { code: ev.code } : {}) } };
    case 'message.relayed':
      // The addressee's relay stored the message (two relays): the rung, cited by the short id.
      return { at: ev.at, kind: 'relayed', params: { id: ev.messageId.slice(0, 8), prec: ev.precedence, to: ev.to } };
    default:
      // The hotline's line between the relays (its reason stays in the header's banner).
      if (ev.scope === 'relay' && ev.type !== 'link.test') return { at: ev.at, kind: ev.type === 'link.up' ? 'line.up' : 'line.down', params: { from: ev.from, to: ev.to } };
      return { at: ev.at, kind: 'link', params: { type: ev.type, from: ev.from, to: ev.to, ok: ev.ok ? '✔' : '✘', ...(ev.roundTripMs === undefined ? {} : { rtt: ev.roundTripMs }) } };
  }
}

const EVENT_KEYS: Record<ConsoleEvent['kind'], MessageKey> = {
  'deadline.missed': 'ev_deadline_missed',
  'deadline.met': 'ev_deadline_met',
  'deadline.late': 'ev_deadline_late',
  'deadline.closed': 'ev_deadline_closed',
  notice: 'ev_notice_store_failed',
  link: 'ev_link',
  alarm: 'ev_alarm',
  error: 'ev_error',
  relayed: 'ev_relayed',
  'line.down': 'ev_line_down',
  'line.up': 'ev_line_up',
};

/**
 * The event's line in the interface language: rung, precedence and link event names are
 * translated, an error is told by what its code means (the code is kept in the line's
 * `data-code`; the server's English message is not shown), an audit alarm by who raised it and what
 * they found.
 */
export function eventText(e: ConsoleEvent): string {
  const { rung, prec, type } = e.params;
  const alarm = e.kind === 'alarm' ? alarmReason(String(e.params.reason), typeof e.params.code === 'string' ? e.params.code : undefined) : undefined;
  const closedKey = e.params.reason === 'recipient-refused' ? 'ev_deadline_closed_refused' : e.params.reason === 'cannot-comply' ? 'ev_deadline_closed_cannot_comply' : undefined;
  const key = e.kind === 'deadline.closed' && closedKey !== undefined ? closedKey : EVENT_KEYS[e.kind];
  return t(key, {
    ...e.params,
    ...(typeof rung === 'string' ? { rung: t(`rung_${rung}` as MessageKey) } : {}),
    ...(typeof prec === 'string' ? { prec: t(`prec_${prec}` as MessageKey) } : {}),
    ...(e.kind === 'link' && typeof type === 'string' ? { type: t(`type_${type.replace('.', '_')}` as MessageKey) } : {}),
    ...(e.kind === 'error' ? { message: t(errorKey(e.params.code)) } : {}),
    ...(alarm ? { reason: alarm.who === undefined ? t(alarm.key) : `${alarm.who} · ${t(alarm.key)}` } : {}),
  });
}
