import { fingerprint, agreementHash } from '../../../../shared/crypto/keys.js';
import { fromBase64 } from '../../../../shared/encoding/base64.js';
import { groupHex, h, replace } from '../../common/dom.js';
import { t, type MessageKey } from '../../common/i18n.js';
import type { OperatorContext, Panel } from '../context.js';
import { peerKeys, peerTrust } from '../model.js';
import { releaseHeld } from './sender-view.js';

/** Whether every peer key is confirmed ('ok': sending allowed), as {@link peerTrust} says. */
export function trustOf(ctx: OperatorContext): ReturnType<typeof peerTrust> {
  return peerTrust(peerKeys(ctx.client.directory(), ctx.me, ctx.data.value.confirmed), ctx.data.value.confirmed);
}

/** The peers' key fingerprints, the warning while any is unconfirmed, and the button that confirms them. */
export function peersPanel(ctx: OperatorContext): Panel {
  const el = h('section', { class: 'card', id: 'peers' });
  const draw = () => {
    const keys = peerKeys(ctx.client.directory(), ctx.me, ctx.data.value.confirmed);
    const status = trustOf(ctx);
    const warning =
      status === 'changed'
        ? h('p', { class: 'warning', role: 'alert', id: 'peer-warning', 'data-trust': status }, t('peer_changed'))
        : status === 'unconfirmed'
          ? h('p', { class: 'notice', id: 'peer-warning', 'data-trust': status }, t('peer_unconfirmed'))
          : status === 'none'
            ? h('p', { class: 'notice', id: 'peer-warning', 'data-trust': status }, t('no_peer_devices'))
            : h('p', { class: 'ok-note', id: 'peer-ok', 'data-trust': status }, t('keys_confirmed'));
    replace(
      el,
      h('h2', {}, t('peer_keys')),
      warning,
      h(
        'ul',
        { class: 'keys' },
        ...keys.map((k) =>
          h(
            'li',
            { class: k.confirmed ? '' : 'unconfirmed' },
            h('b', {}, `${k.party}/${k.device}`),
            ` (${t(`aud_role_${k.role}` as MessageKey)})`,
            k.confirmed ? null : h('span', { class: 'tag bad' }, t('peer_new')),
            h('code', { title: t('box_key', { fp: k.boxFingerprint }) }, groupHex(k.signFingerprint)),
          ),
        ),
      ),
      status === 'changed' || status === 'unconfirmed'
        ? h('button', {
            type: 'button',
            id: 'confirm-keys',
            onclick: async () => {
              await ctx.data.save((d) => (d.confirmed = keys.map((k) => k.identity)));
              draw();
              ctx.redraw('compose');
              // What was held for these keys is sealed and sent now.
              releaseHeld(ctx);
            },
          }, t('confirm_keys'))
        : null,
      h('p', { class: 'small' }, `${t('me')} ${ctx.key}: `, h('code', {}, groupHex(fingerprint(fromBase64(ctx.cert.signKey))))),
      h('p', { class: 'small' }, `${t('agreement')}: `, h('code', {}, groupHex(agreementHash(ctx.agreement).slice(0, 32)))),
    );
  };
  return { el, draw };
}
