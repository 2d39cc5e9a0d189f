import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger, FastifyPluginAsync } from 'fastify';
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import { HotlineError, isHotlineError, type HotlineErrorCode } from '../../shared/errors.js';
import { assertSchema, parseJson } from '../../shared/protocol/validate.js';
import { AckFrame, CLIENT_FRAME_TYPES, SendEnvelopeFrame, SendReceiptFrame, type ServerFrame } from '../../shared/protocol/frames.js';
import { randomId } from '../../shared/crypto/random.js';
import { track, type AppContext } from '../context.js';
import { deviceKey, type DeviceKey, type MailboxItem, type WriteResult } from '../store/store.js';
import { admitEnvelope, admitReceipt } from '../relay/admit.js';
import { initialDelivery, stepDelivery, type DeliveryEvent, type DeliveryState } from '../relay/delivery.js';
import type { TokenClaims } from '../tokens.js';
import { addressKey } from '../relay/rate-limit.js';
import { authenticateToken } from './auth.js';

/** The subprotocol a Hotline client offers and the server selects. */
export const LINK_PROTOCOL = 'hotline.v1';
/** The token travels as a second offered subprotocol, `bearer.<jwt>`: never in the URL. */
export const BEARER_PROTOCOL_PREFIX = 'bearer.';
export const LINK_PATH = '/v1/link';
/** Largest frame the server reads; a larger one is refused with HL_ERR_INPUT_TOO_LARGE and the connection closed. */
export const MAX_FRAME_BYTES = 64 * 1024;
/** ws's own hard limit (it then closes with 1009 without reading further); above MAX_FRAME_BYTES so our coded refusal comes first. */
const WS_MAX_PAYLOAD = 2 * MAX_FRAME_BYTES;
const BACKLOG_PAGE = 256;
/** Time a closing connection is given for the close handshake before it is cut. */
const CLOSE_GRACE_MS = 5_000;

interface Connection {
  id: string;
  ws: WebSocket;
  claims: TokenClaims;
  key: DeviceKey;
  log: FastifyBaseLogger;
  delivery: DeliveryState;
  alive: boolean;
  closing: boolean;
  heartbeat?: ReturnType<AppContext['clock']['setTimeout']>;
  /** Frames are admitted one after another, so a device's seq order reaches the write queue intact. */
  chain: Promise<void>;
}

/** Errors that concern the connection itself: answered, then the connection is closed. */
const FATAL: ReadonlySet<HotlineErrorCode> = new Set(['HL_ERR_INPUT_MALFORMED_JSON', 'HL_ERR_INPUT_TOO_LARGE', 'HL_ERR_INPUT_UNKNOWN_FRAME']);

function refId(value: unknown): string | undefined {
  // attacker-controlled: only a short string is echoed back
  return typeof value === 'string' && value.length <= 64 ? value : undefined;
}

