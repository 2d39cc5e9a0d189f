import { formatTime, h, replace } from '../../common/dom.js';
import { t, type MessageKey } from '../../common/i18n.js';
import type { OperatorContext, Panel } from '../context.js';
import type { LastTest } from '../model.js';
import { linePills } from './line-panel.js';

/** "12:00:01 passed, round trip 80 ms", or that no test ran yet. */
function testText(lastTest: LastTest | undefined): string {
  return lastTest
    ? `${formatTime(lastTest.at)} ${t(lastTest.ok ? 'test_ok' : 'test_failed')}${lastTest.roundTripMs === undefined ? '' : `, ${t('round_trip', { ms: lastTest.roundTripMs })}`}`
    : t('no_test');
}

/**
 * The header's status pills: this console's link to its relay, the hotline's line to each peer
 * relay (two relays), the last link test, each ordered pair's state, this device.
 */
export function statusPanel(ctx: OperatorContext): Panel {
  const el = h('div', { class: 'status', id: 'link-status', 'aria-live': 'polite' });
  const draw = () => {
    const { connected, elsewhere, lastTest, linkPairs } = ctx.live;
    replace(
      el,
      h(
        'span',
        { class: `pill ${connected ? 'ok' : elsewhere ? 'idle' : 'bad'}`, id: 'link-state', 'data-connected': String(connected), 'data-elsewhere': String(elsewhere) },
        // "Relay: connected": this console's own link, told apart from the hotline's line between relays.
        `${t('relay_link')}: ${t(connected ? 'connected' : elsewhere ? 'link_elsewhere' : 'disconnected')}`,
      ),
      // In every tab: the tab holding the link tells the others (main.ts).
      ...linePills(ctx.live.relayLines),
      h('span', { class: `pill ${lastTest ? (lastTest.ok ? 'ok' : 'bad') : 'idle'}`, id: 'link-test' }, `${t('last_test')}: `, testText(lastTest)),
      ...linkPairs.map((p) =>
        h('span', { class: `pill ${p.status === 'up' ? 'ok' : p.status === 'down' ? 'bad' : 'idle'}`, 'data-pair': `${p.from}>${p.to}`, 'data-status': p.status }, `${p.from} → ${p.to}: ${t(`link_${p.status}` as MessageKey)}`),
      ),
      h('span', { class: 'who' }, `${t('me')}: ${ctx.key}`),
    );
  };
  return { el, draw };
}

/** The link-test agent switch (remembered sealed, per device), the last test and the audit witness. */
export function linkPanel(ctx: OperatorContext): Panel {
  const el = h('section', { class: 'card', id: 'link-panel' });
  const draw = () => {
    const { lastTest, lastSent, lastCosigned } = ctx.live;
    const toggle = h('input', { type: 'checkbox', id: 'test-agent', role: 'switch' });
    toggle.checked = ctx.data.value.testAgent === true;
    toggle.addEventListener('change', () => {
      const on = toggle.checked;
      void ctx.data.save((d) => (d.testAgent = on)).then(() => {
        ctx.client.setTestAgent(on);
        draw();
      });
    });
    replace(
      el,
      h('h2', {}, t('link_test')),
      h('label', { class: 'check' }, toggle, ' ', t('test_agent', { party: ctx.me.party })),
      h('p', { class: 'small muted' }, t('test_agent_help')),
      h(
        'p',
        { id: 'link-result', 'data-ok': lastTest ? String(lastTest.ok) : '', ...(lastTest?.roundTripMs === undefined ? {} : { 'data-rtt': lastTest.roundTripMs }) },
        `${t('last_test')}: `,
        testText(lastTest),
      ),
      lastSent ? h('p', { class: 'small', id: 'test-sent' }, t('test_sent', { to: lastSent.to, at: formatTime(lastSent.at) })) : null,
      h(
        'p',
        { class: 'small', id: 'cosign-state', ...(lastCosigned ? { 'data-size': lastCosigned.size } : {}) },
        lastCosigned ? t('cosigned_at', { size: lastCosigned.size, at: formatTime(lastCosigned.at) }) : t('cosign_none'),
      ),
    );
  };
  return { el, draw };
}

/** While another tab holds the link: say so, and offer to take it over. */
export function elsewherePanel(ctx: OperatorContext): Panel {
  const el = h('div', { id: 'elsewhere-slot' });
  const draw = () => {
    if (!ctx.live.elsewhere) {
      replace(el);
      return;
    }
    replace(
      el,
      h(
        'div',
        { class: 'elsewhere', role: 'status', id: 'elsewhere' },
        h('strong', {}, t('elsewhere_title')),
        h('p', {}, t('elsewhere_help')),
        h('button', { type: 'button', id: 'take-over', onclick: () => void ctx.takeOver() }, t('take_over')),
      ),
    );
  };
  return { el, draw };
}
