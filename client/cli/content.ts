import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { HotlineError } from '../../shared/errors.js';
import { toBase64 } from '../../shared/encoding/base64.js';
import { attachmentBytes, attachmentSize, checkAttachments, checkAttachmentTotal, safeFileName, type Attachment } from '../../shared/protocol/attachments.js';
import { catalogueEntry, catalogueText, partyLanguages } from '../../shared/protocol/catalogue.js';
import type { Agreement, EnvelopeHeader, Plaintext } from '../../shared/protocol/schemas.js';

/**
 * What the CLI adds to a message besides its text, and how it shows what it received: attachments
 * (`--attach`, `--save-attachments`), catalogue codes (`--code`) and translations. docs/messages.md.
 */

/** Media types by extension, for the few kinds a hotline carries; anything else is octet-stream. */
const MEDIA_TYPES: Record<string, string> = {
  '.txt': 'text/plain',
  '.pdf': 'application/pdf',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.json': 'application/json',
  '.csv': 'text/csv',
  '.kml': 'application/vnd.google-earth.kml+xml',
  '.gpx': 'application/gpx+xml',
};

/**
 * The files of `--attach`, read and checked against the limits before anything is sealed (the
 * total is counted from the file sizes first, so that a huge file is never read).
 */
export function readAttachments(paths: readonly string[]): Attachment[] {
  let total = 0;
  for (const p of paths) {
    try {
      total += statSync(p).size;
    } catch (cause) {
      throw new HotlineError('HL_ERR_CONFIG_INVALID', `cannot read the attachment ${p} (${(cause as NodeJS.ErrnoException).code ?? 'error'}); check the path`, { cause });
    }
  }
  checkAttachmentTotal(total);
  const attachments = paths.map((p) => ({
    name: basename(p).slice(0, 255),
    type: MEDIA_TYPES[extname(p).toLowerCase()] ?? 'application/octet-stream',
    data: toBase64(readFileSync(p)),
  }));
  checkAttachments(attachments);
  return attachments;
}

/**
 * Save received attachments into `dir` (made if missing) under safe names, never overwriting a
 * file there (created exclusively; a name taken gets a number). Returns the paths, in order.
 */
export function saveAttachments(dir: string, attachments: readonly Attachment[]): string[] {
  mkdirSync(dir, { recursive: true });
  const taken = new Set(readdirSync(dir).map((n) => n.toLowerCase()));
  return attachments.map((a) => {
    const bytes = attachmentBytes(a);
    for (;;) {
      const name = safeFileName(a.name, taken);
      taken.add(name.toLowerCase());
      let fd: number;
      try {
        fd = openSync(join(dir, name), 'wx', 0o600);
      } catch (err) {
        // Made by someone else since the folder was listed: take the next number.
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw err;
      }
      try {
        writeSync(fd, bytes);
      } finally {
        closeSync(fd);
      }
      return join(dir, name);
    }
  });
}

/** Where the reader stands: their agreement (with its catalogue) and their party (its languages). */
export interface ReaderView {
  agreement: Agreement;
  party: string;
}

/** A catalogue code as the reader reads it: the entry in their language from their own agreement, or unknown. */
export function codeView(code: string, view: ReaderView): { code: string; lang?: string; text?: string; unknown?: true } {
  const entry = catalogueEntry(view.agreement, code);
  if (!entry) return { code, unknown: true };
  return { code, ...catalogueText(entry, partyLanguages(view.agreement, view.party)) };
}

/** The JSON members a message's content adds (`listen --json`, `open --json`). */
export function contentJson(header: EnvelopeHeader, plaintext: Plaintext, view?: ReaderView, saved?: readonly string[]): Record<string, unknown> {
  return {
    ...(plaintext.code === undefined ? {} : { code: plaintext.code, ...(view ? { catalogue: codeView(plaintext.code, view) } : {}) }),
    ...(plaintext.attachments === undefined
      ? {}
      : { attachments: plaintext.attachments.map((a, i) => ({ name: a.name, type: a.type, size: attachmentSize(a), ...(saved?.[i] === undefined ? {} : { savedAs: saved[i] }) })) }),
    ...(header.translationOf ? { translationOf: header.translationOf } : {}),
  };
}

/** The lines a message's content adds to its printed form, before and after the text. */
export function contentLines(header: EnvelopeHeader, plaintext: Plaintext, view?: ReaderView, saved?: readonly string[]): { before: string[]; after: string[] } {
  const before: string[] = [];
  const after: string[] = [];
  if (header.translationOf) {
    before.push(`   TRANSLATION (${plaintext.lang}) of ${header.translationOf.id} by ${header.from.party}/${header.from.device}: the original is authoritative`);
  }
  if (plaintext.code !== undefined) {
    const c = view ? codeView(plaintext.code, view) : { code: plaintext.code, unknown: true as const };
    before.push(c.unknown ? `   [${c.code}] unknown code: not in this agreement's catalogue` : `   [${c.code}] ${c.text} (catalogue, ${c.lang})`);
  }
  plaintext.attachments?.forEach((a, i) => {
    // The name is attacker-controlled: shown in JSON quotes, so that control characters cannot forge lines.
    after.push(`   attachment ${JSON.stringify(a.name)} (${JSON.stringify(a.type).slice(1, -1)}, ${attachmentSize(a)} bytes)${saved?.[i] === undefined ? '' : ` saved as ${saved[i]}`}`);
  });
  return { before, after };
}
