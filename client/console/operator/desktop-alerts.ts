import type { Precedence } from '../../../shared/protocol/schemas.js';
import { t, type MessageKey } from '../common/i18n.js';

/**
 * Desktop notifications for FLASH and IMMEDIATE (issue 10), for when the console cannot be seen:
 * its tab in the background or the console locked. Permission is asked only when the operator
 * presses "Enable desktop alerts" after reading why (never by itself on load), so the browser's
 * question comes once and expectedly. A notification carries the precedence and the sender only:
 * it shows on a screen anyone may see and may be kept by the operating system, so no subject or
 * text, which stay behind the passphrase.
 *
 * @example
 * const alerts = desktopAlerts();
 * button.onclick = () => void alerts.request();
 * alerts.notify({ id, precedence: 'FLASH', from: 'cn-mnd/op1', exercise: false });
 */
export type AlertPermission = NotificationPermission | 'unsupported';

export interface DesktopAlert {
  id: string;
  precedence: Precedence;
  from: string;
  exercise: boolean;
}

export interface DesktopAlerts {
  /** What the browser allows now ('unsupported' without the Notification API or a secure context). */
  permission(): AlertPermission;
  /** Ask the browser (from a click); resolves with the answer. */
  request(): Promise<AlertPermission>;
  /** Show one alert when permitted; returns whether a notification was made. */
  notify(alert: DesktopAlert): boolean;
}

type NotificationApi = typeof Notification;

export function desktopAlerts(): DesktopAlerts {
  const api = (): NotificationApi | undefined => (globalThis as { Notification?: NotificationApi }).Notification;
  const permission = (): AlertPermission => api()?.permission ?? 'unsupported';
  return {
    permission,
    async request() {
      const N = api();
      if (!N) return 'unsupported';
      try {
        return await N.requestPermission();
      } catch {
        return permission();
      }
    },
    notify(a) {
      const N = api();
      if (!N || N.permission !== 'granted') return false;
      const prec = t(`prec_${a.precedence}` as MessageKey);
      const title = a.exercise ? t('notify_title_exercise', { prec }) : t('notify_title', { prec });
      const options: NotificationOptions = {
        body: t('notify_body', { from: a.from }),
        // One notification per message, however often it is raised.
        tag: `hotline-${a.id}`,
        // A FLASH stays on screen until the operator does something about it.
        requireInteraction: a.precedence === 'FLASH',
      };
      try {
        const n = new N(title, options);
        n.onclick = () => {
          window.focus();
          n.close();
        };
        return true;
      } catch {
        // Browsers that only show notifications through a service worker (Chrome on Android).
        void navigator.serviceWorker?.ready.then((r) => r.showNotification(title, options)).catch(() => undefined);
        return true;
      }
    },
  };
}
