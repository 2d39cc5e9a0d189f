import { HotlineError, isHotlineError, type HotlineErrorCode } from '../errors.js';
import { canonicalize } from '../encoding/canonical-json.js';
import { fromBase64 } from '../encoding/base64.js';
import { sha256Hex } from '../crypto/hash.js';
import { envelopeHash } from '../crypto/envelope.js';
import type { Agreement, EnvelopeHeader, SignedReceipt, SignedRefusal } from '../protocol/schemas.js';
import { noteKeyId, parseNote } from './checkpoint.js';
import { logKeyName } from './log-verify.js';

/**
 * Reconciliation of the two relays' audit logs (two-relay deployments, README "Auditing"): every
 * envelope header and receipt that crossed the relay-to-relay link is in both logs, with the same
 * hash. Pure: runs in the CLI and in a browser. It reads the entries as they are (an export that
 * does not verify is still reconciled, so that what is missing is named by message and side);
 * `verifyAuditExport` says separately whether each log holds together.
 *
 * What travels from party s's relay to party r's, and where each log records it:
 * - an envelope a device of s sent to r: `envelope.accepted` in s's log (from the device), then
 *   `envelope.accepted` in r's log (from the link), then `message.relayed` in s's log (r's relay
 *   confirmed it stored it);
 * - a receipt a device of s signed for a message of r: `receipt.accepted` in s's log, then in r's
 *   log, then `receipt.relayed` in s's log;
 * - a refusal a device of s signed for a message of r: `refusal.accepted` in s's log, then in r's
 *   log, then `refusal.relayed` in s's log.
 * Each must be in both logs with the same hash (the envelope hash, recomputed from the header; the
 * SHA-256 of the signed receipt's or refusal's canonical JSON). What the home log says was relayed and the peer
 * log lacks is *missing* there; what the peer log has and the home log (which accepted it first)
 * lacks is *missing* in the home log; a difference is *altered*; what the home log accepted and
 * does not yet say was relayed, and the peer log lacks, is *pending* (still queued when the logs
 * were exported: named, not a failure).
 */

/** SHA-256 (hex) of a signed receipt's canonical JSON: how the two logs' copies are compared. */
export function receiptHash(receipt: SignedReceipt): string {
  return sha256Hex(canonicalize(receipt));
}

/** SHA-256 (hex) of a signed refusal's canonical JSON, as {@link receiptHash}. */
export function refusalHash(refusal: SignedRefusal): string {
  return sha256Hex(canonicalize(refusal));
}

type Kind = 'envelope' | 'receipt' | 'refusal';

export interface ReconcileFinding {
  problem: 'missing' | 'altered' | 'pending';
  kind: Kind;
  messageId: string;
  /** For a receipt: its kind and signer (`party/device`). */
  receipt?: { kind: string; by: string };
  /** For a refusal: its signer (`party/device`). */
  refusal?: { by: string };
  /** The party whose relay sent it over the link, and the one it went to. */
  from: string;
  to: string;
  /** Whose log lacks it (missing, pending) or both parties (altered: each log has its own). */
  side: string;
  /** Entry indexes where each log has it, by party. */
  at: Record<string, number>;
  message: string;
}

export interface Reconciliation {
  ok: boolean;
  /** The parties whose relays kept the first and the second export. */
  parties: string[];
  /** Envelopes and receipts found in both logs with the same hash. */
  envelopes: number;
  receipts: number;
  /** Refusals found in both logs with the same hash. */
  refusals: number;
  /** Missing and altered: each makes `ok` false. */
  findings: ReconcileFinding[];
  /** Accepted by the home relay, not relayed when exported, and not in the peer log. */
  pending: ReconcileFinding[];
  /** Why the two exports could not be reconciled at all. */
  problem?: { code: HotlineErrorCode; message: string };
}

interface Item {
  hash: string;
  index: number;
  messageId: string;
  receipt?: { kind: string; by: string };
  refusal?: { by: string };
}

interface LogView {
  party: string;
  /** Envelopes by message id, with the sender's and addressee's party. */
  envelopes: Map<string, Item & { from: string; to: string }>;
  /** Receipts by `messageId/kind/party/device`. */
  receipts: Map<string, Item & { signer: string }>;
  /** Refusals by `messageId/party/device`. */
  refusals: Map<string, Item & { signer: string }>;
  /** `message.relayed` / `receipt.relayed` / `refusal.relayed` entries of this log, by the same keys. */
  relayedEnvelopes: Map<string, { hash: string; index: number; to: string }>;
  relayedReceipts: Map<string, { hash: string; index: number; to: string }>;
  relayedRefusals: Map<string, { hash: string; index: number; to: string }>;
}

/**
 * The party whose relay kept this export: the relay whose log key (agreement `relays[].logKey`)
 * signed its checkpoints, by the key ID on the log's signature line. Undefined when no checkpoint
 * names one (the signatures themselves are `verifyAuditExport`'s to check).
 */
