import type { LinkEvent } from '../../../../shared/protocol/frames.js';
import type { RelayLinkStatus } from '../../../../shared/protocol/status.js';
import { formatTime, h, replace } from '../../common/dom.js';
import { t, type MessageKey } from '../../common/i18n.js';
import { errorKey } from '../../common/error-text.js';
import type { OperatorContext, Panel } from '../context.js';

/**
 * The hotline's own line (two-relay deployments, issue 11): the relay-to-relay link between this
 * party's relay and each peer's, as the relay reports it (`GET /v1/status` `relayLinks`, then
 * `link.down` / `link.up` events with `scope: "relay"`). Shown apart from this console's own
 * connection to its relay (the "Link" pill and the link-down banner): the console can be well
 * connected to its relay while the line to the other ministry is cut, and then messages to that
 * ministry wait at this party's relay. A deployment with one shared relay has no such line and
 * shows nothing here.
 */

/** The relay line's state after `ev`, a `link.*` event of scope `relay` from this party's relay. */
export function lineFromEvent(ev: LinkEvent, me: { party: string }): RelayLinkStatus {
  const peer = ev.from === me.party ? ev.to : ev.from;
  return { peer, status: ev.type === 'link.up' ? 'up' : 'down', since: ev.at, ...(ev.reason === undefined ? {} : { reason: ev.reason }) };
}

/**
 * `lines` with `line` in place of the same peer's entry (or added), in a fixed order; an entry
 * that changed later than `line` (a status answer older than an event already seen) is kept.
 */
export function withLine(lines: readonly RelayLinkStatus[], line: RelayLinkStatus): RelayLinkStatus[] {
  const had = lines.find((l) => l.peer === line.peer);
  if (had?.since !== undefined && (line.since === undefined || had.since > line.since)) return [...lines];
  return [...lines.filter((l) => l.peer !== line.peer), line].sort((a, b) => a.peer.localeCompare(b.peer));
}

/**
 * Why the line is down, in the interface language: the relay's reasons are English text for its
 * log (PROTOCOL.md "Heartbeat and line status"); the known ones are told in words, a refusal by
 * what its code means, anything else as "the connection closed or could not be opened". The
 * relay's own words stay in the element's `title` and `data-reason` for support.
 */
export function lineReason(reason: string | undefined): string {
  if (reason === undefined) return t('line_reason_closed');
  const heartbeat = /^no heartbeat from the relay of (\S+) for (\d+) s$/.exec(reason);
  if (heartbeat) return t('line_reason_heartbeat', { party: heartbeat[1]!, s: heartbeat[2]! });
  const code = /^(HL_ERR_[A-Z_]+)\b/.exec(reason);
  if (code) return t(errorKey(code[1]!));
  return t('line_reason_closed');
}

/** One pill per peer relay for the header: "Line to cn-mnd: up". */
export function linePills(lines: readonly RelayLinkStatus[]): HTMLElement[] {
  return lines.map((l) =>
    h(
      'span',
      { class: `pill ${l.status === 'up' ? 'ok' : l.status === 'down' ? 'bad' : 'idle'} line-state`, 'data-peer': l.peer, 'data-status': l.status },
      `${t('line_to', { party: l.peer })}: ${t(`line_${l.status}` as MessageKey)}`,
    ),
  );
}

/**
 * While the line to a peer is down: a banner across the page, once per outage announced, with why
 * and since when; in every tab of the console (a tab without the link is told by the one with it).
 * `lockEl` holds the same for the lock screen, which covers the page: a locked console still
 * shows the line down (lock-screen.ts).
 */
export function lineDownPanel(ctx: OperatorContext): Panel & { readonly lockEl: HTMLElement } {
  const el = h('div', { id: 'line-down-slot' });
  const lockEl = h('div', { id: 'lock-line' });
  // Drawn again only when what it says changes: the alert is announced once per outage.
  let shown = '';
  const banners = (down: readonly RelayLinkStatus[]) =>
    down.map((l) =>
      h(
        'div',
        { class: 'line-down', 'data-peer': l.peer, ...(l.reason === undefined ? {} : { 'data-reason': l.reason, title: l.reason }) },
        h('strong', { role: 'alert' }, t('line_down_title', { party: l.peer })),
        h('p', {}, h('span', { class: 'line-reason' }, lineReason(l.reason)), l.since === undefined ? null : ` (${t('line_down_since', { time: formatTime(l.since) })})`, ' ', t('line_down_help', { party: l.peer })),
      ),
    );
  const draw = () => {
    const down = ctx.live.relayLines.filter((l) => l.status === 'down');
    const now = JSON.stringify([document.documentElement.lang, down]);
    if (now === shown) return;
    shown = now;
    replace(el, ...banners(down));
    replace(lockEl, ...banners(down));
  };
  return { el, lockEl, draw };
}
