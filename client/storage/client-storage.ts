import type { DeviceCertificate, Envelope, EnvelopeHeader, Precedence, CannotComplyReason, ReceiptBody, ReceiptKind, Revocation, SignedPrekey, SignedReceipt, SignedRefusal } from '../../shared/protocol/schemas.js';
import type { Plaintext, SecurityLabel } from '../../shared/protocol/schemas.js';
import { seqWindowFrom, type SeqWindow } from '../../shared/crypto/replay-window.js';

/** What the caller asked to send; kept until the envelope is accepted so that it can be resealed. */
export interface SendDraft {
  to: string;
  precedence: Precedence;
  plaintext: Plaintext;
  exercise?: boolean;
  replyTo?: string;
  /** The security label (PROTOCOL.md "Security labels"). */
  label?: SecurityLabel;
  /** A link-test message (the test agent's). */
  linkTest?: boolean;
  /** A translation of the message named (PROTOCOL.md "Translations"). */
  translationOf?: { id: string; envelopeHash: string };
}

/** An envelope waiting for the server's `accepted`. */
export interface OutboxEnvelope {
  kind: 'envelope';
  id: string;
  draft: SendDraft;
  envelope: Envelope;
  composedAt: number;
  /** How many times it was resealed after HL_ERR_ENVELOPE_RECIPIENTS (at most once). */
  resealed: number;
}

/** A signed receipt waiting for the server's `receipt-accepted`. */
export interface OutboxReceipt {
  kind: 'receipt';
  messageId: string;
  receiptKind: ReceiptKind;
  receipt: SignedReceipt;
}

/**
 * This device's signed refusal of a message delivered to it that it could not accept (PROTOCOL.md
 * "Refusals"), waiting for the server's `refusal-accepted`: the relay closes the message's
 * deadlines once nobody who can answer it is left.
 */
export interface OutboxRefusal {
  kind: 'refusal';
  messageId: string;
  /** The refused message's precedence, as its header said (for the order of the outbox). */
  precedence: Precedence;
  refusal: SignedRefusal;
}

/**
 * A message that could not be sealed as composed: the sender's approval of its recipients
 * (HotlineClientOptions.approveRecipients) held it, e.g. because the keys of a newly enrolled or
 * re-keyed peer device are not confirmed yet. Nothing was sealed and no seq used; it stays under
 * the same key as its envelope would (`e:<id>`) until it is released (sealed and sent) or discarded.
 */
export interface OutboxHeld {
  kind: 'held';
  id: string;
  draft: SendDraft;
  composedAt: number;
  resealed: number;
  /** The devices (`party/device`) the approval named as the reason. */
  devices: string[];
  heldAt: number;
}

export type OutboxItem = OutboxEnvelope | OutboxReceipt | OutboxRefusal | OutboxHeld;

/**
 * The key of an outbox item in {@link ClientState.outbox}: one entry per message (`e:<id>`, kept
 * across a reseal), per receipt (`r:<messageId>:<kind>`) and per refusal (`x:<messageId>`), so that storage writes and removes one
 * item without touching the others.
 *
 * @example
 * state.outbox[outboxKey(item)] = item;
 */
export function outboxKey(item: OutboxItem): string {
  if (item.kind === 'receipt') return `r:${item.messageId}:${item.receiptKind}`;
  if (item.kind === 'refusal') return `x:${item.messageId}`;
  return `e:${item.id}`;
}

/** A message this device received, verified and decrypted; remembered to de-duplicate redeliveries. */
export interface InboxRecord {
  header: EnvelopeHeader;
  envelopeHash: string;
  receivedAt: number;
  /** When this device first acknowledged it (an `acknowledged` receipt or any later rung). */
  acknowledgedAt?: number;
  /** The later rungs this device signed (will-comply, cannot-comply with its reason, have-complied). */
  answers?: Partial<Record<'will-comply' | 'cannot-comply' | 'have-complied', { at: number; reason?: CannotComplyReason }>>;
  /** When the relay accepted it (its `acceptedAt`); absent in records stored before it was kept. */
  acceptedAt?: number;
  /**
   * The signed time of the revocation of the sender's certificate (the one valid when the relay
   * accepted this message): set at delivery, or later, when a directory fetch brings the revocation
   * of a message already stored here. The message stays readable; it is shown as "sender revoked
   * since <time>" (README "Revoked devices and old messages").
   */
  senderRevokedAt?: number;
}

