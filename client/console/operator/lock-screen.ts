import { isHotlineError } from '../../../shared/errors.js';
import type { Precedence } from '../../../shared/protocol/schemas.js';
import { formatTime, h, replace } from '../common/dom.js';
import { onLanguageChange, t, type MessageKey } from '../common/i18n.js';

/**
 * The operator console's lock screen (issue 10: "a locked console is deaf"). Locking covers the
 * console; it does not stop it. The link stays up, messages keep arriving, receipts keep going
 * out, the FLASH alarm keeps sounding and deadlines keep running: the lock screen lists what
 * arrived or fell overdue meanwhile by precedence and sender only (no subject, no text), and
 * announces it. Only the device key's passphrase (the key store's, checked by opening the sealed
 * key again) opens it.
 *
 * What it is not: a cryptographic lock. The unlocked key and the messages stay in this page's
 * memory so that the link and the alerts can go on; the content is taken off the screen and out
 * of reach of the keyboard and of screen readers (`hidden`, `inert`). Closing the tab is what
 * clears the key.
 *
 * @example
 * const screen = new LockScreen({ root, device: 'jp-mod/op1', verify: (p) => store.unlock(p).then(check) });
 * lockButton.onclick = () => screen.lock();
 * client.on('message', (m) => screen.alert({ kind: 'message', id: m.header.id, ... }));
 */
export type LockAlert =
  | { kind: 'message'; id: string; precedence: Precedence; from: string; exercise: boolean; at: number }
  | { kind: 'overdue'; id: string; precedence: Precedence; inbound: boolean; party: string; rung: string; level: number; at: number };

export interface LockScreenOptions {
  /** The console's content, hidden while locked. */
  root: HTMLElement;
  /** `party/device`, named on the lock screen. */
  device: string;
  /** Resolves when `passphrase` opens this device's stored key; rejects (HL_ERR_KEYSTORE_PASSPHRASE) otherwise. */
  verify(passphrase: string): Promise<void>;
  /** Told on every lock and unlock. */
  changed?(locked: boolean): void;
  /** Shown on the lock screen above its alerts, drawn by its owner (the hotline line's state). */
  status?: HTMLElement;
}

export class LockScreen {
  readonly #o: LockScreenOptions;
  readonly #el: HTMLElement;
  readonly #list = h('ul', { class: 'lock-alerts', id: 'lock-alerts' });
  /** Read out at once (FLASH) or politely (the rest); the list itself is not a live region. */
  readonly #assertive = h('div', { class: 'sr-only', role: 'alert', id: 'lock-announce' });
  readonly #polite = h('div', { class: 'sr-only', role: 'status', 'aria-live': 'polite' });
  readonly #alerts = new Map<string, LockAlert>();
  #locked = false;
  #focusBefore: Element | null = null;
  #channel: BroadcastChannel | undefined;

  constructor(options: LockScreenOptions) {
    this.#o = options;
    this.#el = h('section', { class: 'lock-screen', id: 'lock-screen', 'aria-labelledby': 'lock-title' });
    this.#el.hidden = true;
    document.body.append(this.#el);
    onLanguageChange(() => {
      if (this.#locked) this.#draw();
    });
    // Locking one tab of this console locks its other tabs too: the operator who steps away
    // leaves none of them open. Each tab is unlocked on its own.
    const Channel = (globalThis as { BroadcastChannel?: typeof BroadcastChannel }).BroadcastChannel;
    if (Channel) {
      this.#channel = new Channel(`hotline-lock/${options.device}`);
      this.#channel.addEventListener('message', (ev: MessageEvent<unknown>) => {
        if (ev.data === 'lock') this.#lock(false);
      });
    }
  }

  get locked(): boolean {
    return this.#locked;
  }

  /** Cover the console now, in every tab of it (the Lock button). */
  lock(): void {
    this.#lock(true);
  }

  /**
   * Cover this tab only (its idle timer): a tab left in the background must not lock the one the
   * operator is working in.
   */
  lockThisTab(): void {
    this.#lock(false);
  }

  #lock(tellOthers: boolean): void {
    if (tellOthers) this.#channel?.postMessage('lock');
    if (this.#locked) return;
    this.#locked = true;
    this.#focusBefore = document.activeElement;
    this.#alerts.clear();
    this.#o.root.hidden = true;
    this.#o.root.inert = true;
    document.body.dataset.locked = 'true';
    this.#draw();
    this.#el.hidden = false;
    this.#el.querySelector<HTMLInputElement>('#passphrase')?.focus();
    this.#o.changed?.(true);
  }

