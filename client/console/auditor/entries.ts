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
  const id = obj(v.header).id ?? obj(obj(v.receipt).receipt).messageId ?? v.messageId;
  return typeof id === 'string' ? id : undefined;
}

/** One line per entry; message content is never in the log, only metadata. */
export function entrySummary(e: LogEntry): string {
  const v = obj(e.value);
  switch (e.type) {
    case 'envelope.accepted': {
      const hd = obj(v.header);
      return `${ref(hd.from)} → ${String(hd.to)} ${String(hd.precedence)}${hd.exercise ? ' EXERCISE' : ''}${hd.linkTest ? ' link test' : ''} · ${String(hd.id).slice(0, 8)}`;
    }
    case 'receipt.accepted': {
      const r = obj(obj(v.receipt).receipt);
      return `${String(r.kind)} · ${String(r.messageId).slice(0, 8)} · ${ref(r.by)}`;
    }
    case 'deadline.missed':
    case 'deadline.met':
      return `${String(v.rung)} · ${String(v.precedence)} · ${String(v.messageId).slice(0, 8)}${v.level === undefined ? '' : ` · level ${String(v.level)}`}`;
    case 'link.test':
    case 'link.up':
    case 'link.down':
      return `${String(v.from)} → ${String(v.to)} ${v.ok ? 'ok' : 'failed'}${v.roundTripMs === undefined ? '' : ` · ${String(v.roundTripMs)} ms`}${v.reason ? ` · ${String(v.reason)}` : ''}`;
    case 'device.enrolled': {
      const c = obj(obj(v.certificate).cert);
      return `${ref(c)} (${String(c.role)})`;
    }
    case 'device.revoked':
      return ref(obj(v.revocation).revocation);
    default: {
      const who = ref(v);
      return who || Object.keys(v).filter((k) => !['idx', 'prev', 'type', 'at'].includes(k)).join(', ');
    }
  }
}

export interface TrailStep {
  step: string;
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
    out.push({ step, entry: e });
  }
  return out;
}
