import { formatDuration, formatTime, h } from '../../common/dom.js';
import { t, type MessageKey } from '../../common/i18n.js';
import { KeyedRows } from '../../common/keyed-rows.js';
import { errParams, type OperatorContext } from '../context.js';
import { OUT_RUNGS, type OutboxRow, type OutRung } from '../model.js';

/**
 * The sender's side of a message: its ladder with the time each rung was reached, a held
 * message's reason and its Discard (with a confirmation), and the banner of an overdue FLASH.
 * Where the message crosses two relays (one per party), the ladder has the `relayed` rung between
 * `accepted` and `delivered`: when the addressee's relay stored it (`message.relayed`).
 */

/** The first 8 characters of a message id: how Events cite it, so the row and banner show it too. */
export const shortId = (id: string): string => id.slice(0, 8);

/**
 * A rung the server judged late says so, and by how much, in words (not by colour alone). Rounded
 * up to the second: half a second late reads "late by 00:01", never "late by 00:00".
 */
export const lateMark = (lateMs: number | undefined): HTMLElement | null =>
  lateMs === undefined ? null : h('span', { class: 'late', 'data-late-ms': lateMs }, ` ⚠ ${t('late_by', { t: formatDuration(Math.ceil(lateMs / 1000) * 1000) })}`);

/**
 * The outbox ladder: each of `rungs` by name (done ones marked ✔, not by colour alone), with its
 * time and lateness. A rung below the one reached is done even without a time of its own (a
 * `delivered` receipt implies the hop between the relays whose report has not come yet).
 */
export function ladder(r: OutboxRow, rungs: readonly OutRung[] = OUT_RUNGS): HTMLElement {
  const reached = r.rung === 'held' ? -1 : rungs.indexOf(r.rung);
  return h(
    'ol',
    { class: 'ladder' },
    ...rungs.map((x, i) => {
      const late = x === 'delivered' || x === 'acknowledged' ? r.late[x] : undefined;
      const at = r.rungAt[x];
      return h(
        'li',
        { class: `${i <= reached ? 'done' : ''}${late === undefined ? '' : ' late'}`, 'data-rung': x, ...(at === undefined ? {} : { 'data-at': at }) },
        t(`rung_${x}` as MessageKey),
        lateMark(late),
        at === undefined ? null : h('time', { class: 'rung-at', datetime: new Date(at).toISOString() }, formatTime(at)),
      );
    }),
  );
}

/**
 * A held message's reason and Discard button. Discarding asks first (in the row); `asking` holds
 * the ids whose confirmation is open, kept across redraws of the row.
 */
export class HeldCells {
  readonly #ctx: OperatorContext;
  readonly #asking = new Set<string>();

  constructor(ctx: OperatorContext) {
    this.#ctx = ctx;
  }

