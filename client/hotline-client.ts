import { ERROR_TABLE, HotlineError, isHotlineErrorCode, type HotlineErrorCode } from '../shared/errors.js';
import { agreementHash, CONTEXT, parseAgreement, signingBytes, verifyDeviceCertificate, verifyRevocation } from '../shared/crypto/keys.js';
import { envelopeHash, expectedRecipients, openEnvelope, sealEnvelope } from '../shared/crypto/envelope.js';
import { signReceipt, verifyReceipt } from '../shared/crypto/receipt.js';
import { ed25519Sign } from '../shared/crypto/ed25519.js';
import { randomId } from '../shared/crypto/random.js';
import { fromBase64, fromUtf8, toBase64, utf8 } from '../shared/encoding/base64.js';
import { assertSchema, parseJson } from '../shared/protocol/validate.js';
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
import type {
  ServerFrame} from '../shared/protocol/frames.js';
import {
  type ClientFrame,
  type DeadlineMetEvent,
  type DeadlineMissedEvent,
  type DeliverFrame,
  type HotlineEvent,
  type LinkEvent,
  type ReceiptFrame,
} from '../shared/protocol/frames.js';
import { StatusResponse } from '../shared/protocol/status.js';
import { cosignCheckpoint, parseCheckpoint, verifyCheckpoint, type NoteVerifier } from '../shared/audit/checkpoint.js';
import { verifyConsistency } from '../shared/audit/merkle.js';
import { cosignerName, logKeyName } from '../shared/audit/log-verify.js';
import { TypedEmitter } from './typed-emitter.js';
import { RankQueue } from './rank-queue.js';
import { outboxKey, type ClientStorage, type OutboxEnvelope, type OutboxItem, type SendDraft } from './storage/client-storage.js';
import { acceptSeq, isNewSeq } from '../shared/crypto/replay-window.js';

// ---------------------------------------------------------------------------------------------
// Ports

/** Time and timers, injected so that tests move time instead of waiting. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

// Handlers declared with method syntax are checked bivariantly, so both the browser's WebSocket
// and the `ws` package (whose event types differ in detail) fit this interface.
type Handler<E> = { bivarianceHack(event: E): void }['bivarianceHack'];

/** The part of the WebSocket API the client uses: the browser's global and `ws` both provide it. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructorLike = new (url: string, protocols: string[]) => WebSocketLike;

const WS_OPEN = 1;

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

/** The outcome of one {@link HotlineClient.cosignLatest}. */
export type CosignResult =
  | { status: 'cosigned'; size: number; from?: number }
  | { status: 'unchanged'; size: number }
  /** The server has signed no checkpoint yet (or has no log key). */
  | { status: 'none' };

/** An audit alarm raised here: the `audit.alarm` event with the error code that caused it. */
export type AuditAlarm = Extract<HotlineEvent, { type: 'audit.alarm' }> & { code: HotlineErrorCode };

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

/**
 * How a link test carries the newest checkpoint its sender verified (checkpoint gossip): an
 * attachment with this name and type whose data is base64(UTF-8 of the signed note). The server
 * cannot read or alter it, so each party sees the tree head the log showed the other.
 */
export const CHECKPOINT_ATTACHMENT = { name: 'checkpoint', type: 'application/vnd.hotline.checkpoint' } as const;

/** A checkpoint gossiped in a peer's link test that verified and agrees with everything seen here. */
export interface CheckpointGossipEvent {
  from: DeviceRef;
  size: number;
  /** base64 root hash. */
  root: string;
  /** True if this device had already seen this size (with the same root); false if it is new here. */
  known: boolean;
  at: number;
}

export interface MessageEvent {
  header: EnvelopeHeader;
  plaintext: Plaintext;
  envelopeHash: string;
  acceptedAt: number;
}

export interface ReceiptEvent {
  receipt: SignedReceipt;
  /** Signed by a device whose certificate chains to the pinned agreement (and, when the message is known here, bound to its header). */
  verified: boolean;
  /** Whether the receipt was checked against the message header this device holds. */
  headerChecked: boolean;
  error?: HotlineError;
}

