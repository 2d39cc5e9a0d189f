import { ERROR_TABLE, HotlineError, type HotlineErrorCode } from '../shared/errors.js';
import { agreementHash, parseAgreement } from '../shared/crypto/keys.js';
import { envelopeHash, expectedRecipients, openEnvelope, sealEnvelope } from '../shared/crypto/envelope.js';
import { signReceipt, verifyReceipt } from '../shared/crypto/receipt.js';
import { randomId } from '../shared/crypto/random.js';
import { decodeServerFrame } from '../shared/protocol/codec.js';
import {
  PRECEDENCES,
  RECEIPT_KINDS,
  type Agreement,
  type DeviceCertBody,
  type DeviceCertificate,
  type DeviceRef,
  type DeviceSecretFile,
  type Envelope,
  type EnvelopeHeader,
  type Plaintext,
  type Precedence,
  type ReceiptKind,
  type Revocation,
  type Role,
  type SignedReceipt,
} from '../shared/protocol/schemas.js';
import type { ClientFrame, DeliverFrame, HotlineEvent, ReceiptFrame, ServerFrame } from '../shared/protocol/frames.js';
import type { StatusResponse } from '../shared/protocol/status.js';
import { TypedEmitter } from './typed-emitter.js';
import { RelayApi } from './relay-api.js';
import { VerifiedDirectory } from './directory.js';
import { LinkTestAgent } from './link-test-agent.js';
import { AuditWitness, CHECKPOINT_ATTACHMENT, type CosignResult } from './witness.js';
import { otherParties, toHotlineError, type DeviceScope } from './scope.js';
import { RankQueue } from './rank-queue.js';
import { outboxKey, type ClientStorage, type OutboxEnvelope, type OutboxItem, type SendDraft } from './storage/client-storage.js';
import { acceptSeq, isNewSeq } from '../shared/crypto/replay-window.js';
import { systemClock, WS_OPEN, type Clock, type WebSocketConstructorLike, type WebSocketLike } from './ports.js';
import type { HotlineClientEvents } from './events.js';

export { systemClock, type Clock, type WebSocketConstructorLike, type WebSocketLike } from './ports.js';
export { CHECKPOINT_ATTACHMENT, type CosignResult } from './witness.js';
export type { AuditAlarm, CheckpointGossipEvent, HotlineClientEvents, MessageEvent, ReceiptEvent, RefusedEvent } from './events.js';

/**
 * Rank of a precedence: lower goes first (PROTOCOL.md "Delivery order"). The client handles
 * incoming frames and transmits its outbox in this order, as the relay delivers.
 */
const RANK: Record<Precedence, number> = { FLASH: 0, IMMEDIATE: 1, PRIORITY: 2, ROUTINE: 3 };
/** The hello and the answers to this device's own frames: cheap, and ahead of every mailbox item. */
const CONTROL_RANK = -1;
/**
 * Bounds of one batch of incoming frames; between batches the client yields to the event loop, so
 * a burst of deliveries neither blocks the page or process nor keeps a FLASH read later waiting
 * behind the rest of the burst.
 */
const FRAME_BATCH = 16;
const FRAME_BATCH_MS = 10;
/** Precedences remembered per message id, to rank receipts and the outbox (the oldest dropped first). */
const MAX_PRECEDENCES = 20_000;

/**
 * Let the event loop run (timers, I/O, paint) before going on: setImmediate in Node, a
 * MessageChannel task in a browser (setTimeout(0) is clamped to 4 ms there once nested).
 */