/** A message this device sent, with the receipts seen for it. */
export interface SentRecord {
  header: EnvelopeHeader;
  envelopeHash: string;
  acceptedAt?: number;
  receipts: ReceiptBody[];
  /**
   * Signers (`party/device`) of receipts here whose certificate has been revoked since they signed:
   * the revocation's signed time. The receipts stay valid, shown as "signer revoked since <time>".
   */
  signersRevokedAt?: Record<string, number>;
}

/** The last directory fetched (public data), so that a message can be sealed while offline. */
export interface CachedDirectory {
  certificates: DeviceCertificate[];
  revocations: Revocation[];
  /** Revoked, expired and superseded certificates: to verify what was accepted while they were valid. */
  past?: DeviceCertificate[];
  /** The devices' signed prekeys (PROTOCOL.md "Prekeys and forward secrecy"), verified again on load. */
  prekeys?: SignedPrekey[];
  fetchedAt: number;
}

/**
 * Everything a client keeps between runs. Public data, and the drafts of unsent messages (so that
 * they can be resealed): the storage must be as private as the device key file (the file adapter
 * writes it 0600).
 */
export interface ClientState {
  v: 1;
  /** `party/device` this state belongs to. */
  device: string;
  /**
   * Last `seq` used; stored in the same update as the outbox item sealed with it, before that item
   * is transmitted, so that a crash never reuses a seq that left this device.
   */
  lastSeq: number;
  /** Items waiting for the relay's answer, under {@link outboxKey}, in the order they were queued. */
  outbox: Record<string, OutboxItem>;
  inbox: Record<string, InboxRecord>;
  sent: Record<string, SentRecord>;
  /** The replay window per sending device (`party/device`): each seq once, out of order within the window. */
  peerSeq: Record<string, SeqWindow>;
  directory?: CachedDirectory;
  /** What this device knows of the audit log's checkpoints (for cosigning). */
  audit?: AuditMemory;
}

/**
 * The checkpoints this device has seen and the last one it cosigned (root hashes in base64): a
 * later checkpoint must be consistent with the cosigned one, and one size must have one root.
 */
export interface AuditMemory {
  cosigned?: { size: number; root: string; at: number };
  /** Tree size → root of every checkpoint seen (the newest few hundred), from the server and gossiped by peers. */
  seen: Record<string, string>;
  /** The newest checkpoint note this device verified from the server (signed C2SP note), gossiped in its link tests. */
  note?: string;
}

/**
 * The port behind which a client keeps its state: a JSON file in Node, IndexedDB or localStorage
 * in a browser. `update` is an atomic read-modify-write against the latest stored state (another
 * process on the same device file may have written in between): either the whole mutation is
 * stored or none of it. An adapter stores what the mutation changed ({@link trackChanges}), not the
 * whole state: one record of {@link RECORD_MAPS} per message, receipt or outbox item, so that an
 * update costs the size of the change.
 *
 * @example
 * const seq = await storage.update((s) => ++s.lastSeq);
 */
export interface ClientStorage {
  /** The stored state, or a fresh one for `device` if nothing is stored yet. */
  read(device: string): Promise<ClientState>;
  /** Apply `mutate` to the latest state and store the result durably before resolving. */
  update<T>(device: string, mutate: (state: ClientState) => T): Promise<T>;
}

/** Bound on remembered inbox and sent records (the oldest are dropped first). */
export const MAX_RECORDS = 5000;

export function initialState(device: string): ClientState {
  return { v: 1, device, lastSeq: 0, outbox: {}, inbox: {}, sent: {}, peerSeq: {} };
}

