import { HotlineError, isHotlineErrorCode, type HotlineErrorCode } from '../shared/errors.js';
import { agreementHash, CONTEXT, parseAgreement, signingBytes } from '../shared/crypto/keys.js';
import { ed25519Sign } from '../shared/crypto/ed25519.js';
import { fromBase64, toBase64 } from '../shared/encoding/base64.js';
import { assertSchema, parseJson } from '../shared/protocol/validate.js';
import { StatusResponse } from '../shared/protocol/status.js';
import { toHotlineError, type DeviceScope } from './scope.js';
import type { TimerHandle } from '../shared/clock.js';

export interface RelayApiOptions extends Pick<DeviceScope, 'me' | 'device' | 'clock' | 'emit' | 'report' | 'running'> {
  /**
   * `http://host:port` or `https://…`, or several: the nodes of one relay, tried in turn (README
   * "Failover", docs/failover.md).
   */
  serverUrl: string | readonly string[];
  /** The pinned agreement's hash: the server's must be the same. */
  agreementHash: string;
  fetch?: typeof fetch;
  /** Log in again this long before the token expires. Default 60 s. */
  tokenRefreshMarginMs?: number | undefined;
  /** See HotlineClientOptions.attemptTimeoutMs. */
  attemptTimeoutMs?: number | undefined;
}

/** How long one of several URLs may take to answer before the next is tried (docs/failover.md). */
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 2_000;

/**
 * The relay's HTTP API as one device uses it: the agreement check, login (a signed challenge for a
 * bearer token, renewed before it expires) and the authenticated requests.
 */
export class RelayApi {
  /** The relay's URLs without a trailing slash, in the order given, each once. */
  readonly urls: readonly string[];
  #index = 0;
  readonly #o: RelayApiOptions;
  readonly #fetch: typeof fetch;
  #token: { token: string; expiresAt: number } | undefined;
  #refreshTimer: TimerHandle | undefined;

  constructor(options: RelayApiOptions) {
    this.#o = options;
    this.#fetch = options.fetch ?? ((...args: Parameters<typeof fetch>) => fetch(...args));
    this.urls = relayUrlList(options.serverUrl);
  }