function yieldToEventLoop(): Promise<void> {
  if (typeof setImmediate === 'function') return new Promise((resolve) => setImmediate(resolve));
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

type AnswerFrame = Extract<ServerFrame, { t: 'accepted' | 'receipt-accepted' }>;

function isAnswer(frame: ServerFrame | undefined): frame is AnswerFrame {
  return frame?.t === 'accepted' || frame?.t === 'receipt-accepted';
}

// ---------------------------------------------------------------------------------------------
// Options and events

export interface HotlineClientOptions {
  /** `http://host:port` or `https://…`; the WebSocket URL is derived from it. */
  serverUrl: string;
  /** The pinned agreement. The server's copy must hash the same, or the client refuses to go on. */
  agreement: Agreement;
  device: DeviceSecretFile;
  storage: ClientStorage;
  /** `ws`'s WebSocket in Node, the global WebSocket in a browser. */
  WebSocket: WebSocketConstructorLike;
  fetch?: typeof fetch;
  clock?: Clock;
  /** Source of jitter in [0, 1). */
  random?: () => number;
  backoff?: BackoffOptions;
  /**
   * Process the device's mailbox (deliveries, cursor acks). Default true. A second process on the
   * same device that only sends (`hotline send`, `hotline ack`) sets it false so that it does not
   * take messages away from the one that listens; it still sees receipts and events.
   */
  consumeMailbox?: boolean;
  /** Log in again this long before the token expires. Default 60 s. */
  tokenRefreshMarginMs?: number;
  /**
   * Act as this party's link-test agent (DESIGN.md "Link test"): once connected, and then every
   * `agreement.linkTest.intervalMs`, send a signed test message (`linkTest: true`, ROUTINE) to each
   * other party. Their operator devices answer with the automatic `delivered` receipt; the server
   * judges the round trip and tells both parties (`link.test`, `link.up`, `link.down` events).
   * Operator devices only. Default false.
   */
  testAgent?: boolean;
  /**
   * Cosign the audit log's checkpoints (DESIGN.md "Audit log"): once connected, and then every
   * `cosignIntervalMs`, run {@link HotlineClient.cosignLatest}. Operator and auditor devices.
   * Default false (`hotline listen` turns it on for operators).
   */
  cosign?: boolean;
  /** Default 60 s. */
  cosignIntervalMs?: number;
  /**
   * Asked before every seal, including the automatic reseal after HL_ERR_ENVELOPE_RECIPIENTS:
   * throw (a HotlineError) to refuse sealing to these devices, e.g. a console that only encrypts
   * to peer keys its operator confirmed. A refused reseal drops the message with a `refused` event.
   */
  approveRecipients?: (recipients: readonly DeviceCertBody[], draft: SendDraft) => void;
}

export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
}

/** What a caller sends: the client seals it. */
export interface SendInput {
  to: string;
  /** Case-insensitive: 'flash' and 'FLASH' are the same. */
  precedence: Precedence | Lowercase<Precedence>;
  subject?: string;
  body: string;
  /** BCP 47 language of the body; default the first language of the sender's party. */
  lang?: string;
  exercise?: boolean;
  replyTo?: string;
  /** Mark it as a link-test message (what the test agent sends); it opens no deadlines. */
  linkTest?: boolean;
  /** Sealed with the text, e.g. the checkpoint the test agent gossips ({@link CHECKPOINT_ATTACHMENT}). */
  attachments?: NonNullable<Plaintext['attachments']>;
}

/** Codes after which retrying cannot help: the client stops and reports. */
const FATAL_CODES = new Set<string>([
  'HL_ERR_AGREEMENT_MISMATCH',
  'HL_ERR_AGREEMENT_INVALID',
  'HL_ERR_CERT_MALFORMED',
  'HL_ERR_CERT_UNKNOWN_PARTY',
  'HL_ERR_CERT_BAD_SIGNATURE',
  'HL_ERR_CERT_NOT_YET_VALID',
  'HL_ERR_CERT_EXPIRED',
  'HL_ERR_CERT_REVOKED',
  'HL_ERR_CERT_WRONG_ROLE',
  'HL_ERR_AUTH_BAD_SIGNATURE',
  'HL_ERR_AUTH_FORBIDDEN',
  'HL_ERR_AUTH_ORIGIN',
  'HL_ERR_KEY_INVALID',
]);

/** Refusals of an envelope after which it stays in the outbox for the next connection. */
const TRANSIENT_CODES = new Set<string>([
  'HL_ERR_STORE_FAILED',
  'HL_ERR_SERVER_SHUTTING_DOWN',
  'HL_ERR_SERVER_SLOW_CONSUMER',
  'HL_ERR_INPUT_RATE_LIMITED',
  'HL_ERR_INTERNAL',
]);

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential, capped, with "equal jitter"
 * (half fixed, half random) so that many clients cut off together do not return together.
 */
export function backoffDelay(attempt: number, random: () => number, options: BackoffOptions = {}): number {
  const initial = options.initialMs ?? 500;
  const max = options.maxMs ?? 30_000;
  const cap = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.round(cap / 2 + random() * (cap / 2));
}

// ---------------------------------------------------------------------------------------------

/**
 * A Hotline device's link to the relay: login, the WebSocket, reconnect, the durable outbox, the
 * de-duplicated inbox, automatic `delivered` receipts and verification of everything that comes in.
 * The server is trusted for availability only: every certificate, envelope and receipt is checked
 * here against the pinned agreement.
 *
 * @example
 * const client = new HotlineClient({ serverUrl, agreement, device, storage: new FileStorage(path), WebSocket });
 * client.on('message', ({ header, plaintext }) => console.log(header.precedence, plaintext.body));
 * client.on('receipt', ({ receipt, verified }) => console.log(receipt.receipt.kind, verified));
 * await client.start();
 * const { id } = await client.send({ to: 'cn-mnd', precedence: 'FLASH', body: '至急連絡', lang: 'ja' });
 */
export class HotlineClient extends TypedEmitter<HotlineClientEvents> {
  readonly agreement: Agreement;
  readonly agreementHash: string;
  /** This device: party, device id and role from its certificate. */
  readonly me: DeviceRef & { role: Role };

