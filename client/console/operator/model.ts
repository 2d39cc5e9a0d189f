import { fingerprint } from '../../../shared/crypto/keys.js';
import { fromBase64 } from '../../../shared/encoding/base64.js';
import type { Agreement, DeviceCertBody, EnvelopeHeader, Plaintext, Precedence, ReceiptBody } from '../../../shared/protocol/schemas.js';
import { dueAt } from '../../../shared/protocol/deadlines.js';
import type { ClientState, InboxRecord, OutboxItem, SentRecord } from '../../storage/client-storage.js';
import type { LinkPairStatus, LinkTestResult } from '../../../shared/protocol/status.js';
import type { Rung } from '../../../shared/protocol/frames.js';

/**
 * The operator console's view model, computed from the client's stored state and the console's
 * own sealed data. Pure: the DOM code only draws what these functions return.
 */

export type OutRung = 'sent' | 'accepted' | 'relayed' | 'delivered' | 'acknowledged';
/**
 * A sent message's ladder. `relayed` (the addressee's relay stored it: PROTOCOL.md "The
 * relay-to-relay link") is a rung only where the message crosses two relays ({@link crossesRelays});
 * on a shared relay there is no such hop and the ladder leaves it out.
 */
export const OUT_RUNGS: readonly OutRung[] = ['sent', 'accepted', 'relayed', 'delivered', 'acknowledged'];

/**
 * Whether a message from `from` to `to` goes through two relays: each party is served by its own
 * relay (an entry in the agreement's `relays`) or by the shared one (no entry), and the hop between
 * two different relays is the `relayed` rung.
 */
export function crossesRelays(agreement: Agreement, from: string, to: string): boolean {
  const relayOf = (party: string) => (agreement.relays?.some((r) => r.party === party) ? party : undefined);
  return relayOf(from) !== relayOf(to);
}

/** The rungs of the ladder of a message from `from` to `to`. */
export function outRungs(agreement: Agreement, from: string, to: string): readonly OutRung[] {
  return crossesRelays(agreement, from, to) ? OUT_RUNGS : OUT_RUNGS.filter((r) => r !== 'relayed');
}

export interface MessageText {
  subject?: string;
  body: string;
  lang: string;
  /** A catalogue code (PROTOCOL.md "Catalogue"): shown from this console's agreement. */
  code?: string;
  /** The attachments, as received (PROTOCOL.md "Attachments"). */
  attachments?: NonNullable<Plaintext['attachments']>;
  /** The message this one translates (its header's `translationOf`), and who translated it. */
  translationOf?: { id: string; envelopeHash: string };
  translator?: string;
}

/** What the console keeps besides the client state, sealed under the data key. */
export interface ConsoleData {
  v: 1;
  agreement?: Agreement;
  texts: Record<string, MessageText>;
  /** When the server accepted each inbox message (the deadlines run from it). */
  inboxAcceptedAt: Record<string, number>;
  /** Inbox messages a colleague on the same watch acknowledged (their signed receipt, verified). */
  ackedByColleague: Record<string, { by: string; at: number }>;
  /** Peer certificate identities the operator confirmed by comparing fingerprints. */
  confirmed: string[];
  /** Recent events, newest first. */
  events: ConsoleEvent[];
  /** Whether this device acts as its party's link-test agent (the operator's switch). */
  testAgent?: boolean;
  /** Audit alarms not yet dismissed by the operator, newest first (absent in data stored before alarms existed). */
  alarms?: AuditAlarmRecord[];
  /** Rungs the server judged late (`deadline.met` with `late`), by message id (absent in data stored before). */
  late?: Record<string, LateRungs>;
  /** When the addressee's relay stored each sent message (`message.relayed`), by id (absent in data stored before). */
  relayed?: Record<string, number>;
}

/** How late each rung of a message was reached, in milliseconds, as the server judged it. */
export type LateRungs = Partial<Record<DeadlineRung, number>>;
export type DeadlineRung = Rung;