/**
 * Bring a stored state of an earlier version to the current shape, in place: the outbox was an
 * array (now keyed by {@link outboxKey}, in the same order) and `peerSeq` held the highest seq
 * (now a replay window whose seqs below that count as seen). `v` stays 1: the two shapes are told
 * apart by the outbox's type, and earlier versions refuse the new shape rather than misread it.
 * Returns whether anything changed (then the adapter should store the migrated state whole).
 *
 * @example
 * const state = JSON.parse(text) as ClientState;
 * if (migrateState(state)) await writeSnapshot(state);
 */
export function migrateState(state: ClientState): boolean {
  let changed = false;
  const raw = state as unknown as { outbox: unknown; peerSeq: unknown };
  if (Array.isArray(raw.outbox)) {
    const outbox: Record<string, OutboxItem> = {};
    for (const item of raw.outbox as OutboxItem[]) outbox[outboxKey(item)] = item;
    state.outbox = outbox;
    changed = true;
  }
  if (typeof raw.peerSeq === 'object' && raw.peerSeq !== null) {
    const peerSeq = raw.peerSeq as Record<string, SeqWindow | number>;
    for (const [k, v] of Object.entries(peerSeq)) {
      if (typeof v === 'number') {
        peerSeq[k] = seqWindowFrom(v);
        changed = true;
      }
    }
  }
  return changed;
}

/** Drop the oldest records beyond {@link MAX_RECORDS} (object keys keep insertion order). */
export function pruneState(state: ClientState, max = MAX_RECORDS): void {
  for (const map of [state.inbox, state.sent]) {
    const keys = Object.keys(map);
    for (let i = 0; i < keys.length - max; i++) delete map[keys[i]!];
  }
}

// ---------------------------------------------------------------------------------------------
// Change tracking: what an update changed, so that an adapter writes only that

/** The maps of {@link ClientState} that an adapter stores record by record. */
export const RECORD_MAPS = ['outbox', 'inbox', 'sent', 'peerSeq'] as const;
export type RecordMapName = (typeof RECORD_MAPS)[number];

/** What one update did to one record map. */
export interface RecordChanges {
  /** Keys deleted, to apply first. */
  deleted: string[];
  /**
   * Records set, in order: those changed in place (or replaced) first, then those added, in the
   * order they now stand at the end of the map (so a reader that applies them keeps the map's order).
   */
  set: [string, unknown][];
}

/** What one update changed. The values are the live state's objects: serialise them before the next update. */
export interface StateChanges {
  /** Top-level fields set, read as objects (and so possibly changed in place), or record maps replaced whole. */
  set: [string, unknown][];
  /** Top-level fields deleted. */
  deleted: string[];
  /** Record maps changed record by record (absent when unchanged or replaced whole). */
  maps: Partial<Record<RecordMapName, RecordChanges>>;
}

/**
 * Wrap `state` so that what a mutation does to it can be listed afterwards. The mutation gets
 * `draft` (a Proxy over `state`, which it changes in place); `changes()` then says which top-level
 * fields were set, deleted, or read as objects (which may have been changed in place: they count
 * as set), and for each of {@link RECORD_MAPS} which records were set, deleted, or read (again,
 * possibly changed in place). `changes()` is undefined when nothing was touched.
 *
 * Records are tracked through the map's own proxy: a mutation that keeps a map in a variable and
 * changes it later through that variable is still seen, but one that replaces a record map whole
 * (`s.outbox = {...}`) is reported as a top-level set of the whole map.
 *
 * @example
 * const { draft, changes } = trackChanges(state);
 * draft.lastSeq++;
 * draft.inbox[id] = record;
 * changes(); // { set: [['lastSeq', 8]], deleted: [], maps: { inbox: { deleted: [], set: [[id, record]] } } }
 */
