import { h, replace } from '../../common/dom.js';
import { onLanguageChange, t } from '../../common/i18n.js';
import type { OperatorContext } from '../context.js';

/**
 * While this tab's link is down: a banner across the page (issue 10: link loss was only a small
 * pill), the client reconnecting by itself with the time to its next attempt, and "Reconnect now"
 * to try at once (e.g. when the relay is known to be back). Shown from the first failed attempt or
 * lost link until connected again; not while another tab holds the link.
 */
export function linkDownPanel(ctx: OperatorContext): { el: HTMLElement } {
  const el = h('div', { id: 'link-down-slot' });
  let down = false;
  let retryAt: number | undefined;
  // The announcement is made once per outage (role alert, text unchanged); the countdown beside
  // it changes every second and is not a live region.
  const countdown = h('span', { id: 'retry-in' });
  const drawCountdown = () => {
    if (retryAt === undefined) {
      delete countdown.dataset.retryAt;
      replace(countdown);
      return;
    }
    const s = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    countdown.dataset.retryAt = String(retryAt);
    replace(countdown, s > 0 ? t('link_down_next', { s }) : t('link_down_trying'));
  };
  const draw = () => {
    if (!down || ctx.live.elsewhere) {
      replace(el);
      return;
    }
    drawCountdown();
    replace(
      el,
      h(
        'div',
        { class: 'link-down', id: 'link-down' },
        h('strong', { role: 'alert' }, t('link_down_title')),
        h('p', {}, t('link_down_help'), ' ', countdown),
        h('button', { type: 'button', id: 'reconnect-now', onclick: () => reconnect() }, t('reconnect_now')),
      ),
    );
  };
  const reconnect = () => {
    retryAt = undefined;
    drawCountdown();
    ctx.client.reconnectNow();
  };
  let everConnected = false;
  ctx.client.on('disconnected', (ev) => {
    // Opened while the relay is down: the peers' keys as last fetched, so that compose works
    // (what is sent waits in the outbox).
    if (!everConnected && !down && !ctx.live.elsewhere) void ctx.client.loadStoredDirectory().catch(() => undefined);
    down = true;
    retryAt = ev.retryInMs === undefined ? undefined : Date.now() + ev.retryInMs;
    draw();
  });
  ctx.client.on('connected', () => {
    everConnected = true;
    down = false;
    retryAt = undefined;
    draw();
  });
  // The network is back (a laptop's Wi-Fi, a cable replugged): no need to wait for the backoff.
  window.addEventListener('online', () => ctx.client.reconnectNow());
  setInterval(() => {
    if (down && el.firstChild) drawCountdown();
  }, 1000);
  onLanguageChange(draw);
  return { el };
}