/**
 * What the console keeps per message, stored as one sealed record per message (the maps of
 * {@link ConsoleData} it fills are kept out of the console's single data record, which would
 * otherwise grow with every message and be rewritten whole on each).
 */
export interface MessageNote {
  text?: MessageText;
  acceptedAt?: number;
  ackedByColleague?: { by: string; at: number };
  late?: LateRungs;
  /** When the addressee's relay stored it (two-relay deployments). */
  relayedAt?: number;
}

/** The note of message `id` from the maps of `data`. */
export function noteOf(data: ConsoleData, id: string): MessageNote {
  const text = data.texts[id];
  const acceptedAt = data.inboxAcceptedAt[id];
  const acked = data.ackedByColleague[id];
  const late = data.late?.[id];
  const relayedAt = data.relayed?.[id];
  return {
    ...(text ? { text } : {}),
    ...(acceptedAt === undefined ? {} : { acceptedAt }),
    ...(acked ? { ackedByColleague: acked } : {}),
    ...(late ? { late } : {}),
    ...(relayedAt === undefined ? {} : { relayedAt }),
  };
}

/** Put a stored note back into the maps of `data`. */
export function applyNote(data: ConsoleData, id: string, note: MessageNote): void {
  if (note.text) data.texts[id] = note.text;
  if (note.acceptedAt !== undefined) data.inboxAcceptedAt[id] = note.acceptedAt;
  if (note.ackedByColleague) data.ackedByColleague[id] = note.ackedByColleague;
  if (note.late) (data.late ??= {})[id] = note.late;
  if (note.relayedAt !== undefined) (data.relayed ??= {})[id] = note.relayedAt;
}

/** The ids that have a note in `data`. */
export function notedIds(data: ConsoleData): string[] {
  return [...new Set([...Object.keys(data.texts), ...Object.keys(data.inboxAcceptedAt), ...Object.keys(data.ackedByColleague), ...Object.keys(data.late ?? {}), ...Object.keys(data.relayed ?? {})])];
}

/** `data` as its single record stores it: without the per-message maps. */
export function withoutNotes(data: ConsoleData): ConsoleData {
  return { ...data, texts: {}, inboxAcceptedAt: {}, ackedByColleague: {}, late: {}, relayed: {} };
}

/** The per-message maps of `current` put into `stored` (another tab's save of the single record). */
export function withNotesOf(current: ConsoleData, stored: ConsoleData): ConsoleData {
  return { ...stored, texts: current.texts, inboxAcceptedAt: current.inboxAcceptedAt, ackedByColleague: current.ackedByColleague, late: current.late ?? {}, relayed: current.relayed ?? {} };
}

/** Record that rung `rung` of message `id` was reached `lateMs` after its deadline. */
export function markLate(data: ConsoleData, id: string, rung: DeadlineRung, lateMs: number): void {
  const late = (data.late ??= {});
  late[id] = { ...late[id], [rung]: lateMs };
}

/** Record that the addressee's relay stored message `id` at `at` (the first report counts). */
export function markRelayed(data: ConsoleData, id: string, at: number): void {
  const relayed = (data.relayed ??= {});
  relayed[id] ??= at;
}

/** An `audit.alarm` as the console keeps it until the operator dismisses it. */
export interface AuditAlarmRecord {
  at: number;
  party: string;
  reason: string;
  /** The code of an alarm raised on this device (the relayed ones carry it in `reason`). */
  code?: string;
}

export const MAX_ALARMS = 20;

/**
 * The alarms with `alarm` added, newest first: the same alarm seen twice (a reconnection
 * redelivers it) is kept once, and the oldest fall off beyond {@link MAX_ALARMS}.
 */