  /** The URL in use now (the one the next request and the next link go to). */
  get baseUrl(): string {
    return this.urls[this.#index]!;
  }

  /** Index in {@link urls} of the URL in use. */
  get index(): number {
    return this.#index;
  }

  /**
   * Use URL `index` of the list from now on. The token is kept: the nodes of one relay share the
   * token secret (README "Running on PostgreSQL"); a node that refuses it gets a fresh login.
   */
  use(index: number): void {
    this.#index = ((index % this.urls.length) + this.urls.length) % this.urls.length;
  }

  /**
   * With several URLs, the time one may take to answer before the next is tried; undefined with
   * one URL (nothing to move on to: a slow relay is waited for).
   */
  get attemptTimeoutMs(): number | undefined {
    return this.urls.length > 1 ? (this.#o.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS) : undefined;
  }

  /** The current bearer token, if logged in. */
  get token(): string | undefined {
    return this.#token?.token;
  }

  /** Log in afresh next time (the server refused the token before the upgrade). */
  forgetToken(): void {
    this.#token = undefined;
  }

  /** No more renewals. */
  stop(): void {
    if (this.#refreshTimer !== undefined) this.#o.clock.clearTimeout(this.#refreshTimer);
  }

  /** `GET /v1/status`, checked against its schema. */
  async status(): Promise<StatusResponse> {
    await this.checkAgreement();
    await this.ensureToken();
    return assertSchema(StatusResponse, await this.http('GET', '/v1/status', undefined, true), 'HL_ERR_INPUT_SCHEMA');
  }

  /** `GET /v1/audit/export`, unverified. */
  async auditExport(): Promise<unknown> {
    await this.checkAgreement();
    await this.ensureToken();
    return this.http('GET', '/v1/audit/export', undefined, true);
  }

  /** Refuse a server whose agreement does not hash as the pinned one. */
  async checkAgreement(): Promise<void> {
    const remote = await this.http('GET', '/v1/agreement', undefined, false);
    let hash: string;
    try {
      hash = agreementHash(parseAgreement(remote));
    } catch (cause) {
      throw new HotlineError('HL_ERR_AGREEMENT_MISMATCH', 'the server’s agreement is not a valid agreement', { cause });
    }
    if (hash !== this.#o.agreementHash) {
      throw new HotlineError(
        'HL_ERR_AGREEMENT_MISMATCH',
        `the server runs agreement ${hash.slice(0, 16)}…, not the pinned ${this.#o.agreementHash.slice(0, 16)}…; check the server URL and agreement file`,
      );
    }
  }

  /** Log in (challenge, signature) unless the token lasts beyond the margin; renewal is then timed. */
  async ensureToken(): Promise<void> {
    const margin = this.#o.tokenRefreshMarginMs ?? 60_000;
    if (this.#token && this.#token.expiresAt - margin > this.#o.clock.now()) return;
    const { party, device } = this.#o.me;
    const ch = (await this.http('POST', '/v1/auth/challenge', { party, device }, false)) as { challenge?: unknown };
    if (typeof ch.challenge !== 'string') throw new HotlineError('HL_ERR_AUTH_CHALLENGE_INVALID', 'the server sent no challenge');
    const signature = await ed25519Sign(
      fromBase64(this.#o.device.signSecret, 32),
      signingBytes(CONTEXT.login, { v: 1, challenge: ch.challenge, party, device, agreement: this.#o.agreementHash }),
    );
    const res = (await this.http(
      'POST',
      '/v1/auth/login',
      { party, device, challenge: ch.challenge, signature: toBase64(signature), certificate: this.#o.device.certificate },
      false,
    )) as { token?: unknown; expiresAt?: unknown; role?: unknown };
    if (typeof res.token !== 'string' || typeof res.expiresAt !== 'number') {
      throw new HotlineError('HL_ERR_AUTH_TOKEN_INVALID', 'the server sent a malformed login answer');
    }
    this.#token = { token: res.token, expiresAt: res.expiresAt };
    if (this.#refreshTimer !== undefined) this.#o.clock.clearTimeout(this.#refreshTimer);
    const due = Math.max(1000, res.expiresAt - margin - this.#o.clock.now());
    this.#refreshTimer = this.#o.clock.setTimeout(() => {
      if (this.#o.running()) this.ensureToken().catch((err: unknown) => this.#o.report(toHotlineError(err)));
    }, due);
    this.#o.emit('session', { role: typeof res.role === 'string' ? res.role : this.#o.me.role, expiresAt: res.expiresAt });
  }

  /** One JSON request; a refusal becomes a HotlineError with the server's code. */
  async http(method: 'GET' | 'POST', path: string, body: unknown, auth: boolean): Promise<unknown> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (auth && this.#token) headers.authorization = `Bearer ${this.#token.token}`;
    let res: Response | undefined;
    // Without a link (a command that only asks, like `hotline status`), a URL that does not answer
    // is followed by the next one at once. With the link running, the connection chooses the URL
    // (connection.ts): a request then fails and the link moves on by its own rules.
    for (let tried = 1; res === undefined; tried++) {
      // A node that takes the connection but never answers (hung, or its machine gone without a
      // reset) must not hold the client: with several URLs each answer has a time limit.
      const limit = this.attemptTimeoutMs;
      const abort = limit === undefined ? undefined : new AbortController();
      const timer = abort === undefined ? undefined : this.#o.clock.setTimeout(() => abort.abort(), limit!);
      try {
        res = await this.#fetch(this.baseUrl + path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }), ...(abort ? { signal: abort.signal } : {}) });
      } catch (cause) {
        if (tried < this.urls.length && !this.#o.running()) {
          this.use(this.#index + 1);
          continue;
        }
        if (abort?.signal.aborted) throw new HotlineError('HL_ERR_CLIENT_TIMEOUT', `${this.baseUrl} did not answer within ${limit} ms`, { cause });
        throw new HotlineError('HL_ERR_CLIENT_UNREACHABLE', `cannot reach ${this.baseUrl}: is the server running?`, { cause });
      } finally {
        if (timer !== undefined) this.#o.clock.clearTimeout(timer);
      }
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
}

/**
 * The relay URLs a client is given, checked: each `http://` or `https://` with a host, without a
 * trailing slash, each once, in the order given. None, or one that is not such a URL, is
 * `HL_ERR_CONFIG_INVALID`.
 */
export function relayUrlList(serverUrl: string | readonly string[]): string[] {
  const given = typeof serverUrl === 'string' ? [serverUrl] : serverUrl;
  const urls: string[] = [];
  for (const raw of given) {
    const url = raw.trim().replace(/\/+$/, '');
    if (!/^https?:\/\/[^/]+/.test(url)) throw new HotlineError('HL_ERR_CONFIG_INVALID', `a relay URL must be http:// or https://, got "${raw}"`);
    if (!urls.includes(url)) urls.push(url);
  }
  if (urls.length === 0) throw new HotlineError('HL_ERR_CONFIG_INVALID', 'no relay URL given');
  return urls;
}
