import { ERROR_TABLE, HotlineError, type HotlineErrorCode } from '../shared/errors.js';
import { agreementHash, parseAgreement } from '../shared/crypto/keys.js';
import { envelopeHash, openEnvelope } from '../shared/crypto/envelope.js';
import { signReceipt, verifyReceipt } from '../shared/crypto/receipt.js';
import { decodeServerFrame } from '../shared/protocol/codec.js';
import {
  type Agreement,
  type DeviceCertBody,
  type DeviceCertificate,
  type DeviceRef,
  type DeviceSecretFile,
  type EnvelopeHeader,
  type Plaintext,
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
import { Outbox, type AnswerFrame, type SendInput } from './outbox.js';
import { PrecedenceMemory, RANK } from './precedences.js';
import { AuditWitness, CHECKPOINT_ATTACHMENT, type CosignResult } from './witness.js';
import { toHotlineError, type DeviceScope } from './scope.js';
import { RankQueue } from './rank-queue.js';
import type { ClientStorage, SendDraft } from './storage/client-storage.js';
import { acceptSeq, isNewSeq } from '../shared/crypto/replay-window.js';
import { systemClock, WS_OPEN, type Clock, type WebSocketConstructorLike, type WebSocketLike } from './ports.js';
import type { HotlineClientEvents } from './events.js';

export { systemClock, type Clock, type WebSocketConstructorLike, type WebSocketLike } from './ports.js';
export type { SendInput } from './outbox.js';
export { CHECKPOINT_ATTACHMENT, type CosignResult } from './witness.js';
export type { AuditAlarm, CheckpointGossipEvent, HotlineClientEvents, MessageEvent, ReceiptEvent, RefusedEvent } from './events.js';

/** The hello and the answers to this device's own frames: cheap, and ahead of every mailbox item. */
const CONTROL_RANK = -1;
/**
 * Bounds of one batch of incoming frames; between batches the client yields to the event loop, so
 * a burst of deliveries neither blocks the page or process nor keeps a FLASH read later waiting
 * behind the rest of the burst.
 */
const FRAME_BATCH = 16;
const FRAME_BATCH_MS = 10;

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
  readonly #precedences = new PrecedenceMemory();
  readonly #outbox: Outbox;

  #running = false;
  #ws: WebSocketLike | undefined;
  #helloReceived = false;
  #attempt = 0;
  #reconnectTimer: unknown;
  /** Incoming frames not handled yet, by rank then arrival. */
  #incoming = new RankQueue<ServerFrame>();
  /** The running drain of {@link #incoming}, if any. */
  #draining: Promise<void> | undefined;
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
    this.#outbox = new Outbox({
      ...scope,
      directory: this.#directory,
      precedences: this.#precedences,
      connected: () => this.connected,
      write: (frame) => this.#write(frame),
      approveRecipients: options.approveRecipients,
    });
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
    await this.#outbox.settled();
    await this.#witness.settled();
  }

  /**
   * Seal a message and put it in the durable outbox; it goes now if connected, else on reconnect.
   * Resolves once it is stored (not once accepted: listen for 'accepted' with this id).
   */
  send(input: SendInput): Promise<{ id: string }> {
    return this.#outbox.send(input);
  }

  /**
   * Sign a receipt (`acknowledged` by default) for a message in this device's inbox and send it
   * through the outbox. Only operator devices of the addressee party may.
   */
  acknowledge(messageId: string, kind: Exclude<ReceiptKind, 'delivered'> = 'acknowledged'): Promise<SignedReceipt> {
    return this.#outbox.acknowledge(messageId, kind);
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
      await this.#precedences.load(this.#o.storage, this.#key);
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
    this.#outbox.newConnection();
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

  #write(frame: ClientFrame): void {
    const ws = this.#ws;
    if (ws && ws.readyState === WS_OPEN) ws.send(JSON.stringify(frame));
  }

  // -------------------------------------------------------------------------------------------
  // Incoming frames: one at a time, highest rank first, in bounded batches

  #rankOf(frame: ServerFrame): number {
    switch (frame.t) {
      case 'deliver':
        return RANK[frame.envelope.header.precedence];
      case 'receipt':
        // A receipt goes with its message; one for a message unknown here goes last.
        return RANK[this.#precedences.get(frame.receipt.receipt.messageId) ?? 'ROUTINE'];
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
            await this.#outbox.onAnswers(run);
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
        await this.#outbox.flush();
        this.#witness.start();
        this.#agent.start();
        return;
      case 'accepted':
      case 'receipt-accepted':
        await this.#outbox.onAnswers([frame]);
        return;
      case 'error':
        await this.#outbox.onRefused(frame.code, frame.message, frame.ref);
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
    this.#precedences.remember(h.id, h.precedence);
    this.emit('message', { header: opened.header, plaintext: opened.plaintext, envelopeHash: hash, acceptedAt: frame.acceptedAt });
    if (receipt) this.#outbox.transmit({ kind: 'receipt', messageId: h.id, receiptKind: 'delivered', receipt });
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
