import { h, zoneOf } from '../../common/dom.js';
import { t } from '../../common/i18n.js';
import { dateTimeGroup } from '../model.js';

/**
 * The header clock at `now` (server time): UTC and the date-time group always, as the watch works
 * in UTC and quotes messages by DTG; and the browser's local time with its zone beside them when
 * that zone is not UTC (the operator's own wall clock), so that neither has to be worked out.
 */
export function clockParts(now: number): (HTMLElement | string)[] {
  const d = new Date(now);
  const parts: (HTMLElement | string)[] = [h('span', { id: 'utc-time' }, `${d.toISOString().slice(11, 19)} UTC`), ' ', h('span', { id: 'dtg' }, dateTimeGroup(now))];
  if (d.getTimezoneOffset() !== 0) {
    const p = (n: number) => String(n).padStart(2, '0');
    parts.push(' ', h('span', { id: 'local-time', class: 'local-time' }, `${t('local_time')} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${zoneOf(d)}`));
  }
  return parts;
}
