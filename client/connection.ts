import { codeOfCloseCode, HotlineError, retryPolicy, type HotlineErrorCode } from '../shared/errors.js';
import { decodeServerFrame } from '../shared/protocol/codec.js';
import type { ClientFrame, ServerFrame } from '../shared/protocol/frames.js';
import { WS_OPEN, type WebSocketConstructorLike, type WebSocketLike } from './ports.js';
import type { RelayApi } from './relay-api.js';
import { toHotlineError, type DeviceScope } from './scope.js';
import type { TimerHandle } from '../shared/clock.js';

export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
}

/** Codes after which retrying cannot help (the error table's `retry: 'stop'`): the client stops and reports. */
const isFatal = (code: HotlineErrorCode): boolean => retryPolicy(code) === 'stop';

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

export interface RelayConnectionOptions extends Pick<DeviceScope, 'clock' | 'emit' | 'report'> {
  WebSocket: WebSocketConstructorLike;
  api: Pick<RelayApi, 'baseUrl' | 'urls' | 'index' | 'use' | 'token' | 'forgetToken' | 'attemptTimeoutMs'>;
  /** Source of jitter in [0, 1). */
  random: () => number;
  backoff?: BackoffOptions | undefined;
  /** Before each socket: the checks and loads that must be done first (agreement, login, directory). */
  prepare: () => Promise<void>;
  /** A new socket, before any frame on it. */
  onSocket: () => void;
  /** A frame read and decoded from the socket. */
  onFrame: (frame: ServerFrame) => void;
}

/**
 * The WebSocket link to the relay: connect (after `prepare`), decode every frame, reconnect with
 * backoff until stopped, and stop for good on a refusal that retrying cannot help.
 *
 * Several URLs (the nodes of one relay, docs/failover.md): a link that was up and is lost goes to
 * the next URL after the backoff's first step (≤ `initialMs`, 0.5 s by default); a failed attempt
 * goes on to the next URL at once, and the backoff grows only once every URL has failed in a row
 * (a round). A URL that serves another agreement is left out (reported) while others remain.
 */
export class RelayConnection {
  readonly #o: RelayConnectionOptions;
  #running = false;
  #ws: WebSocketLike | undefined;
  #helloReceived = false;
  /** Rounds of the URL list failed in a row: the backoff's step. */
  #attempt = 0;
  /** URLs tried in the current round without a link. */
  #failedInRound = 0;
  /** URLs (indexes) that serve another agreement: skipped while another remains. */
  readonly #excluded = new Set<number>();
  #reconnectTimer: TimerHandle | undefined;
  /** Between a connection attempt's start and its socket (or its failure): no second attempt meanwhile. */
  #connecting = false;
  /** The code last reported since the link was last up: an outage is reported once, not at every attempt. */
  #reportedCode: HotlineErrorCode | undefined;
  #startWaiters: { resolve: () => void; reject: (e: HotlineError) => void }[] = [];

  constructor(options: RelayConnectionOptions) {
    this.#o = options;
  }

  /** From start() until stop() or a fatal refusal. */
  get running(): boolean {
    return this.#running;
  }

  /** True between the server's `hello` and the socket closing. */
  get connected(): boolean {
    return this.#helloReceived && this.#ws?.readyState === WS_OPEN;
  }

