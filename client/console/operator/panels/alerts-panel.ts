import { h, replace } from '../../common/dom.js';
import { onLanguageChange, t } from '../../common/i18n.js';
import type { DesktopAlerts } from '../desktop-alerts.js';

/** The idle auto-lock's bounds, in minutes (default {@link DEFAULT_IDLE_MINUTES}). */
export const MIN_IDLE_MINUTES = 1;
export const MAX_IDLE_MINUTES = 240;
export const DEFAULT_IDLE_MINUTES = 10;

export interface AlertsPanelOptions {
  alerts: DesktopAlerts;
  idleMinutes(): number;
  /** Store a new idle time (already within bounds). */
  setIdleMinutes(minutes: number): Promise<void>;
  /** Close the link and clear the key from this page (the start page's unlock form follows). */
  signOut(): void;
}

/**
 * "Lock and alerts": the idle auto-lock's minutes (stored sealed for this device) and desktop
 * alerts, with why the browser is about to ask before it asks.
 */
export function alertsPanel(o: AlertsPanelOptions): { el: HTMLElement } {
  const el = h('section', { class: 'card', id: 'alerts-panel' });
  const draw = () => {
    const minutes = h('input', { type: 'number', id: 'idle-minutes', min: MIN_IDLE_MINUTES, max: MAX_IDLE_MINUTES, step: 1, value: o.idleMinutes() });
    minutes.addEventListener('change', () => {
      const n = Math.round(Number(minutes.value));
      const v = Number.isFinite(n) ? Math.min(MAX_IDLE_MINUTES, Math.max(MIN_IDLE_MINUTES, n)) : o.idleMinutes();
      minutes.value = String(v);
      void o.setIdleMinutes(v);
    });
    const permission = o.alerts.permission();
    const desktop =
      permission === 'default'
        ? [
            h('p', { class: 'small', id: 'notify-why' }, t('notify_why')),
            h(
              'button',
              {
                type: 'button',
                id: 'enable-notifications',
                onclick: () => void o.alerts.request().then(draw),
              },
              t('notify_enable'),
            ),
          ]
        : [h('p', { class: 'small', id: 'notify-state', 'data-permission': permission }, t(permission === 'granted' ? 'notify_on' : permission === 'denied' ? 'notify_blocked' : 'notify_unsupported'))];
    replace(
      el,
      h('h2', {}, t('alerts_title')),
      h('label', { class: 'inline' }, t('idle_lock_label'), ' ', minutes, ' ', t('idle_lock_unit')),
      h('p', { class: 'small muted' }, t('idle_lock_help')),
      // Only from an unlocked console: a passer-by at a locked one cannot close its link.
      h('button', { type: 'button', class: 'secondary', id: 'sign-out', onclick: () => o.signOut() }, t('sign_out')),
      h('p', { class: 'small muted' }, t('sign_out_help')),
      h('h3', {}, t('notify_title_section')),
      ...desktop,
    );
  };
  draw();
  onLanguageChange(draw);
  return { el };
}
