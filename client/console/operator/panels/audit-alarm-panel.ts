import { formatTime, h, replace } from '../../common/dom.js';
import { t } from '../../common/i18n.js';
import { alarmReason } from '../../common/error-text.js';
import type { OperatorContext, Panel } from '../context.js';

/** An audit alarm stays on screen, in red, until the operator dismisses it (and across reloads). */
export function auditAlarmPanel(ctx: OperatorContext): Panel {
  const el = h('div', { id: 'audit-alarm-slot' });
  const draw = () => {
    const alarms = ctx.data.value.alarms ?? [];
    if (alarms.length === 0) {
      replace(el);
      return;
    }
    replace(
      el,
      h(
        'div',
        { class: 'audit-alarm', role: 'alert', id: 'audit-alarm', 'data-count': alarms.length },
        h('strong', {}, t('audit_alarm_title')),
        h('ul', {}, ...alarms.map((a) => h('li', {}, `${formatTime(a.at)} `, t('audit_alarm', { reason: reasonText(a.reason, a.code) })))),
        h('button', { type: 'button', id: 'dismiss-alarm', onclick: () => void ctx.data.save((d) => (d.alarms = [])).then(draw) }, t('dismiss')),
      ),
    );
  };
  return { el, draw };
}

/** Who raised the alarm and what they found, in the interface language (the reason's code and English text stay off screen). */
function reasonText(reason: string, code: string | undefined): string {
  const r = alarmReason(reason, code);
  return r.who === undefined ? t(r.key) : `${r.who} · ${t(r.key)}`;
}
