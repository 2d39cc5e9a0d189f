import { fromBase64, toBase64 } from '../../../../shared/encoding/base64.js';
import { attachmentSize, checkAttachments, safeFileName, type Attachment } from '../../../../shared/protocol/attachments.js';
import { catalogueEntry, catalogueText, partyLanguages } from '../../../../shared/protocol/catalogue.js';
import type { EnvelopeHeader, Plaintext } from '../../../../shared/protocol/schemas.js';
import { h } from '../../common/dom.js';
import { LANGUAGES, language, t } from '../../common/i18n.js';
import { errorCode, errorKey } from '../../common/error-text.js';
import type { OperatorContext } from '../context.js';
import type { MessageText } from '../model.js';
import { shortId } from './sender-view.js';

/**
 * What a message carries besides its text, in the operator console (docs/messages.md): the
 * catalogue entry of its code in the operator's language, its attachments with a Save link each,
 * and translations beside the original, which stays the authoritative text.
 */

/** The console's record of a received or sent message's content. */
export function textOf(header: EnvelopeHeader, plaintext: Plaintext): MessageText {
  return {
    body: plaintext.body,
    lang: plaintext.lang,
    ...(plaintext.subject === undefined ? {} : { subject: plaintext.subject }),
    ...(plaintext.code === undefined ? {} : { code: plaintext.code }),
    ...(plaintext.attachments === undefined ? {} : { attachments: plaintext.attachments }),
    ...(header.translationOf ? { translationOf: header.translationOf, translator: `${header.from.party}/${header.from.device}` } : {}),
  };
}