export function addAlarm(alarms: readonly AuditAlarmRecord[] | undefined, alarm: AuditAlarmRecord): AuditAlarmRecord[] {
  const list = alarms ?? [];
  if (list.some((a) => a.at === alarm.at && a.party === alarm.party && a.reason === alarm.reason)) return [...list];
  return [alarm, ...list].sort((a, b) => b.at - a.at).slice(0, MAX_ALARMS);
}

/** The last link test shown: the newer of what the console saw and what the server reports. */
export interface LastTest {
  ok: boolean;
  at: number;
  roundTripMs?: number;
}

/** Every ordered pair with this party, in a fixed order; one the server has no test for yet is 'unknown'. */
export function linkPairs(agreement: Agreement, me: { party: string }, links: readonly LinkPairStatus[]): LinkPairStatus[] {
  return agreement.parties
    .filter((x) => x.id !== me.party)
    .flatMap((x) => [
      [me.party, x.id],
      [x.id, me.party],
    ] as const)
    .map(([from, to]) => links.find((l) => l.from === from && l.to === to) ?? { from, to, status: 'unknown' as const });
}

/** The newest of `current` and the tests in `links` (a link event or a status answer). */
export function latestTest(current: LastTest | undefined, results: readonly (LinkTestResult | LastTest | undefined)[]): LastTest | undefined {
  let best = current;
  for (const r of results) {
    if (r && (!best || r.at > best.at)) best = { ok: r.ok, at: r.at, ...(r.roundTripMs === undefined ? {} : { roundTripMs: r.roundTripMs }) };
  }
  return best;
}

export interface ConsoleEvent {
  at: number;
  /**
   * 'deadline.late': a rung reached after its deadline was missed (`deadline.met` with `late`).
   * 'relayed': the addressee's relay stored a message (`message.relayed`); 'line.down' /
   * 'line.up': the relay-to-relay line (`link.*` with `scope: "relay"`), not a link test.
   */
  kind: 'deadline.missed' | 'deadline.met' | 'deadline.late' | 'deadline.closed' | 'notice' | 'link' | 'alarm' | 'error' | 'relayed' | 'line.down' | 'line.up';
  params: Record<string, string | number>;
}

export const MAX_EVENTS = 50;

export function initialConsoleData(): ConsoleData {
  return { v: 1, texts: {}, inboxAcceptedAt: {}, ackedByColleague: {}, confirmed: [], events: [], alarms: [], late: {}, relayed: {} };
}

export interface InboxRow {
  id: string;
  header: EnvelopeHeader;
  text?: MessageText;
  acceptedAt: number;
  /** Only messages addressed to this party are answered here (colleagues' sent copies are not). */
  answerable: boolean;
  acknowledged?: { by: string; at: number };
  /** Absent when nothing more is due. */
  dueAt?: number;
  /** Rungs reached late, as the server judged them. */
  late: LateRungs;
  /** The sender's certificate was revoked at this time, after the relay accepted the message. */
  senderRevokedAt?: number;
  /** The later rungs of the ladder this device gave (will-comply, cannot-comply and its reason, have-complied). */
  answers?: InboxRecord['answers'];
}

/** What an outbox row shows of its header (a held message has no envelope yet: these come from its draft). */
/** A sent message's header; a held message (not sealed yet) has no sender device or seq of its own yet. */
export type OutHeader = Pick<EnvelopeHeader, 'id' | 'to' | 'precedence' | 'sentAt' | 'exercise' | 'replyTo' | 'label'> & Partial<Pick<EnvelopeHeader, 'from' | 'seq'>>;

export interface OutboxRow {
  id: string;
  header: OutHeader;
  text?: MessageText;
  /** 'held': not sealed, waiting for the operator to confirm the keys of {@link OutboxRow.held}. */
  rung: OutRung | 'held';
  /** The devices (`party/device`) whose new or changed keys hold the message. */
  held?: string[];
  /**
   * When each rung was reached, as far as known here: sealed, accepted by the relay, stored by the
   * addressee's relay (two relays), first signed receipt of each kind.
   */
  rungAt: Partial<Record<OutRung, number>>;
  acceptedAt?: number;
  /** Verified receipts by rung: who signed, when, and when the signer was revoked since, if it was. */
  receipts: { kind: string; by: string; at: number; signerRevokedAt?: number; reason?: string }[];
  dueAt?: number;
  /** Rungs reached late, as the server judged them. */
  late: LateRungs;
}