export function trackChanges(state: ClientState): { draft: ClientState; changes: () => StateChanges | undefined } {
  const touched = new Set<string>();
  const maps = new Map<string, TrackedMap>(RECORD_MAPS.map((name) => [name, trackMap(state[name] as Record<string, unknown>)]));
  const s = state as unknown as Record<string, unknown>;
  const draft = new Proxy(state, {
    get(target, p) {
      const v: unknown = Reflect.get(target, p);
      if (typeof p !== 'string') return v;
      const tracked = maps.get(p);
      if (tracked !== undefined && v === tracked.target) return tracked.proxy;
      if (typeof v === 'object' && v !== null) touched.add(p);
      return v;
    },
    set(target, p, v) {
      if (typeof p === 'string') touched.add(p);
      return Reflect.set(target, p, v);
    },
    defineProperty(target, p, d) {
      if (typeof p === 'string') touched.add(p);
      return Reflect.defineProperty(target, p, d);
    },
    deleteProperty(target, p) {
      if (typeof p === 'string') touched.add(p);
      return Reflect.deleteProperty(target, p);
    },
  });
  const changes = (): StateChanges | undefined => {
    const out: StateChanges = { set: [], deleted: [], maps: {} };
    for (const k of touched) {
      // A record map changed in place is listed record by record below; replaced whole, it is set whole.
      const tracked = maps.get(k);
      if (tracked !== undefined && tracked.target === s[k]) continue;
      if (Object.hasOwn(s, k)) out.set.push([k, s[k]]);
      else out.deleted.push(k);
    }
    for (const name of RECORD_MAPS) {
      const tracked = maps.get(name)!;
      if (s[name] !== tracked.target) continue;
      const change = tracked.change();
      if (change !== undefined) out.maps[name] = change;
    }
    return out.set.length + out.deleted.length + Object.keys(out.maps).length > 0 ? out : undefined;
  };
  return { draft, changes };
}

/** Apply changes listed by {@link trackChanges} (e.g. read back from a journal) to `state`. */
export function applyChanges(state: ClientState, changes: StateChanges): void {
  const s = state as unknown as Record<string, unknown>;
  for (const [k, v] of changes.set) s[k] = v;
  for (const k of changes.deleted) delete s[k];
  for (const name of RECORD_MAPS) {
    const change = changes.maps[name];
    if (change === undefined) continue;
    const map = s[name] as Record<string, unknown>;
    for (const k of change.deleted) delete map[k];
    for (const [k, v] of change.set) map[k] = v;
  }
}

interface TrackedMap {
  target: Record<string, unknown>;
  proxy: Record<string, unknown>;
  change: () => RecordChanges | undefined;
}

function trackMap(target: Record<string, unknown>): TrackedMap {
  const changed = new Set<string>();
  /** Keys added during the mutation, in the order they now stand at the end of the map. */
  const appended = new Set<string>();
  const deleted = new Set<string>();
  const touch = (k: string) => {
    if (!appended.has(k)) changed.add(k);
  };
  const add = (k: string) => {
    if (Object.hasOwn(target, k)) {
      touch(k);
    } else {
      appended.delete(k);
      appended.add(k);
    }
  };
  const proxy = new Proxy(target, {
    get(t, p) {
      if (typeof p === 'string' && Object.hasOwn(t, p)) touch(p);
      return Reflect.get(t, p) as unknown;
    },
    set(t, p, v) {
      if (typeof p === 'string') add(p);
      return Reflect.set(t, p, v);
    },
    defineProperty(t, p, d) {
      if (typeof p === 'string') add(p);
      return Reflect.defineProperty(t, p, d);
    },
    deleteProperty(t, p) {
      if (typeof p === 'string' && Object.hasOwn(t, p)) {
        if (appended.has(p)) {
          appended.delete(p);
        } else {
          changed.delete(p);
          deleted.add(p);
        }
      }
      return Reflect.deleteProperty(t, p);
    },
  });
  const change = (): RecordChanges | undefined => {
    if (changed.size === 0 && appended.size === 0 && deleted.size === 0) return undefined;
    const set: [string, unknown][] = [];
    for (const k of changed) if (Object.hasOwn(target, k)) set.push([k, target[k]]);
    for (const k of appended) set.push([k, target[k]]);
    return { deleted: [...deleted], set };
  };
  return { target, proxy, change };
}
