import { WebSocket, type RawData } from 'ws';
import type { FastifyBaseLogger } from 'fastify';
import { HotlineError, isHotlineError, type HotlineErrorCode } from '../../shared/errors.js';
import { fromBase64, toBase64, toHex } from '../../shared/encoding/base64.js';
import { randomBytes } from '../../shared/crypto/random.js';
import { ed25519Sign, ed25519Verify } from '../../shared/crypto/ed25519.js';
import { CONTEXT, signingBytes, verifyRelayCertificate } from '../../shared/crypto/keys.js';
import { envelopeHash, verifyCheckedEnvelope } from '../../shared/crypto/envelope.js';
import { checkLabel } from '../../shared/protocol/labels.js';
import { verifyCheckedReceipt } from '../../shared/crypto/receipt.js';
import { verifyCheckedRefusal } from '../../shared/crypto/refusal.js';
import type { Agreement, DeviceCertificate, Envelope, RelayCertBody, RelayCertificate, RelaySecretFile, Revocation, SignedPrekey, SignedReceipt, SignedRefusal } from '../../shared/protocol/schemas.js';
import type { HotlineEvent, LinkEvent, MessageRelayedEvent } from '../../shared/protocol/frames.js';
import {
  decodeRelayFrame,
  MAX_RELAY_FRAME_BYTES,
  RELAY_LINK_PATH,
  RELAY_LINK_PROTOCOL,
  type RelayAuthStatement,
  type RelayFrame,
} from '../../shared/protocol/relay-frames.js';
import type { Clock } from '../clock.js';
import type { RelayLinkStatus } from '../../shared/protocol/status.js';
import type { Directory } from '../directory.js';
import type { DeadlineScheduler } from '../deadline-scheduler.js';
import type { LinkHub } from '../link-hub.js';
import type { Lifecycle } from '../lifecycle.js';
import type { Store } from '../store/store.js';
import { deviceKey, type EnvelopeWrite, type EventWrite, type ReceiptWrite, type RefusalWrite, type Write, type WriteResult } from '../relay/records.js';
import { envelopeAcceptedEntry, receiptAcceptedEntry, receiptRelayedEntry, refusalAcceptedEntry, refusalRelayedEntry } from '../relay/audit-entries.js';
import { eventRank, PRECEDENCE_RANK } from '../relay/delivery.js';
import { receiptMailboxes } from '../relay/routing.js';
import type { AuditLog } from '../audit-log.js';
import { PeerLogWitness, relayCosignerName, witnessCertsKey } from './witness.js';
import { ForwardCursor } from './forward-cursor.js';

/**
 * One relay-to-relay link: this relay (of party `local`) and the relay of party `peer`
 * (PROTOCOL.md "The relay-to-relay link"). Both relays dial each other with backoff and accept the
 * other's connection; whichever connection authenticates first is used, and when both do, the one
 * dialled by the party whose id sorts first is kept (both sides decide the same).
 *
 * Store and forward: what this relay's devices sent to `peer`, and the receipts and refusals they
 * signed for `peer`'s messages, are read from the store (`relayOutgoing`) and sent until the peer confirms
 * them (`markRelayed`); the envelopes and receipts tables are the queue, so acceptance writes
 * nothing extra and a restart resends exactly what is unconfirmed. The peer commits before it
 * confirms; every hop is idempotent by envelope hash and receipt identity.
 */

/** Most frames sent and not yet confirmed. */
const WINDOW = 256;
/** Rows read from the store per page. */
const PAGE = 64;
/** A handshake not finished within this is closed. */
const HANDSHAKE_MS = 10_000;
/**
 * The drained watermark a relay sends is this much before the moment it found its queue to the
 * peer empty (or before the oldest envelope write of this process still committing then): an
 * envelope admitted (its clock read, the prekey rule applied at that time) but not yet queued, or
 * committed by another node on the same database, when the queue was read is thus still covered,
 * provided it takes less than this (PROTOCOL.md "Prekeys between relays").
 */
export const DRAIN_MARGIN_MS = 60_000;
/** The peer's drained watermark is written to the store at most this often (and when a connection closes). */
const DRAINED_SAVE_MS = 1_000;

/** Store meta key of the drained watermark a peer relay last sent. */
export const drainedKey = (peer: string): string => `relay/${peer}/drained`;

export interface RelayLinkOptions {
  agreement: Agreement;
  agreementHash: string;
  /** This relay's certificate and link key. */
  identity: RelaySecretFile;
  /** The peer relay's party. */
  peer: string;
  /** Base URLs (http/https) to dial the peer relay at; the agreement's `relays[peer].urls` by default. */
  peerUrls: readonly string[];
  store: Store;
  directory: Directory;
  /** `oldestUncommitted`: the earliest acceptance time of an envelope write of this process not yet committed. */
  writes: { enqueue(w: Write): Promise<WriteResult>; oldestUncommitted?(): number | undefined };
  deadlines: DeadlineScheduler;
  hub: LinkHub;
  lifecycle: Lifecycle;
  clock: Clock;
  log: FastifyBaseLogger;
  /**
   * This relay's own log: its checkpoints go to the peer relay to be cosigned, and the peer's
   * cosignatures are stored beside them. Without it this relay only witnesses the peer's log.
   */
  audit?: AuditLog;
  /** A ping every this often; the link is down after three intervals without a frame. Default 5 s. */
  heartbeatIntervalMs?: number;
  /** Redial backoff, doubled from min to max. Default 250 ms to 30 s. */
  backoff?: { minMs: number; maxMs: number };
  /** TLS options for dialling (a private CA, for instance). */
  tls?: { ca?: string | Buffer };
  /** Told the code of each refusal this relay sends the peer relay (for /metrics). */
  onRefused?: (code: HotlineErrorCode) => void;
}

type LinkState = 'unknown' | 'up' | 'down';

/** The ws URL of a relay's link endpoint, from its base URL. */
export function relayLinkUrl(base: string): string {
  const u = new URL(base);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.pathname = `${u.pathname.replace(/\/$/, '')}${RELAY_LINK_PATH}`;
  u.search = '';
  return u.toString();
}