  /** Something the watch must know while locked: listed (precedence and sender only) and announced. */
  alert(a: LockAlert): void {
    if (!this.#locked) return;
    const key = a.kind === 'message' ? a.id : `${a.id}/${a.rung}`;
    this.#alerts.delete(key);
    this.#alerts.set(key, a);
    this.#drawList();
    const live = a.precedence === 'FLASH' ? this.#assertive : this.#polite;
    live.textContent = alertText(a);
  }

  /** A message acknowledged meanwhile (by a colleague): no longer waiting. */
  settled(id: string): void {
    if (!this.#locked) return;
    for (const [key, a] of this.#alerts) if (a.id === id) this.#alerts.delete(key);
    this.#drawList();
  }

  #unlocked(): void {
    this.#locked = false;
    this.#el.hidden = true;
    replace(this.#el);
    this.#alerts.clear();
    this.#o.root.hidden = false;
    this.#o.root.inert = false;
    document.body.dataset.locked = 'false';
    const back = this.#focusBefore;
    this.#focusBefore = null;
    // Focus goes back where it was, or to the Lock button, never to the page body.
    if (back instanceof HTMLElement && back.isConnected && back !== document.body) back.focus();
    else document.getElementById('lock')?.focus();
    this.#o.changed?.(false);
  }

  #drawList(): void {
    const alerts = [...this.#alerts.values()].reverse();
    // FLASH first, then by time, newest first.
    alerts.sort((a, b) => Number(b.precedence === 'FLASH') - Number(a.precedence === 'FLASH'));
    if (alerts.length === 0) {
      replace(this.#list, h('li', { class: 'muted', id: 'lock-none' }, t('lock_none')));
      return;
    }
    replace(
      this.#list,
      ...alerts.map((a) =>
        h(
          'li',
          { class: `lock-alert lock-${a.precedence.toLowerCase()}`, 'data-id': a.id, 'data-kind': a.kind, 'data-precedence': a.precedence },
          h('span', { class: `prec prec-${a.precedence.toLowerCase()}` }, t(`prec_${a.precedence}` as MessageKey)),
          a.kind === 'message' && a.exercise ? h('span', { class: 'tag exercise' }, t('exercise_mark')) : null,
          ' ',
          h('span', { class: 'lock-what' }, alertText(a)),
          ' ',
          h('span', { class: 'small muted' }, formatTime(a.at)),
        ),
      ),
    );
  }

  #draw(): void {
    // The same ids as the start page's unlock form: one way to unlock, for people and for tests.
    const pass = h('input', { type: 'password', id: 'passphrase', autocomplete: 'current-password', required: true });
    const error = h('p', { class: 'error', role: 'alert', id: 'lock-error' });
    const button = h('button', { type: 'submit', id: 'unlock' }, t('unlock'));
    const form = h(
      'form',
      { class: 'lock-form', id: 'lock-form' },
      h('label', {}, t('passphrase'), pass),
      button,
      error,
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const given = pass.value;
      pass.disabled = true;
      button.disabled = true;
      replace(error, t('working'));
      this.#o.verify(given).then(
        () => this.#unlocked(),
        (err: unknown) => {
          pass.disabled = false;
          button.disabled = false;
          pass.value = '';
          pass.focus();
          replace(error, t(isHotlineError(err) && err.code === 'HL_ERR_KEYSTORE_PASSPHRASE' ? 'lock_wrong' : 'err_key_file'));
        },
      );
    });
    replace(
      this.#el,
      h('h2', { id: 'lock-title' }, t('lock_title')),
      h('p', {}, t('lock_help', { device: this.#o.device })),
      this.#o.status ?? null,
      h('h3', {}, t('lock_alerts')),
      this.#list,
      form,
      this.#assertive,
      this.#polite,
    );
    this.#drawList();
  }
}

/** "FLASH message from cn-mnd/op1", or an overdue deadline (precedence, party, rung, reminder level; its time beside it): nothing of the content. */
function alertText(a: LockAlert): string {
  const prec = t(`prec_${a.precedence}` as MessageKey);
  if (a.kind === 'message') return t('lock_alert_message', { prec, from: a.from });
  const params = { prec, party: a.party, rung: t(`rung_${a.rung}` as MessageKey), level: a.level };
  return t(a.inbound ? 'lock_alert_overdue_in' : 'lock_alert_overdue_out', params);
}

/**
 * Call `idle` once the page has seen no key, pointer, wheel or touch for `minutes()` minutes (read
 * at each check, so a changed setting counts at once). Alerts arriving do not count as use.
 */
export function watchIdle(minutes: () => number, idle: () => void): void {
  let last = Date.now();
  const used = () => {
    last = Date.now();
  };
  for (const type of ['keydown', 'pointerdown', 'pointermove', 'wheel', 'touchstart']) document.addEventListener(type, used, { passive: true, capture: true });
  setInterval(() => {
    if (Date.now() - last >= minutes() * 60_000) {
      last = Date.now();
      idle();
    }
  }, 5000);
}