export interface RefusedEvent {
  code: string;
  message: string;
  ref?: string;
}

export interface HotlineClientEvents {
  /** Logged in (at start, and at each renewal of the token before it expires). */
  session: { role: string; expiresAt: number };
  connected: { serverTime: number; lastCursor: number };
  disconnected: { code: number; reason: string; retryInMs?: number };
  message: MessageEvent;
  receipt: ReceiptEvent;
  accepted: { id: string; envelopeHash: string; at: number };
  'receipt-accepted': { messageId: string; kind: string; at: number };
  /** Every event frame: deadline, link and audit events. The typed events below follow it. */
  event: HotlineEvent;
  /** A deadline passed before its rung was reached (level 1), or a reminder of it (level 2, 3, …). */
  'deadline.missed': DeadlineMissedEvent;
  /** A missed deadline's rung was reached at last (`late: true`). */
  'deadline.met': DeadlineMetEvent;
  /** A link test's result (`link.test`) or a change of the link's state (`link.up`, `link.down`). */
  link: LinkEvent;
  /** This device, as test agent, sent a link test to `to`. */
  'link-test-sent': { id: string; to: string; at: number };
  /** This device cosigned the checkpoint of `size` after checking it (and the proof from `from`). */
  cosigned: { size: number; from?: number; at: number };
  /** A peer's link test carried a checkpoint that verified and agreed with this device's (now remembered). */
  'checkpoint-gossip': CheckpointGossipEvent;
  /** The directory was fetched and verified again (at each connection, after a refusal, on demand): the valid certificates now. */
  directory: { certificates: DeviceCertBody[]; fetchedAt: number };
  /**
   * A checkpoint failed its checks here (bad signature, inconsistent proof, two roots for one
   * size): raised locally first (also as an `event`), then reported to the server.
   */
  'audit.alarm': AuditAlarm;
  refused: RefusedEvent;
  error: HotlineError;
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
  readonly #fetch: typeof fetch;
  readonly #consume: boolean;
  readonly #baseUrl: string;

  #running = false;
  #ws: WebSocketLike | undefined;
  #helloReceived = false;
  #attempt = 0;
  #reconnectTimer: unknown;
  #refreshTimer: unknown;
  #token: { token: string; expiresAt: number } | undefined;
  #directory = new Map<string, DeviceCertBody>();
  #directoryLoaded = false;
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
  #testTimer: unknown;
  #testAgentRunning = false;
  #testAgentOn: boolean;
  #cosignTimer: unknown;
  #cosignerRunning = false;
  #cosignQueue: Promise<unknown> = Promise.resolve();
  /** This connection's first cosign round (settled at once when this device does not cosign). */
  #firstCosign: Promise<unknown> = Promise.resolve();

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
    this.#fetch = options.fetch ?? ((...args: Parameters<typeof fetch>) => fetch(...args));
    this.#consume = options.consumeMailbox ?? true;
    this.#baseUrl = options.serverUrl.replace(/\/+$/, '');
    this.#testAgentOn = options.testAgent ?? false;
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
    this.#clock.clearTimeout(this.#refreshTimer);
    this.#clock.clearTimeout(this.#testTimer);
    this.#testAgentRunning = false;
    this.#clock.clearTimeout(this.#cosignTimer);
    this.#cosignerRunning = false;
    const ws = this.#ws;
    if (ws && ws.readyState <= WS_OPEN) ws.close(1000, 'client stopping');
    this.#settleStart(new HotlineError('HL_ERR_CLIENT_TIMEOUT', 'client stopped before it connected'));
    // Frames not handled yet are dropped: nothing of them was acknowledged, so the relay sends them again.
    this.#incoming.remove(() => true);
    await this.#draining;
    await this.#compose.catch(() => undefined);
    await this.#cosignQueue;
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
      throw new HotlineError('HL_ERR_ENVELOPE_UNKNOWN_PARTY', `${input.to} is not another party of the agreement (${this.#otherParties().join(', ')})`);
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
    await this.#ensureDirectoryLoaded();
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
    await this.#checkAgreement();
    await this.#ensureToken();
    return assertSchema(StatusResponse, await this.#http('GET', '/v1/status', undefined, true), 'HL_ERR_INPUT_SCHEMA');
  }

