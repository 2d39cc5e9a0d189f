import type { HotlineError } from '../shared/errors.js';
import { agreementHash, parseAgreement } from '../shared/crypto/keys.js';
import {
  type Agreement,
  type DeviceCertBody,
  type DeviceCertificate,
  type DeviceRef,
  type DeviceSecretFile,
  type CannotComplyReason,
  type ReceiptKind,
  type Revocation,
  type Role,
  type SignedReceipt,
} from '../shared/protocol/schemas.js';
import type { ServerFrame } from '../shared/protocol/frames.js';
import type { StatusResponse } from '../shared/protocol/status.js';
import { TypedEmitter } from './typed-emitter.js';
import { RelayApi } from './relay-api.js';
import { VerifiedDirectory } from './directory.js';
import { revokedLabels, type RevokedSinceChange } from './revoked-since.js';
import { LinkTestAgent } from './link-test-agent.js';
import { Inbox } from './inbox.js';
import { RelayConnection, type BackoffOptions } from './connection.js';
import { Outbox, type SendInput } from './outbox.js';
import { PrecedenceMemory } from './precedences.js';
import { AuditWitness, type CosignResult } from './witness.js';
import { toHotlineError, type DeviceScope } from './scope.js';
import { PrekeyManager, type PrekeyMaintenance, type PrekeyOptions } from './prekeys.js';
import type { ClientStorage, SendDraft } from './storage/client-storage.js';
import { systemClock, type Clock, type WebSocketConstructorLike } from './ports.js';
import type { HotlineClientEvents } from './events.js';

export { systemClock, type Clock, type WebSocketConstructorLike, type WebSocketLike } from './ports.js';
export { backoffDelay, type BackoffOptions } from './connection.js';
export type { SendInput } from './outbox.js';
export { MemoryPrekeyStore, type PrekeyMaintenance, type PrekeyOptions, type PrekeyStore } from './prekeys.js';
export { CHECKPOINT_ATTACHMENT, type CosignResult } from './witness.js';
export type { AuditAlarm, CheckpointGossipEvent, HotlineClientEvents, MessageEvent, ReceiptEvent, RefusedEvent } from './events.js';

// ---------------------------------------------------------------------------------------------
// Options

/** The receipts a person gives (every kind but the automatic `delivered`). */
export type AnswerKind = Exclude<ReceiptKind, 'delivered'>;

/** Options of {@link HotlineClient.acknowledge}. */
export interface AcknowledgeOptions {
  /** Required for `cannot-comply`, refused for every other kind. */
  reason?: CannotComplyReason;
}