export function exportLogParty(agreement: Agreement, value: unknown): string | undefined {
  const checkpoints = (value as { checkpoints?: unknown })?.checkpoints;
  if (!Array.isArray(checkpoints)) return undefined;
  const name = logKeyName(agreement);
  const ids = new Map<number, string>();
  for (const r of agreement.relays ?? []) ids.set(noteKeyId(name, fromBase64(r.logKey, 32)), r.party);
  for (const note of checkpoints) {
    if (typeof note !== 'string') continue;
    try {
      for (const sig of parseNote(note).signatures) {
        const party = sig.name === name ? ids.get(sig.keyId) : undefined;
        if (party !== undefined) return party;
      }
    } catch {
      // a damaged note: the next one may tell
    }
  }
  return undefined;
}

function view(party: string, value: unknown): LogView {
  const v: LogView = { party, envelopes: new Map(), receipts: new Map(), refusals: new Map(), relayedEnvelopes: new Map(), relayedReceipts: new Map(), relayedRefusals: new Map() };
  const entries = (value as { entries?: unknown })?.entries;
  if (!Array.isArray(entries)) throw new HotlineError('HL_ERR_AUDIT_EXPORT_INVALID', `the export of ${party}'s relay has no entries list`);
  entries.forEach((text: unknown, index) => {
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(String(text)) as Record<string, unknown>;
    } catch {
      return; // unreadable: verifyAuditExport names it
    }
    if (!e || typeof e !== 'object') return;
    try {
      if (e['type'] === 'envelope.accepted') {
        const h = e['header'] as EnvelopeHeader;
        v.envelopes.set(h.id, { hash: envelopeHash(h), index, messageId: h.id, from: h.from.party, to: h.to });
      } else if (e['type'] === 'receipt.accepted') {
        const r = e['receipt'] as SignedReceipt;
        const b = r.receipt;
        const by = `${b.by.party}/${b.by.device}`;
        v.receipts.set(`${b.messageId}/${b.kind}/${by}`, { hash: receiptHash(r), index, messageId: b.messageId, receipt: { kind: b.kind, by }, signer: b.by.party });
      } else if (e['type'] === 'refusal.accepted') {
        const r = e['refusal'] as SignedRefusal;
        const b = r.refusal;
        const by = `${b.by.party}/${b.by.device}`;
        v.refusals.set(`${b.messageId}/${by}`, { hash: refusalHash(r), index, messageId: b.messageId, refusal: { by }, signer: b.by.party });
      } else if (e['type'] === 'refusal.relayed') {
        const by = e['by'] as { party: string; device: string };
        v.relayedRefusals.set(`${String(e['messageId'])}/${by.party}/${by.device}`, { hash: String(e['refusalHash']), index, to: String(e['to']) });
      } else if (e['type'] === 'message.relayed') {
        v.relayedEnvelopes.set(String(e['messageId']), { hash: String(e['envelopeHash']), index, to: String(e['to']) });
      } else if (e['type'] === 'receipt.relayed') {
        const by = e['by'] as { party: string; device: string };
        v.relayedReceipts.set(`${String(e['messageId'])}/${String(e['kind'])}/${by.party}/${by.device}`, { hash: String(e['receiptHash']), index, to: String(e['to']) });
      }
    } catch {
      // an entry off its schema: verifyAuditExport names it
    }
  });
  return v;
}

/**
 * Reconcile the exports of two parties' relays (any order). The parties are told by the log keys
 * that signed each export's checkpoints, or given.
 *
 * @example
 * const r = reconcileAuditExports(agreement, jpExport, cnExport);
 * for (const f of r.findings) console.log(`${f.problem} in ${f.side}'s log: ${f.kind} ${f.messageId}`);
 */
export function reconcileAuditExports(agreement: Agreement, a: unknown, b: unknown, options: { parties?: [string, string] } = {}): Reconciliation {
  const result: Reconciliation = { ok: false, parties: [], envelopes: 0, receipts: 0, refusals: 0, findings: [], pending: [] };
  try {
    if ((agreement.relays ?? []).length < 2) {
      throw new HotlineError('HL_ERR_AUDIT_EXPORT_INVALID', 'the agreement names no relay per party: with one shared relay there is one log, and nothing to reconcile');
    }
    const pa = options.parties?.[0] ?? exportLogParty(agreement, a);
    const pb = options.parties?.[1] ?? exportLogParty(agreement, b);
    if (pa === undefined || pb === undefined) {
      throw new HotlineError('HL_ERR_AUDIT_EXPORT_INVALID', `cannot tell whose relay kept the ${pa === undefined ? 'first' : 'second'} export: no checkpoint in it is signed by a relay's log key named in the agreement`);
    }
    if (pa === pb) throw new HotlineError('HL_ERR_AUDIT_EXPORT_INVALID', `both exports are of the log of ${pa}'s relay: give one export of each party's relay`);
    result.parties = [pa, pb];
    const logs = [view(pa, a), view(pb, b)] as const;
    for (const [home, peer] of [logs, [logs[1], logs[0]] as const]) {
      compare(home, peer, 'envelope', result);
      compare(home, peer, 'receipt', result);
      compare(home, peer, 'refusal', result);
    }
    result.ok = result.findings.length === 0;
  } catch (err) {
    result.problem = isHotlineError(err) ? { code: err.code, message: err.message } : { code: 'HL_ERR_AUDIT_EXPORT_INVALID', message: (err as Error).message };
  }
  return result;
}

