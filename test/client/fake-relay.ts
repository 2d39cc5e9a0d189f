import { HotlineError } from '../../shared/errors.js';
import type { Agreement, DeviceCertificate, Revocation } from '../../shared/protocol/schemas.js';
import type { ClientFrame, ServerFrame } from '../../shared/protocol/frames.js';
import type { WebSocketLike } from '../../client/hotline-client.js';

/**
 * A stand-in for the relay's HTTP API and WebSocket, for unit tests of the client that need no
 * server: it answers login and directory requests, and hands the test every socket the client
 * opens so the test decides what the "server" says. Nothing here checks signatures: the client's
 * own checks are what is under test.
 */
export class FakeRelay {
  agreement: Agreement;
  certificates: DeviceCertificate[];
  revocations: Revocation[] = [];
  /** Signed prekeys the directory serves (unverified: a test may put forged ones here). */
  prekeys: unknown[] = [];
  /** When set, every HTTP request fails as if the server were down. */
  down = false;
  sockets: FakeSocket[] = [];
  logins = 0;
  now: () => number;
  readonly #socketWaiters: { index: number; resolve: (s: FakeSocket) => void }[] = [];

  constructor(agreement: Agreement, certificates: DeviceCertificate[], now: () => number) {
    this.agreement = agreement;
    this.certificates = certificates;
    this.now = now;
  }

  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    if (this.down) throw new TypeError('fetch failed');
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
    const route = `${init?.method ?? 'GET'} ${url.pathname}`;
    switch (route) {
      case 'GET /v1/agreement':
        return json(200, this.agreement);
      case 'POST /v1/auth/challenge':
        return json(200, { challenge: Buffer.alloc(32, 7).toString('base64'), expiresAt: this.now() + 60_000 });
      case 'POST /v1/auth/login':
        this.logins++;
        return json(200, { token: `token-${this.logins}`, expiresAt: this.now() + 15 * 60_000, role: 'operator' });
      case 'GET /v1/directory': {
        const auth = new Headers(init?.headers).get('authorization');
        if (!auth?.startsWith('Bearer token-')) return json(401, { error: { code: 'HL_ERR_AUTH_TOKEN_MISSING', message: 'no token' } });
        return json(200, { certificates: this.certificates, revocations: this.revocations, prekeys: this.prekeys });
      }
      default:
        return json(404, { error: { code: 'HL_ERR_NOT_FOUND', message: route } });
    }
  };

  /** A WebSocket constructor bound to this relay. */
  get WebSocket(): new (url: string, protocols: string[]) => WebSocketLike {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const relay = this;
    return class extends FakeSocket {
      constructor(url: string, protocols: string[]) {
        super(url, protocols);
        relay.sockets.push(this);
        for (const w of relay.#socketWaiters.filter((x) => x.index === relay.sockets.length - 1)) w.resolve(this);
      }
    };
  }

  /** The `index`-th socket the client opens (0-based), once it has been opened. */
  socket(index: number): Promise<FakeSocket> {
    const s = this.sockets[index];
    if (s) return Promise.resolve(s);
    return new Promise((resolve) => this.#socketWaiters.push({ index, resolve }));
  }
}

export class FakeSocket implements WebSocketLike {
  readyState = 0;
  onopen: ((e: unknown) => void) | null = null;
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  onerror: ((e: unknown) => void) | null = null;
  /** Frames the client sent, parsed. */
  readonly sent: ClientFrame[] = [];
  readonly url: string;
  readonly protocols: string[];
  readonly #waiters: { pred: (f: ClientFrame) => boolean; resolve: (f: ClientFrame) => void; from: number }[] = [];

  constructor(url: string, protocols: string[]) {
    this.url = url;
    this.protocols = protocols;
  }

  /** Complete the upgrade and say hello, as the server does. */
  accept(party: string, device: string, serverTime = 0): void {
    this.readyState = 1;
    this.onopen?.({});
    this.push({ t: 'hello', device: { party, device }, serverTime, lastCursor: 0, lastSeq: 0 });
  }

  /** Send a frame to the client. */
  push(frame: ServerFrame): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** Close from the server's side. */
  drop(code = 1006, reason = ''): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new HotlineError('HL_ERR_INTERNAL', 'send on a socket that is not open');
    const frame = JSON.parse(data) as ClientFrame;
    this.sent.push(frame);
    for (const w of [...this.#waiters]) {
      if (w.pred(frame)) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.resolve(frame);
      }
    }
  }

  close(code = 1000, reason = ''): void {
    this.drop(code, reason);
  }

  /** The next frame (already sent or still to come) matching `pred` that has not been awaited. */
  waitFor<T extends ClientFrame['t']>(t: T, pred: (f: Extract<ClientFrame, { t: T }>) => boolean = () => true): Promise<Extract<ClientFrame, { t: T }>> {
    const match = (f: ClientFrame): boolean => f.t === t && pred(f as Extract<ClientFrame, { t: T }>);
    const already = this.sent.find(match);
    if (already) return Promise.resolve(already as Extract<ClientFrame, { t: T }>);
    return new Promise((resolve) => this.#waiters.push({ pred: match, resolve: resolve as (f: ClientFrame) => void, from: this.sent.length }));
  }

  count(t: ClientFrame['t']): number {
    return this.sent.filter((f) => f.t === t).length;
  }
}