export class RelayLink {
  readonly local: string;
  readonly peer: string;
  #state: LinkState = 'unknown';
  #active: Session | undefined;
  readonly #sessions = new Set<Session>();
  #stopped = true;
  #dialing = false;
  /** The connection being dialled, until it opens or fails. */
  #dialWs: WebSocket | undefined;
  #dialTimer: ReturnType<Clock['setTimeout']> | undefined;
  #graceTimer: ReturnType<Clock['setTimeout']> | undefined;
  #backoffMs: number;
  #urlIndex = 0;
  #lastError = 'not yet connected';
  #since: number | undefined;
  #reason: string | undefined;
  readonly heartbeatMs: number;
  /** This relay as a witness of the peer relay's log. */
  readonly witness: PeerLogWitness;
  /** The latest drained watermark the peer sent (its clock), and what of it is stored. */
  #drained = 0;
  #drainedSaved = 0;
  #drainedSavedAt = Number.NEGATIVE_INFINITY;

  constructor(readonly o: RelayLinkOptions) {
    this.local = o.identity.certificate.cert.party;
    this.peer = o.peer;
    this.witness = new PeerLogWitness({
      agreement: o.agreement,
      identity: o.identity,
      peer: o.peer,
      store: o.store,
      clock: o.clock,
      log: o.log,
      alarm: (reason) => this.emit({ type: 'audit.alarm', party: this.local, reason: reason.slice(0, 500), at: o.clock.now() }),
    });
    this.heartbeatMs = o.heartbeatIntervalMs ?? 5_000;
    this.#backoffMs = o.backoff?.minMs ?? 250;
  }

  get state(): LinkState {
    return this.#state;
  }