export interface HotlineClientOptions {
  /**
   * `http://host:port` or `https://…`; the WebSocket URL is derived from it. Several URLs (the
   * nodes of one relay, e.g. the agreement's `relayUrls(agreement, party)`) are tried in turn, and
   * a lost link goes to the next one within the backoff's first step (docs/failover.md).
   */
  serverUrl: string | readonly string[];
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
   * With several URLs: how long one URL may take to answer (an HTTP request's response headers, the
   * WebSocket's upgrade) before the next URL is tried, `HL_ERR_CLIENT_TIMEOUT`. Default 2,000 ms
   * (docs/failover.md). With one URL there is no next to try, and nothing is cut short.
   */
  attemptTimeoutMs?: number;
  /**
   * Act as this party's link-test agent (docs/design.md "Link test"): once connected, and then every
   * `agreement.linkTest.intervalMs`, send a signed test message (`linkTest: true`, ROUTINE) to each
   * other party. Their operator devices answer with the automatic `delivered` receipt; the server
   * judges the round trip and tells both parties (`link.test`, `link.up`, `link.down` events).
   * Operator devices only. Default false.
   */
  testAgent?: boolean;
  /**
   * Cosign the audit log's checkpoints (docs/design.md "Audit log"): once connected, and then every
   * `cosignIntervalMs`, run {@link HotlineClient.cosignLatest}. Operator and auditor devices.
   * Default false (`hotline listen` turns it on for operators).
   */
  cosign?: boolean;
  /** Default 60 s. */
  cosignIntervalMs?: number;
  /**
   * Asked before every seal, including the automatic reseal after HL_ERR_ENVELOPE_RECIPIENTS and
   * {@link HotlineClient.releaseHeld}. Return the devices (`party/device`) that must be approved
   * first, e.g. a console that only encrypts to peer keys its operator confirmed: the message is
   * then stored as `held` (a `held` event; nothing sealed, no seq used) until `releaseHeld()` seals
   * it or `discardHeld()` removes it. Throw (a HotlineError) to refuse sealing at all: `send` then
   * rejects, and a refused reseal drops the message with a `refused` event.
   */
  approveRecipients?: (recipients: readonly DeviceCertBody[], draft: SendDraft) => void | readonly string[];
  /**
   * Forward secrecy (PROTOCOL.md "Prekeys and forward secrecy"): where this device keeps the
   * secrets of its prekeys. Given, the client makes a prekey on the agreement's schedule
   * (`prekeyRotationMs`, default 7 days), publishes it, opens what is wrapped to it, and deletes its
   * secret once no message wrapped to it can still arrive (plus `keepMs`: an archive's retention).
   * Absent, the device publishes none and senders wrap to its certificate's long-term box key,
   * which has no forward secrecy. With `consumeMailbox: false` nothing runs by itself: only
   * {@link HotlineClient.maintainPrekeys} (an archive's `hotline prekeys`).
   */
  prekeys?: PrekeyOptions;
}

// ---------------------------------------------------------------------------------------------

/**
 * A Hotline device's link to the relay: login, the WebSocket, reconnect, the durable outbox, the
 * de-duplicated inbox, automatic `delivered` receipts and verification of everything that comes in.
 * The server is trusted for availability only: every certificate, envelope and receipt is checked
 * here against the pinned agreement.
 *
 * A facade: the work is done by its parts (relay-api.ts, connection.ts, directory.ts, outbox.ts,
 * inbox.ts, link-test-agent.ts, witness.ts), which it builds and wires together here.
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
  readonly #link: RelayConnection;
  readonly #api: RelayApi;
  readonly #directory: VerifiedDirectory;
  readonly #witness: AuditWitness;
  readonly #agent: LinkTestAgent;
  readonly #precedences = new PrecedenceMemory();
  readonly #outbox: Outbox;
  readonly #inbox: Inbox;
  readonly #prekeys: PrekeyManager | undefined;
  #prekeysLoaded = false;

  constructor(options: HotlineClientOptions) {
    super();
    this.#o = options;
    this.agreement = parseAgreement(options.agreement);
    this.agreementHash = agreementHash(this.agreement);
    const c = options.device.certificate.cert;
    this.me = { party: c.party, device: c.device, role: c.role };
    this.#key = `${c.party}/${c.device}`;
    this.#clock = options.clock ?? systemClock;
    const scope: DeviceScope = {
      agreement: this.agreement,
      me: this.me,
      key: this.#key,
      device: options.device,
      storage: options.storage,
      clock: this.#clock,
      emit: (event, payload) => this.emit(event, payload),
      report: (err) => this.#report(err),
      running: () => this.#link.running,
    };
    this.#api = new RelayApi({
      ...scope,
      serverUrl: options.serverUrl,
      agreementHash: this.agreementHash,
      ...(options.fetch ? { fetch: options.fetch } : {}),
      tokenRefreshMarginMs: options.tokenRefreshMarginMs,
      attemptTimeoutMs: options.attemptTimeoutMs,
    });
    this.#directory = new VerifiedDirectory({ ...scope, api: this.#api });
    this.#prekeys = options.prekeys ? new PrekeyManager({ ...scope, ...options.prekeys, api: this.#api }) : undefined;
    // Only the process that reads the mailbox opens with them and maintains them on its own.
    const prekeys = options.consumeMailbox ?? true ? this.#prekeys : undefined;
    this.#outbox = new Outbox({
      ...scope,
      directory: this.#directory,
      precedences: this.#precedences,
      connected: () => this.connected,
      write: (frame) => this.#link.write(frame),
      approveRecipients: options.approveRecipients,
    });
    this.#witness = new AuditWitness({ ...scope, cosign: options.cosign, cosignIntervalMs: options.cosignIntervalMs, api: this.#api, directory: this.#directory });
    this.#inbox = new Inbox({
      ...scope,
      consume: options.consumeMailbox ?? true,
      directory: this.#directory,
      precedences: this.#precedences,
      outbox: this.#outbox,
      witness: this.#witness,
      write: (frame) => this.#link.write(frame),
      onHello: (frame) => this.#onHello(frame),
      ...(prekeys ? { prekeys: (keyId: string) => prekeys.secretsFor(keyId) } : {}),
    });
    this.#link = new RelayConnection({
      ...scope,
      WebSocket: options.WebSocket,
      api: this.#api,
      random: options.random ?? Math.random,
      backoff: options.backoff,
      prepare: async () => {
        await this.#api.checkAgreement();
        await this.#api.ensureToken();
        await this.#directory.ensureLoaded();
        await this.#directory.refresh();
        await this.#precedences.load(options.storage, this.#key);
        if (prekeys && !this.#prekeysLoaded) {
          await prekeys.load();
          this.#prekeysLoaded = true;
        }
      },
      onSocket: () => this.#outbox.newConnection(),
      onFrame: (frame) => this.#inbox.push(frame),
    });
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
    return this.#link.connected;
  }

  /** The relay URLs this client tries, in order (checked, each once). */
  get serverUrls(): readonly string[] {
    return this.#api.urls;
  }

  /** The relay URL in use now: the one connected to, or the one the next attempt goes to. */
  get serverUrl(): string {
    return this.#api.baseUrl;
  }