export function inboxRows(state: ClientState, data: ConsoleData, agreement: Agreement, me: { party: string }): InboxRow[] {
  const rows: InboxRow[] = [];
  for (const [id, rec] of Object.entries(state.inbox)) {
    const row = inboxRow(id, rec, data, agreement, me);
    if (row) rows.push(row);
  }
  return rows.sort((a, b) => b.acceptedAt - a.acceptedAt);
}

/** One inbox message's row, or undefined for what is not shown as a message (a link test). */
export function inboxRow(id: string, rec: InboxRecord, data: ConsoleData, agreement: Agreement, me: { party: string }): InboxRow | undefined {
  // Link tests are answered automatically and shown as the link status, not as messages.
  if (rec.header.linkTest) return undefined;
  const acceptedAt = data.inboxAcceptedAt[id] ?? rec.receivedAt;
  const answerable = rec.header.to === me.party;
  const acknowledged =
    rec.acknowledgedAt !== undefined ? { by: 'me', at: rec.acknowledgedAt } : data.ackedByColleague[id];
  const text = data.texts[id];
  return {
    id,
    header: rec.header,
    ...(text ? { text } : {}),
    acceptedAt,
    answerable,
    ...(acknowledged ? { acknowledged } : {}),
    ...(answerable && !acknowledged ? { dueAt: dueAt(agreement.deadlines, rec.header.precedence, 'acknowledged', acceptedAt) } : {}),
    late: data.late?.[id] ?? {},
    ...(rec.senderRevokedAt === undefined ? {} : { senderRevokedAt: rec.senderRevokedAt }),
    ...(rec.answers === undefined ? {} : { answers: rec.answers }),
  };
}

export function outboxRows(state: ClientState, data: ConsoleData, agreement: Agreement): OutboxRow[] {
  const rows: OutboxRow[] = [];
  for (const item of Object.values(state.outbox)) {
    // A message whose receipt came before its `accepted` has its sent record already: one row, that one.
    if (item.kind !== 'receipt' && item.kind !== 'refusal' && state.sent[item.id]) continue;
    const row = pendingRow(item, data, agreement);
    if (row) rows.push(row);
  }
  for (const [id, rec] of Object.entries(state.sent)) {
    const row = sentRow(id, rec, data, agreement);
    if (row) rows.push(row);
  }
  return rows.sort((a, b) => b.header.sentAt - a.header.sentAt);
}

/** The ids of the messages waiting in the outbox (receipts and refusals are not shown). */
export function pendingIds(state: ClientState): string[] {
  return Object.values(state.outbox).flatMap((item) => (item.kind === 'receipt' || item.kind === 'refusal' ? [] : [item.id]));
}

/** The outbox item of message `id`, if it is still waiting for the server's `accepted`. */
export function pendingItem(state: ClientState, id: string): OutboxItem | undefined {
  // outboxKey() of a message.
  return state.outbox[`e:${id}`];
}

