import { WebSocket } from 'ws';
import { CONTEXT, agreementHash, signingBytes } from '../../shared/crypto/keys.js';
import { ed25519Sign } from '../../shared/crypto/ed25519.js';
import { expectedRecipients, sealEnvelope } from '../../shared/crypto/envelope.js';
import { fromBase64, toBase64 } from '../../shared/encoding/base64.js';
import { newestPrekey } from '../../shared/crypto/prekey.js';
import type { Agreement, DeviceCertBody, DeviceCertificate, DeviceSecretFile, Envelope, Plaintext, Precedence, PrekeyBody, SecurityLabel, SignedPrekey } from '../../shared/protocol/schemas.js';
import type { ServerFrame } from '../../shared/protocol/frames.js';

/** Response bodies in tests are inspected loosely (`r.body.error.code`). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- test helper only
export type LooseJson = any;

/** A raw HTTP JSON call; returns the status and the parsed body. */
export async function call(base: string, method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: LooseJson }> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
  const res = await fetch(base + path, { method, headers, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed };
}

export async function enrol(base: string, certificate: DeviceCertificate): Promise<void> {
  const r = await call(base, 'POST', '/v1/directory/devices', certificate);
  if (r.status !== 201) throw new Error(`enrol failed: ${r.status} ${JSON.stringify(r.body)}`);
}

/** The login signature of the contract: over "hotline/v1/login\n" ‖ JCS({v, challenge, party, device, agreement}). */
export async function loginSignature(dev: DeviceSecretFile, challenge: string, agreement: Agreement): Promise<string> {
  const c = dev.certificate.cert;
  const bytes = signingBytes(CONTEXT.login, { v: 1, challenge, party: c.party, device: c.device, agreement: agreementHash(agreement) });
  return toBase64(await ed25519Sign(fromBase64(dev.signSecret, 32), bytes));
}

/** Challenge–response login over HTTP; returns the raw response of /v1/auth/login. */
export async function tryLogin(base: string, dev: DeviceSecretFile, agreement: Agreement, options: { withCertificate?: boolean } = {}) {
  const c = dev.certificate.cert;
  const ch = await call(base, 'POST', '/v1/auth/challenge', { party: c.party, device: c.device });
  if (ch.status !== 200) return ch;
  const signature = await loginSignature(dev, ch.body.challenge, agreement);
  return call(base, 'POST', '/v1/auth/login', {
    party: c.party,
    device: c.device,
    challenge: ch.body.challenge,
    signature,
    ...(options.withCertificate ? { certificate: dev.certificate } : {}),
  });
}