  /**
   * Start connecting (and keep reconnecting until {@link stop}). Resolves at the first `hello`;
   * rejects when the server cannot be used at all (agreement mismatch, certificate refused).
   */
  start(): Promise<void> {
    return this.#link.start();
  }

  /**
   * While the link is down, try to connect now rather than at the next backoff step (a console's
   * "reconnect now", the browser back online). Does nothing while connected or stopped.
   */
  reconnectNow(): void {
    this.#link.reconnectNow();
  }

  /** Close the link and stop reconnecting. Pending outbox items stay stored for the next start. */
  async stop(): Promise<void> {
    this.#api.stop();
    this.#agent.stop();
    this.#witness.stop();
    this.#prekeys?.stop();
    this.#link.stop();
    await this.#inbox.clear();
    await this.#outbox.settled();
    await this.#witness.settled();
    await this.#prekeys?.settled();
  }

  /**
   * Seal a message and put it in the durable outbox; it goes now if connected, else on reconnect.
   * Resolves once it is stored (not once accepted: listen for 'accepted' with this id).
   */
  send(input: SendInput): Promise<{ id: string }> {
    return this.#outbox.send(input);
  }

  /**
   * Seal and send every held message whose recipients `approveRecipients` approves now (call it
   * after the approval changed, e.g. new keys confirmed); the rest stay held. Resolves to the ids sealed.
   */
  releaseHeld(): Promise<string[]> {
    return this.#outbox.releaseHeld();
  }

  /** Remove held message `id` without sending it; false if it is not held (a sealed envelope is never withdrawn). */
  discardHeld(id: string): Promise<boolean> {
    return this.#outbox.discardHeld(id);
  }

  /**
   * Sign a receipt (`acknowledged` by default) for a message in this device's inbox and send it
   * through the outbox: one rung of the response ladder (PROTOCOL.md "Receipts"). Only operator
   * devices of the addressee party may. A `cannot-comply` names its reason, no other kind has one
   * (`HL_ERR_RECEIPT_REASON_REQUIRED` / `_UNEXPECTED`, thrown here before anything is signed).
   *
   * @example
   * await client.acknowledge(id, 'will-comply');
   * await client.acknowledge(id, 'cannot-comply', { reason: 'not-feasible' });
   */
  acknowledge(messageId: string, kind: AnswerKind = 'acknowledged', options: AcknowledgeOptions = {}): Promise<SignedReceipt> {
    return this.#outbox.acknowledge(messageId, kind, options.reason);
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

  /**
   * The directory as this device last stored it, verified again here, without the server: a
   * console tab that does not hold the link shows the peers' keys from it. Emits 'directory'.
   */
  loadStoredDirectory(): Promise<DeviceCertBody[]> {
    return this.#directory.loadStored();
  }

  /** Fetch the directory from the server and verify every certificate and revocation here. */
  refreshDirectory(): Promise<DeviceCertBody[]> {
    return this.#directory.refresh();
  }

  /**
   * The messages stored here whose sender, and the receipts whose signer, has been revoked since
   * (labelled when a directory fetch brought the revocation): they stay readable and valid.
   */
  async revokedLabels(): Promise<RevokedSinceChange> {
    return revokedLabels(await this.#o.storage.read(this.#key));
  }

  /** A new connection's hello: the link is up; what waits in the outbox goes, the agent and witness start. */
  async #onHello(frame: Extract<ServerFrame, { t: 'hello' }>): Promise<void> {
    this.#link.hello();
    // A device whose state was lost or restored from an old copy continues above the last seq
    // the server accepted from it; outbox items sealed with a stale seq are resealed once.
    if (frame.lastSeq > 0) await this.#o.storage.update(this.#key, (s) => void (s.lastSeq = Math.max(s.lastSeq, frame.lastSeq)));
    this.emit('connected', { serverTime: frame.serverTime, lastCursor: frame.lastCursor, url: this.#api.baseUrl });
    this.#link.settleStart();
    await this.#outbox.flush();
    this.#witness.start();
    this.#agent.start();
    if (this.#prekeys && (this.#o.consumeMailbox ?? true)) this.maintainPrekeys().catch((err: unknown) => this.#report(toHotlineError(err)));
  }

  /**
   * Make a new prekey if one is due, publish it, and delete the secrets of prekeys that no message
   * can still need (PROTOCOL.md "When a prekey's secret is deleted"). Runs by itself on each
   * connection and when the next rotation or deletion falls due; resolves to what it did. Without
   * the `prekeys` option it does nothing.
   */
  async maintainPrekeys(): Promise<PrekeyMaintenance> {
    return this.#prekeys ? this.#prekeys.maintain() : { deleted: [] };
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
   * Cosign the server's latest checkpoint, as a party's witness (docs/design.md "Audit log"): verify the
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

  #report(err: HotlineError): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

}