export const linkPlugin: FastifyPluginAsync<{ ctx: AppContext }> = async (app, { ctx }) => {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: WS_MAX_PAYLOAD,
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: (protocols) => (protocols.has(LINK_PROTOCOL) ? LINK_PROTOCOL : false),
  });
  const hub = new Map<DeviceKey, Set<Connection>>();
  const all = new Set<Connection>();

  // ----- before the upgrade: path, origin, token, certificate -----

  function refuseUpgrade(socket: Duplex, error: HotlineError): void {
    const body = JSON.stringify({ error: { code: error.code, message: error.message } });
    const status = error.httpStatus;
    const retryAfter = error.detail?.retryAfterSeconds;
    const extra = typeof retryAfter === 'number' ? `Retry-After: ${retryAfter}\r\n` : '';
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`,
    );
  }

  function authenticateUpgrade(req: IncomingMessage, address: string): TokenClaims {
    if (ctx.shuttingDown) throw new HotlineError('HL_ERR_SERVER_SHUTTING_DOWN', 'the server is shutting down; reconnect shortly');
    // Refused upgrades count against the address's login limit; past it, even a valid token waits.
    const limited = ctx.limits.check('login', address);
    if (limited) throw limited;
    const origin = req.headers.origin;
    if (origin !== undefined) {
      const own = `${ctx.options.secure ? 'https' : 'http'}://${req.headers.host ?? ''}`;
      if (origin !== own && !ctx.options.allowedOrigins.includes(origin)) {
        throw new HotlineError('HL_ERR_AUTH_ORIGIN', 'this origin may not open the link');
      }
    }
    const offered = (req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    if (offered.length > 0 && !offered.includes(LINK_PROTOCOL)) {
      throw new HotlineError('HL_ERR_INPUT_SCHEMA', `offer the "${LINK_PROTOCOL}" subprotocol`);
    }
    const bearer = offered.find((p) => p.startsWith(BEARER_PROTOCOL_PREFIX));
    let token = bearer?.slice(BEARER_PROTOCOL_PREFIX.length);
    if (token === undefined) {
      // Node clients may use the header instead; a token in the URL is never read.
      const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
      token = m?.[1];
    }
    if (token === undefined || token === '') {
      throw new HotlineError('HL_ERR_AUTH_TOKEN_MISSING', `offer the subprotocols "${LINK_PROTOCOL}" and "${BEARER_PROTOCOL_PREFIX}<token>"`);
    }
    return authenticateToken(ctx, token);
  }

  function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '').split('?')[0];
    if (path !== LINK_PATH) {
      refuseUpgrade(socket, new HotlineError('HL_ERR_NOT_FOUND', 'no WebSocket here; the link is at /v1/link'));
      return;
    }
    let claims: TokenClaims;
    const address = addressKey(req.socket.remoteAddress);
    try {
      claims = authenticateUpgrade(req, address);
    } catch (error) {
      let e = isHotlineError(error) ? error : new HotlineError('HL_ERR_INTERNAL', 'internal error');
      if (e.code !== 'HL_ERR_INPUT_RATE_LIMITED' && e.code !== 'HL_ERR_SERVER_SHUTTING_DOWN') e = ctx.limits.take('login', address) ?? e;
      ctx.log.info({ code: e.code }, 'link upgrade refused');
      refuseUpgrade(socket, e);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, claims));
  }
  app.server.on('upgrade', onUpgrade);

  // ----- sending -----

  function closeWith(conn: Connection, code: HotlineErrorCode, message: string): void {
    if (conn.closing) return;
    conn.closing = true;
    send(conn, { t: 'error', code, message }, true);
    const wsCode = new HotlineError(code, message).wsCloseCode;
    conn.ws.close(wsCode, code);
    const t = ctx.clock.setTimeout(() => conn.ws.terminate(), CLOSE_GRACE_MS);
    conn.ws.once('close', () => ctx.clock.clearTimeout(t));
  }

  function send(conn: Connection, frame: ServerFrame, force = false, onWritten?: () => void): void {
    if (conn.ws.readyState !== WebSocket.OPEN || (conn.closing && !force)) {
      onWritten?.();
      return;
    }
    if (!force && conn.ws.bufferedAmount > ctx.options.slowConsumerBytes) {
      // Stop pushing: the mailbox keeps everything un-acknowledged for the next connection.
      conn.log.warn({ buffered: conn.ws.bufferedAmount }, 'slow consumer');
      closeWith(conn, 'HL_ERR_SERVER_SLOW_CONSUMER', 'too much unread data; reconnect to resume from the mailbox');
      onWritten?.();
      return;
    }
    conn.ws.send(JSON.stringify(frame), onWritten && (() => onWritten()));
  }

  function itemFrame(item: MailboxItem): ServerFrame {
    if (item.kind === 'event') return { t: 'event', cursor: item.cursor, event: item.event };
    return item.kind === 'envelope'
      ? { t: 'deliver', cursor: item.cursor, envelope: item.envelope, acceptedAt: item.acceptedAt }
      : { t: 'receipt', cursor: item.cursor, receipt: item.receipt, acceptedAt: item.acceptedAt };
  }

  function stepConn(conn: Connection, event: DeliveryEvent): void {
    const { state, effects } = stepDelivery(conn.delivery, event);
    conn.delivery = state;
    for (const e of effects) send(conn, itemFrame(e.item));
  }

  function pushLive(device: DeviceKey, item: MailboxItem): void {
    for (const conn of hub.get(device) ?? []) stepConn(conn, { type: 'live', item });
  }

  // ----- a connection -----

  function onConnection(ws: WebSocket, claims: TokenClaims): void {
    const key = deviceKey(claims);
    const id = randomId().slice(0, 12);
    const conn: Connection = {
      id,
      ws,
      claims,
      key,
      log: ctx.log.child({ connId: id, device: key }),
      delivery: initialDelivery(0),
      alive: true,
      closing: false,
      chain: Promise.resolve(),
    };
    // Handlers first, synchronously, so that no frame arrives unheard.
    ws.on('message', (data, isBinary) => onMessage(conn, data, isBinary));
    ws.on('pong', () => {
      conn.alive = true;
    });
    ws.on('error', (err) => conn.log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'socket error'));
    ws.on('close', (code) => {
      if (conn.heartbeat) ctx.clock.clearTimeout(conn.heartbeat);
      all.delete(conn);
      hub.get(key)?.delete(conn);
      if (hub.get(key)?.size === 0) hub.delete(key);
      conn.log.info({ code }, 'link closed');
    });
    all.add(conn);
    let set = hub.get(key);
    if (!set) hub.set(key, (set = new Set()));
    set.add(conn);
    conn.log.info({ role: claims.role }, 'link open');
    armHeartbeat(conn);
    // Not tracked for shutdown: a device that does not read must not hold the server up.
    void replayBacklog(conn).catch((error: unknown) => {
      conn.log.error({ err: { message: (error as Error).message } }, 'backlog failed');
      closeWith(conn, 'HL_ERR_STORE_FAILED', 'could not read the mailbox; reconnect');
    });
  }

  function armHeartbeat(conn: Connection): void {
    conn.heartbeat = ctx.clock.setTimeout(() => {
      if (conn.ws.readyState !== WebSocket.OPEN) return;
      if (!conn.alive) {
        conn.log.info('no pong: connection ended');
        conn.ws.terminate();
        return;
      }
      conn.alive = false;
      conn.ws.ping();
      armHeartbeat(conn);
    }, ctx.options.heartbeatIntervalMs);
  }

  async function replayBacklog(conn: Connection): Promise<void> {
    const lastCursor = await ctx.store.ackedCursor(conn.key);
    conn.delivery = { ...conn.delivery, lastSent: Math.max(conn.delivery.lastSent, lastCursor) };
    const lastSeq = await ctx.store.lastSeq(conn.key);
    send(conn, { t: 'hello', device: { party: conn.claims.party, device: conn.claims.device }, serverTime: ctx.clock.now(), lastCursor, lastSeq });
    let written: Promise<void> = Promise.resolve();
    for (;;) {
      if (conn.ws.readyState !== WebSocket.OPEN || conn.closing) return;
      const items = await ctx.store.mailbox(conn.key, conn.delivery.lastSent, BACKLOG_PAGE);
      const { state, effects } = stepDelivery(conn.delivery, { type: 'backlog', items, done: false });
      conn.delivery = state;
      for (const e of effects) {
        // Flow control: past half the slow-consumer mark, wait until what is queued has been written.
        if (conn.ws.bufferedAmount > ctx.options.slowConsumerBytes / 2) await written;
        written = new Promise<void>((resolve) => send(conn, itemFrame(e.item), false, resolve));
      }
      if (items.length < BACKLOG_PAGE) {
        // Synchronously: live items held meanwhile follow the backlog, in cursor order.
        stepConn(conn, { type: 'backlog', items: [], done: true });
        return;
      }
      await written;
    }
  }

  // ----- frames from the device (attacker-controlled) -----

  function onMessage(conn: Connection, data: RawData, isBinary: boolean): void {
    if (conn.closing) return;
    const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data instanceof ArrayBuffer ? data.byteLength : data.length;
    try {
      // Size first: nothing is parsed before the limit holds.
      if (size > MAX_FRAME_BYTES) throw new HotlineError('HL_ERR_INPUT_TOO_LARGE', `frames are limited to ${MAX_FRAME_BYTES} bytes`);
      if (isBinary) throw new HotlineError('HL_ERR_INPUT_MALFORMED_JSON', 'frames are JSON text, not binary');
      const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as Buffer).toString('utf8');
      const value = parseJson(text);
      const t = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as { t?: unknown }).t : undefined;
      if (typeof t !== 'string' || !(CLIENT_FRAME_TYPES as readonly string[]).includes(t)) {
        throw new HotlineError('HL_ERR_INPUT_UNKNOWN_FRAME', `unknown frame; known: ${CLIENT_FRAME_TYPES.join(', ')}`);
      }
      const run = () => handleFrame(conn, t, value);
      const next = conn.chain.then(run, run);
      conn.chain = next;
      void track(ctx, next);
    } catch (error) {
      refuse(conn, error, undefined);
    }
  }

  function refuse(conn: Connection, error: unknown, ref: string | undefined): void {
    let e: HotlineError;
    if (isHotlineError(error)) e = error;
    else {
      conn.log.error({ err: { message: (error as Error)?.message, stack: (error as Error)?.stack } }, 'internal error');
      e = new HotlineError('HL_ERR_INTERNAL', 'internal error');
    }
    conn.log.info({ code: e.code, ...(ref === undefined ? {} : { ref }) }, 'frame refused');
    if (FATAL.has(e.code)) {
      closeWith(conn, e.code, e.message);
      return;
    }
    send(conn, { t: 'error', code: e.code, message: e.message, ...(ref === undefined ? {} : { ref }) }, true);
  }

  async function handleFrame(conn: Connection, t: string, value: unknown): Promise<void> {
    const v = value as { envelope?: { header?: { id?: unknown } }; receipt?: { receipt?: { messageId?: unknown } } };
    const ref = refId(t === 'envelope' ? v.envelope?.header?.id : t === 'receipt' ? v.receipt?.receipt?.messageId : undefined);
    try {
      if (conn.ws.readyState !== WebSocket.OPEN) return;
      if (ctx.shuttingDown) throw new HotlineError('HL_ERR_SERVER_SHUTTING_DOWN', 'the server is shutting down; resend after reconnecting');
      const now = ctx.clock.now();
      const actx = { agreement: ctx.agreement, directory: ctx.directory, now, sender: conn.claims };
      if (t === 'envelope') {
        const frame = assertSchema(SendEnvelopeFrame, value, 'HL_ERR_ENVELOPE_MALFORMED');
        const write = await admitEnvelope(frame.envelope, actx);
        ctx.deadlines.prepareEnvelope(write);
        // Not awaited: the next frame is admitted while this one waits for its group commit.
        void track(ctx, ctx.writes.enqueue(write)).then((result) => {
          ctx.deadlines.afterEnvelope(write, result);
          if (!result.ok) return refuse(conn, result.error, ref);
          send(conn, { t: 'accepted', id: write.envelope.header.id, envelopeHash: write.envelopeHash, at: result.acceptedAt }, true);
          conn.log.info({ ref, status: result.status }, 'envelope accepted');
          fanOut(result);
        });
      } else if (t === 'receipt') {
        const frame = assertSchema(SendReceiptFrame, value, 'HL_ERR_RECEIPT_MALFORMED');
        const stored = await ctx.store.getEnvelope(frame.receipt.receipt.messageId);
        const write = await admitReceipt(frame.receipt, stored?.envelope.header, actx);
        ctx.deadlines.prepareReceipt(write);
        void track(ctx, ctx.writes.enqueue(write)).then((result) => {
          ctx.deadlines.afterReceipt(result);
          if (!result.ok) return refuse(conn, result.error, ref);
          const r = write.receipt.receipt;
          send(conn, { t: 'receipt-accepted', messageId: r.messageId, kind: r.kind, at: result.acceptedAt }, true);
          conn.log.info({ ref, kind: r.kind, status: result.status }, 'receipt accepted');
          fanOut(result);
        });
      } else {
        const frame = assertSchema(AckFrame, value, 'HL_ERR_INPUT_SCHEMA');
        // Through the write queue: a burst of acks shares the batch's transaction and fsync
        // instead of blocking the event loop on one fsync each.
        void track(ctx, ctx.writes.enqueue({ kind: 'ack', device: conn.key, cursor: frame.cursor, acceptedAt: ctx.clock.now() }));
      }
    } catch (error) {
      refuse(conn, error, ref);
    }
  }

  function fanOut(result: WriteResult): void {
    if (!result.ok || result.status !== 'new') return;
    for (const { device, item } of result.delivered) pushLive(device, item);
  }

  ctx.pushLive = (delivered) => {
    for (const { device, item } of delivered) pushLive(device, item);
  };
  ctx.operatorOnline = (party) =>
    [...all].some((conn) => conn.claims.party === party && conn.claims.role === 'operator' && !conn.closing && conn.ws.readyState === WebSocket.OPEN);

  ctx.disconnectRevoked = (party, device, signKey) => {
    for (const conn of hub.get(deviceKey({ party, device })) ?? []) {
      if (conn.claims.signKey === signKey) closeWith(conn, 'HL_ERR_CERT_REVOKED', 'this device certificate has been revoked');
    }
  };

  // ----- shutdown: finish in-flight work, then close the sockets -----

  app.addHook('preClose', async () => {
    ctx.shuttingDown = true;
    app.server.off('upgrade', onUpgrade);
    while (ctx.inFlight.size > 0) await Promise.allSettled([...ctx.inFlight]);
    await ctx.writes.drain();
    const closed = [...all].map((conn) => new Promise<void>((resolve) => {
      if (conn.ws.readyState === WebSocket.CLOSED) return resolve();
      conn.ws.once('close', () => resolve());
      closeWith(conn, 'HL_ERR_SERVER_SHUTTING_DOWN', 'the server is shutting down; reconnect shortly');
    }));
    await Promise.all(closed);
    wss.close();
  });
};