/** An outbox item not yet accepted by the server: a message's row, undefined for receipts and link tests. */
export function pendingRow(item: OutboxItem, data: ConsoleData, agreement: Agreement): OutboxRow | undefined {
  if (item.kind === 'held') {
    if (item.draft.linkTest) return undefined;
    const { draft } = item;
    return {
      id: item.id,
      header: { id: item.id, to: draft.to, precedence: draft.precedence, sentAt: item.composedAt, ...(draft.exercise ? { exercise: true } : {}), ...(draft.replyTo === undefined ? {} : { replyTo: draft.replyTo }), ...(draft.label === undefined ? {} : { label: draft.label }) },
      text: data.texts[item.id] ?? draft.plaintext,
      rung: 'held',
      held: item.devices,
      rungAt: {},
      receipts: [],
      // Held, it has not reached the relay: its delivery deadline still runs from when it was composed.
      dueAt: dueAt(agreement.deadlines, draft.precedence, 'delivered', item.composedAt),
      late: data.late?.[item.id] ?? {},
    };
  }
  if (item.kind !== 'envelope' || item.envelope.header.linkTest) return undefined;
  return {
    id: item.id,
    header: item.envelope.header,
    text: data.texts[item.id] ?? item.draft.plaintext,
    rung: 'sent',
    rungAt: { sent: item.envelope.header.sentAt },
    receipts: [],
    dueAt: dueAt(agreement.deadlines, item.draft.precedence, 'delivered', item.composedAt),
    late: data.late?.[item.id] ?? {},
  };
}

/** A message the server accepted, on the highest rung its verified receipts reach. */
export function sentRow(id: string, rec: SentRecord, data: ConsoleData, agreement: Agreement): OutboxRow | undefined {
  if (rec.header.linkTest) return undefined;
  const kinds = new Set(rec.receipts.map((r) => r.kind));
  const relayedAt = data.relayed?.[id];
  // A receipt of the addressee implies the hop between the relays, reported or not yet.
  // Every later rung of the ladder acknowledges too (PROTOCOL.md "Deadlines").
  const acked = ['acknowledged', 'will-comply', 'cannot-comply', 'have-complied'].some((k) => kinds.has(k as ReceiptBody['kind']));
  const rung: OutRung = acked ? 'acknowledged' : kinds.has('delivered') ? 'delivered' : relayedAt !== undefined ? 'relayed' : 'accepted';
  const start = rec.acceptedAt ?? rec.header.sentAt;
  const due = rung === 'acknowledged' ? undefined : dueAt(agreement.deadlines, rec.header.precedence, rung === 'accepted' || rung === 'relayed' ? 'delivered' : 'acknowledged', start);
  const text = data.texts[id];
  const first = (kind: string) => rec.receipts.filter((r) => r.kind === kind).reduce<number | undefined>((m, r) => (m === undefined || r.at < m ? r.at : m), undefined);
  const rungAt: OutboxRow['rungAt'] = { sent: rec.header.sentAt };
  if (rec.acceptedAt !== undefined) rungAt.accepted = rec.acceptedAt;
  if (relayedAt !== undefined) rungAt.relayed = relayedAt;
  for (const kind of ['delivered', 'acknowledged'] as const) {
    const at = first(kind);
    if (at !== undefined) rungAt[kind] = at;
  }
  const answeredAt = ['will-comply', 'cannot-comply', 'have-complied'].map(first).filter((x): x is number => x !== undefined);
  if (answeredAt.length > 0) rungAt.acknowledged = Math.min(rungAt.acknowledged ?? Infinity, ...answeredAt);
  return {
    id,
    header: rec.header,
    ...(text ? { text } : {}),
    rung,
    rungAt,
    ...(rec.acceptedAt === undefined ? {} : { acceptedAt: rec.acceptedAt }),
    receipts: rec.receipts.map((r) => {
      const by = `${r.by.party}/${r.by.device}`;
      const revokedAt = rec.signersRevokedAt?.[by];
      return { kind: r.kind, by, at: r.at, ...(revokedAt === undefined ? {} : { signerRevokedAt: revokedAt }), ...(r.reason === undefined ? {} : { reason: r.reason }) };
    }),
    ...(due === undefined ? {} : { dueAt: due }),
    late: data.late?.[id] ?? {},
  };
}

/** Whether a row holds the FLASH alarm on: an unacknowledged FLASH addressed to this party. */
export function isFlashAlarm(r: InboxRow): boolean {
  return r.answerable && !r.acknowledged && r.header.precedence === ('FLASH' satisfies Precedence);
}