  /**
   * The server's audit export (`GET /v1/audit/export`; auditor devices only), unverified: check it
   * with `verifyAuditExport(agreement, value)` before trusting any of it.
   */
  async auditExport(): Promise<unknown> {
    await this.#checkAgreement();
    await this.#ensureToken();
    return this.#http('GET', '/v1/audit/export', undefined, true);
  }

  /** The verified, currently valid certificates of the directory (as of the last fetch). */
  directory(): DeviceCertBody[] {
    return [...this.#directory.values()];
  }

  /** The raw directory as last fetched (certificates and revocations), e.g. to save for `hotline seal`. */
  async directorySnapshot(): Promise<{ certificates: DeviceCertificate[]; revocations: Revocation[]; fetchedAt: number } | undefined> {
    return (await this.#o.storage.read(this.#key)).directory;
  }

  /**
   * The directory as this device last stored it, verified again here, without the server: a
   * console tab that does not hold the link shows the peers' keys from it. Emits 'directory'.
   */
  async loadStoredDirectory(): Promise<DeviceCertBody[]> {
    const stored = await this.directorySnapshot();
    if (stored) {
      await this.#loadDirectory(stored.certificates, stored.revocations);
      this.emit('directory', { certificates: this.directory(), fetchedAt: stored.fetchedAt });
    }
    return this.directory();
  }

  /** Fetch the directory from the server and verify every certificate and revocation here. */
  async refreshDirectory(): Promise<DeviceCertBody[]> {
    await this.#ensureToken();
    const dir = (await this.#http('GET', '/v1/directory', undefined, true)) as { certificates?: unknown; revocations?: unknown };
    if (!Array.isArray(dir.certificates) || !Array.isArray(dir.revocations)) {
      throw new HotlineError('HL_ERR_INPUT_SCHEMA', 'the server sent a malformed directory');
    }
    const certificates = dir.certificates as DeviceCertificate[];
    const revocations = dir.revocations as Revocation[];
    await this.#loadDirectory(certificates, revocations);
    const fetchedAt = this.#clock.now();
    await this.#o.storage.update(this.#key, (s) => {
      s.directory = { certificates, revocations, fetchedAt };
    });
    this.emit('directory', { certificates: this.directory(), fetchedAt });
    return this.directory();
  }

  // -------------------------------------------------------------------------------------------
  // Connection

  async #connect(): Promise<void> {
    if (!this.#running) return;
    let ws: WebSocketLike;
    try {
      await this.#checkAgreement();
      await this.#ensureToken();
      await this.#ensureDirectoryLoaded();
      await this.refreshDirectory();
      await this.#loadPrecedences();
      if (!this.#running) return;
      const url = this.#baseUrl.replace(/^http/, 'ws') + '/v1/link';
      // The token travels as a subprotocol, never in the URL (URLs end up in logs).
      ws = new this.#o.WebSocket(url, ['hotline.v1', `bearer.${this.#token!.token}`]);
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
      if (!opened) this.#token = undefined;
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

  async #checkAgreement(): Promise<void> {
    const remote = await this.#http('GET', '/v1/agreement', undefined, false);
    let hash: string;
    try {
      hash = agreementHash(parseAgreement(remote));
    } catch (cause) {
      throw new HotlineError('HL_ERR_AGREEMENT_MISMATCH', 'the server’s agreement is not a valid agreement', { cause });
    }
    if (hash !== this.agreementHash) {
      throw new HotlineError(
        'HL_ERR_AGREEMENT_MISMATCH',
        `the server runs agreement ${hash.slice(0, 16)}…, not the pinned ${this.agreementHash.slice(0, 16)}…; check the server URL and agreement file`,
      );
    }
  }

  async #ensureToken(): Promise<void> {
    const margin = this.#o.tokenRefreshMarginMs ?? 60_000;
    if (this.#token && this.#token.expiresAt - margin > this.#clock.now()) return;
    const { party, device } = this.me;
    const ch = (await this.#http('POST', '/v1/auth/challenge', { party, device }, false)) as { challenge?: unknown };
    if (typeof ch.challenge !== 'string') throw new HotlineError('HL_ERR_AUTH_CHALLENGE_INVALID', 'the server sent no challenge');
    const signature = await ed25519Sign(
      fromBase64(this.#o.device.signSecret, 32),
      signingBytes(CONTEXT.login, { v: 1, challenge: ch.challenge, party, device, agreement: this.agreementHash }),
    );
    const res = (await this.#http(
      'POST',
      '/v1/auth/login',
      { party, device, challenge: ch.challenge, signature: toBase64(signature), certificate: this.#o.device.certificate },
      false,
    )) as { token?: unknown; expiresAt?: unknown; role?: unknown };
    if (typeof res.token !== 'string' || typeof res.expiresAt !== 'number') {
      throw new HotlineError('HL_ERR_AUTH_TOKEN_INVALID', 'the server sent a malformed login answer');
    }
    this.#token = { token: res.token, expiresAt: res.expiresAt };
    this.#clock.clearTimeout(this.#refreshTimer);
    const due = Math.max(1000, res.expiresAt - margin - this.#clock.now());
    this.#refreshTimer = this.#clock.setTimeout(() => {
      if (this.#running) this.#ensureToken().catch((err: unknown) => this.#report(toHotlineError(err)));
    }, due);
    this.emit('session', { role: typeof res.role === 'string' ? res.role : this.me.role, expiresAt: res.expiresAt });
  }

  async #http(method: 'GET' | 'POST', path: string, body: unknown, auth: boolean): Promise<unknown> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (auth && this.#token) headers.authorization = `Bearer ${this.#token.token}`;
    let res: Response;
    try {
      res = await this.#fetch(this.#baseUrl + path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    } catch (cause) {
      throw new HotlineError('HL_ERR_CLIENT_UNREACHABLE', `cannot reach ${this.#baseUrl}: is the server running?`, { cause });
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text === '' ? {} : parseJson(text);
    } catch (cause) {
      throw new HotlineError('HL_ERR_CLIENT_REFUSED', `${method} ${path}: HTTP ${res.status} with a body that is not JSON`, { cause });
    }
    if (!res.ok) {
      const err = (json as { error?: { code?: unknown; message?: unknown } }).error;
      const code: HotlineErrorCode = isHotlineErrorCode(err?.code) ? err.code : res.status >= 500 ? 'HL_ERR_CLIENT_UNREACHABLE' : 'HL_ERR_CLIENT_REFUSED';
      if (code === 'HL_ERR_AUTH_TOKEN_EXPIRED' || code === 'HL_ERR_AUTH_TOKEN_INVALID') this.#token = undefined;
      throw new HotlineError(code, `${method} ${path}: ${typeof err?.message === 'string' ? err.message : `HTTP ${res.status}`}`);
    }
    return json;
  }

  async #ensureDirectoryLoaded(): Promise<void> {
    if (this.#directoryLoaded) return;
    const cached = (await this.#o.storage.read(this.#key)).directory;
    if (cached) await this.#loadDirectory(cached.certificates, cached.revocations);
  }

  /** Verify the directory here, against the pinned agreement: the server is not trusted to. */
  async #loadDirectory(certificates: readonly unknown[], revocations: readonly unknown[]): Promise<void> {
    const now = this.#clock.now();
    const revoked: Revocation[] = [];
    for (const r of revocations) {
      try {
        revoked.push(await verifyRevocation(this.agreement, r));
      } catch (err) {
        this.#report(toHotlineError(err));
      }
    }
    const isRevoked = (c: DeviceCertBody) =>
      revoked.some((r) => r.revocation.party === c.party && r.revocation.device === c.device && r.revocation.signKey === c.signKey);
    const next = new Map<string, DeviceCertBody>();
    for (const c of certificates) {
      try {
        const cert = await verifyDeviceCertificate(this.agreement, c, { now, isRevoked });
        next.set(`${cert.party}/${cert.device}`, cert);
      } catch {
        // An expired, revoked or forged certificate is left out: nothing is sealed to it or accepted from it.
      }
    }
    this.#directory = next;
    this.#directoryLoaded = true;
  }

  async #certFor(ref: DeviceRef): Promise<DeviceCertBody> {
    const k = `${ref.party}/${ref.device}`;
    let cert = this.#directory.get(k);
    if (!cert && this.#running) {
      await this.refreshDirectory();
      cert = this.#directory.get(k);
    }
    if (!cert) throw new HotlineError('HL_ERR_CERT_UNKNOWN_DEVICE', `${k} has no valid certificate in the directory`);
    return cert;
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
    const recipients = expectedRecipients(this.directory(), this.me, draft.to);
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
        if (code === 'HL_ERR_ENVELOPE_RECIPIENTS') await this.refreshDirectory();
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
        this.#startCosigner();
        this.#startTestAgent();
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
      const senderCert = await this.#certFor(h.from);
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
      // Checked in the cosigning queue, so that it and a cosigning round never interleave their
      // reads and writes of the remembered roots; not awaited, so that frames keep flowing.
      const from = { party: h.from.party, device: h.from.device };
      const run = this.#cosignQueue.then(() => this.#checkGossip(from, gossip.data));
      this.#cosignQueue = run.catch((err: unknown) => {
        const e = toHotlineError(err);
        if (!e.code.startsWith('HL_ERR_AUDIT_')) this.#report(e);
      });
    }
  }

