import { HotlineError } from '../errors.js';
import { fromBase64 } from '../encoding/base64.js';
import type { Plaintext } from './schemas.js';

/**
 * Attachments (PROTOCOL.md "Attachments"): what a sender may attach and how a recipient names
 * the file it saves. Pure: the CLI and the consoles read and write the bytes.
 */

export type Attachment = NonNullable<Plaintext['attachments']>[number];

/** At most this many attachments per message (the plaintext schema says so too). */
export const MAX_ATTACHMENTS = 8;

/**
 * The decoded bytes of all attachments of one message together. Not 48 KiB (the ciphertext
 * limit): base64 in the plaintext and again in the envelope text makes the 61,440-byte envelope
 * limit the binding one, and 30 KiB leaves room for the text and a few dozen recipients.
 */
export const MAX_ATTACHMENT_BYTES = 30 * 1024;

/** The decoded size of one attachment, in bytes. */
export function attachmentSize(a: Attachment): number {
  const pad = a.data.endsWith('==') ? 2 : a.data.endsWith('=') ? 1 : 0;
  return (a.data.length / 4) * 3 - pad;
}

/**
 * Refuse attachments a sender must not seal: more than {@link MAX_ATTACHMENTS}
 * (`HL_ERR_ATTACHMENT_TOO_MANY`) or more than {@link MAX_ATTACHMENT_BYTES} decoded in all
 * (`HL_ERR_ATTACHMENT_TOO_LARGE`).
 *
 * @example
 * checkAttachments([{ name: 'map.png', type: 'image/png', data: toBase64(bytes) }]);
 */
export function checkAttachments(attachments: readonly Attachment[]): void {
  if (attachments.length > MAX_ATTACHMENTS) {
    throw new HotlineError('HL_ERR_ATTACHMENT_TOO_MANY', `${attachments.length} attachments; at most ${MAX_ATTACHMENTS} go with one message`);
  }
  checkAttachmentTotal(attachments.reduce((n, a) => n + attachmentSize(a), 0));
}

/** Refuse `total` decoded attachment bytes over {@link MAX_ATTACHMENT_BYTES} (`HL_ERR_ATTACHMENT_TOO_LARGE`), e.g. from file sizes before reading them. */
export function checkAttachmentTotal(total: number): void {
  if (total > MAX_ATTACHMENT_BYTES) {
    throw new HotlineError('HL_ERR_ATTACHMENT_TOO_LARGE', `the attachments are ${total} bytes in all, ${total - MAX_ATTACHMENT_BYTES} over the limit of ${MAX_ATTACHMENT_BYTES} bytes (30 KiB)`);
  }
}

/** The bytes of an attachment; attacker-controlled data that is not base64 fails as `HL_ERR_ENVELOPE_PLAINTEXT_INVALID`. */
export function attachmentBytes(a: Attachment): Uint8Array {
  try {
    return fromBase64(a.data);
  } catch (cause) {
    throw new HotlineError('HL_ERR_ENVELOPE_PLAINTEXT_INVALID', 'an attachment is not valid base64', { cause });
  }
}

// Device names Windows reserves whatever the extension.
const RESERVED = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;

/**
 * A file name safe to save an attachment under, from its attacker-controlled `name`: the last path
 * segment only, without control characters, separators or characters Windows refuses, not starting
 * with a dot, not a reserved device name, at most 100 characters, never empty; and, when `taken`
 * (lower-cased names already used in the folder) has it, numbered (`report (2).pdf`).
 *
 * @example
 * safeFileName('../../etc/passwd', new Set()); // 'passwd'
 */
export function safeFileName(name: string, taken: ReadonlySet<string>): string {
  let base = name.split(/[\\/]/).pop() ?? '';
  // eslint-disable-next-line no-control-regex
  base = base.replace(/[\u0000-\u001f\u007f<>:"|?*\u202a-\u202e\u2066-\u2069]/g, '_').trim();
  base = base.replace(/^\.+/, '').replace(/[. ]+$/, '');
  if (base === '' || RESERVED.test(base)) base = `attachment${base === '' ? '' : `-${base}`}`;
  if (base.length > 100) {
    const dot = base.lastIndexOf('.');
    const ext = dot > 0 && base.length - dot <= 10 ? base.slice(dot) : '';
    base = base.slice(0, 100 - ext.length) + ext;
  }
  if (!taken.has(base.toLowerCase())) return base;
  const dot = base.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [base.slice(0, dot), base.slice(dot)] : [base, ''];
  for (let i = 2; ; i++) {
    const candidate = `${stem} (${i})${ext}`;
    if (!taken.has(candidate.toLowerCase())) return candidate;
  }
}
