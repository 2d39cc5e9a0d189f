import { isHotlineError } from '../../../shared/errors.js';
import type { Role } from '../../../shared/protocol/schemas.js';
import type { KeyStore } from '../key-store.js';
import { MIN_PASSPHRASE_LENGTH, type UnlockedKey } from '../key-store.js';
import { h, replace } from './dom.js';
import { t, type MessageKey } from './i18n.js';

/**
 * The lock screen of both consoles: import a key file once (then it is sealed under a
 * passphrase), or unlock the stored one. Resolves with the unlocked key; the clear key file and
 * the passphrase live only in this page's memory.
 */
export async function showUnlock(root: HTMLElement, store: KeyStore, roles: readonly Role[]): Promise<UnlockedKey> {
  return new Promise((resolve) => {
    const render = async (): Promise<void> => {
      const label = await store.label().catch(() => undefined);
      const error = h('p', { class: 'error', role: 'alert', id: 'unlock-error' });
      const fail = (key: MessageKey) => replace(error, t(key));
      const busy = (form: HTMLFormElement, on: boolean) => {
        for (const el of Array.from(form.elements)) (el as HTMLInputElement).disabled = on;
      };

      if (label) {
        const pass = h('input', { type: 'password', id: 'passphrase', autocomplete: 'current-password', required: true });
        const form = h(
          'form',
          { class: 'card unlock', id: 'unlock-form' },
          h('h2', {}, t('unlock_title')),
          h('p', {}, t('unlock_help', { device: `${label.party}/${label.device} (${label.role})` })),
          h('label', {}, t('passphrase'), pass),
          h('div', { class: 'row' }, h('button', { type: 'submit', id: 'unlock' }, t('unlock')), h('button', { type: 'button', id: 'forget', class: 'secondary', onclick: async () => {
            await store.forget();
            await render();
          } }, t('forget'))),
          error,
        );
        form.addEventListener('submit', (ev) => {
          ev.preventDefault();
          busy(form, true);
          replace(error, t('working'));
          store.unlock(pass.value).then(resolve, (err: unknown) => {
            busy(form, false);
            pass.value = '';
            pass.focus();
            fail(isHotlineError(err) && err.code === 'HL_ERR_KEYSTORE_PASSPHRASE' ? 'err_passphrase' : 'err_key_file');
          });
        });
        replace(root, form);
        pass.focus();
        return;
      }

      const file = h('input', { type: 'file', id: 'key-file', accept: '.json,.key,application/json' });
      const pass = h('input', { type: 'password', id: 'new-passphrase', autocomplete: 'new-password', minlength: MIN_PASSPHRASE_LENGTH, required: true });
      const pass2 = h('input', { type: 'password', id: 'new-passphrase-again', autocomplete: 'new-password', required: true });
      const form = h(
        'form',
        { class: 'card unlock', id: 'import-form' },
        h('h2', {}, t('import_title')),
        h('p', {}, t('import_help')),
        h('label', {}, t('key_file'), file),
        h('label', {}, t('passphrase'), pass),
        h('label', {}, t('passphrase_again'), pass2),
        h('button', { type: 'submit', id: 'import' }, t('import')),
        error,
      );
      form.addEventListener('submit', (ev) => {
        ev.preventDefault();
        const chosen = file.files?.[0];
        if (!chosen) return fail('err_no_file');
        if (pass.value !== pass2.value) return fail('err_mismatch');
        if (pass.value.normalize('NFC').length < MIN_PASSPHRASE_LENGTH) return fail('err_passphrase_short');
        busy(form, true);
        replace(error, t('working'));
        chosen
          .text()
          .then((text) => store.importKeyFile(text, pass.value, { roles }))
          .then(
            (unlocked) => {
              // Nothing of the key file stays in the form.
              file.value = '';
              resolve(unlocked);
            },
            () => {
              busy(form, false);
              fail('err_key_file');
            },
          );
      });
      replace(root, form);
    };
    void render();
  });
}
