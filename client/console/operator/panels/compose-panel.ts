import { PRECEDENCES, type Precedence, type SecurityLabel } from '../../../../shared/protocol/schemas.js';
import { labelName, makeLabel } from '../../../../shared/protocol/labels.js';
import { h, replace } from '../../common/dom.js';
import { LANGUAGES, language, t, type MessageKey } from '../../common/i18n.js';
import type { OperatorContext, Panel } from '../context.js';
import { errorCode, errorKey } from '../../common/error-text.js';
import type { ReplyTarget } from './messages-panel.js';

/** The compose form; `startReply` makes the next message a reply (the envelope's `replyTo`). */
export interface ComposePanel extends Panel {
  startReply(target: ReplyTarget): void;
}
import { trustOf } from './peers-panel.js';
import { attachmentsOf, cataloguePicker, labelPicker } from './content-view.js';
import type { Drafts } from './drafts.js';

/**
 * The compose form. Its fields are made once, so that a redraw (a language change, a directory
 * refresh) keeps what is typed. Nothing is sent by a key press: Enter in a one-line field does
 * nothing, and a FLASH is sent only after a second, explicit confirmation.
 */
export function composePanel(ctx: OperatorContext, drafts: Drafts): ComposePanel {
  const el = h('section', { class: 'card', id: 'compose' });
  const others = ctx.agreement.parties.filter((p) => p.id !== ctx.me.party);
  const toSel = h('select', { id: 'to' }, ...others.map((p) => h('option', { value: p.id }, p.id)));
  const precSel = h('select', { id: 'precedence' }, ...PRECEDENCES.map((p) => h('option', { value: p }, p)));
  precSel.value = 'ROUTINE';
  const subject = h('input', { id: 'subject', maxlength: 200, autocomplete: 'off' });
  const body = h('textarea', { id: 'body', rows: 5 });
  // The text's language, sent as its tag: what the operator wrote in, not the interface language.
  const langSel = h('select', { id: 'text-lang' }, ...Object.entries(LANGUAGES).map(([code, name]) => h('option', { value: code }, name)));
  langSel.value = language();
  const exercise = h('input', { type: 'checkbox', id: 'exercise' });
  // The security label (PROTOCOL.md "Security labels"), when the agreement defines labels: a
  // classification ("no label" first) and its caveats, by the agreement's codes.
  const labels = ctx.agreement.labels;
  const classSel = h('select', { id: 'label-class' }, h('option', { value: '' }), ...(labels?.classifications ?? []).map((c) => h('option', { value: c.code }, c.code)));
  const caveatBoxes = (labels?.caveats ?? []).map((c) => h('input', { type: 'checkbox', class: 'label-caveat', value: c.code }) as HTMLInputElement);
  const chosenLabel = (): SecurityLabel | undefined => makeLabel(classSel.value || undefined, classSel.value ? caveatBoxes.filter((b) => b.checked).map((b) => b.value) : []);
  const files = h('input', { type: 'file', id: 'attach', multiple: true });
  const picker = cataloguePicker(ctx);
  // A draft survives a reload: the fields come back as they were left, and are stored as typed.
  const d = drafts.initial;
  /** Shown until the restored draft is sent, so that nobody mistakes it for a new message. */
  let restored = d !== undefined;
  if (d) {
    if (d.to && others.some((p) => p.id === d.to)) toSel.value = d.to;
    if (d.precedence && (PRECEDENCES as readonly string[]).includes(d.precedence)) precSel.value = d.precedence;
    if (d.lang && d.lang in LANGUAGES) langSel.value = d.lang;
    subject.value = d.subject ?? '';
    body.value = d.body ?? '';
    exercise.checked = d.exercise === true;
    if (d.labelClass && Array.from(classSel.options).some((o) => o.value === d.labelClass)) classSel.value = d.labelClass;
    for (const b of caveatBoxes) b.checked = d.labelCaveats?.includes(b.value) === true;
  }
  // data-draft says whether what the form shows is stored yet ('pending', 'saved').
  let requested = 0;
  const keep = () => {
    const mine = ++requested;
    el.dataset.draft = 'pending';
    const labelDraft = { labelClass: classSel.value, labelCaveats: caveatBoxes.filter((b) => b.checked).map((b) => b.value) };
    drafts.save({ to: toSel.value, precedence: precSel.value, subject: subject.value, body: body.value, lang: langSel.value, exercise: exercise.checked, ...labelDraft }, () => {
      if (mine === requested) el.dataset.draft = 'saved';
    });
  };
  for (const field of [toSel, precSel, subject, body, langSel, exercise, classSel, ...caveatBoxes]) {
    field.addEventListener('input', keep);
    field.addEventListener('change', keep);
  }
  let composeError = '';
  /** A FLASH waiting for its confirmation. */
  let confirming = false;
  /** The message this one answers, if it is a reply. */
  let replyTo: ReplyTarget | undefined;

  const send = () => {
    const code = picker?.value || undefined;
    const label = chosenLabel();
    attachmentsOf(files.files)
      .then((attachments) => {
        const text = { body: body.value, lang: langSel.value, ...(subject.value ? { subject: subject.value } : {}), ...(code ? { code } : {}), ...(attachments ? { attachments } : {}) };
        return ctx.client
          .send({ to: toSel.value, precedence: precSel.value as Precedence, exercise: exercise.checked, ...text, ...(replyTo ? { replyTo: replyTo.id } : {}), ...(label === undefined ? {} : { label }) })
          .then(({ id }) => ({ id, text }));
      })
      .then(async ({ id, text }) => {
        composeError = '';
        ctx.data.value.texts[id] = text;
        await ctx.saveNote(id);
        subject.value = '';
        body.value = '';
        exercise.checked = false;
        classSel.value = '';
        for (const b of caveatBoxes) b.checked = false;
        files.value = '';
        if (picker) picker.value = '';
        replyTo = undefined;
        // The next message starts from the least urgent precedence, in the interface language.
        precSel.value = 'ROUTINE';
        langSel.value = language();
        // Sent (or held in the outbox): the draft is gone from storage too.
        requested++;
        restored = false;
        await drafts.clear();
        el.dataset.draft = 'cleared';
        draw();
        ctx.markOutbox(id);
      })
      .catch((err: unknown) => {
        composeError = t('send_failed', { error: t(errorKey(errorCode(err))) });
        draw();
      });
  };

  const draw = () => {
    // A ministry's name is written in the agreement in one language (English in practice): the
    // English interface shows it with the party's id, the others the id alone, which both sides
    // use on the wire and in the audit log.
    for (const opt of Array.from(toSel.options)) {
      const party = others.find((p) => p.id === opt.value)!;
      opt.textContent = language() === 'en' ? `${party.name} (${party.id})` : party.id;
    }
    for (const opt of Array.from(precSel.options)) opt.textContent = t(`prec_${opt.value as Precedence}` as MessageKey);
    for (const opt of Array.from(classSel.options)) {
      const entry = labels?.classifications.find((c) => c.code === opt.value);
      opt.textContent = entry ? labelName(entry, language()) : t('label_none');
    }
    if (picker) labelPicker(ctx, picker);
    const untrusted = trustOf(ctx) !== 'ok';
    const blocked = untrusted || ctx.live.elsewhere;
    const confirm = confirming
      ? h(
          'div',
          { class: 'warning', role: 'alertdialog', id: 'flash-confirm', 'aria-labelledby': 'flash-confirm-text' },
          h('p', { id: 'flash-confirm-text' }, t('flash_confirm', { to: toSel.selectedOptions[0]?.textContent ?? toSel.value })),
          h(
            'div',
            { class: 'row' },
            h('button', { type: 'button', id: 'confirm-flash', class: 'danger', onclick: () => {
              confirming = false;
              send();
            } }, t('send_flash')),
            h('button', { type: 'button', id: 'cancel-flash', class: 'secondary', onclick: () => {
              confirming = false;
              draw();
              precSel.focus();
            } }, t('cancel')),
          ),
        )
      : null;
    const form = h(
      'form',
      { id: 'compose-form' },
      h('h2', {}, t('compose')),
      restored ? h('p', { class: 'notice small', id: 'draft-restored' }, t('draft_restored')) : null,
      replyTo
        ? h(
            'p',
            { class: 'notice small', id: 'replying-to', 'data-reply-to': replyTo.id },
            t('replying_to', { from: replyTo.from, subject: replyTo.subject }),
            ' ',
            h('button', { type: 'button', class: 'secondary', id: 'reply-cancel', onclick: () => {
              replyTo = undefined;
              draw();
              body.focus();
            } }, t('reply_cancel')),
          )
        : null,
      h('label', {}, t('to'), toSel),
      h('label', {}, t('precedence'), precSel),
      h('label', {}, t('subject'), subject),
      picker ? h('label', {}, t('catalogue_pick'), picker) : null,
      h('label', {}, t('body'), body),
      h('label', {}, t('attach_files'), files),
      h('label', {}, t('text_language'), langSel),
      h('label', { class: 'check' }, exercise, ' ', t('exercise')),
      labels === undefined
        ? null
        : h(
            'fieldset',
            { id: 'compose-label' },
            h('label', {}, t('label_classification'), classSel),
            caveatBoxes.length === 0
              ? null
              : h('div', { class: 'row', role: 'group', 'aria-label': t('label_caveats') }, t('label_caveats'), ...caveatBoxes.map((b, i) => h('label', { class: 'check' }, b, ' ', labelName(labels.caveats[i]!, language())))),
          ),
      confirm ?? h('button', { type: 'submit', id: 'send', disabled: blocked }, t('send')),
      untrusted ? h('p', { class: 'warning small', id: 'send-blocked' }, t('send_blocked')) : ctx.live.elsewhere ? h('p', { class: 'notice small', id: 'send-elsewhere' }, t('send_elsewhere')) : null,
      composeError ? h('p', { class: 'error', role: 'alert', id: 'send-error' }, composeError) : null,
    );
    // Enter in a one-line field would submit the form (the browser's implicit submission): a
    // half-written FLASH went out that way. Only the Send button sends.
    form.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && ev.target instanceof HTMLInputElement) ev.preventDefault();
    });
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      // With a catalogue entry picked, the free text is optional.
      if (trustOf(ctx) !== 'ok' || ctx.live.elsewhere || (body.value.trim() === '' && !picker?.value)) return;
      if (precSel.value === 'FLASH') {
        confirming = true;
        draw();
        el.querySelector<HTMLButtonElement>('#cancel-flash')?.focus();
        return;
      }
      send();
    });
    replace(el, form);
  };
  const startReply = (target: ReplyTarget) => {
    replyTo = target;
    if (Array.from(toSel.options).some((o) => o.value === target.to)) toSel.value = target.to;
    draw();
    body.focus();
  };
  return { el, draw, startReply };
}