export async function login(base: string, dev: DeviceSecretFile, agreement: Agreement): Promise<string> {
  const r = await tryLogin(base, dev, agreement);
  if (r.status !== 200) throw new Error(`login failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.token as string;
}

export async function fetchDirectory(base: string, token: string): Promise<DeviceCertBody[]> {
  const r = await call(base, 'GET', '/v1/directory', undefined, token);
  if (r.status !== 200) throw new Error(`directory failed: ${r.status}`);
  return (r.body.certificates as DeviceCertificate[]).map((c) => c.cert);
}

/** The box key to wrap to for each device with a prekey in the relay's directory now: its newest (PROTOCOL.md "Prekeys and forward secrecy"). */
export async function fetchWrapKeys(base: string, token: string): Promise<Map<string, string>> {
  const r = await call(base, 'GET', '/v1/directory', undefined, token);
  const byDevice = new Map<string, PrekeyBody[]>();
  for (const { prekey: p } of (r.body.prekeys ?? []) as SignedPrekey[]) byDevice.set(`${p.party}/${p.device}`, [...(byDevice.get(`${p.party}/${p.device}`) ?? []), p]);
  const out = new Map<string, string>();
  for (const [name, list] of byDevice) {
    const newest = newestPrekey(list, Date.now());
    if (newest) out.set(name, newest.boxKey);
  }
  return out;
}

export interface SealOptions {
  sender: DeviceSecretFile;
  to: string;
  seq: number;
  directory: readonly DeviceCertBody[];
  plaintext: Plaintext;
  precedence?: Precedence;
  id?: string;
  /** Box keys to wrap to by `party/device` where not the certificate's (a device's prekey). */
  wrapKeys?: ReadonlyMap<string, string>;
  /** The sender's clock; default the real one. A test whose server runs on a manual clock passes that clock's time (the relay refuses a sentAt a day away from its clock). */
  sentAt?: number;
  /** A security label for the header (PROTOCOL.md "Security labels"). */
  label?: SecurityLabel;
}

export function seal(o: SealOptions): Promise<Envelope> {
  const me = o.sender.certificate.cert;
  return sealEnvelope({
    sender: o.sender,
    to: o.to,
    precedence: o.precedence ?? 'FLASH',
    seq: o.seq,
    sentAt: o.sentAt ?? Date.now(),
    recipients: expectedRecipients(o.directory, me, o.to),
    plaintext: o.plaintext,
    ...(o.id === undefined ? {} : { id: o.id }),
    ...(o.wrapKeys === undefined ? {} : { wrapKeys: o.wrapKeys }),
    ...(o.label === undefined ? {} : { label: o.label }),
  });
}

/** Refused upgrade: the HTTP status and body the server answered instead of 101. */
export class UpgradeRefused extends Error {
  constructor(
    readonly status: number,
    readonly body: LooseJson,
  ) {
    super(`upgrade refused: ${status}`);
  }
}

/**
 * A minimal raw-ws link client for tests: opens /v1/link with the subprotocols of the contract,
 * records every frame, and lets a test wait for frames by predicate (no sleeps).
 */
export class LinkClient {
  readonly frames: ServerFrame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly claimed = new Set<number>();
  private waiters: { pred: (f: ServerFrame) => boolean; resolve: (f: ServerFrame) => void }[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as ServerFrame;
      this.frames.push(frame);
      this.dispatch();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  /** Open the link. `protocols` defaults to the contract's ["hotline.v1", "bearer.<token>"]. */
  static open(base: string, token: string | undefined, options: { protocols?: string[]; headers?: Record<string, string>; path?: string } = {}): Promise<LinkClient> {
    const url = base.replace(/^http/, 'ws') + (options.path ?? '/v1/link');
    const protocols = options.protocols ?? ['hotline.v1', ...(token === undefined ? [] : [`bearer.${token}`])];
    const ws = new WebSocket(url, protocols, { headers: options.headers ?? {} });
    const client = new LinkClient(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // keep text
          }
          reject(new UpgradeRefused(res.statusCode ?? 0, body));
        });
      });
      ws.once('error', (err) => reject(err));
    });
  }

  private dispatch(): void {
    this.waiters = this.waiters.filter((w) => {
      const i = this.frames.findIndex((f, idx) => !this.claimed.has(idx) && w.pred(f));
      if (i === -1) return true;
      this.claimed.add(i);
      w.resolve(this.frames[i]!);
      return false;
    });
  }

  /** The first frame (not returned before) that matches; waits for it if needed. */
  waitFor<T extends ServerFrame = ServerFrame>(pred: (f: ServerFrame) => boolean, what = 'frame', timeoutMs = 10_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; got ${this.frames.map((f) => f.t).join(',')}`)), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f as T);
        },
      });
      this.dispatch();
    });
  }

  waitForType<K extends ServerFrame['t']>(t: K, extra: (f: Extract<ServerFrame, { t: K }>) => boolean = () => true): Promise<Extract<ServerFrame, { t: K }>> {
    return this.waitFor((f) => f.t === t && extra(f as Extract<ServerFrame, { t: K }>), t);
  }

  /** Wait for an error frame with this code. */
  waitForError(code: string): Promise<Extract<ServerFrame, { t: 'error' }>> {
    return this.waitForType('error', (f) => f.code === code);
  }

  send(frame: unknown): void {
    this.ws.send(JSON.stringify(frame));
  }

  sendRaw(data: string | Buffer): void {
    this.ws.send(data);
  }

  /**
   * A round trip behind everything the server has queued for us so far: it sends a frame the
   * server refuses (an ack with a bad cursor) and waits for that refusal. Frames sent before it
   * (hello and the backlog) are then in `frames`.
   */
  async sync(): Promise<void> {
    const before = this.frames.length;
    this.send({ t: 'ack', cursor: -1 });
    await this.waitFor((f) => f.t === 'error' && f.code === 'HL_ERR_INPUT_SCHEMA' && this.frames.indexOf(f) >= before, 'sync');
  }

  ofType<K extends ServerFrame['t']>(t: K): Extract<ServerFrame, { t: K }>[] {
    return this.frames.filter((f) => f.t === t) as Extract<ServerFrame, { t: K }>[];
  }

  close(): Promise<{ code: number; reason: string }> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
    return this.closed;
  }
}