  async #onReceipt(frame: ReceiptFrame): Promise<void> {
    const body = frame.receipt.receipt;
    const state = await this.#o.storage.read(this.#key);
    const header = state.sent[body.messageId]?.header ?? state.inbox[body.messageId]?.header;
    let verified = false;
    let error: HotlineError | undefined;
    try {
      const cert = await this.#certFor(body.by);
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

  // -------------------------------------------------------------------------------------------
  // Link-test agent

  /** Once per start: a test now, then one every interval while running. */
  #startTestAgent(): void {
    if (!this.#testAgentOn || this.#testAgentRunning || this.me.role !== 'operator') return;
    this.#testAgentRunning = true;
    const round = () => {
      if (!this.#running || !this.#testAgentRunning) return;
      void this.sendLinkTests().catch((err: unknown) => this.#report(toHotlineError(err)));
      this.#testTimer = this.#clock.setTimeout(round, this.agreement.linkTest.intervalMs);
    };
    // The first test goes after this connection's first cosign round, so that the checkpoint it
    // gossips to the other party is the one just verified, not one from an earlier run.
    void this.#firstCosign.then(round, round);
  }

  /**
   * Turn the link-test agent ({@link HotlineClientOptions.testAgent}) on or off while running, e.g.
   * from a console's switch. Turned on while connected, it sends a test at once.
   */
  setTestAgent(on: boolean): void {
    this.#testAgentOn = on;
    if (!on) {
      this.#clock.clearTimeout(this.#testTimer);
      this.#testAgentRunning = false;
    } else if (this.connected) {
      this.#startTestAgent();
    }
  }

  /**
   * Send one link test to each other party now (what the test agent does on its interval). A test
   * is not queued while disconnected: a stale test says nothing about the link now.
   */
  async sendLinkTests(): Promise<{ id: string; to: string }[]> {
    if (!this.connected) return [];
    const sent: { id: string; to: string }[] = [];
    // Checkpoint gossip: the newest checkpoint this device verified rides along, end to end.
    const note = (await this.#o.storage.read(this.#key)).audit?.note;
    const attachments = note === undefined ? undefined : [{ ...CHECKPOINT_ATTACHMENT, data: toBase64(utf8(note)) }];
    for (const to of this.#otherParties()) {
      const { id } = await this.send({ to, precedence: 'ROUTINE', body: 'link test', lang: 'en', linkTest: true, ...(attachments ? { attachments } : {}) });
      sent.push({ id, to });
      this.emit('link-test-sent', { id, to, at: this.#clock.now() });
    }
    return sent;
  }

  // -------------------------------------------------------------------------------------------
  // Cosigning the audit log

  #startCosigner(): void {
    if (!this.#o.cosign || this.#cosignerRunning || (this.me.role !== 'operator' && this.me.role !== 'auditor')) return;
    this.#cosignerRunning = true;
    let first = true;
    const round = () => {
      if (!this.#running || !this.#cosignerRunning) return;
      const done = this.cosignLatest();
      if (first) {
        first = false;
        this.#firstCosign = done;
      }
      done.then(
        () => {
          if (this.#running && this.#cosignerRunning) this.#cosignTimer = this.#clock.setTimeout(round, this.#o.cosignIntervalMs ?? 60_000);
        },
        (err: unknown) => {
          const e = toHotlineError(err);
          // An alarm stops the automatic rounds: it is raised and reported, never retried
          // silently. Anything else (the link is down) is tried again next round.
          if (e.code.startsWith('HL_ERR_AUDIT_')) {
            this.#cosignerRunning = false;
            return;
          }
          this.#report(e);
          if (this.#running) this.#cosignTimer = this.#clock.setTimeout(round, this.#o.cosignIntervalMs ?? 60_000);
        },
      );
    };
    round();
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
    const run = this.#cosignQueue.then(() => this.#cosignLatest());
    this.#cosignQueue = run.catch(() => undefined);
    return run;
  }

  async #cosignLatest(): Promise<CosignResult> {
    if (this.me.role !== 'operator' && this.me.role !== 'auditor') {
      throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `${this.#key} is a ${this.me.role} device; only operator and auditor devices cosign`);
    }
    await this.#checkAgreement();
    await this.#ensureToken();
    if (!this.#directoryLoaded) await this.refreshDirectory();
    let latest: { size?: unknown; note?: unknown };
    try {
      latest = (await this.#http('GET', '/v1/audit/checkpoint/latest', undefined, true)) as typeof latest;
    } catch (err) {
      if (err instanceof HotlineError && err.code === 'HL_ERR_NOT_FOUND') return { status: 'none' };
      throw err;
    }
    // Only what is new since the checkpoint this device last cosigned: the older ones were checked
    // (and their roots remembered) in earlier rounds, and the consistency proof below covers them.
    const lastCosigned = (await this.#o.storage.read(this.#key)).audit?.cosigned;
    const listed = (await this.#http('GET', `/v1/audit/checkpoints${lastCosigned ? `?after=${lastCosigned.size}` : ''}`, undefined, true)) as { checkpoints?: unknown };
    if (typeof latest.note !== 'string' || !Array.isArray(listed.checkpoints)) {
      throw new HotlineError('HL_ERR_INPUT_SCHEMA', 'the server sent a malformed checkpoint answer');
    }
    const check = async (note: string, what: string) => {
      try {
        return await this.#verifyLogCheckpoint(note);
      } catch (err) {
        const e = toHotlineError(err);
        throw await this.#alarm(e.code, `${what} does not verify: ${e.message}`);
      }
    };
    const cp = await check(latest.note, 'the latest checkpoint');
    const root = toBase64(cp.rootHash);
    const seen = new Map<number, string>(Object.entries((await this.#o.storage.read(this.#key)).audit?.seen ?? {}).map(([k, v]) => [Number(k), v]));
    const observe = async (size: number, r: string, what: string) => {
      const before = seen.get(size);
      if (before !== undefined && before !== r) {
        throw await this.#alarm('HL_ERR_AUDIT_EQUIVOCATION', `the server showed two different checkpoints of size ${size} (roots ${before.slice(0, 12)}… and ${r.slice(0, 12)}…; ${what}): it is presenting different histories`);
      }
      seen.set(size, r);
    };
    await observe(cp.size, root, 'the latest checkpoint');
    for (const item of listed.checkpoints as { note?: unknown }[]) {
      if (typeof item?.note !== 'string') continue;
      const c = await check(item.note, 'a listed checkpoint');
      await observe(c.size, toBase64(c.rootHash), 'in the list of checkpoints, cosigned by others');
    }

    const last = (await this.#o.storage.read(this.#key)).audit?.cosigned;
    const remember = (verified: { size: number; note: string }, cosigned?: { size: number; root: string; at: number }) => this.#rememberSeen(seen, verified, cosigned);
    if (last && cp.size < last.size) {
      throw await this.#alarm('HL_ERR_AUDIT_PROOF_INVALID', `the latest checkpoint (size ${cp.size}) is older than the one this device cosigned (size ${last.size}): the log was rolled back`);
    }
    if (last && cp.size === last.size) {
      await remember({ size: cp.size, note: latest.note });
      return { status: 'unchanged', size: cp.size };
    }
    if (last) {
      const res = (await this.#http('GET', `/v1/audit/proof/consistency?from=${last.size}&to=${cp.size}`, undefined, true)) as { proof?: unknown };
      try {
        if (!Array.isArray(res.proof) || !res.proof.every((p) => typeof p === 'string')) throw new HotlineError('HL_ERR_AUDIT_PROOF_INVALID', 'malformed proof');
        verifyConsistency(last.size, cp.size, (res.proof as string[]).map((p) => fromBase64(p)), fromBase64(last.root, 32), cp.rootHash);
      } catch (err) {
        throw await this.#alarm(
          'HL_ERR_AUDIT_PROOF_INVALID',
          `the consistency proof from checkpoint ${last.size} (cosigned here) to ${cp.size} does not verify: the log was rewritten (${toHotlineError(err).message})`,
        );
      }
    }
    const now = this.#clock.now();
    const cosigned = await cosignCheckpoint(latest.note, { name: cosignerName(this.me), secretKey: fromBase64(this.#o.device.signSecret, 32) }, Math.floor(now / 1000));
    await this.#http('POST', '/v1/audit/cosignatures', { size: cp.size, note: cosigned }, true);
    await remember({ size: cp.size, note: cosigned }, { size: cp.size, root, at: now });
    this.emit('cosigned', { size: cp.size, ...(last ? { from: last.size } : {}), at: now });
    return last ? { status: 'cosigned', size: cp.size, from: last.size } : { status: 'cosigned', size: cp.size };
  }

  /**
   * Verify a checkpoint note here: the log key's signature, the origin, and every cosignature by a
   * known operator or auditor device. Throws an `HL_ERR_AUDIT_*` error (no alarm: callers raise it).
   */
  async #verifyLogCheckpoint(note: string): Promise<{ size: number; rootHash: Uint8Array }> {
    try {
      const v = await verifyCheckpoint(note, this.#checkpointVerifiers());
      if (!v.verified.some((x) => x.name === logKeyName(this.agreement) && x.type === 'ed25519')) {
        throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE', 'it is not signed by the agreement’s log key');
      }
      if (v.checkpoint.origin !== logKeyName(this.agreement)) throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_MALFORMED', `it is for another log (${v.checkpoint.origin})`);
      return v.checkpoint;
    } catch (err) {
      const e = toHotlineError(err);
      throw e.code.startsWith('HL_ERR_AUDIT_') ? e : new HotlineError('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE', e.message, { cause: e });
    }
  }

  /**
   * Merge size → root pairs into this device's audit memory (the newest 256 sizes are kept), and
   * remember `verified` as the note to gossip if it is the newest verified so far.
   */
  async #rememberSeen(seen: ReadonlyMap<number, string>, verified?: { size: number; note: string }, cosigned?: { size: number; root: string; at: number }): Promise<void> {
    await this.#o.storage.update(this.#key, (s) => {
      const all = new Map<number, string>(Object.entries(s.audit?.seen ?? {}).map(([k, v]) => [Number(k), v]));
      for (const [k, v] of seen) all.set(k, v);
      const kept = [...all.entries()].sort((a, b) => a[0] - b[0]).slice(-256);
      s.audit = { ...(s.audit ?? { seen: {} }), seen: Object.fromEntries(kept.map(([k, v]) => [String(k), v])) };
      if (cosigned) s.audit.cosigned = cosigned;
      if (verified && (s.audit.note === undefined || parseCheckpointSize(s.audit.note) <= verified.size)) s.audit.note = verified.note;
    });
  }

  /**
   * Checkpoint gossip: a peer's link test carried the newest checkpoint its device verified. The
   * server cannot alter it, so a second root for a size this device knows means the log showed the
   * two parties different histories (a split view no cosigner can see from its own side alone).
   * A note that does not verify is an alarm too (the peer or the server lies about checkpoints).
   * A note that agrees is remembered, so that the server's later answers are held to it.
   */
  async #checkGossip(from: DeviceRef, data: string): Promise<void> {
    const peer = `${from.party}/${from.device}`;
    let note: string;
    let cp: { size: number; rootHash: Uint8Array };
    try {
      try {
        // Attacker-controlled (the peer's device): decoded and parsed strictly.
        note = fromUtf8(fromBase64(data));
      } catch (cause) {
        throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_MALFORMED', 'the attachment is not base64 of UTF-8 text', { cause });
      }
      cp = await this.#verifyLogCheckpoint(note);
    } catch (err) {
      // Our own view may still be sound: cosigning goes on (else any peer could stop it).
      const e = toHotlineError(err);
      throw await this.#alarm(e.code, `the checkpoint ${peer} gossiped in its link test does not verify (${e.message}): ${from.party} or the log server is lying about checkpoints`);
    }
    const root = toBase64(cp.rootHash);
    const before = (await this.#o.storage.read(this.#key)).audit?.seen[String(cp.size)];
    if (before !== undefined && before !== root) {
      this.#stopCosigner();
      throw await this.#alarm(
        'HL_ERR_AUDIT_EQUIVOCATION',
        `the log server showed ${from.party} a different tree head for size ${cp.size} than it showed us: equivocation (root ${root.slice(0, 12)}… gossiped by ${peer}, ${before.slice(0, 12)}… seen here)`,
      );
    }
    await this.#rememberSeen(new Map([[cp.size, root]]));
    this.emit('checkpoint-gossip', { from, size: cp.size, root, known: before !== undefined, at: this.#clock.now() });
  }

  /** After an equivocation alarm: no automatic cosigning until the next connection (as after a failed round). */
  #stopCosigner(): void {
    this.#clock.clearTimeout(this.#cosignTimer);
    this.#cosignerRunning = false;
  }

  /** The log key, and the cosignature keys of every operator and auditor device in the directory. */
  #checkpointVerifiers(): NoteVerifier[] {
    const out: NoteVerifier[] = [{ name: logKeyName(this.agreement), publicKey: fromBase64(this.agreement.logKey, 32) }];
    for (const c of this.directory()) {
      if (c.role === 'operator' || c.role === 'auditor') out.push({ name: cosignerName(c), publicKey: fromBase64(c.signKey, 32), type: 'cosignature/v1' });
    }
    return out;
  }

  /** Raise an audit alarm here, report it to the server (best effort), and return it as an error. */
  async #alarm(code: HotlineErrorCode, reason: string): Promise<HotlineError> {
    const event: AuditAlarm = { type: 'audit.alarm', party: this.me.party, reason: reason.slice(0, 500), at: this.#clock.now(), code };
    const { code: _code, ...frameEvent } = event;
    this.emit('event', frameEvent);
    this.emit('audit.alarm', event);
    try {
      await this.#http('POST', '/v1/audit/alarms', { code, reason: reason.slice(0, 400) }, true);
    } catch (err) {
      this.#report(toHotlineError(err));
    }
    return new HotlineError(code, reason);
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

  #otherParties(): string[] {
    return this.agreement.parties.map((p) => p.id).filter((p) => p !== this.me.party);
  }
}

/** The size of a checkpoint note this device stored after verifying it (0 if it cannot be read). */
function parseCheckpointSize(note: string): number {
  try {
    return parseCheckpoint(note).size;
  } catch {
    return 0;
  }
}

function toHotlineError(err: unknown): HotlineError {
  if (err instanceof HotlineError) return err;
  return new HotlineError('HL_ERR_INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
}

/** The error code a WebSocket close code stands for (first match in the table). */
function codeOfClose(wsCode: number): HotlineErrorCode | undefined {
  for (const [code, row] of Object.entries(ERROR_TABLE)) if (row.ws === wsCode) return code as HotlineErrorCode;
  return undefined;
}