  /** Connect and keep reconnecting; resolves at the first `hello` (see HotlineClient.start). */
  start(): Promise<void> {
    const p = new Promise<void>((resolve, reject) => this.#startWaiters.push({ resolve, reject }));
    if (this.connected) this.settleStart();
    if (!this.#running) {
      this.#running = true;
      this.#attempt = 0;
      this.#failedInRound = 0;
      this.#excluded.clear();
      void this.#connect();
    }
    return p;
  }

  /** Close the socket and stop reconnecting; a start() still waiting rejects. */
  stop(): void {
    this.#running = false;
    if (this.#reconnectTimer !== undefined) this.#o.clock.clearTimeout(this.#reconnectTimer);
    const ws = this.#ws;
    if (ws && ws.readyState <= WS_OPEN) ws.close(1000, 'client stopping');
    this.settleStart(new HotlineError('HL_ERR_CLIENT_TIMEOUT', 'client stopped before it connected'));
  }

  /** The server's hello came: the link is up, and the backoff starts again from its first step. */
  hello(): void {
    this.#helloReceived = true;
    this.#attempt = 0;
    this.#failedInRound = 0;
    this.#reportedCode = undefined;
  }

  /**
   * Try now instead of waiting for the backoff (an operator's "reconnect now", the browser back
   * online): a no-op while connected or when stopped; during an attempt, only the backoff is
   * reset. The backoff starts again from its first step.
   */
  reconnectNow(): void {
    if (!this.#running || this.#ws !== undefined) return;
    // An attempt under way: should it fail, the next one comes after the backoff's first step.
    if (this.#connecting) {
      this.#attempt = 0;
      return;
    }
    if (this.#reconnectTimer !== undefined) this.#o.clock.clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    this.#attempt = 0;
    this.#failedInRound = 0;
    void this.#connect();
  }

  async #connect(): Promise<void> {
    if (!this.#running || this.#connecting) return;
    this.#connecting = true;
    this.#reconnectTimer = undefined;
    let ws: WebSocketLike;
    try {
      await this.#o.prepare();
      if (!this.#running) return;
      const url = this.#o.api.baseUrl.replace(/^http/, 'ws') + '/v1/link';
      // The token travels as a subprotocol, never in the URL (URLs end up in logs).
      ws = new this.#o.WebSocket(url, ['hotline.v1', `bearer.${this.#o.api.token!}`]);
    } catch (err) {
      const e = toHotlineError(err);
      // One node serving another agreement is that URL's fault, not the device's: leave it out
      // while another URL remains (a misconfigured spare must not take the client down).
      if (e.code === 'HL_ERR_AGREEMENT_MISMATCH' && this.#usable() > 1) {
        this.#excluded.add(this.#o.api.index);
        this.#o.report(new HotlineError(e.code, `${this.#o.api.baseUrl}: ${e.message}; trying the other URLs`));
        this.#scheduleReconnect(0, e.message, 'skip');
        return;
      }
      if (isFatal(e.code)) {
        this.#running = false;
        this.settleStart(e);
        this.#o.report(e);
        // No retryInMs: the client gave up (as when the server closes the link with such a code).
        this.#o.emit('disconnected', { code: 0, reason: e.message, url: this.#o.api.baseUrl });
        return;
      }
      // The relay unreachable for a minute is one error, not one per attempt (issue 10: a line at
      // every attempt pushed the real events out of a console's list); `disconnected` still tells
      // of each attempt and when the next one is.
      if (e.code !== this.#reportedCode) this.#o.report(e);
      this.#reportedCode = e.code;
      this.#scheduleReconnect(0, e.message, 'failed');
      return;
    } finally {
      this.#connecting = false;
    }
    this.#ws = ws;
    this.#helloReceived = false;
    this.#o.onSocket();
    let opened = false;
    // With several URLs, an upgrade that is never answered ends the attempt (the next URL is tried).
    const limit = this.#o.api.attemptTimeoutMs;
    const openTimer = limit === undefined ? undefined : this.#o.clock.setTimeout(() => {
      if (!opened && this.#ws === ws) ws.close();
    }, limit);
    ws.onopen = () => {
      opened = true;
      if (openTimer !== undefined) this.#o.clock.clearTimeout(openTimer);
    };
    ws.onmessage = (ev) => {
      let frame: ServerFrame;
      try {
        // The one frame codec (shared/protocol/codec.ts): size, UTF-8, JSON, schema.
        frame = decodeServerFrame(typeof ev.data === 'string' ? ev.data : (ev.data as Uint8Array));
      } catch (err) {
        this.#o.report(toHotlineError(err));
        return;
      }
      this.#o.onFrame(frame);
    };
    ws.onerror = () => {
      /* the close event follows and carries what can be known */
    };
    ws.onclose = (ev) => {
      if (openTimer !== undefined) this.#o.clock.clearTimeout(openTimer);
      if (this.#ws !== ws) return;
      const wasConnected = this.#helloReceived;
      this.#ws = undefined;
      this.#helloReceived = false;
      // Refused before the upgrade (bad or expired token): log in afresh next time.
      if (!opened) this.#o.api.forgetToken();
      if (wasConnected) {
        this.#attempt = 0;
        this.#failedInRound = 0;
      }
      const closeCode = codeOfCloseCode(ev.code);
      if (closeCode !== undefined && isFatal(closeCode)) {
        this.#running = false;
        const e = new HotlineError(closeCode, ev.reason || `the server closed the link with ${closeCode}`);
        this.settleStart(e);
        this.#o.report(e);
      }
      this.#scheduleReconnect(ev.code, ev.reason, wasConnected ? 'lost' : 'failed');
    };
  }

  /** URLs not left out. */
  #usable(): number {
    return this.#o.api.urls.length - this.#excluded.size;
  }

  /** The next URL after the one in use that is not left out. */
  #nextUrl(): number {
    const { urls, index } = this.#o.api;
    for (let step = 1; step <= urls.length; step++) {
      const i = (index + step) % urls.length;
      if (!this.#excluded.has(i)) return i;
    }
    return index;
  }

  /**
   * After a lost link (`lost`), a failed attempt (`failed`) or a URL left out (`skip`): which URL
   * next, and when. With one URL, the backoff as ever. With several, a lost link goes to the next
   * URL after the backoff's first step; a failed attempt to the next URL at once, until a whole
   * round has failed, which costs the next backoff step; a URL left out, to the next at once.
   */
  #scheduleReconnect(code: number, reason: string, why: 'lost' | 'failed' | 'skip'): void {
    const url = this.#o.api.baseUrl;
    if (!this.#running) {
      this.#o.emit('disconnected', { code, reason, url });
      return;
    }
    let delay: number;
    if (why === 'skip') {
      delay = 0;
    } else if (this.#usable() <= 1 || why === 'lost') {
      // A lost link: #attempt was reset, so this is the first step (and the next round the second).
      delay = backoffDelay(this.#attempt++, this.#o.random, this.#o.backoff);
    } else if (++this.#failedInRound < this.#usable()) {
      delay = 0;
    } else {
      this.#failedInRound = 0;
      delay = backoffDelay(this.#attempt++, this.#o.random, this.#o.backoff);
    }
    this.#o.api.use(this.#nextUrl());
    this.#o.emit('disconnected', { code, reason, url, retryInMs: delay, nextUrl: this.#o.api.baseUrl });
    if (this.#reconnectTimer !== undefined) this.#o.clock.clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = this.#o.clock.setTimeout(() => void this.#connect(), delay);
  }

  /** Write a frame to the current connection (dropped when there is none). */
  write(frame: ClientFrame): void {
    const ws = this.#ws;
    if (ws && ws.readyState === WS_OPEN) ws.send(JSON.stringify(frame));
  }

  /** Resolve (or, with `err`, reject) the promises start() returned so far. */
  settleStart(err?: HotlineError): void {
    const waiters = this.#startWaiters;
    this.#startWaiters = [];
    for (const w of waiters) {
      if (err) w.reject(err);
      else w.resolve();
    }
  }
}
