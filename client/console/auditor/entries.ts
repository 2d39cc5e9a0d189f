import { formatDuration } from '../common/dom.js';
import { t, type MessageKey } from '../common/i18n.js';
import { problemKey } from './problems.js';

/**
 * Audit entries as the auditor console shows them: parsed once, summarised in one line, and
 * grouped by message to follow it through its rungs. Entries come from the server or a file and
 * are attacker-controlled: nothing here assumes a field exists; verification is separate.
 */
export interface LogEntry {
  index: number;
  type: string;
  at: number;
  /** Undefined when the text is not a JSON object (verification will name it). */
  value?: { type: string; at: number } & Record<string, unknown>;
}

export function parseEntries(texts: readonly unknown[]): LogEntry[] {
  return texts.map((text, index) => {
    try {
      const v = JSON.parse(String(text)) as unknown;
      if (v && typeof v === 'object' && !Array.isArray(v)) {
        const o = v as Record<string, unknown>;
        const type = typeof o.type === 'string' ? o.type : '?';
        const at = typeof o.at === 'number' ? o.at : 0;
        return { index, type, at, value: { ...o, type, at } };
      }
    } catch {
      /* shown as unreadable */
    }
    return { index, type: '?', at: 0 };
  });
}

function obj(x: unknown): Record<string, unknown> {
  return x && typeof x === 'object' ? (x as Record<string, unknown>) : {};
}

function ref(x: unknown): string {
  const o = obj(x);
  return typeof o.party === 'string' ? `${o.party}/${String(o.device ?? '')}` : '';
}

/** The message an entry is about, if any. */
export function entryMessageId(e: LogEntry): string | undefined {
  const v = obj(e.value);
  const id = obj(v.header).id ?? obj(obj(v.receipt).receipt).messageId ?? obj(obj(v.refusal).refusal).messageId ?? v.messageId;
  return typeof id === 'string' ? id : undefined;
}

// Entry types, receipt kinds, rungs and roles are the protocol's words: shown in the interface
// language, kept as they are in data-* attributes and in the CSV.
const TYPE_KEYS: Record<string, MessageKey> = {
  'envelope.accepted': 'type_envelope_accepted',
  'receipt.accepted': 'type_receipt_accepted',
  'refusal.accepted': 'type_refusal_accepted',
  'deadline.missed': 'type_deadline_missed',
  'deadline.met': 'type_deadline_met',
  'deadline.closed': 'type_deadline_closed',
  'link.test': 'type_link_test',
  'link.up': 'type_link_up',
  'link.down': 'type_link_down',
  'device.enrolled': 'type_device_enrolled',
  'device.revoked': 'type_device_revoked',
  login: 'type_login',
  'login.refused': 'type_login_refused',
  'login.refused.suppressed': 'type_login_refused_suppressed',
  'server.start': 'type_server_start',
  'server.stop': 'type_server_stop',
  'audit.alarm': 'type_audit_alarm',
  'store.data-loss.accepted': 'type_data_loss',
  'message.relayed': 'type_message_relayed',
  'receipt.relayed': 'type_receipt_relayed',
  'refusal.relayed': 'type_refusal_relayed',
};
const WORD_KEYS: Record<string, MessageKey> = {
  accepted: 'rung_accepted',
  delivered: 'rung_delivered',
  acknowledged: 'rung_acknowledged',
  'will-comply': 'aud_kind_will_comply',
  'cannot-comply': 'aud_kind_cannot_comply',
  'have-complied': 'ladder_have_complied',
  answered: 'rung_answered',
  complied: 'rung_complied',
  operator: 'aud_role_operator',
  auditor: 'aud_role_auditor',
  archive: 'aud_role_archive',
  FLASH: 'prec_FLASH',
  IMMEDIATE: 'prec_IMMEDIATE',
  PRIORITY: 'prec_PRIORITY',
  ROUTINE: 'prec_ROUTINE',
};

/** An entry type in the interface language (an unknown type, from a newer server, as it is). */
export function entryTypeLabel(type: string): string {
  const k = Object.hasOwn(TYPE_KEYS, type) ? TYPE_KEYS[type] : undefined;
  return k ? t(k) : type;
}

/** A rung, receipt kind, role or precedence in the interface language. */
export function wordLabel(word: unknown): string {
  const w = String(word);
  const k = Object.hasOwn(WORD_KEYS, w) ? WORD_KEYS[w] : undefined;
  return k ? t(k) : w;
}