/** What `home`'s relay sent to `peer`'s (of one kind), in either log, checked against the other. */
function compare(home: LogView, peer: LogView, kind: Kind, result: Reconciliation): void {
  const s = home.party;
  const r = peer.party;
  // Envelopes sent by s to r; receipts and refusals signed by s's devices for messages that r's devices sent.
  const senderOf = (id: string) => home.envelopes.get(id)?.from ?? peer.envelopes.get(id)?.from;
  const travels = (item: Item & ({ from: string; to: string } | { signer: string })): boolean =>
    'from' in item ? item.from === s && item.to === r : item.signer === s && senderOf(item.messageId) === r;
  const inHome = kind === 'envelope' ? home.envelopes : kind === 'receipt' ? home.receipts : home.refusals;
  const inPeer = kind === 'envelope' ? peer.envelopes : kind === 'receipt' ? peer.receipts : peer.refusals;
  const relayed = kind === 'envelope' ? home.relayedEnvelopes : kind === 'receipt' ? home.relayedReceipts : home.relayedRefusals;
  const keys = new Set<string>();
  for (const [k, item] of inHome) if (travels(item)) keys.add(k);
  for (const [k, item] of inPeer) if (travels(item)) keys.add(k);
  for (const [k, rel] of relayed) if (rel.to === r) keys.add(k);
  for (const key of [...keys].sort()) {
    const h = inHome.get(key);
    const p = inPeer.get(key);
    const rel = relayed.get(key);
    const any = (h ?? p)!;
    const messageId = any?.messageId ?? key.split('/')[0]!;
    const base = {
      kind,
      messageId,
      ...(any?.receipt ? { receipt: any.receipt } : kind === 'receipt' ? { receipt: { kind: key.split('/')[1]!, by: key.split('/').slice(2).join('/') } } : {}),
      ...(any?.refusal ? { refusal: any.refusal } : kind === 'refusal' ? { refusal: { by: key.split('/').slice(1).join('/') } } : {}),
      from: s,
      to: r,
    };
    const what =
      kind === 'envelope' ? `envelope ${messageId}` : kind === 'receipt' ? `${base.receipt!.kind} receipt by ${base.receipt!.by} for ${messageId}` : `refusal by ${base.refusal!.by} of ${messageId}`;
    const at = (...xs: [string, { index: number } | undefined][]) => Object.fromEntries(xs.filter(([, x]) => x !== undefined).map(([party, x]) => [party, x!.index]));
    if (h && p) {
      if (h.hash !== p.hash) {
        result.findings.push({ ...base, problem: 'altered', side: `${s}+${r}`, at: at([s, h], [r, p]), message: `${what} differs: ${s}'s log (entry ${h.index}) has hash ${h.hash.slice(0, 16)}…, ${r}'s log (entry ${p.index}) has ${p.hash.slice(0, 16)}…` });
        continue;
      }
      if (rel && rel.hash !== h.hash) {
        result.findings.push({ ...base, problem: 'altered', side: s, at: at([s, h]), message: `${what}: ${s}'s log says it relayed hash ${rel.hash.slice(0, 16)}… (entry ${rel.index}) but holds ${h.hash.slice(0, 16)}… (entry ${h.index})` });
        continue;
      }
      if (kind === 'envelope') result.envelopes++;
      else if (kind === 'receipt') result.receipts++;
      else result.refusals++;
      continue;
    }
    if (h && !p) {
      if (rel) {
        result.findings.push({
          ...base,
          problem: 'missing',
          side: r,
          at: at([s, h]),
          message: `${what} is missing from ${r}'s log: ${s}'s log has it (entry ${h.index}) and says ${r}'s relay confirmed storing it (entry ${rel.index}); ${r}'s relay dropped it or the entry was removed`,
        });
      } else {
        result.pending.push({ ...base, problem: 'pending', side: r, at: at([s, h]), message: `${what} is only in ${s}'s log (entry ${h.index}): accepted there, not yet relayed to ${r} when exported` });
      }
      continue;
    }
    if (!h && p) {
      result.findings.push({
        ...base,
        problem: 'missing',
        side: s,
        at: at([r, p]),
        message: `${what} is missing from ${s}'s log: ${r}'s log has it (entry ${p.index}), from ${s}'s relay, which must have accepted it first; the entry was removed from ${s}'s log`,
      });
      continue;
    }
    // Only a relayed record: the home log says it relayed what it does not hold.
    result.findings.push({
      ...base,
      problem: 'missing',
      side: `${s}+${r}`,
      at: {},
      message: `${what}: ${s}'s log says it was relayed (entry ${rel!.index}) but neither log holds it`,
    });
  }
}