  /** For `GET /v1/status`: the link's state, since when, and why it is down. */
  status(): RelayLinkStatus {
    return {
      peer: this.peer,
      status: this.#state,
      ...(this.#since === undefined ? {} : { since: this.#since }),
      ...(this.#state === 'down' && this.#reason !== undefined ? { reason: this.#reason } : {}),
    };
  }

  /** Frames sent to the peer relay on the open connection and not yet confirmed (for /metrics). */
  get inFlight(): number {
    return this.#active?.inFlightCount ?? 0;
  }

  /** Whether an authenticated connection to the peer relay is open now. */
  get up(): boolean {
    return this.#active !== undefined;
  }

  start(): void {
    this.#stopped = false;
    this.#dial();
    // A peer that never answers is reported down once this grace has passed.
    this.#graceTimer = this.o.clock.setTimeout(() => {
      this.#graceTimer = undefined;
      if (this.#state === 'unknown') this.#setState('down', this.#lastError);
    }, 3 * this.heartbeatMs);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#dialTimer !== undefined) this.o.clock.clearTimeout(this.#dialTimer);
    if (this.#graceTimer !== undefined) this.o.clock.clearTimeout(this.#graceTimer);
    this.#dialTimer = this.#graceTimer = undefined;
    this.#dialWs?.terminate();
    const sessions = [...this.#sessions];
    await Promise.all(sessions.map((s) => s.close(1001, 'relay stopping')));
    // Where forwarding got to, before the store closes (the next start pages on from there).
    await Promise.all(sessions.map((s) => s.saved));
  }

  /** A connection the peer opened to us (already upgraded, subprotocol selected). */
  accept(ws: WebSocket, first?: RawData): void {
    if (this.#stopped) {
      ws.close(1001, 'relay stopping');
      return;
    }
    this.#open(ws, 'inbound', first);
  }

  /** Something was committed here that may have to go to the peer: forward it now. */
  kick(): void {
    this.#active?.pump();
  }

  /** A revocation was stored here: if it revokes the peer relay's certificate, the link ends now. */
  revoked(rev: { party: string; device: string; signKey: string }): void {
    for (const s of this.#sessions) s.checkRevoked(rev);
  }

  /** The peer relay's certificates whose cosignatures this relay stored (for the audit export). */
  async witnessCertificates(): Promise<RelayCertificate[]> {
    const text = await this.o.store.getMeta(witnessCertsKey(this.peer));
    return text === undefined ? [] : (JSON.parse(text) as RelayCertificate[]);
  }

  /** Remember the certificate of a peer relay that cosigned (once per certificate). */
  async recordWitness(certificate: RelayCertificate): Promise<void> {
    const known = await this.witnessCertificates();
    if (known.some((c) => c.signature === certificate.signature)) return;
    await this.o.store.setMeta(witnessCertsKey(this.peer), JSON.stringify([...known, certificate]));
  }

  /** This relay signed a new checkpoint of its log: offer it to the peer relay to cosign. */
  checkpointSigned(): void {
    this.#active?.offerCheckpoint();
  }

  /**
   * Our party's directory changed: send the change to the peer now (a link that comes up later
   * sends the whole directory then, which includes it).
   */
  directoryChanged(change: DirectoryDelta): void {
    this.#active?.sendDirectory(change);
  }

  /**
   * The latest drained watermark of the peer relay: every envelope it accepted for this party
   * before this time (by its clock) is stored here. 0 when it never sent one. The stored value is
   * read too (another node of this relay, or before a restart, may have recorded a later one).
   */
  async drainedAt(): Promise<number> {
    const n = Number((await this.o.store.getMeta(drainedKey(this.peer))) ?? '0');
    return Math.max(this.#drained, Number.isSafeInteger(n) ? n : 0);
  }

  /** The peer sent its drained watermark: kept (it only ever moves forward) and stored. */
  async peerDrained(at: number, force = false): Promise<void> {
    if (at > this.#drained) this.#drained = at;
    const now = this.o.clock.now();
    if (this.#drained <= this.#drainedSaved || (!force && now - this.#drainedSavedAt < DRAINED_SAVE_MS)) return;
    const value = this.#drained;
    this.#drainedSavedAt = now;
    this.#drainedSaved = value;
    // Not lowered when another node of this relay stored a later one (a lower one only holds prekeys longer).
    if (Number((await this.o.store.getMeta(drainedKey(this.peer))) ?? '0') < value) await this.o.store.setMeta(drainedKey(this.peer), String(value));
  }

  // ----- dialling -----

  #dial(): void {
    if (this.#stopped || this.#active || this.#dialing || this.o.peerUrls.length === 0) return;
    this.#dialing = true;
    const base = this.o.peerUrls[this.#urlIndex++ % this.o.peerUrls.length]!;
    const ws = new WebSocket(relayLinkUrl(base), RELAY_LINK_PROTOCOL, {
      maxPayload: MAX_RELAY_FRAME_BYTES,
      perMessageDeflate: false,
      handshakeTimeout: HANDSHAKE_MS,
      ...(this.o.tls?.ca ? { ca: this.o.tls.ca } : {}),
    });
    let opened = false;
    this.#dialWs = ws;
    ws.once('open', () => {
      opened = true;
      this.#dialing = false;
      this.#dialWs = undefined;
      if (this.#stopped) return void ws.close(1001, 'relay stopping');
      this.#open(ws, 'outbound');
    });
    ws.once('unexpected-response', (_req, res) => {
      this.#lastError = `peer relay answered HTTP ${res.statusCode}`;
      res.resume();
    });
    ws.on('error', (err) => {
      if (!opened) this.#lastError = `peer relay unreachable: ${err.message}`;
    });
    ws.once('close', () => {
      if (opened) return;
      this.#dialing = false;
      this.#dialWs = undefined;
      this.#redial();
    });
  }

  #redial(): void {
    if (this.#stopped || this.#active || this.#dialTimer !== undefined) return;
    const wait = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, this.o.backoff?.maxMs ?? 30_000);
    this.#dialTimer = this.o.clock.setTimeout(() => {
      this.#dialTimer = undefined;
      this.#dial();
    }, wait);
  }

  #open(ws: WebSocket, direction: 'inbound' | 'outbound', first?: RawData): void {
    const s = new Session(this, ws, direction);
    this.#sessions.add(s);
    ws.once('close', (code, reason) => {
      this.#sessions.delete(s);
      if (this.#active === s) {
        this.#active = undefined;
        // A relay that is stopping says nothing to its own operators (they are being disconnected
        // too); the peer relay reports the link down to its side.
        if (!this.#stopped) this.#setState('down', s.downReason ?? `relay link closed (${code}${reason.length > 0 ? ` ${reason.toString()}` : ''})`);
      } else if (!s.authenticated && s.refusal) {
        this.#lastError = s.refusal;
      }
      this.#redial();
    });
    s.begin(first);
  }

  // ----- called by a session -----

  /** A session finished its handshake: use it, unless another one already is (see the class comment). */
  adopt(s: Session): boolean {
    const current = this.#active;
    if (current && current !== s) {
      const keepDialledBy = this.local < this.peer ? 'outbound' : 'inbound';
      if (s.direction !== keepDialledBy) return false;
      this.#active = undefined;
      void current.close(1000, 'duplicate relay link');
    }
    this.#active = s;
    this.#backoffMs = this.o.backoff?.minMs ?? 250;
    if (this.#dialTimer !== undefined) this.o.clock.clearTimeout(this.#dialTimer);
    this.#dialTimer = undefined;
    this.#setState('up');
    return true;
  }

  #setState(state: 'up' | 'down', reason?: string): void {
    if (this.#state === state) return;
    this.#state = state;
    const at = this.o.clock.now();
    this.#since = at;
    this.#reason = reason?.slice(0, 200);
    const event: LinkEvent = {
      type: state === 'up' ? 'link.up' : 'link.down',
      scope: 'relay',
      from: this.local,
      to: this.peer,
      ok: state === 'up',
      ...(reason === undefined ? {} : { reason: reason.slice(0, 200) }),
      at,
    };
    if (state === 'down') this.o.log.warn({ peer: this.peer, reason }, 'relay link down');
    else this.o.log.info({ peer: this.peer }, 'relay link up');
    void this.emit(event);
  }

  /** Store an event for this relay's own operators and auditors, and push it to those online. */
  async emit(event: HotlineEvent, roles: readonly ('operator' | 'auditor')[] = ['operator', 'auditor']): Promise<void> {
    const now = this.o.clock.now();
    const write: EventWrite = { event, rank: eventRank(event), mailboxes: this.localMailboxes(now, roles) };
    try {
      const result = await this.o.lifecycle.track(this.o.writes.enqueue({ kind: 'events', acceptedAt: now, events: [write] }));
      if (result.ok && result.status === 'new') this.o.hub.push(result.delivered);
      else if (!result.ok) throw result.error;
    } catch (err) {
      this.o.log.error({ err: { message: (err as Error).message }, event: event.type }, 'could not store a relay link event');
    }
  }

  localMailboxes(now: number, roles: readonly ('operator' | 'auditor' | 'archive')[]): string[] {
    return this.o.directory
      .validBodies(now, [this.local], roles)
      .filter((c) => c.party === this.local)
      .map((c) => deviceKey(c))
      .sort();
  }
}

interface InFlight {
  kind: 'envelope' | 'receipt' | 'refusal';
  hash?: string;
  precedence?: Envelope['header']['precedence'];
  receipt?: SignedReceipt;
  refusal?: SignedRefusal;
}

/** One WebSocket to the peer relay, from the handshake to its close. */
class Session {
  readonly #challenge = toBase64(randomBytes(32));
  #peerCert: RelayCertBody | undefined;
  #peerCertificate: RelayCertificate | undefined;
  #peerChallenge: string | undefined;
  #sentAuth = false;
  authenticated = false;
  /** Why the link went down, when we decided it (heartbeat, refusal). */
  downReason: string | undefined;
  /** Why the handshake was refused, for the next link.down. */
  refusal: string | undefined;
  #nOut = 0;
  #nIn = 0;
  #lastHeard: number;
  #timers: ReturnType<Clock['setTimeout']>[] = [];
  #heartbeat: ReturnType<Clock['setTimeout']> | undefined;
  #inbound: Promise<void> = Promise.resolve();
  readonly #inFlight = new Map<string, InFlight>();
  /** Settles when the forward positions are stored after the close. */
  saved: Promise<void> = Promise.resolve();
  /** Where forwarding starts and how far the peer has confirmed, per kind (stored between connections). */
  readonly #envCursor: ForwardCursor;
  readonly #rcpCursor: ForwardCursor;
  readonly #refCursor: ForwardCursor;
  #pumping = false;
  #again = false;
  /** The size of our checkpoint the peer relay last cosigned, as it told us (undefined: not yet told). */
  #peerCosigned: number | undefined;
  /** The checkpoint offered and not yet answered (size and proof start), so it is not offered twice. */
  #offered: { size: number; from: number } | undefined;
  /** The last drained watermark sent on this connection. */
  #drainedSent = Number.NEGATIVE_INFINITY;

  constructor(
    readonly link: RelayLink,
    readonly ws: WebSocket,
    readonly direction: 'inbound' | 'outbound',
  ) {
    this.#lastHeard = link.o.clock.now();
    this.#envCursor = new ForwardCursor(link.o.store, ForwardCursor.key(link.peer, 'envelope'), link.o.clock);
    this.#rcpCursor = new ForwardCursor(link.o.store, ForwardCursor.key(link.peer, 'receipt'), link.o.clock);
    this.#refCursor = new ForwardCursor(link.o.store, ForwardCursor.key(link.peer, 'refusal'), link.o.clock);
  }

  get #o(): RelayLinkOptions {
    return this.link.o;
  }

  get inFlightCount(): number {
    return this.#inFlight.size;
  }

  /** Start the handshake; `first` is a frame already read off the socket (to pick the link). */
  begin(first?: RawData): void {
    const o = this.#o;
    const take = (data: RawData, isBinary: boolean) => {
      this.#lastHeard = o.clock.now();
      // One frame at a time, in order: a forwarded receipt must not overtake its envelope.
      this.#inbound = this.#inbound.then(() => this.#onMessage(data, isBinary));
    };
    if (first !== undefined) take(first, false);
    this.ws.on('message', take);
    this.ws.on('error', () => {});
    this.ws.once('close', () => {
      for (const t of this.#timers) o.clock.clearTimeout(t);
      if (this.#heartbeat !== undefined) o.clock.clearTimeout(this.#heartbeat);
      if (this.authenticated) {
        this.saved = Promise.all([this.#envCursor.save(true), this.#rcpCursor.save(true), this.#refCursor.save(true), this.link.peerDrained(0, true)]).then(
          () => undefined,
          (err: unknown) => o.log.warn({ err: { message: (err as Error).message } }, 'could not store the relay forward position'),
        );
      }
    });
    this.#timers.push(
      o.clock.setTimeout(() => {
        if (!this.authenticated) this.#refuse(new HotlineError('HL_ERR_AUTH_CHALLENGE_INVALID', 'relay link handshake not finished in time'));
      }, HANDSHAKE_MS),
    );
    this.#sendRaw({ t: 'relay-hello', v: 1, agreement: o.agreementHash, certificate: o.identity.certificate, challenge: this.#challenge });
  }

  close(code: number, reason: string): Promise<void> {
    return new Promise((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) return resolve();
      this.ws.once('close', () => resolve());
      this.ws.close(code, reason);
      const t = this.#o.clock.setTimeout(() => this.ws.terminate(), 2_000);
      this.ws.once('close', () => this.#o.clock.clearTimeout(t));
    });
  }

  // ----- sending -----

  #sendRaw(frame: RelayFrame): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  /** Frames after the handshake carry the next frame number. */
  #send(frame: DistributiveOmit<Exclude<RelayFrame, { t: 'relay-hello' | 'relay-auth' }>, 'n'>): void {
    this.#sendRaw({ ...frame, n: ++this.#nOut } as RelayFrame);
  }

  /** A refusal of the link itself: an error frame, then a close with the code's close code. */
  #refuse(error: HotlineError): void {
    if (!this.authenticated) this.refusal = `${error.code}: ${error.message}`;
    else this.downReason = `${error.code}: ${error.message}`;
    this.#o.log.warn({ code: error.code, peer: this.link.peer, direction: this.direction }, 'relay link refused');
    this.#o.onRefused?.(error.code);
    this.#sendRaw({ t: 'relay-error', code: error.code, message: error.message.slice(0, 500) });
    void this.close(error.wsCloseCode, error.code);
  }

  /**
   * Our party's directory: all of it (after the handshake), or only what changed. The receiver
   * adds what it gets and never drops what a frame leaves out, so a delta and the whole directory
   * are the same frame; a delta lost with a dying connection is in the whole one the next sends.
   */
  sendDirectory(change?: DirectoryDelta): void {
    if (!this.authenticated) return;
    const o = this.#o;
    const now = o.clock.now();
    const local = this.link.local;
    const certificates = change ? change.certificates : o.directory.validCertificates(now).filter((c) => c.cert.party === local);
    const revocations = change ? change.revocations : o.directory.allRevocations().filter((r) => r.revocation.party === local);
    // Its operators' prekeys in date, so that the peer's senders wrap to them (PROTOCOL.md "Prekeys between relays").
    const prekeys = change ? (change.prekeys ?? []) : o.directory.operatorPrekeys(now, local);
    this.#send({ t: 'relay-directory', certificates, revocations, ...(prekeys.length > 0 ? { prekeys } : {}) });
  }

  // ----- receiving -----

  async #onMessage(data: RawData, isBinary: boolean): Promise<void> {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    let frame: RelayFrame;
    try {
      if (isBinary) throw new HotlineError('HL_ERR_INPUT_MALFORMED_JSON', 'relay link frames are text');
      frame = decodeRelayFrame(Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(data as Buffer[]).toString('utf8'));
    } catch (err) {
      this.#refuse(isHotlineError(err) ? err : new HotlineError('HL_ERR_INPUT_MALFORMED_JSON', 'unreadable relay frame'));
      return;
    }
    try {
      await this.#handle(frame);
    } catch (err) {
      const e = isHotlineError(err) ? err : new HotlineError('HL_ERR_INTERNAL', 'internal error');
      if (!isHotlineError(err)) this.#o.log.error({ err: { message: (err as Error).message, stack: (err as Error).stack } }, 'relay link frame failed');
      if (frame.t === 'relay-refusal') {
        // A forwarded refusal that does not hold closes nothing; raised, since the peer relay vouched for it.
        const b = frame.refusal.refusal;
        this.#o.log.error({ code: e.code, messageId: b.messageId, by: `${b.by.party}/${b.by.device}`, peer: this.link.peer }, 'forwarded refusal refused');
      }
      if (!this.authenticated || CLOSES_LINK.has(e.code)) this.#refuse(e);
      else {
        this.#o.onRefused?.(e.code);
        this.#send({ t: 'relay-error', code: e.code, message: e.message.slice(0, 500), ...refOf(frame) });
      }
    }
  }

  async #handle(frame: RelayFrame): Promise<void> {
    const o = this.#o;
    if (frame.t === 'relay-error') {
      if (frame.ref?.startsWith('checkpoint/')) {
        // The peer relay, as witness, refused our checkpoint: our log (or its view of it) is in question.
        o.log.error({ code: frame.code, ref: frame.ref, peer: this.link.peer }, 'the peer relay refused to cosign our checkpoint');
        this.#offered = undefined;
        return;
      }
      o.log.warn({ code: frame.code, ref: frame.ref, peer: this.link.peer }, 'peer relay refused a frame');
      if (frame.ref) this.#inFlight.delete(frame.ref);
      return;
    }
    if (!this.authenticated) return this.#handshake(frame);
    if (frame.t === 'relay-hello' || frame.t === 'relay-auth') throw new HotlineError('HL_ERR_INPUT_UNKNOWN_FRAME', 'handshake already done');
    if (frame.n <= this.#nIn) throw new HotlineError('HL_ERR_RELAY_FRAME_REPLAY', `frame ${frame.n} is not above ${this.#nIn}: replayed or reordered`);
    this.#nIn = frame.n;
    switch (frame.t) {
      case 'relay-ping':
        this.#send({ t: 'relay-pong', at: o.clock.now() });
        return;
      case 'relay-pong':
        return;
      case 'relay-directory':
        return this.#onDirectory(frame.certificates, frame.revocations, frame.prekeys ?? []);
      case 'relay-drained':
        return this.link.peerDrained(frame.at);
      case 'relay-envelope':
        return this.#onEnvelope(frame.envelope, frame.acceptedAt);
      case 'relay-receipt':
        return this.#onReceipt(frame.receipt);
      case 'relay-refusal':
        return this.#onRefusal(frame.refusal, frame.acceptedAt);
      case 'relay-refusal-stored':
        return this.#onRefusalStored(`${frame.messageId}/${frame.by.party}/${frame.by.device}`, frame.at);
      case 'relay-stored':
        return this.#onStored(frame.id, frame.envelopeHash, frame.at);
      case 'relay-receipt-stored':
        return this.#onReceiptStored(`${frame.messageId}/${frame.kind}/${frame.by.party}/${frame.by.device}`, frame.at);
      case 'relay-witness-state':
        this.#peerCosigned = frame.size;
        this.#offered = undefined;
        return this.#offer();
      case 'relay-checkpoint':
        return this.#onCheckpoint(frame);
      case 'relay-cosignature':
        return this.#onCosignature(frame.size, frame.note);
    }
  }

  async #handshake(frame: RelayFrame): Promise<void> {
    const o = this.#o;
    const now = o.clock.now();
    if (frame.t === 'relay-hello') {
      if (this.#peerCert) throw new HotlineError('HL_ERR_INPUT_UNKNOWN_FRAME', 'a second relay-hello');
      if (frame.agreement !== o.agreementHash) {
        throw new HotlineError('HL_ERR_AGREEMENT_MISMATCH', `the peer relay runs another agreement (${frame.agreement.slice(0, 16)}…)`);
      }
      const claimed = frame.certificate.cert.party;
      if (claimed !== this.link.peer) {
        throw new HotlineError('HL_ERR_RELAY_WRONG_PARTY', `this link is to the relay of ${this.link.peer}; the certificate is of ${claimed}`);
      }
      this.#peerCert = await verifyRelayCertificate(o.agreement, frame.certificate, { now, isRevoked: o.directory.isRevoked });
      this.#peerCertificate = frame.certificate;
      this.#peerChallenge = frame.challenge;
      const me = o.identity.certificate.cert;
      const statement: RelayAuthStatement = {
        v: 1,
        agreement: o.agreementHash,
        party: me.party,
        relay: me.relay,
        peer: this.link.peer,
        challenge: frame.challenge,
        ownChallenge: this.#challenge,
      };
      const signature = await ed25519Sign(fromBase64(o.identity.signSecret, 32), signingBytes(CONTEXT.relayLink, statement));
      this.#sentAuth = true;
      this.#sendRaw({ t: 'relay-auth', signature: toBase64(signature) });
      return;
    }
    if (frame.t === 'relay-auth') {
      const peer = this.#peerCert;
      if (!peer || !this.#sentAuth) throw new HotlineError('HL_ERR_AUTH_CHALLENGE_INVALID', 'relay-auth before relay-hello');
      const statement: RelayAuthStatement = {
        v: 1,
        agreement: o.agreementHash,
        party: peer.party,
        relay: peer.relay,
        peer: this.link.local,
        challenge: this.#challenge,
        ownChallenge: this.#peerChallenge!,
      };
      const ok = await ed25519Verify(fromBase64(peer.signKey, 32), signingBytes(CONTEXT.relayLink, statement), fromBase64(frame.signature, 64));
      if (!ok) throw new HotlineError('HL_ERR_AUTH_BAD_SIGNATURE', `the relay of ${peer.party} did not prove its key for this connection`);
      this.authenticated = true;
      if (!this.link.adopt(this)) {
        void this.close(1000, 'duplicate relay link');
        return;
      }
      o.log.info({ peer: peer.party, relay: peer.relay, direction: this.direction }, 'relay link authenticated');
      this.#armHeartbeat();
      this.sendDirectory();
      this.pump();
      // Witnessing: tell the peer which of its checkpoints we last cosigned; it answers with its newest.
      this.#send({ t: 'relay-witness-state', size: (await this.link.witness.state()).size });
      return;
    }
    throw new HotlineError('HL_ERR_AUTH_CHALLENGE_INVALID', `${frame.t} before the handshake is done`);
  }

  /** End the link if `rev` revokes the peer relay's certificate. */
  checkRevoked(rev: { party: string; device: string; signKey: string }): void {
    const peer = this.#peerCert;
    if (peer && rev.party === peer.party && rev.device === peer.relay && rev.signKey === peer.signKey) {
      this.#refuse(new HotlineError('HL_ERR_CERT_REVOKED', `certificate of relay ${peer.party}/${peer.relay} is revoked`));
    }
  }

  #armHeartbeat(): void {
    const o = this.#o;
    const tick = () => {
      // A peer certificate that expires while the link is up ends it, as at the handshake.
      if (this.#peerCert && o.clock.now() >= this.#peerCert.notAfter) {
        this.#refuse(new HotlineError('HL_ERR_CERT_EXPIRED', `certificate of relay ${this.#peerCert.party}/${this.#peerCert.relay} has expired`));
        return;
      }
      const silentMs = o.clock.now() - this.#lastHeard;
      if (silentMs >= 3 * this.link.heartbeatMs) {
        this.downReason = `no heartbeat from the relay of ${this.link.peer} for ${Math.round(silentMs / 1000)} s`;
        this.ws.terminate();
        return;
      }
      this.#send({ t: 'relay-ping', at: o.clock.now() });
      // Also moves the drained watermark on while nothing is sent (PROTOCOL.md "Prekeys between relays").
      this.pump();
      this.#heartbeat = o.clock.setTimeout(tick, this.link.heartbeatMs);
    };
    this.#heartbeat = o.clock.setTimeout(tick, this.link.heartbeatMs);
  }

  async #onDirectory(certificates: readonly unknown[], revocations: readonly unknown[], prekeys: readonly SignedPrekey[]): Promise<void> {
    const o = this.#o;
    const now = o.clock.now();
    const peer = this.link.peer;
    // A relay speaks for its own party only: anything of another party is refused whole.
    for (const r of revocations as { revocation: { party: string } }[]) {
      if (r.revocation.party !== peer) throw new HotlineError('HL_ERR_RELAY_WRONG_PARTY', `the relay of ${peer} sent a revocation of ${r.revocation.party}`);
    }
    for (const c of certificates as { cert: { party: string } }[]) {
      if (c.cert.party !== peer) throw new HotlineError('HL_ERR_RELAY_WRONG_PARTY', `the relay of ${peer} sent a certificate of ${c.cert.party}`);
    }
    for (const p of prekeys) {
      if (p.prekey.party !== peer) throw new HotlineError('HL_ERR_RELAY_WRONG_PARTY', `the relay of ${peer} sent a prekey of ${p.prekey.party}`);
    }
    // Each is checked against the pinned root of its party, as if the device had enrolled here.
    let refused = 0;
    for (const r of revocations) {
      try {
        const rev = await o.directory.revoke(r, now);
        o.hub.disconnect(rev.revocation, 'HL_ERR_CERT_REVOKED', 'this device’s certificate was revoked');
      } catch {
        refused++;
      }
    }
    for (const c of certificates) {
      try {
        await o.directory.enrol(c, now);
      } catch {
        refused++;
      }
    }
    if (refused > 0) o.log.warn({ peer, refused }, 'peer relay directory entries refused');
    // After the certificates (a prekey is checked against its device's): each exactly as if its
    // device had published it here, and only an operator's (an archive's prekeys are not forwarded).
    for (const p of prekeys) {
      try {
        const cert = o.directory.current(p.prekey.party, p.prekey.device, now);
        if (cert.role !== 'operator') throw new HotlineError('HL_ERR_PREKEY_WRONG_DEVICE', `${cert.party}/${cert.device} is an ${cert.role} device: its prekeys are not forwarded`);
        await o.directory.putPrekey(p, now);
      } catch (err) {
        const code = isHotlineError(err) ? err.code : 'HL_ERR_INTERNAL';
        o.log.warn({ peer, device: `${p.prekey.party}/${p.prekey.device}`, code }, 'peer relay prekey refused');
      }
    }
  }

  async #onEnvelope(env: Envelope, homeAcceptedAt: number): Promise<void> {
    const o = this.#o;
    const h = env.header;
    const peer = this.link.peer;
    if (h.from.party !== peer) {
      throw new HotlineError('HL_ERR_RELAY_WRONG_PARTY', `the relay of ${peer} forwarded an envelope from ${h.from.party}`);
    }
    if (h.to !== this.link.local) throw new HotlineError('HL_ERR_ENVELOPE_UNKNOWN_PARTY', `this relay serves ${this.link.local}, not ${h.to}`);
    const now = o.clock.now();
    // The sender's certificate as it was when its own relay accepted the envelope (not later
    // than now): a revocation since then does not unsend what was accepted.
    const cert = o.directory.current(h.from.party, h.from.device, Math.min(homeAcceptedAt, now));
    if (cert.role !== 'operator') throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `${cert.party}/${cert.device} is an ${cert.role} device and may not send`);
    const { hash } = await verifyCheckedEnvelope(env, cert);
    checkLabel(o.agreement, h.label);
    const write: EnvelopeWrite = {
      kind: 'envelope',
      envelope: env,
      envelopeHash: hash,
      acceptedAt: now,
      rank: PRECEDENCE_RANK[h.precedence],
      // Only this relay's own devices fetch from it; the sender's colleagues have their copy at home.
      mailboxes: h.recipients.filter((r) => r.party === this.link.local).map((r) => deviceKey(r)),
      audit: envelopeAcceptedEntry(env, hash, now),
    };
    o.deadlines.prepareEnvelope(write);
    const result = await o.lifecycle.track(o.writes.enqueue(write));
    o.deadlines.afterEnvelope(write, result);
    if (!result.ok) throw result.error;
    if (result.status === 'new') o.hub.push(result.delivered);
    this.#send({ t: 'relay-stored', id: h.id, envelopeHash: hash, at: result.acceptedAt });
  }

  async #onReceipt(r: SignedReceipt): Promise<void> {
    const o = this.#o;
    const body = r.receipt;
    const peer = this.link.peer;
    if (body.by.party !== peer) throw new HotlineError('HL_ERR_RELAY_WRONG_PARTY', `the relay of ${peer} forwarded a receipt signed by ${body.by.party}`);
    const message = await o.store.getMessage(body.messageId);
    if (!message) throw new HotlineError('HL_ERR_RECEIPT_UNKNOWN_MESSAGE', `no message ${body.messageId} is stored`);
    const now = o.clock.now();
    const cert = o.directory.current(body.by.party, body.by.device, Math.min(body.at, now));
    await verifyCheckedReceipt(r, cert, message);
    const header = message.header;
    const write: ReceiptWrite = {
      kind: 'receipt',
      receipt: r,
      acceptedAt: now,
      rank: PRECEDENCE_RANK[header.precedence],
      mailboxes: receiptMailboxes(o.directory.validBodies(now, [this.link.local], ['operator']), header, body).filter((d) => d.startsWith(`${this.link.local}/`)),
      audit: receiptAcceptedEntry(r, now),
    };
    await o.deadlines.prepareReceipt(write);
    const result = await o.lifecycle.track(o.writes.enqueue(write));
    o.deadlines.afterReceipt(result);
    if (!result.ok) throw result.error;
    if (result.status === 'new') o.hub.push(result.delivered);
    this.#send({ t: 'relay-receipt-stored', messageId: body.messageId, kind: body.kind, by: body.by, at: result.acceptedAt });
  }

  /**
   * A refusal a device of the peer's party signed for a message stored here (PROTOCOL.md
   * "Refusals"): checked as its own relay checked it (signer's certificate, signature, stored
   * hash, a device the envelope was wrapped for), stored and audited, and it closes the message's
   * deadlines here by the same rule.
   */
  async #onRefusal(r: SignedRefusal, homeAcceptedAt: number): Promise<void> {
    const o = this.#o;
    const body = r.refusal;
    const peer = this.link.peer;
    if (body.by.party !== peer) throw new HotlineError('HL_ERR_RELAY_WRONG_PARTY', `the relay of ${peer} forwarded a refusal signed by ${body.by.party}`);
    const message = await o.store.getMessage(body.messageId);
    if (!message) throw new HotlineError('HL_ERR_REFUSAL_UNKNOWN_MESSAGE', `no message ${body.messageId} is stored`);
    const now = o.clock.now();
    // The signer's certificate as it was when its own relay accepted the refusal (not later than now).
    const cert = o.directory.current(body.by.party, body.by.device, Math.min(homeAcceptedAt, now));
    if (cert.role !== 'operator' && cert.role !== 'archive') {
      throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `${cert.party}/${cert.device} is an ${cert.role} device and receives no messages`);
    }
    await verifyCheckedRefusal(r, cert, message);
    const write: RefusalWrite = { kind: 'refusal', refusal: r, acceptedAt: now, audit: refusalAcceptedEntry(r, now) };
    await o.deadlines.prepareRefusal(write);
    const result = await o.lifecycle.track(o.writes.enqueue(write));
    o.deadlines.afterRefusal(write, result);
    if (!result.ok) throw result.error;
    if (result.status === 'new') {
      o.hub.push(result.delivered);
      o.log.info({ messageId: body.messageId, by: `${body.by.party}/${body.by.device}`, code: body.code, peer }, 'forwarded refusal accepted');
    }
    this.#send({ t: 'relay-refusal-stored', messageId: body.messageId, by: body.by, at: result.acceptedAt });
  }

  async #onRefusalStored(ref: string, at: number): Promise<void> {
    const sent = this.#inFlight.get(ref);
    if (!sent || sent.kind !== 'refusal') return;
    const audit = [refusalRelayedEntry(sent.refusal!, this.link.local, this.link.peer, at)];
    await this.#o.store.markRelayed([{ kind: 'refusal', ref, peer: this.link.peer, at }], { kind: 'events', acceptedAt: this.#o.clock.now(), audit });
    this.#inFlight.delete(ref);
    this.#refCursor.confirmed(ref);
    this.pump();
  }

  async #onStored(id: string, hash: string, at: number): Promise<void> {
    const o = this.#o;
    const sent = this.#inFlight.get(id);
    if (!sent || sent.kind !== 'envelope') return; // a late answer from before a reconnection: it is sent again
    if (sent.hash !== hash) {
      this.#inFlight.delete(id);
      throw new HotlineError('HL_ERR_RELAY_HASH_MISMATCH', `the peer relay stored ${id} under another envelope hash`);
    }
    const event: MessageRelayedEvent = { type: 'message.relayed', messageId: id, envelopeHash: hash, from: this.link.local, to: this.link.peer, precedence: sent.precedence!, at };
    const now = o.clock.now();
    const delivered = await o.store.markRelayed(
      [{ kind: 'envelope', ref: id, peer: this.link.peer, at }],
      { kind: 'events', acceptedAt: now, events: [{ event, rank: eventRank(event), mailboxes: this.link.localMailboxes(now, ['operator']) }] },
    );
    o.hub.push(delivered);
    this.#inFlight.delete(id);
    this.#envCursor.confirmed(id);
    this.pump();
  }

  async #onReceiptStored(ref: string, at: number): Promise<void> {
    const sent = this.#inFlight.get(ref);
    if (!sent || sent.kind !== 'receipt') return;
    // The log says what went over, as `message.relayed` does for an envelope (with the first confirmation only).
    const audit = [receiptRelayedEntry(sent.receipt!, this.link.local, this.link.peer, at)];
    await this.#o.store.markRelayed([{ kind: 'receipt', ref, peer: this.link.peer, at }], { kind: 'events', acceptedAt: this.#o.clock.now(), audit });
    this.#inFlight.delete(ref);
    this.#rcpCursor.confirmed(ref);
    this.pump();
  }

  // ----- witnessing -----

  /** Offer our newest checkpoint to the peer relay to cosign (after it said what it cosigned last). */
  offerCheckpoint(): void {
    if (!this.authenticated) return;
    void this.#offer().catch((err: unknown) => this.#o.log.error({ err: { message: (err as Error).message } }, 'could not offer a checkpoint to the peer relay'));
  }

  async #offer(): Promise<void> {
    const o = this.#o;
    const from = this.#peerCosigned;
    if (!o.audit || from === undefined || this.ws.readyState !== WebSocket.OPEN) return;
    const latest = await o.store.getCheckpoint();
    if (!latest || latest.size === from) return;
    if (latest.size < from) {
      o.log.error({ peer: this.link.peer, cosigned: from, latest: latest.size }, 'the peer relay cosigned a larger checkpoint of our log than our newest: this log was rolled back');
      return;
    }
    if (this.#offered && this.#offered.size === latest.size && this.#offered.from === from) return;
    const proof = from > 0 ? (await (await o.audit.tree()).consistencyProof(from, latest.size)).map(toHex) : [];
    this.#offered = { size: latest.size, from };
    this.#send({ t: 'relay-checkpoint', size: latest.size, note: latest.note, from, proof });
  }

  async #onCheckpoint(frame: Extract<RelayFrame, { t: 'relay-checkpoint' }>): Promise<void> {
    const answer = await this.link.witness.check(frame);
    if (answer.kind === 'need-proof') this.#send({ t: 'relay-witness-state', size: answer.size });
    else {
      this.#send({ t: 'relay-cosignature', size: answer.size, note: answer.note });
      this.#o.log.info({ peer: this.link.peer, size: answer.size }, 'peer relay checkpoint cosigned');
    }
  }

  async #onCosignature(size: number, note: string): Promise<void> {
    const o = this.#o;
    const peer = this.#peerCert!;
    if (!o.audit) throw new HotlineError('HL_ERR_NOT_FOUND', 'this relay signs no checkpoints');
    await o.audit.addCosignature({ party: peer.party, device: peer.relay, signKey: peer.signKey }, size, note);
    await this.link.recordWitness(this.#peerCertificate!);
    o.log.info({ peer: peer.party, size, cosigner: relayCosignerName(peer) }, 'checkpoint cosigned by the peer relay');
    if (this.#peerCosigned === undefined || size > this.#peerCosigned) this.#peerCosigned = size;
    this.#offered = undefined;
    await this.#offer();
  }

  // ----- forwarding -----

  /** Send what the peer has not confirmed, up to the window. */
  pump(): void {
    if (!this.authenticated) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    void this.#pumpLoop()
      .catch((err: unknown) => this.#o.log.error({ err: { message: (err as Error).message } }, 'relay link forwarding failed'))
      .finally(() => {
        this.#pumping = false;
        if (this.#again) {
          this.#again = false;
          this.pump();
        }
      });
  }

  async #pumpLoop(): Promise<void> {
    const o = this.#o;
    const { local, peer } = this.link;
    // Pages start from the stored floor (not from the beginning of history) on a new connection.
    await Promise.all([this.#envCursor.load(), this.#rcpCursor.load(), this.#refCursor.load()]);
    let more = true;
    /** When the last envelope page was read, if it was empty: the queue to the peer may be drained. */
    let emptyAt: number | undefined;
    while (more && this.ws.readyState === WebSocket.OPEN) {
      if (this.#inFlight.size >= WINDOW) break;
      // An envelope admitted before this read but not yet committed holds the watermark at its acceptance.
      const readAt = Math.min(o.clock.now(), o.writes.oldestUncommitted?.() ?? Number.POSITIVE_INFINITY);
      const envs = await o.store.relayOutgoing({ kind: 'envelope', local, peer, after: this.#envCursor.after, limit: PAGE });
      emptyAt = envs.length === 0 ? readAt : undefined;
      for (const row of envs) {
        const env = JSON.parse(row.json) as Envelope;
        this.#envCursor.read(row.pos, env.header.id);
        if (this.#inFlight.has(env.header.id)) continue;
        this.#inFlight.set(env.header.id, { kind: 'envelope', hash: envelopeHash(env.header), precedence: env.header.precedence });
        this.#send({ t: 'relay-envelope', envelope: env, acceptedAt: row.acceptedAt });
      }
      const rcps = await o.store.relayOutgoing({ kind: 'receipt', local, peer, after: this.#rcpCursor.after, limit: PAGE });
      for (const row of rcps) {
        const r = JSON.parse(row.json) as SignedReceipt;
        const b = r.receipt;
        const ref = `${b.messageId}/${b.kind}/${b.by.party}/${b.by.device}`;
        this.#rcpCursor.read(row.pos, ref);
        if (this.#inFlight.has(ref)) continue;
        this.#inFlight.set(ref, { kind: 'receipt', receipt: r });
        this.#send({ t: 'relay-receipt', receipt: r, acceptedAt: row.acceptedAt });
      }
      // Refusals after receipts: each answers a message of the peer's party, which it stored first.
      const refs = await o.store.relayOutgoing({ kind: 'refusal', local, peer, after: this.#refCursor.after, limit: PAGE });
      for (const row of refs) {
        const r = JSON.parse(row.json) as SignedRefusal;
        const b = r.refusal;
        const ref = `${b.messageId}/${b.by.party}/${b.by.device}`;
        this.#refCursor.read(row.pos, ref);
        if (this.#inFlight.has(ref)) continue;
        this.#inFlight.set(ref, { kind: 'refusal', refusal: r });
        this.#send({ t: 'relay-refusal', refusal: r, acceptedAt: row.acceptedAt });
      }
      more = envs.length === PAGE || rcps.length === PAGE || refs.length === PAGE;
    }
    await Promise.all([this.#envCursor.save(), this.#rcpCursor.save(), this.#refCursor.save()]);
    // Drained: no envelope for the peer is unread, and every one sent on this connection is confirmed
    // (a refused one is not: it holds the watermark until a later connection gets it stored).
    if (!more && emptyAt !== undefined && this.#envCursor.settled) this.#sendDrained(emptyAt - DRAIN_MARGIN_MS);
  }


  #sendDrained(at: number): void {
    if (at <= this.#drainedSent || at < 0) return;
    this.#drainedSent = at;
    this.#send({ t: 'relay-drained', at });
  }
}

/** Refusals on the relay link that end the connection (the rest answer one frame). */
const CLOSES_LINK = new Set<HotlineErrorCode>([
  'HL_ERR_RELAY_WRONG_PARTY',
  'HL_ERR_RELAY_FRAME_REPLAY',
  'HL_ERR_AGREEMENT_MISMATCH',
  'HL_ERR_INPUT_UNKNOWN_FRAME',
  'HL_ERR_INPUT_MALFORMED_JSON',
  'HL_ERR_INPUT_SCHEMA',
]);

function refOf(frame: RelayFrame): { ref?: string } {
  if (frame.t === 'relay-envelope') return { ref: frame.envelope.header.id };
  if (frame.t === 'relay-receipt') {
    const b = frame.receipt.receipt;
    return { ref: `${b.messageId}/${b.kind}/${b.by.party}/${b.by.device}` };
  }
  if (frame.t === 'relay-refusal') {
    const b = frame.refusal.refusal;
    return { ref: `${b.messageId}/${b.by.party}/${b.by.device}` };
  }
  if (frame.t === 'relay-checkpoint' || frame.t === 'relay-cosignature') return { ref: `checkpoint/${frame.size}` };
  return {};
}

/** What `relay-directory` carries: the whole directory, or one change. */
type DirectoryDelta = { certificates: DeviceCertificate[]; revocations: Revocation[]; prekeys?: SignedPrekey[] };

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