/** Offer an attachment's bytes as a download: never rendered in the page, saved under a safe name. */
function save(a: Attachment): void {
  const url = URL.createObjectURL(new Blob([new Uint8Array(fromBase64(a.data))], { type: 'application/octet-stream' }));
  const link = h('a', { href: url, download: safeFileName(a.name, new Set()) });
  document.body.append(link);
  link.click();
  link.remove();
  // The download has its own copy once started.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** One text: its translation mark, catalogue entry, subject, body and attachments. */
function oneText(ctx: OperatorContext, text: MessageText, role: 'original' | 'translation'): HTMLElement {
  const entry = text.code === undefined ? undefined : catalogueEntry(ctx.agreement, text.code);
  const shown = entry ? catalogueText(entry, [language(), ...partyLanguages(ctx.agreement, ctx.me.party)]) : undefined;
  return h(
    'div',
    { class: `text ${role}`, lang: text.lang, 'data-role': role },
    text.translationOf
      ? h('div', { class: 'tag translation-mark' }, t('translation_of', { lang: text.lang, id: shortId(text.translationOf.id), by: text.translator ?? '' }))
      : null,
    text.code === undefined
      ? null
      : shown
        ? h('div', { class: 'catalogue', 'data-code': text.code, lang: shown.lang }, h('span', { class: 'tag' }, t('catalogue_mark', { code: text.code })), ' ', shown.text)
        : h('div', { class: 'catalogue unknown', 'data-code': text.code }, t('catalogue_unknown', { code: text.code })),
    text.subject ? h('b', {}, text.subject) : null,
    text.body === '' && text.code !== undefined ? null : h('p', {}, text.body),
    text.attachments?.length
      ? h(
          'ul',
          { class: 'attachments small' },
          ...text.attachments.map((a) =>
            h('li', { 'data-name': a.name }, t('attachment_line', { name: a.name, type: a.type, size: attachmentSize(a) }), ' ', h('button', { type: 'button', class: 'secondary save-attachment', onclick: () => save(a) }, t('attachment_save'))),
          ),
        )
      : null,
  );
}

/** The translations this console holds of message `id`, oldest first. */
function translationsOf(ctx: OperatorContext, id: string): MessageText[] {
  return Object.values(ctx.data.value.texts).filter((x) => x.translationOf?.id === id);
}

/**
 * A message's content as the inbox and outbox show it: the original, and beside it (side by side)
 * the translations held of it, each marked; the original is labelled authoritative.
 */
export function contentView(ctx: OperatorContext, text: MessageText | undefined, id: string): HTMLElement {
  if (!text) return h('div', { class: 'text muted' }, '…');
  const translations = text.translationOf ? [] : translationsOf(ctx, id);
  if (translations.length === 0) return oneText(ctx, text, text.translationOf ? 'translation' : 'original');
  return h(
    'div',
    { class: 'side-by-side' },
    h('div', { class: 'column' }, h('div', { class: 'tag authoritative' }, t('original_authoritative')), oneText(ctx, text, 'original')),
    h('div', { class: 'column' }, ...translations.map((x) => oneText(ctx, x, 'translation'))),
  );
}

/** The Translate button of a message and its form (language, text), sent as a translation bound to it. */
export function translateControl(ctx: OperatorContext, id: string, text: MessageText | undefined): HTMLElement | null {
  if (!text || text.translationOf) return null;
  const box = h('details', { class: 'translate', 'data-keep': 'translate' });
  const langSel = h('select', { class: 'translate-lang', 'data-keep': 'translate-lang', 'aria-label': t('text_language') }, ...Object.entries(LANGUAGES).map(([code, name]) => h('option', { value: code }, name)));
  langSel.value = language();
  const area = h('textarea', { class: 'translate-text', 'data-keep': 'translate-text', rows: 3, 'aria-label': t('translate') });
  const error = h('p', { class: 'error small', role: 'alert' });
  const send = () => {
    if (area.value.trim() === '') return area.focus();
    // `to` and precedence come from the original (the outbox sets them).
    ctx.client
      .send({ to: '', precedence: 'ROUTINE', body: area.value, lang: langSel.value, translationOf: id })
      .then(async ({ id: sent }) => {
        ctx.data.value.texts[sent] = { body: area.value, lang: langSel.value, translationOf: { id, envelopeHash: '' }, translator: ctx.key };
        await ctx.saveNote(sent);
        // The row may have been rebuilt since the click (its form carried over): clear the live one.
        for (const live of [box, ...Array.from(document.querySelectorAll<HTMLDetailsElement>(`tr.msg[data-id="${CSS.escape(id)}"] details.translate`))]) {
          live.open = false;
          const text = live.querySelector('textarea');
          if (text) text.value = '';
        }
        ctx.markOutbox(sent);
        ctx.markInbox(id);
        ctx.markOutbox(id);
      })
      .catch((err: unknown) => {
        error.textContent = t('send_failed', { error: t(errorKey(errorCode(err))) });
      });
  };
  box.append(h('summary', { class: 'secondary' }, t('translate')), langSel, area, h('button', { type: 'button', class: 'send-translation', onclick: send }, t('translate_send')), error);
  return box;
}

/** Files picked in the compose form, as attachments, checked against the limits (HL_ERR_ATTACHMENT_*). */
export async function attachmentsOf(files: FileList | null): Promise<Attachment[] | undefined> {
  if (!files || files.length === 0) return undefined;
  const list = await Promise.all(Array.from(files, async (f) => ({ name: f.name.slice(0, 255), type: (f.type || 'application/octet-stream').slice(0, 255), data: toBase64(new Uint8Array(await f.arrayBuffer())) })));
  checkAttachments(list);
  return list;
}

/** The compose form's catalogue picker: none (free text), or an entry, each in the interface language. */
export function cataloguePicker(ctx: OperatorContext): HTMLSelectElement | null {
  const entries = ctx.agreement.catalogue ?? [];
  if (entries.length === 0) return null;
  const sel = h('select', { id: 'catalogue-code' }, h('option', { value: '' }, ''), ...entries.map((e) => h('option', { value: e.code }, e.code)));
  return sel;
}

/** Label the picker's options in the interface language (on every draw). */
export function labelPicker(ctx: OperatorContext, sel: HTMLSelectElement): void {
  for (const opt of Array.from(sel.options)) {
    if (opt.value === '') {
      opt.textContent = t('catalogue_none');
      continue;
    }
    const entry = catalogueEntry(ctx.agreement, opt.value)!;
    opt.textContent = `${opt.value} — ${catalogueText(entry, [language(), ...partyLanguages(ctx.agreement, ctx.me.party)]).text}`;
  }
}