/** An unacknowledged IMMEDIATE addressed to this party: it has a banner of its own, and no alarm. */
export function isImmediateAlert(r: InboxRow): boolean {
  return r.answerable && !r.acknowledged && r.header.precedence === ('IMMEDIATE' satisfies Precedence);
}

/** Unacknowledged FLASH messages addressed to this party: they hold the alarm on. */
export function flashAlarms(rows: readonly InboxRow[]): InboxRow[] {
  return rows.filter(isFlashAlarm);
}

export interface PeerKey {
  identity: string;
  party: string;
  device: string;
  role: string;
  signFingerprint: string;
  boxFingerprint: string;
  confirmed: boolean;
}

/** A certificate's identity for confirmation: any change of key (or role) is a new identity. */
export function certIdentity(c: DeviceCertBody): string {
  return `${c.party}/${c.device}/${c.role}/${c.signKey}/${c.boxKey}`;
}

/** The devices of other parties that messages are encrypted to (operators and archives). */
export function peerKeys(directory: readonly DeviceCertBody[], me: { party: string }, confirmed: readonly string[]): PeerKey[] {
  return directory
    .filter((c) => c.party !== me.party && (c.role === 'operator' || c.role === 'archive'))
    .map((c) => ({
      identity: certIdentity(c),
      party: c.party,
      device: c.device,
      role: c.role,
      signFingerprint: fingerprint(fromBase64(c.signKey)),
      boxFingerprint: fingerprint(fromBase64(c.boxKey)),
      confirmed: confirmed.includes(certIdentity(c)),
    }))
    .sort((a, b) => (a.party + a.device).localeCompare(b.party + b.device));
}

/**
 * 'ok' when every peer key is confirmed; 'unconfirmed' before the first confirmation; 'changed'
 * when a key differs from what was confirmed. Sending is allowed only when 'ok'.
 */
export function peerTrust(keys: readonly PeerKey[], confirmed: readonly string[]): 'ok' | 'unconfirmed' | 'changed' | 'none' {
  if (keys.length === 0) return 'none';
  if (keys.every((k) => k.confirmed)) return 'ok';
  return confirmed.length === 0 ? 'unconfirmed' : 'changed';
}

/**
 * The devices of other parties among `recipients` whose keys the operator has not confirmed:
 * a message must not be sealed to them (HotlineClient's `approveRecipients`). Link tests carry no
 * content and go regardless, so that the link can be tested before keys are compared.
 */
export function unconfirmedRecipients(recipients: readonly DeviceCertBody[], me: { party: string }, confirmed: readonly string[]): DeviceCertBody[] {
  return recipients.filter((c) => c.party !== me.party && !confirmed.includes(certIdentity(c)));
}

const DTG_MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'] as const;

/**
 * The date-time group of `ms` in UTC, as signal messages write it: DDHHMMZ MON YY
 * (e.g. `041930Z DEC 26`). The same in every interface language, so that both sides quote it alike.
 */
export function dateTimeGroup(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}Z ${DTG_MONTHS[d.getUTCMonth()]} ${p(d.getUTCFullYear() % 100)}`;
}

/** Unacknowledged messages to this party by precedence, most urgent first: the tab title's prefix, e.g. `(FLASH 1 · IMMEDIATE 2)`. */
export function unreadTitle(open: Iterable<Precedence>): string {
  const counts = new Map<Precedence, number>();
  for (const p of open) counts.set(p, (counts.get(p) ?? 0) + 1);
  const parts = (['FLASH', 'IMMEDIATE', 'PRIORITY', 'ROUTINE'] as const).filter((p) => counts.has(p)).map((p) => `${p} ${counts.get(p)}`);
  return parts.length === 0 ? '' : `(${parts.join(' · ')}) `;
}