  /** What the rung cell of a held row shows: the reason (which device's key), and Discard. */
  content(r: OutboxRow): HTMLElement[] {
    const devices = (r.held ?? []).join(', ');
    const subject = r.text ? (r.text.subject ?? r.text.body) : r.id;
    const out = [
      h('span', { class: 'rung-label' }, t('rung_held')),
      h('p', { class: 'held warning small', role: 'status' }, t('held_confirm_key', { devices })),
      h('p', { class: 'small muted' }, t('held_explain')),
    ];
    if (this.#asking.has(r.id)) {
      out.push(
        h(
          'div',
          { class: 'warning discard-confirm', role: 'alertdialog', 'aria-labelledby': `discard-text-${r.id}` },
          h('p', { id: `discard-text-${r.id}` }, t('discard_held_confirm')),
          h(
            'div',
            { class: 'row' },
            h('button', { type: 'button', id: 'confirm-discard', class: 'danger', onclick: () => void this.#discard(r.id) }, t('discard_held_yes')),
            h('button', { type: 'button', id: 'cancel-discard', class: 'secondary', onclick: () => this.#ask(r.id, false) }, t('cancel')),
          ),
        ),
      );
    } else {
      out.push(h('button', { type: 'button', class: 'discard secondary', 'aria-label': t('discard_held_label', { subject }), onclick: () => this.#ask(r.id, true) }, t('discard_held')));
    }
    return out;
  }

  #ask(id: string, open: boolean): void {
    if (open) this.#asking.add(id);
    else this.#asking.delete(id);
    this.#ctx.markOutbox(id);
    // Focus follows the action: onto the question's safe answer, or back to the row's Discard,
    // once the row is drawn again (outbox rows are drawn in batches: wait up to ~2 s of frames).
    const sel = `#outbox tr.msg[data-id="${CSS.escape(id)}"] ${open ? '#cancel-discard' : 'button.discard'}`;
    const before = document.querySelector(sel);
    let frames = 120;
    const tryFocus = () => {
      const target = document.querySelector<HTMLButtonElement>(sel);
      if (target && target !== before) target.focus();
      else if (--frames > 0) requestAnimationFrame(tryFocus);
    };
    requestAnimationFrame(tryFocus);
  }

  async #discard(id: string): Promise<void> {
    this.#asking.delete(id);
    try {
      await this.#ctx.client.discardHeld(id);
    } catch (err) {
      await this.#ctx.addEvent({ at: Date.now(), kind: 'error', params: errParams(err) });
    }
    this.#ctx.markOutbox(id);
    document.getElementById('body')?.focus();
  }
}

/**
 * Seal and send what is held, now that keys may be confirmed (by this tab or another), from the
 * tab that holds the link only. A failure is an Events line; what stays held stays listed.
 */
export function releaseHeld(ctx: OperatorContext): void {
  if (ctx.live.elsewhere) return;
  ctx.client.releaseHeld().then(
    (ids) => {
      for (const id of ids) ctx.markOutbox(id);
    },
    (err: unknown) => void ctx.addEvent({ at: Date.now(), kind: 'error', params: errParams(err) }),
  );
}

/**
 * Banners on the sender's side for each FLASH this console sent whose delivery or
 * acknowledgement deadline has passed: on until that rung is reached, with the subject and the
 * short id that Events cite. Rows tell it what they show; the clock's second shows what fell due.
 */
export class SenderOverdue {
  readonly el = h('div', { id: 'sender-overdue' });
  readonly #rows = new Map<string, OutboxRow>();
  readonly #banners = new KeyedRows(this.el);
  readonly #serverOffset: () => number;

  constructor(serverOffset: () => number) {
    this.#serverOffset = serverOffset;
  }

  /** The outbox row of `id` as drawn now (undefined: gone). */
  update(id: string, r: OutboxRow | undefined): void {
    if (r && r.header.precedence === 'FLASH' && r.dueAt !== undefined && r.rung !== 'acknowledged') this.#rows.set(id, r);
    else this.#rows.delete(id);
    this.#draw(id);
  }

  clear(): void {
    this.#rows.clear();
    this.#banners.clear();
  }

  /** The clock's second. */
  tick(): void {
    for (const id of this.#rows.keys()) this.#draw(id);
    for (const id of [...this.#banners.keys()]) if (!this.#rows.has(id)) this.#banners.delete(id);
  }

  #draw(id: string): void {
    const r = this.#rows.get(id);
    const now = Date.now() + this.#serverOffset();
    if (!r || r.dueAt === undefined || r.dueAt > now) {
      this.#banners.delete(id);
      return;
    }
    // Waiting for delivery (sent, accepted or held) or, once delivered, for the acknowledgement.
    const rung = r.rung === 'delivered' ? 'acknowledged' : 'delivered';
    const existing = this.el.querySelector<HTMLElement>(`.sender-overdue[data-id="${CSS.escape(id)}"]`);
    const words = t(rung === 'delivered' ? 'sender_overdue_delivered' : 'sender_overdue_acknowledged', { to: r.header.to, late: formatDuration(now - r.dueAt) });
    // (A language change clears every banner first, so the words are always in the current language.)
    if (existing?.dataset.rung === rung) {
      // The second ticks: only the words change; the banner is not announced again.
      const w = existing.querySelector('.words');
      if (w) w.textContent = words;
      return;
    }
    const banner = h(
      'div',
      { class: `sender-overdue${r.header.exercise ? ' exercise' : ''}`, role: 'alert', 'data-id': id, 'data-rung': rung },
      r.header.exercise ? h('strong', { class: 'exercise-words' }, t('exercise_banner')) : null,
      h('strong', { class: 'words' }, words),
      r.text ? h('span', { class: 'text', lang: r.text.lang }, ` — ${r.text.subject ?? r.text.body}`) : null,
      h('code', { class: 'msg-id' }, t('msg_id', { id: shortId(id) })),
    );
    this.#banners.put(id, r.header.sentAt, banner);
  }
}