  readonly #o: HotlineClientOptions;
  readonly #key: string;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #consume: boolean;
  readonly #api: RelayApi;
  readonly #directory: VerifiedDirectory;
  readonly #witness: AuditWitness;
  readonly #agent: LinkTestAgent;

  #running = false;
  #ws: WebSocketLike | undefined;
  #helloReceived = false;
  #attempt = 0;
  #reconnectTimer: unknown;
  /** Items already written to the current connection (keys), so a flush does not send them twice. */
  #sentOnThisConnection = new Set<string>();
  /** Incoming frames not handled yet, by rank then arrival. */
  #incoming = new RankQueue<ServerFrame>();
  /** The running drain of {@link #incoming}, if any. */
  #draining: Promise<void> | undefined;
  /** Precedence per message id (sent, received, queued), to rank receipts and outbox items. */
  #precedenceOf = new Map<string, Precedence>();
  #precedencesLoaded = false;
  #compose: Promise<unknown> = Promise.resolve();
  #startWaiters: { resolve: () => void; reject: (e: HotlineError) => void }[] = [];

  constructor(options: HotlineClientOptions) {
    super();
    this.#o = options;
    this.agreement = parseAgreement(options.agreement);
    this.agreementHash = agreementHash(this.agreement);
    const c = options.device.certificate.cert;
    this.me = { party: c.party, device: c.device, role: c.role };
    this.#key = `${c.party}/${c.device}`;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#consume = options.consumeMailbox ?? true;
    const scope: DeviceScope = {
      agreement: this.agreement,
      me: this.me,
      key: this.#key,
      device: options.device,
      storage: options.storage,
      clock: this.#clock,
      emit: (event, payload) => this.emit(event, payload),
      report: (err) => this.#report(err),
      running: () => this.#running,
    };
    this.#api = new RelayApi({
      ...scope,
      serverUrl: options.serverUrl,
      agreementHash: this.agreementHash,
      ...(options.fetch ? { fetch: options.fetch } : {}),
      tokenRefreshMarginMs: options.tokenRefreshMarginMs,
    });
    this.#directory = new VerifiedDirectory({ ...scope, api: this.#api });
    this.#witness = new AuditWitness({ ...scope, cosign: options.cosign, cosignIntervalMs: options.cosignIntervalMs, api: this.#api, directory: this.#directory });
    this.#agent = new LinkTestAgent({
      ...scope,
      on: options.testAgent ?? false,
      connected: () => this.connected,
      send: (input) => this.send(input),
      firstRound: () => this.#witness.firstRound,
    });
  }

  /** True between the server's `hello` and the socket closing. */
  get connected(): boolean {
    return this.#helloReceived && this.#ws?.readyState === WS_OPEN;
  }

  /**
   * Start connecting (and keep reconnecting until {@link stop}). Resolves at the first `hello`;
   * rejects when the server cannot be used at all (agreement mismatch, certificate refused).
   */
  start(): Promise<void> {
    const p = new Promise<void>((resolve, reject) => this.#startWaiters.push({ resolve, reject }));
    if (this.connected) this.#settleStart();
    if (!this.#running) {
      this.#running = true;
      this.#attempt = 0;
      void this.#connect();
    }
    return p;
  }

  /** Close the link and stop reconnecting. Pending outbox items stay stored for the next start. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#clock.clearTimeout(this.#reconnectTimer);
    this.#api.stop();
    this.#agent.stop();
    this.#witness.stop();
    const ws = this.#ws;
    if (ws && ws.readyState <= WS_OPEN) ws.close(1000, 'client stopping');
    this.#settleStart(new HotlineError('HL_ERR_CLIENT_TIMEOUT', 'client stopped before it connected'));
    // Frames not handled yet are dropped: nothing of them was acknowledged, so the relay sends them again.
    this.#incoming.remove(() => true);
    await this.#draining;
    await this.#compose.catch(() => undefined);
    await this.#witness.settled();
  }

  /**
   * Seal a message and put it in the durable outbox; it goes now if connected, else on reconnect.
   * Resolves once it is stored (not once accepted: listen for 'accepted' with this id).
   */
  send(input: SendInput): Promise<{ id: string }> {
    const run = this.#compose.then(() => this.#send(input));
    this.#compose = run.catch(() => undefined);
    return run;
  }

  async #send(input: SendInput): Promise<{ id: string }> {
    if (this.me.role !== 'operator') {
      throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `${this.#key} is a ${this.me.role} device; only operator devices send`);
    }
    const party = this.agreement.parties.find((p) => p.id === input.to);
    if (!party || input.to === this.me.party) {
      throw new HotlineError('HL_ERR_ENVELOPE_UNKNOWN_PARTY', `${input.to} is not another party of the agreement (${otherParties(this).join(', ')})`);
    }
    const precedence = input.precedence.toUpperCase() as Precedence;
    if (!PRECEDENCES.includes(precedence)) {
      throw new HotlineError('HL_ERR_INPUT_SCHEMA', `precedence must be one of ${PRECEDENCES.join(', ')}`);
    }
    const mine = this.agreement.parties.find((p) => p.id === this.me.party);
    const plaintext: Plaintext = {
      body: input.body,
      lang: input.lang ?? mine?.languages[0] ?? 'en',
      ...(input.subject === undefined ? {} : { subject: input.subject }),
      ...(input.attachments === undefined ? {} : { attachments: input.attachments }),
    };
    const draft: SendDraft = {
      to: input.to,
      precedence,
      plaintext,
      ...(input.exercise ? { exercise: true } : {}),
      ...(input.replyTo === undefined ? {} : { replyTo: input.replyTo }),
      ...(input.linkTest ? { linkTest: true } : {}),
    };
    await this.#directory.ensureLoaded();
    const id = randomId();
    const item = await this.#sealAndStore({ id, draft, composedAt: this.#clock.now(), resealed: 0 });
    this.#rememberPrecedence(id, precedence);
    this.#transmit(item);
    return { id };
  }

  /**
   * Sign a receipt (`acknowledged` by default) for a message in this device's inbox and send it
   * through the outbox. Only operator devices of the addressee party may.
   */
  async acknowledge(messageId: string, kind: Exclude<ReceiptKind, 'delivered'> = 'acknowledged'): Promise<SignedReceipt> {
    const state = await this.#o.storage.read(this.#key);
    const rec = state.inbox[messageId];
    if (!rec) {
      throw new HotlineError('HL_ERR_RECEIPT_UNKNOWN_MESSAGE', `message ${messageId} is not in the inbox of ${this.#key}; is the id right, and did this device receive it?`);
    }
    if (this.me.role !== 'operator' || rec.header.to !== this.me.party) {
      throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `${this.#key} cannot answer ${messageId}: only operator devices of ${rec.header.to} can`);
    }
    const receipt = await signReceipt(this.#o.device, rec.header, kind, this.#clock.now());
    const item: OutboxItem = { kind: 'receipt', messageId, receiptKind: kind, receipt };
    await this.#o.storage.update(this.#key, (s) => {
      s.outbox[outboxKey(item)] = item;
      const r = s.inbox[messageId];
      if (r && kind === 'acknowledged') r.acknowledgedAt = receipt.receipt.at;
    });
    this.#transmit(item);
    return receipt;
  }

  /**
   * The party's view from the relay (`GET /v1/status`): open deadlines of messages waiting for this
   * party and of messages it sent, with time left or overdue, and the last link test of each pair.
   * Needs no WebSocket; operator and auditor devices only.
   */
  async status(): Promise<StatusResponse> {
    return this.#api.status();
  }

  /**
   * The server's audit export (`GET /v1/audit/export`; auditor devices only), unverified: check it
   * with `verifyAuditExport(agreement, value)` before trusting any of it.
   */
  async auditExport(): Promise<unknown> {
    return this.#api.auditExport();
  }

  /** The verified, currently valid certificates of the directory (as of the last fetch). */
  directory(): DeviceCertBody[] {
    return this.#directory.list();
  }

  /** The raw directory as last fetched (certificates and revocations), e.g. to save for `hotline seal`. */
  directorySnapshot(): Promise<{ certificates: DeviceCertificate[]; revocations: Revocation[]; fetchedAt: number } | undefined> {
    return this.#directory.snapshot();
  }

  /** Fetch the directory from the server and verify every certificate and revocation here. */
  refreshDirectory(): Promise<DeviceCertBody[]> {
    return this.#directory.refresh();
  }

  // -------------------------------------------------------------------------------------------
  // Connection

  async #connect(): Promise<void> {
    if (!this.#running) return;
    let ws: WebSocketLike;
    try {
      await this.#api.checkAgreement();
      await this.#api.ensureToken();
      await this.#directory.ensureLoaded();
      await this.#directory.refresh();
      await this.#loadPrecedences();
      if (!this.#running) return;
      const url = this.#api.baseUrl.replace(/^http/, 'ws') + '/v1/link';
      // The token travels as a subprotocol, never in the URL (URLs end up in logs).
      ws = new this.#o.WebSocket(url, ['hotline.v1', `bearer.${this.#api.token!}`]);
    } catch (err) {
      const e = toHotlineError(err);
      if (FATAL_CODES.has(e.code)) {
        this.#running = false;
        this.#settleStart(e);
        this.#report(e);
        return;
      }
      this.#report(e);
      this.#scheduleReconnect(0, e.message);
      return;
    }
    this.#ws = ws;
    this.#helloReceived = false;
    this.#sentOnThisConnection = new Set();
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (ev) => {
      let frame: ServerFrame;
      try {
        // The one frame codec (shared/protocol/codec.ts): size, UTF-8, JSON, schema.
        frame = decodeServerFrame(typeof ev.data === 'string' ? ev.data : (ev.data as Uint8Array));
      } catch (err) {
        this.#report(toHotlineError(err));
        return;
      }
      this.#incoming.push(this.#rankOf(frame), frame);
      this.#draining ??= this.#drain();
    };
    ws.onerror = () => {
      /* the close event follows and carries what can be known */
    };
    ws.onclose = (ev) => {
      if (this.#ws !== ws) return;
      const wasConnected = this.#helloReceived;
      this.#ws = undefined;
      this.#helloReceived = false;
      // Refused before the upgrade (bad or expired token): log in afresh next time.
      if (!opened) this.#api.forgetToken();
      if (wasConnected) this.#attempt = 0;
      const closeCode = codeOfClose(ev.code);
      if (closeCode !== undefined && FATAL_CODES.has(closeCode)) {
        this.#running = false;
        const e = new HotlineError(closeCode, ev.reason || `the server closed the link with ${closeCode}`);
        this.#settleStart(e);
        this.#report(e);
      }
      this.#scheduleReconnect(ev.code, ev.reason);
    };
  }

  #scheduleReconnect(code: number, reason: string): void {
    if (!this.#running) {
      this.emit('disconnected', { code, reason });
      return;
    }
    const delay = backoffDelay(this.#attempt++, this.#random, this.#o.backoff);
    this.emit('disconnected', { code, reason, retryInMs: delay });
    this.#clock.clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = this.#clock.setTimeout(() => void this.#connect(), delay);
  }

  // -------------------------------------------------------------------------------------------
  // Outbox

  /**
   * Seal `item.draft` with the next seq and store the seq and the outbox item in one update (a new
   * item, or a reseal replacing the one under the same key). The envelope leaves this device only
   * after that update, so a crash never reuses a seq that was sent; a seq sealed but not stored was
   * never sent and may be used again. Another process on the same device may take the seq meanwhile:
   * then it is sealed again with the next one (the lock makes the check and the store one step).
   */
  async #sealAndStore(item: Omit<OutboxEnvelope, 'kind' | 'envelope'>): Promise<OutboxEnvelope> {
    for (let attempt = 0; ; attempt++) {
      const seq = (await this.#o.storage.read(this.#key)).lastSeq + 1;
      const next: OutboxEnvelope = { kind: 'envelope', ...item, envelope: await this.#seal(item.id, item.draft, seq) };
      const stored = await this.#o.storage.update(this.#key, (s) => {
        if (s.lastSeq >= seq) return false;
        s.lastSeq = seq;
        s.outbox[outboxKey(next)] = next;
        return true;
      });
      if (stored) return next;
      if (attempt >= 10) throw new HotlineError('HL_ERR_STORE_FAILED', `another process keeps taking the seqs of ${this.#key}`);
    }
  }

  async #seal(id: string, draft: SendDraft, seq: number): Promise<Envelope> {
    const recipients = expectedRecipients(this.#directory.list(), this.me, draft.to);
    if (recipients.length === 0) {
      throw new HotlineError('HL_ERR_ENVELOPE_RECIPIENTS', `no device to encrypt for: connect once to fetch the directory, or enrol ${draft.to}'s devices`);
    }
    this.#o.approveRecipients?.(recipients, draft);
    return sealEnvelope({
      sender: this.#o.device,
      id,
      to: draft.to,
      precedence: draft.precedence,
      seq,
      sentAt: this.#clock.now(),
      recipients,
      plaintext: draft.plaintext,
      ...(draft.exercise ? { exercise: true } : {}),
      ...(draft.replyTo === undefined ? {} : { replyTo: draft.replyTo }),
      ...(draft.linkTest ? { linkTest: true } : {}),
    });
  }

  #transmit(item: OutboxItem): void {
    if (!this.connected) return;
    // A resealed envelope (same key, new seq) goes again.
    const k = item.kind === 'envelope' ? `${outboxKey(item)}:${item.envelope.header.seq}` : outboxKey(item);
    if (this.#sentOnThisConnection.has(k)) return;
    this.#sentOnThisConnection.add(k);
    this.#write(item.kind === 'envelope' ? { t: 'envelope', envelope: item.envelope } : { t: 'receipt', receipt: item.receipt });
  }

  #write(frame: ClientFrame): void {
    const ws = this.#ws;
    if (ws && ws.readyState === WS_OPEN) ws.send(JSON.stringify(frame));
  }

  /** Transmit what waits in the outbox: highest precedence first, then in the order queued. */
  async #flushOutbox(): Promise<void> {
    const state = await this.#o.storage.read(this.#key);
    const rank = (item: OutboxItem) =>
      RANK[item.kind === 'envelope' ? item.draft.precedence : (state.inbox[item.messageId]?.header.precedence ?? this.#precedenceOf.get(item.messageId) ?? 'ROUTINE')];
    // Array sort is stable: within one rank the outbox's order (queued order) stays.
    for (const item of Object.values(state.outbox).sort((a, b) => rank(a) - rank(b))) this.#transmit(item);
  }

  /**
   * The relay's `accepted` and `receipt-accepted` for several outbox items, stored in one update:
   * with many items in flight these answers come in runs, and each would otherwise cost an fsync.
   */
  async #onAnswers(frames: readonly AnswerFrame[]): Promise<void> {
    await this.#o.storage.update(this.#key, (s) => {
      for (const f of frames) {
        if (f.t === 'receipt-accepted') {
          delete s.outbox[`r:${f.messageId}:${f.kind}`];
          continue;
        }
        const key = `e:${f.id}`;
        const item = s.outbox[key];
        if (item?.kind !== 'envelope') continue;
        delete s.outbox[key];
        s.sent[f.id] ??= { header: item.envelope.header, envelopeHash: envelopeHash(item.envelope.header), receipts: [] };
        s.sent[f.id]!.acceptedAt = f.at;
      }
    });
    for (const f of frames) {
      if (f.t === 'accepted') this.emit('accepted', { id: f.id, envelopeHash: f.envelopeHash, at: f.at });
      else this.emit('receipt-accepted', { messageId: f.messageId, kind: f.kind, at: f.at });
    }
  }

  async #onRefused(code: string, message: string, ref: string | undefined): Promise<void> {
    const state = await this.#o.storage.read(this.#key);
    const found = ref === undefined ? undefined : state.outbox[`e:${ref}`];
    const item = found?.kind === 'envelope' ? found : undefined;
    if (item && TRANSIENT_CODES.has(code)) {
      this.#report(new HotlineError(code as HotlineErrorCode, `${message} (message ${ref} stays in the outbox)`));
      return;
    }
    // Recipients changed (a device enrolled or revoked), or another process on this device used
    // the seq: fetch the directory again and reseal once with a fresh seq.
    if (item && item.resealed === 0 && (code === 'HL_ERR_ENVELOPE_RECIPIENTS' || code === 'HL_ERR_ENVELOPE_REPLAY')) {
      try {
        if (code === 'HL_ERR_ENVELOPE_RECIPIENTS') await this.#directory.refresh();
        const { kind: _kind, envelope: _old, ...rest } = item;
        const next = await this.#compose.then(() => this.#sealAndStore({ ...rest, resealed: item.resealed + 1 }));
        this.#transmit(next);
        return;
      } catch (err) {
        this.#report(toHotlineError(err));
      }
    }
    if (ref !== undefined) {
      await this.#o.storage.update(this.#key, (s) => {
        delete s.outbox[`e:${ref}`];
        if (code.startsWith('HL_ERR_RECEIPT_')) for (const kind of RECEIPT_KINDS) delete s.outbox[`r:${ref}:${kind}`];
      });
    }
    this.emit('refused', ref === undefined ? { code, message } : { code, message, ref });
  }

  // -------------------------------------------------------------------------------------------
  // Incoming frames: one at a time, highest rank first, in bounded batches

  #rankOf(frame: ServerFrame): number {
    switch (frame.t) {
      case 'deliver':
        return RANK[frame.envelope.header.precedence];
      case 'receipt':
        // A receipt goes with its message; one for a message unknown here goes last.
        return RANK[this.#precedenceOf.get(frame.receipt.receipt.messageId) ?? 'ROUTINE'];
      case 'event':
        return frame.event.type === 'deadline.missed' || frame.event.type === 'deadline.met' ? RANK[frame.event.precedence] : 0;
      default:
        return CONTROL_RANK;
    }
  }

  /**
   * Handle queued frames until none is left. It starts after a yield, so that every frame of the
   * socket reads at hand is queued (and ranked) first: ws and browsers hand over all messages of
   * one read synchronously. Each frame is taken from the queue only when the one before is done,
   * so a FLASH that arrives meanwhile is next.
   */
  async #drain(): Promise<void> {
    for (;;) {
      await yieldToEventLoop();
      const started = Date.now();
      for (let n = 0; n < FRAME_BATCH && Date.now() - started < FRAME_BATCH_MS; n++) {
        const frame = this.#incoming.shift();
        if (frame === undefined) {
          // Checked and cleared in one step: a frame queued after this starts a new drain.
          this.#draining = undefined;
          return;
        }
        try {
          if (isAnswer(frame)) {
            // A run of answers (ranked together, ahead of the mailbox) is stored in one update.
            const run = [frame];
            while (n + run.length < FRAME_BATCH && isAnswer(this.#incoming.peek())) run.push(this.#incoming.shift() as AnswerFrame);
            n += run.length - 1;
            await this.#onAnswers(run);
          } else {
            await this.#onFrame(frame);
          }
        } catch (err) {
          this.#report(toHotlineError(err));
        }
      }
    }
  }

  async #onFrame(frame: ServerFrame): Promise<void> {
    switch (frame.t) {
      case 'hello':
        this.#helloReceived = true;
        this.#attempt = 0;
        // A device whose state was lost or restored from an old copy continues above the last seq
        // the server accepted from it; outbox items sealed with a stale seq are resealed once.
        if (frame.lastSeq > 0) await this.#o.storage.update(this.#key, (s) => void (s.lastSeq = Math.max(s.lastSeq, frame.lastSeq)));
        this.emit('connected', { serverTime: frame.serverTime, lastCursor: frame.lastCursor });
        this.#settleStart();
        await this.#flushOutbox();
        this.#witness.start();
        this.#agent.start();
        return;
      case 'accepted':
      case 'receipt-accepted':
        await this.#onAnswers([frame]);
        return;
      case 'error':
        await this.#onRefused(frame.code, frame.message, frame.ref);
        return;
      case 'deliver':
        if (!this.#consume) return;
        await this.#onDeliver(frame);
        this.#ack(frame.cursor);
        return;
      case 'receipt':
        await this.#onReceipt(frame);
        this.#ack(frame.cursor);
        return;
      case 'event':
        this.emit('event', frame.event);
        this.#emitTyped(frame.event);
        this.#ack(frame.cursor);
        return;
    }
  }

  /**
   * Acknowledge exactly the item with this cursor (PROTOCOL.md "Ack"): items are handled by rank,
   * not in cursor order, so one ack must not cover the items below it. One frame per item until the
   * relay's schema takes `cursors` (several at once).
   */
  #ack(cursor: number): void {
    if (this.#consume) this.#write({ t: 'ack', cursor });
  }

  /** Remember a message's precedence for ranking; bounded, the oldest forgotten first. */
  #rememberPrecedence(id: string, precedence: Precedence): void {
    this.#precedenceOf.delete(id);
    this.#precedenceOf.set(id, precedence);
    if (this.#precedenceOf.size > MAX_PRECEDENCES) this.#precedenceOf.delete(this.#precedenceOf.keys().next().value!);
  }

  /** Once per client: the precedences of the messages the stored state knows. */
  async #loadPrecedences(): Promise<void> {
    if (this.#precedencesLoaded) return;
    this.#precedencesLoaded = true;
    const state = await this.#o.storage.read(this.#key);
    for (const [id, rec] of Object.entries(state.inbox)) this.#rememberPrecedence(id, rec.header.precedence);
    for (const [id, rec] of Object.entries(state.sent)) this.#rememberPrecedence(id, rec.header.precedence);
    for (const item of Object.values(state.outbox)) if (item.kind === 'envelope') this.#rememberPrecedence(item.id, item.draft.precedence);
  }

  async #onDeliver(frame: DeliverFrame): Promise<void> {
    const h = frame.envelope.header;
    const state = await this.#o.storage.read(this.#key);
    const hash = envelopeHash(h);
    const senderKey = `${h.from.party}/${h.from.device}`;
    const known = state.inbox[h.id];
    if (known) {
      // The same message again (a redelivery after a lost ack) is dropped quietly; another
      // envelope under a known id is an attempt to replace it.
      if (known.envelopeHash !== hash) this.#report(new HotlineError('HL_ERR_ENVELOPE_DUPLICATE_ID', `refused a second, different envelope with id ${h.id} from ${senderKey}`));
      return;
    }
    let opened: { header: EnvelopeHeader; plaintext: Plaintext };
    try {
      const senderCert = await this.#directory.certFor(h.from);
      opened = await openEnvelope(frame.envelope, { device: this.#o.device, senderCert });
      if (!isNewSeq(state.peerSeq[senderKey], h.seq)) {
        throw new HotlineError('HL_ERR_ENVELOPE_REPLAY', `seq ${h.seq} of ${senderKey} was already seen or is older than the replay window`);
      }
    } catch (err) {
      // Not remembered by id: a forgery carrying a genuine message's id must not suppress it.
      const e = toHotlineError(err);
      this.#report(new HotlineError(e.code, `refused message ${h.id} from ${senderKey}: ${e.message}`, { cause: e }));
      return;
    }
    // Only the addressee's operators answer; archives and the sender's own colleagues never do.
    const answer = h.to === this.me.party && this.me.role === 'operator';
    const receipt = answer ? await signReceipt(this.#o.device, h, 'delivered', this.#clock.now()) : undefined;
    const isNew = await this.#o.storage.update(this.#key, (s) => {
      // Checked again against the latest state: another process on this device may have taken it.
      if (s.inbox[h.id] || !isNewSeq(s.peerSeq[senderKey], h.seq)) return false;
      s.inbox[h.id] = { header: h, envelopeHash: hash, receivedAt: this.#clock.now() };
      s.peerSeq[senderKey] = acceptSeq(s.peerSeq[senderKey], h.seq, senderKey);
      if (receipt) s.outbox[`r:${h.id}:delivered`] = { kind: 'receipt', messageId: h.id, receiptKind: 'delivered', receipt };
      return true;
    });
    if (!isNew) return;
    this.#rememberPrecedence(h.id, h.precedence);
    this.emit('message', { header: opened.header, plaintext: opened.plaintext, envelopeHash: hash, acceptedAt: frame.acceptedAt });
    if (receipt) this.#transmit({ kind: 'receipt', messageId: h.id, receiptKind: 'delivered', receipt });
    const gossip = opened.plaintext.attachments?.find((a) => a.name === CHECKPOINT_ATTACHMENT.name && a.type === CHECKPOINT_ATTACHMENT.type);
    if (h.linkTest && gossip && this.me.role === 'operator') {
      // Queued with the cosigning rounds, not awaited, so that frames keep flowing.
      this.#witness.queueGossip({ party: h.from.party, device: h.from.device }, gossip.data);
    }
  }

  async #onReceipt(frame: ReceiptFrame): Promise<void> {
    const body = frame.receipt.receipt;
    const state = await this.#o.storage.read(this.#key);
    const header = state.sent[body.messageId]?.header ?? state.inbox[body.messageId]?.header;
    let verified = false;
    let error: HotlineError | undefined;
    try {
      const cert = await this.#directory.certFor(body.by);
      await verifyReceipt(frame.receipt, cert, header);
      verified = true;
    } catch (err) {
      error = toHotlineError(err);
    }
    if (verified && state.sent[body.messageId]) {
      await this.#o.storage.update(this.#key, (s) => {
        const rec = s.sent[body.messageId];
        if (rec && !rec.receipts.some((r) => r.kind === body.kind && r.by.party === body.by.party && r.by.device === body.by.device)) {
          rec.receipts.push(body);
        }
      });
    }
    this.emit('receipt', { receipt: frame.receipt, verified, headerChecked: header !== undefined, ...(error ? { error } : {}) });
  }

  #emitTyped(event: HotlineEvent): void {
    switch (event.type) {
      case 'deadline.missed':
        this.emit('deadline.missed', event);
        return;
      case 'deadline.met':
        this.emit('deadline.met', event);
        return;
      case 'link.test':
      case 'link.up':
      case 'link.down':
        this.emit('link', event);
        return;
      default:
        return;
    }
  }

  /**
   * Turn the link-test agent ({@link HotlineClientOptions.testAgent}) on or off while running, e.g.
   * from a console's switch. Turned on while connected, it sends a test at once.
   */
  setTestAgent(on: boolean): void {
    this.#agent.set(on);
  }

  /**
   * Send one link test to each other party now (what the test agent does on its interval). A test
   * is not queued while disconnected: a stale test says nothing about the link now.
   */
  sendLinkTests(): Promise<{ id: string; to: string }[]> {
    return this.#agent.sendLinkTests();
  }

  /**
   * Cosign the server's latest checkpoint, as a party's witness (DESIGN.md "Audit log"): verify the
   * log's signature (and any cosignature by a known device), check that no checkpoint seen so far
   * has another root for the same size, verify a consistency proof from the last checkpoint this
   * device cosigned (remembered in its storage), then add this device's cosignature/v1 and post it.
   * Any failure is an alarm: `audit.alarm` is emitted here, reported to the server, and the call
   * rejects with the alarm's `HL_ERR_AUDIT_*` code; nothing is cosigned.
   *
   * @example
   * const r = await client.cosignLatest(); // { status: 'cosigned', size: 42, from: 37 }
   */
  cosignLatest(): Promise<CosignResult> {
    return this.#witness.cosignLatest();
  }

  // -------------------------------------------------------------------------------------------

  #settleStart(err?: HotlineError): void {
    const waiters = this.#startWaiters;
    this.#startWaiters = [];
    for (const w of waiters) {
      if (err) w.reject(err);
      else w.resolve();
    }
  }

  #report(err: HotlineError): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

}

/** The error code a WebSocket close code stands for (first match in the table). */
function codeOfClose(wsCode: number): HotlineErrorCode | undefined {
  for (const [code, row] of Object.entries(ERROR_TABLE)) if (row.ws === wsCode) return code as HotlineErrorCode;
  return undefined;
}