/** The server's link-test reasons are English sentences: the two it writes are recognised. */
function linkReason(reason: string): string {
  const offline = /^no device of (\S+) online$/.exec(reason);
  if (offline) return t('aud_reason_offline', { party: offline[1]! });
  const silent = /^no answer from (\S+) within (\d+) ms$/.exec(reason);
  if (silent) return t('aud_reason_no_answer', { party: silent[1]!, ms: silent[2]! });
  return t('aud_reason_other');
}

const short = (id: unknown) => String(id).slice(0, 8);

/** One line per entry, in the interface language; message content is never in the log, only metadata. */
export function entrySummary(e: LogEntry): string {
  const v = obj(e.value);
  switch (e.type) {
    case 'envelope.accepted': {
      const hd = obj(v.header);
      const marks = [hd.exercise ? t('exercise_mark') : '', hd.linkTest ? t('type_link_test') : ''].filter(Boolean);
      return [`${ref(hd.from)} → ${String(hd.to)}`, wordLabel(hd.precedence), ...marks, short(hd.id)].join(' · ');
    }
    case 'receipt.accepted': {
      const r = obj(obj(v.receipt).receipt);
      return [wordLabel(r.kind), short(r.messageId), ref(r.by)].join(' · ');
    }
    case 'deadline.missed':
      return t('sum_deadline_missed', { rung: wordLabel(v.rung), prec: wordLabel(v.precedence), id: short(v.messageId), late: formatDuration(Number(v.lateMs) || 0), level: String(v.level) });
    case 'deadline.met':
      return t('sum_deadline_met', {
        rung: wordLabel(v.rung),
        prec: wordLabel(v.precedence),
        id: short(v.messageId),
        state: v.late === true ? t('sum_late', { late: formatDuration(Number(v.lateMs) || 0) }) : t('sum_in_time'),
      });
    case 'link.test':
    case 'link.up':
    case 'link.down':
      return [
        `${String(v.from)} → ${String(v.to)}`,
        v.ok ? t('test_ok') : t('test_failed'),
        v.roundTripMs === undefined ? '' : `${t('rep_round_trip')} ${t('rep_ms', { n: String(v.roundTripMs) })}`,
        typeof v.reason === 'string' ? linkReason(v.reason) : '',
      ]
        .filter(Boolean)
        .join(' · ');
    case 'device.enrolled': {
      const c = obj(obj(v.certificate).cert);
      return `${ref(c)} (${wordLabel(c.role)})`;
    }
    case 'device.revoked':
      return ref(obj(v.revocation).revocation);
    case 'login':
      return v.role === undefined ? ref(v) : `${ref(v)} (${wordLabel(v.role)})`;
    case 'login.refused':
      return `${ref(v)} · ${t(problemKey(String(v.code)))}`;
    case 'login.refused.suppressed':
      return t('sum_refused_suppressed', { n: String(v.count), who: v.by === 'device' ? ref(v) : t('sum_by_address') });
    case 'server.start':
      return t('sum_server_start', { hash: short(v.agreement) });
    case 'audit.alarm': {
      // The reason is "party/device: HL_ERR_…: text" (server/plugins/audit.ts); the code says what happened.
      const m = /^(\S+): (HL_ERR_[A-Z0-9_]+): /.exec(String(v.reason));
      return m ? `${m[1]!} · ${t(problemKey(m[2]!))}` : `${String(v.party)} · ${t('problem_other')}`;
    }
    case 'store.data-loss.accepted':
      return t('sum_data_loss', { n: Array.isArray(v.problems) ? v.problems.length : 0 });
    default:
      return ref(v);
  }
}

export interface TrailStep {
  /** The rung or event as the protocol names it (kept in data-step). */
  step: string;
  /** The same in the interface language. */
  label: string;
  entry: LogEntry;
}

/** The entries of one message in log order, each named by the rung or event it records. */
export function trailOf(entries: readonly LogEntry[], messageId: string): TrailStep[] {
  const out: TrailStep[] = [];
  for (const e of entries) {
    if (entryMessageId(e) !== messageId) continue;
    const v = obj(e.value);
    const step =
      e.type === 'envelope.accepted'
        ? 'accepted'
        : e.type === 'receipt.accepted'
          ? String(obj(obj(v.receipt).receipt).kind)
          : e.type.startsWith('deadline.')
            ? `${e.type} (${String(v.rung)})`
            : e.type;
    const label = e.type === 'envelope.accepted' || e.type === 'receipt.accepted' ? wordLabel(step) : e.type.startsWith('deadline.') ? `${entryTypeLabel(e.type)} (${wordLabel(v.rung)})` : entryTypeLabel(e.type);
    out.push({ step, label, entry: e });
  }
  return out;
}
