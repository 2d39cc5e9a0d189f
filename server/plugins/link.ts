import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger, FastifyPluginAsync } from 'fastify';
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import { closesLink, HotlineError, isHotlineError, type HotlineErrorCode } from '../../shared/errors.js';
import { decodeClientFrame, encodeFrame, MAX_FRAME_BYTES } from '../../shared/protocol/codec.js';
import type { ClientFrame, OperatorNotice, ServerFrame } from '../../shared/protocol/frames.js';
import { randomId } from '../../shared/crypto/random.js';
import type { Ed25519Verifier } from '../../shared/crypto/ed25519.js';
import type { Agreement } from '../../shared/protocol/schemas.js';
import { systemClock, type TimerHandle } from '../clock.js';
import { FlashGate, type FlashGateBounds } from '../relay/flash-gate.js';
import { Slices } from '../relay/slices.js';
import type { DeadlineScheduler } from '../deadline-scheduler.js';
import type { Lifecycle } from '../lifecycle.js';
import type { LinkHub, LiveLink } from '../link-hub.js';
import type { RateLimits } from '../rate-limits.js';
import { deviceKey, type DeviceKey, type EnvelopeWrite, type MailboxItem, type StoredMessage, type WriteResult } from '../relay/records.js';
import { admitEnvelope, admitReceipt, admitRefusal, startEarlyCheck, withEarlyCheck, type EarlyCheck } from '../relay/admit.js';
import { hasSendable, initialDelivery, stepDelivery, type DeliveryEvent, type DeliveryState } from '../relay/delivery.js';
import type { ClusterStore, Store } from '../store/store.js';
import type { WriteQueue } from '../store/write-queue.js';
import type { TokenClaims } from '../tokens.js';
import { addressKey } from '../relay/rate-limit.js';
import { authenticateToken, type DeviceAuth } from './auth.js';
import type { Metrics } from '../metrics.js';

/** The subprotocol a Hotline client offers and the server selects. */
export const LINK_PROTOCOL = 'hotline.v1';
/** The token travels as a second offered subprotocol, `bearer.<jwt>`: never in the URL. */
export const BEARER_PROTOCOL_PREFIX = 'bearer.';
export const LINK_PATH = '/v1/link';
/** ws's own hard limit (it then closes with 1009 without reading further); above MAX_FRAME_BYTES so our coded refusal comes first. */
const WS_MAX_PAYLOAD = 2 * MAX_FRAME_BYTES;
/** Mailbox rows read at once: a page is a few milliseconds of SQLite work on the event loop. */
const BACKLOG_PAGE = 128;
/**
 * Work done in one turn of the event loop before yielding (setImmediate), for sending and for
 * handling a device's frames alike: bounded by count and by time, so that a long backlog or a
 * burst of frames in one socket read never stalls the server (issue 9: no stall over 50 ms).
 * A FLASH arriving on another connection waits for at most the turn in progress, at each of its
 * hops: 2 ms and 16 frames (once 8 ms and 64) took the FLASH p50 under half-capacity load from
 * 12.0 to 8.7 ms (median of 5 alternating runs each, quiet machine) for 9 % of capacity
 * (docs/performance.md). Lower-rank frames are handled in one such slice per turn of the loop
 * shared by every connection (server/relay/slices.ts), not one per connection; FLASH frames
 * take no slice, and while a FLASH is on its way through the relay the others wait for it
 * (server/relay/flash-gate.ts).
 */
const TURN_MS = 2;
/** Frames handled per turn (each may cost a signature verification). */
const TURN_ITEMS = 16;
/**
 * The one slice of lower-rank frames per turn of the loop, shared by every connection
 * (server/relay/slices.ts). 1 ms rather than TURN_MS: `npm run bench -- --only=capacity`, three runs
 * each alternating, FLASH p50 under half-capacity load 4.70, 4.48, 4.71 ms against 6.72, 5.34,
 * 7.91 ms with 2 ms, capacity 631, 721, 596 against 638, 640, 642 msgs/s (docs/performance.md).
 */
const SLICE_MS = 1;
/** Items sent per turn (each a string already built around stored JSON). */
const SEND_TURN_ITEMS = 256;
/** Frames received and not yet handled past which the socket is paused (TCP pushes back). */
const INBOUND_PAUSE = 256;
/** Time a closing connection is given for the close handshake before it is cut. */
const CLOSE_GRACE_MS = 5_000;

export interface LinkPluginOptions {
  agreement: Agreement;
  /** WebSocket paths served by other plugins (the relay-to-relay link), left alone here. */
  otherPaths?: readonly string[];
  store: Pick<Store, 'mailbox' | 'maxCursor' | 'ackedCursor' | 'lastSeq' | 'getMessage'>;
  /** The root logger: each connection logs through a child of it. */
  log: FastifyBaseLogger;
  /** Tokens at the upgrade; the directory also admits each frame. */
  auth: DeviceAuth;
  writes: WriteQueue;
  limits: RateLimits;
  lifecycle: Lifecycle;
  /** Deadlines and link tests opened and closed by what the devices send. */
  deadlines: Pick<DeadlineScheduler, 'prepareEnvelope' | 'afterEnvelope' | 'prepareReceipt' | 'afterReceipt' | 'prepareRefusal' | 'afterRefusal'>;
  /** Where each connection is registered, so that others can push to it or end it. */
  hub: LinkHub;
  /** Interval of WebSocket pings; a connection that has not answered the previous ping is ended. */
  heartbeatIntervalMs: number;
  /** Bytes queued on a socket beyond which the device counts as a slow consumer. */
  slowConsumerBytes: number;
  /** The FLASH gate's bounds (FLASH_GATE_DEFAULTS otherwise). */
  flashGate?: Partial<FlashGateBounds>;
  /** Browser origins allowed besides the server's own. */
  allowedOrigins: readonly string[];
  /** Whether the server is reached over TLS (for the same-origin check). */
  secure: boolean;
  /** The operator notice in force (the store found corrupt), sent to each link after its hello. */
  storeNotice?: () => OperatorNotice | undefined;
  /**
   * One of several nodes on one database: items committed by another node are read from here when
   * a notification names the device (LinkHub.pull), never pushed by this node's writes.
   */
  cluster?: Pick<ClusterStore, 'liveMailbox'>;
  /** Refusals counted, signature checks timed, and this plugin's queues read at scrape time. */
  metrics?: Metrics;
  /**
   * The frames' signature checks (server/verify-pool.ts): `gathered` when other connections have
   * frames waiting, `now` otherwise; without them, node:crypto's on the event loop.
   */
  verify?: { gathered: Ed25519Verifier; now: Ed25519Verifier };
}

interface Connection {
  id: string;
  ws: WebSocket;
  /** The socket under `ws`, corked while frames for it gather (corkTurn). */
  socket: Duplex;
  corked: boolean;
  /** How the hub sees it. */
  link: LiveLink;
  claims: TokenClaims;
  key: DeviceKey;
  log: FastifyBaseLogger;
  delivery: DeliveryState;
  /** A send turn is scheduled (setImmediate) or waits for the socket to drain. */
  pumping: boolean;
  /** The send turn stopped at the high-water mark: the next write callback under it resumes. */
  waitingDrain: boolean;
  alive: boolean;
  closing: boolean;
  heartbeat?: TimerHandle;
  /**
   * Frames received and decoded, not yet handled, in two lanes each handled in arrival order:
   * `urgent` (FLASH envelopes, and receipts of a FLASH this connection was handed) goes before
   * `inbound` (everything else), so that a FLASH does not wait behind the ROUTINE frames a busy
   * device has queued (issue 9: precedence first). PROTOCOL.md "Delivery order" allows it: a
   * higher rank may overtake a lower one, and within a rank acceptance order is arrival order.
   */
  inbound: Inbound[];
  urgent: Inbound[];
  /** Ids of the FLASH envelopes handed to this device (bounded): their receipts are urgent. */
  flashHanded: Set<string>;
  /** The inbound queue is being worked through. */
  handling: boolean;
  /** The inbound lane waits for the FLASH gate: wakes it when an urgent frame comes. */
  wake: (() => void) | undefined;
  /**
   * Cursors above the snapshot already queued for this connection (pushed by this node or read
   * after a notification): an item reaches the device once, whichever way it came first.
   */
  liveSeen: Set<number>;
  /** A read of new items (pull) is running; `pullAgain`: another notification came meanwhile. */
  pulling: boolean;
  pullAgain: boolean;
}


const yieldTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A frame received: decoded (with its signature check, if started early), or the refusal its decoding gave. */
type Inbound = { frame: ClientFrame; check?: EarlyCheck } | { error: unknown };

/** FLASH ids remembered per connection for the urgent lane (the oldest forgotten first). */
const FLASH_HANDED_MAX = 1024;

/**
 * Messages this node accepted lately, kept (header and hash, the oldest forgotten first) for the
 * receipts and refusals that answer them within seconds: each was read back from the store and its
 * header parsed, ~2 % of the relay's time at capacity (docs/performance.md, sixteenth session). An
 * id names one envelope for good (the store refuses another under it), so an entry never goes
 * stale; a message not here (older, accepted before a restart, by another node or by the peer
 * relay) is read from the store as before.
 */
const RECENT_MESSAGES = 4096;

/** Whether a decoded frame goes in the urgent lane. */
function isUrgentFrame(conn: Connection, item: Inbound): boolean {
  if (!('frame' in item)) return false;
  const f = item.frame;
  if (f.t === 'envelope') return f.envelope.header.precedence === 'FLASH';
  if (f.t === 'receipt') return conn.flashHanded.has(f.receipt.receipt.messageId);
  return false;
}

/** The bytes of a ws message, however ws delivered them. */
function rawBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  return data instanceof ArrayBuffer ? new Uint8Array(data) : data;
}

/** The message id a refused frame named, when the codec could read one (for the error's `ref`). */
function refOf(error: unknown): string | undefined {
  const ref = isHotlineError(error) ? error.detail?.ref : undefined;
  return typeof ref === 'string' ? ref : undefined;
}

export const linkPlugin: FastifyPluginAsync<LinkPluginOptions> = async (app, options) => {
  const { agreement, store, log, auth, writes, limits, lifecycle, deadlines, hub, storeNotice, cluster } = options;
  const { directory, clock } = auth;
  // Real time, whatever clock the tokens and deadlines run on: the gate schedules work, it decides nothing.
  const gate = new FlashGate(systemClock, options.flashGate);
  writes.gate = gate;
  const slices = new Slices(SLICE_MS);
  const recent = new Map<string, StoredMessage>();
  const storedMessage = async (id: string): Promise<StoredMessage | undefined> => recent.get(id) ?? (await store.getMessage(id));
  const remember = (write: EnvelopeWrite) => {
    recent.set(write.envelope.header.id, { header: write.envelope.header, envelopeHash: write.envelopeHash });
    if (recent.size > RECENT_MESSAGES) recent.delete(recent.keys().next().value!);
  };
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: WS_MAX_PAYLOAD,
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: (protocols) => (protocols.has(LINK_PROTOCOL) ? LINK_PROTOCOL : false),
  });
  const all = new Set<Connection>();
  const timing = options.metrics ? { timeVerify: options.metrics.timeVerify.bind(options.metrics) } : {};
  /**
   * Checks go to the signature-check thread (`gathered`) only while other connections have frames
   * waiting for their slice: then several gather in one turn and the thread pays. One connection's
   * frames alone (one message in flight, one sender's stream) are admitted one after another, one
   * check at a time: handed to the thread, each waited a turn of the loop, and a backlog of 100,000
   * from one sender was accepted ~10 % slower (docs/performance.md, sixteenth session). A frame of
   * the urgent lane (a FLASH) is always checked at once: in the thread it would queue behind the
   * batches of early checks (onMessage) that a ROUTINE stream keeps there. Frames queued behind
   * others bring their check started early (EarlyCheck), whichever verifier is chosen here.
   */
  const verifier = (check: EarlyCheck | undefined, urgent: boolean) =>
    options.verify ? { verify: withEarlyCheck(check, slices.waiting > 0 && !urgent ? options.verify.gathered : options.verify.now) } : {};
  if (options.metrics) {
    // Read at scrape time only: one pass over the open links.
    options.metrics.sources.flashGate = () => ({ ...gate.counts, heldSeconds: gate.heldSeconds() });
    options.metrics.sources.links = () => {
      let sendQueue = 0;
      for (const c of all) sendQueue += c.delivery.queue.length + c.delivery.early.length;
      return { open: all.size, sendQueue, inboundWaiting };
    };
  }

  // ----- before the upgrade: path, origin, token, certificate -----

  function refuseUpgrade(socket: Duplex, error: HotlineError): void {
    options.metrics?.refused(error.code, 'link');
    const body = JSON.stringify({ error: { code: error.code, message: error.message } });
    const status = error.httpStatus;
    const retryAfter = error.detail?.retryAfterSeconds;
    const extra = typeof retryAfter === 'number' ? `Retry-After: ${retryAfter}\r\n` : '';
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`,
    );
  }

  function authenticateUpgrade(req: IncomingMessage, address: string): TokenClaims {
    if (lifecycle.shuttingDown) throw new HotlineError('HL_ERR_SERVER_SHUTTING_DOWN', 'the server is shutting down; reconnect shortly');
    // Refused upgrades count against the address's login limit; past it, even a valid token waits.
    const limited = limits.check('login', address);
    if (limited) throw limited;
    const origin = req.headers.origin;
    if (origin !== undefined) {
      const own = `${options.secure ? 'https' : 'http'}://${req.headers.host ?? ''}`;
      if (origin !== own && !options.allowedOrigins.includes(origin)) {
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
    return authenticateToken(auth, token);
  }

  function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '').split('?')[0];
    // Another plugin's WebSocket (the relay-to-relay link) is answered there.
    if (path !== undefined && options.otherPaths?.includes(path)) return;
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
      if (e.code !== 'HL_ERR_INPUT_RATE_LIMITED' && e.code !== 'HL_ERR_SERVER_SHUTTING_DOWN') e = limits.take('login', address) ?? e;
      log.info({ code: e.code }, 'link upgrade refused');
      refuseUpgrade(socket, e);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, claims, socket));
  }
  app.server.on('upgrade', onUpgrade);

  // ----- sending -----

  function closeWith(conn: Connection, code: HotlineErrorCode, message: string): void {
    if (conn.closing) return;
    conn.closing = true;
    send(conn, { t: 'error', code, message }, true);
    const wsCode = new HotlineError(code, message).wsCloseCode;
    conn.ws.close(wsCode, code);
    const t = clock.setTimeout(() => conn.ws.terminate(), CLOSE_GRACE_MS);
    conn.ws.once('close', () => clock.clearTimeout(t));
  }

  function send(conn: Connection, frame: ServerFrame, force = false): void {
    if (conn.ws.readyState !== WebSocket.OPEN || (conn.closing && !force)) return;
    corkTurn(conn);
    conn.ws.send(encodeFrame(frame));
  }

  /**
   * The frames one piece of work sends a device (the answers and copies of a group commit, a turn
   * of the pump) leave in one write: the socket is corked at the first and uncorked once that work
   * is done (process.nextTick: after the promise callbacks queued meanwhile, which send the rest).
   * Each frame was a write system call of its own, ~4 % of the relay's time at capacity
   * (docs/performance.md, sixteenth session). Nothing waits longer than the work in hand.
   */
  function corkTurn(conn: Connection): void {
    if (conn.corked) return;
    conn.corked = true;
    conn.socket.cork();
    process.nextTick(() => {
      conn.corked = false;
      conn.socket.uncork();
    });
  }

  /**
   * The frame of a mailbox item, built around the stored JSON text (checked before it was
   * stored): no parse and no re-serialisation per delivery.
   */
  function itemFrame(item: MailboxItem): string {
    if (item.kind === 'event') return `{"t":"event","cursor":${item.cursor},"event":${item.json}}`;
    const t = item.kind === 'envelope' ? 'deliver' : 'receipt';
    return `{"t":"${t}","cursor":${item.cursor},"${item.kind}":${item.json},"acceptedAt":${item.acceptedAt}}`;
  }

  function drive(conn: Connection, event: DeliveryEvent): void {
    for (const e of stepDelivery(conn.delivery, event)) {
      if (e.type === 'send') {
        if (e.item.kind === 'envelope' && e.item.rank === 0) rememberFlash(conn, e.item);
        corkTurn(conn);
        conn.ws.send(itemFrame(e.item), () => {
          // Flow control: a turn that stopped at the high-water mark resumes once data is written,
          // in a turn of its own. (A write the kernel took at once calls back on process.nextTick:
          // resuming from here directly would chain turn after turn without ever yielding.)
          if (conn.waitingDrain && conn.ws.bufferedAmount <= highWater) {
            conn.waitingDrain = false;
            setImmediate(() => resumePump(conn));
          }
        });
      } else {
        // A page is read in a turn of its own, not inside a send turn: each stays short.
        const { after, upTo } = e;
        setImmediate(() => {
          if (!open(conn)) return;
          void store.mailbox(conn.key, { ...(after ? { after } : {}), upTo, limit: BACKLOG_PAGE }).then(
            (items) => {
              if (!open(conn)) return;
              drive(conn, { type: 'page', items, done: items.length < BACKLOG_PAGE });
              pump(conn);
            },
            (error: unknown) => {
              conn.log.error({ err: { message: (error as Error).message } }, 'backlog failed');
              closeWith(conn, 'HL_ERR_STORE_FAILED', 'could not read the mailbox; reconnect');
            },
          );
        });
      }
    }
  }

  /** A FLASH envelope handed to the device: its receipts will take the urgent lane. */
  function rememberFlash(conn: Connection, item: MailboxItem): void {
    const id = (JSON.parse(item.json) as { header?: { id?: unknown } }).header?.id;
    if (typeof id !== 'string') return;
    conn.flashHanded.add(id);
    if (conn.flashHanded.size > FLASH_HANDED_MAX) conn.flashHanded.delete(conn.flashHanded.values().next().value!);
  }

  const highWater = options.slowConsumerBytes / 4;
  const open = (conn: Connection) => conn.ws.readyState === WebSocket.OPEN && !conn.closing;

  /**
   * Send what may go now, in (rank, cursor) order: at most SEND_TURN_ITEMS items or TURN_MS per turn,
   * then yield; stop at the high-water mark until the socket drains. Items stay queued in the
   * delivery state meanwhile, so a FLASH arriving live is next out, not behind bytes already
   * handed to the socket.
   */
  function pump(conn: Connection): void {
    if (conn.pumping || !open(conn)) return;
    const started = performance.now();
    for (let n = 0; hasSendable(conn.delivery); n++) {
      if (conn.ws.bufferedAmount > highWater) {
        conn.pumping = true;
        conn.waitingDrain = true; // resumed by a send callback
        return;
      }
      if (n >= SEND_TURN_ITEMS || performance.now() - started > TURN_MS) {
        conn.pumping = true;
        setImmediate(() => resumePump(conn));
        return;
      }
      drive(conn, { type: 'writable', max: 1 });
    }
  }

  function resumePump(conn: Connection): void {
    conn.pumping = false;
    pump(conn);
  }

  /** A new item for an open connection (through the hub, or read after a notification). */
  function pushLive(conn: Connection, item: MailboxItem): void {
    const snapshot = conn.delivery.snapshot;
    if (snapshot !== undefined && item.cursor <= snapshot) return; // the backlog's
    if (conn.liveSeen.has(item.cursor)) return;
    conn.liveSeen.add(item.cursor);
    drive(conn, { type: 'live', item });
    // Items waiting in the server's queue count like bytes unread on the socket: a device that
    // does not read is closed, and resumes from its mailbox.
    if (conn.delivery.liveBytes + conn.ws.bufferedAmount > options.slowConsumerBytes) {
      conn.log.warn({ buffered: conn.ws.bufferedAmount, queued: conn.delivery.liveBytes }, 'slow consumer');
      closeWith(conn, 'HL_ERR_SERVER_SLOW_CONSUMER', 'too much unread data; reconnect to resume from the mailbox');
      return;
    }
    pump(conn);
  }

  /**
   * Read the device's unacknowledged items above the snapshot and queue those not yet queued (several
   * nodes: another node committed them). Runs one at a time per connection; a notification that
   * comes meanwhile makes it run once more.
   */
  const PULL_RETRY_MS = 1_000;

  function pull(conn: Connection): void {
    if (!cluster || conn.delivery.snapshot === undefined || !open(conn)) return;
    if (conn.pulling) {
      conn.pullAgain = true;
      return;
    }
    conn.pulling = true;
    const run = async () => {
      do {
        conn.pullAgain = false;
        let after = conn.delivery.snapshot!;
        for (;;) {
          const items = await cluster.liveMailbox(conn.key, after, BACKLOG_PAGE);
          if (!open(conn)) return;
          for (const item of items) pushLive(conn, item);
          if (items.length < BACKLOG_PAGE || !open(conn)) break;
          after = items[items.length - 1]!.cursor;
        }
      } while (conn.pullAgain && open(conn));
    };
    void run()
      .then(
        () => {
          conn.pulling = false;
        },
        (error: unknown) => {
          // The database is away (its outage is /readyz's 503 and every write's HL_ERR_STORE_FAILED):
          // the link stays open and the read is tried again, so what another node committed still
          // arrives once the database is back (the listener's reconnect pulls every link too).
          conn.pulling = false;
          conn.log.warn({ err: { message: (error as Error).message } }, 'reading new items failed; retrying in 1 s');
          setTimeout(() => pull(conn), PULL_RETRY_MS).unref();
        },
      );
  }

  // ----- a connection -----

  function onConnection(ws: WebSocket, claims: TokenClaims, socket: Duplex): void {
    const key = deviceKey(claims);
    const id = randomId().slice(0, 12);
    const conn: Connection = {
      id,
      ws,
      socket,
      corked: false,
      link: {
        party: claims.party,
        device: claims.device,
        role: claims.role,
        signKey: claims.signKey,
        isOpen: () => open(conn),
        push: (item) => pushLive(conn, item),
        close: (code, message) => closeWith(conn, code, message),
        notice: (notice) => send(conn, { t: 'notice', notice }),
        directoryChanged: (revocation) => send(conn, { t: 'directory-changed', revocation }),
        ...(cluster ? { pull: () => pull(conn) } : {}),
      },
      claims,
      key,
      log: log.child({ connId: id, device: key }),
      delivery: initialDelivery(),
      pumping: false,
      waitingDrain: false,
      alive: true,
      closing: false,
      inbound: [],
      urgent: [],
      flashHanded: new Set(),
      handling: false,
      wake: undefined,
      liveSeen: new Set(),
      pulling: false,
      pullAgain: false,
    };
    // Handlers first, synchronously, so that no frame arrives unheard.
    ws.on('message', (data, isBinary) => onMessage(conn, data, isBinary));
    ws.on('pong', () => {
      conn.alive = true;
    });
    ws.on('error', (err) => conn.log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'socket error'));
    ws.on('close', (code) => {
      if (conn.heartbeat) clock.clearTimeout(conn.heartbeat);
      all.delete(conn);
      hub.unregister(conn.link);
      conn.log.info({ code }, 'link closed');
    });
    all.add(conn);
    hub.register(conn.link);
    conn.log.info({ role: claims.role }, 'link open');
    armHeartbeat(conn);
    // Not tracked for shutdown: a device that does not read must not hold the server up.
    void startDelivery(conn).catch((error: unknown) => {
      conn.log.error({ err: { message: (error as Error).message } }, 'backlog failed');
      closeWith(conn, 'HL_ERR_STORE_FAILED', 'could not read the mailbox; reconnect');
    });
  }

  function armHeartbeat(conn: Connection): void {
    conn.heartbeat = clock.setTimeout(() => {
      if (conn.ws.readyState !== WebSocket.OPEN) return;
      if (!conn.alive) {
        conn.log.info('no pong: connection ended');
        conn.ws.terminate();
        return;
      }
      conn.alive = false;
      conn.ws.ping();
      armHeartbeat(conn);
    }, options.heartbeatIntervalMs);
  }

  async function startDelivery(conn: Connection): Promise<void> {
    // The connection is in the hub already: whatever is committed from here on is pushed live, and
    // everything up to the snapshot is read from the mailbox.
    // Acks wait in the write queue for a commit to ride with; this device's earlier links' acks
    // must be in the store before its acknowledged cursor and its backlog are read.
    await writes.flushAcks();
    const snapshot = await store.maxCursor();
    const lastCursor = await store.ackedCursor(conn.key);
    const lastSeq = await store.lastSeq(conn.key);
    send(conn, { t: 'hello', device: { party: conn.claims.party, device: conn.claims.device }, serverTime: clock.now(), lastCursor, lastSeq });
    if (!open(conn)) return;
    // A link opened while the store is known corrupt is told at once, like those open when it was found.
    const notice = storeNotice?.();
    if (notice) send(conn, { t: 'notice', notice });
    drive(conn, { type: 'start', snapshot });
    pump(conn);
    // Several nodes: what another node committed between the snapshot and the first notification.
    pull(conn);
  }

  // ----- frames from the device (attacker-controlled) -----

  function onMessage(conn: Connection, data: RawData, isBinary: boolean): void {
    if (conn.closing) return;
    // Frames of one socket read are queued, not run as one microtask chain: they are handled in
    // bounded turns (handleInbound), and past INBOUND_PAUSE the socket stops being read.
    // Decoded on arrival (once: the frame is kept), so that its lane is known.
    let item: Inbound;
    try {
      if (isBinary) throw new HotlineError('HL_ERR_INPUT_MALFORMED_JSON', 'frames are JSON text, not binary');
      item = { frame: decodeClientFrame(rawBytes(data)) };
    } catch (error) {
      item = { error };
    }
    if (isUrgentFrame(conn, item)) {
      conn.urgent.push(item);
      // A FLASH envelope holds the relay's lower-rank work until a receipt for it (FlashGate).
      if ('frame' in item && item.frame.t === 'envelope') gate.hold(item.frame.envelope.header.id);
      conn.wake?.();
    } else {
      // Queued behind frames not yet handled: its signature check starts now, in the signature
      // thread with the others of this turn, while the loop admits the frames ahead of it
      // (capacity +10-15 %, docs/performance.md, seventeenth session). Not the urgent lane (a
      // FLASH is admitted next, its check made at once), and not while a FLASH is on its way
      // through the relay (FlashGate): the lower-rank frames then wait, and starting their checks
      // cost the FLASH's path the loop's time and a core (FLASH p50 under a ROUTINE stream at half
      // of capacity 2.2-3.1× its idle p50 with it, 1.3-1.5× without).
      if (options.verify && conn.handling && !gate.held && 'frame' in item) {
        item.check = startEarlyCheck(item.frame, { directory, now: clock.now(), sender: conn.claims }, options.verify.gathered);
      }
      conn.inbound.push(item);
    }
    inboundWaiting++;
    if (conn.inbound.length + conn.urgent.length >= INBOUND_PAUSE) conn.ws.pause();
    if (!conn.handling) {
      conn.handling = true;
      void lifecycle.track(handleInbound(conn));
    }
  }

  async function handleInbound(conn: Connection): Promise<void> {
    /** FLASH frames handled in a row: bounded too, so that a device flooding them still yields. */
    let urgentRun = 0;
    /** This connection holds the turn's slice of lower-rank work (Slices), and frames handled in it. */
    let holding = false;
    let sliceItems = 0;
    /** Wait, unless a FLASH comes on this connection meanwhile (onMessage wakes it). */
    const park = async (w: { done: Promise<void>; cancel: () => void }) => {
      conn.wake = w.cancel;
      await w.done;
      conn.wake = undefined;
    };
    try {
      while (conn.inbound.length + conn.urgent.length > 0) {
        if (conn.urgent.length > 0) {
          if (++urgentRun > TURN_ITEMS) {
            urgentRun = 0;
            await yieldTurn();
            continue;
          }
        } else {
          urgentRun = 0;
          // While a FLASH is on its way through the relay, lower-rank frames wait (FlashGate).
          if (gate.held) {
            if (holding) slices.release();
            holding = false;
            await park(gate.wait());
            continue;
          }
          // Lower-rank frames only in a slice of the loop's turn, shared by every connection (Slices).
          if (!holding || sliceItems >= TURN_ITEMS || !slices.left()) {
            if (holding && sliceItems >= TURN_ITEMS) slices.release();
            holding = false;
            await park(slices.take());
            // Handed the slice, or woken by a FLASH (which goes first; the slice is then left unused).
            holding = conn.urgent.length === 0 && slices.left();
            sliceItems = 0;
            continue;
          }
          sliceItems++;
        }
        // Looked at after each wait: a FLASH that came meanwhile is next.
        const urgent = conn.urgent.length > 0;
        const item = (urgent ? conn.urgent : conn.inbound).shift()!;
        inboundWaiting--;
        // The last frame waiting is taken: a batch held open for more writes need wait no longer.
        if (inboundWaiting === 0) writes.holdChanged();
        if (conn.inbound.length + conn.urgent.length < INBOUND_PAUSE / 2 && conn.ws.isPaused) conn.ws.resume();
        if (conn.closing) break;
        if ('error' in item) {
          refuse(conn, item.error, refOf(item.error));
          continue;
        }
        await handleFrame(conn, item.frame, item.check, urgent);
      }
    } finally {
      if (holding) slices.release();
      inboundWaiting -= conn.inbound.length + conn.urgent.length;
      if (inboundWaiting === 0) writes.holdChanged();
      conn.inbound = [];
      conn.urgent = [];
      conn.handling = false;
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
    options.metrics?.refused(e.code, 'link');
    // Errors that concern the connection itself (the table's `closesLink`): answered by a close.
    if (closesLink(e.code)) {
      closeWith(conn, e.code, e.message);
      return;
    }
    send(conn, { t: 'error', code: e.code, message: e.message, ...(ref === undefined ? {} : { ref }) }, true);
  }

  async function handleFrame(conn: Connection, frame: ClientFrame, check: EarlyCheck | undefined, urgent: boolean): Promise<void> {
    const ref =
      frame.t === 'envelope' ? frame.envelope.header.id : frame.t === 'receipt' ? frame.receipt.receipt.messageId : frame.t === 'refusal' ? frame.refusal.refusal.messageId : undefined;
    try {
      if (conn.ws.readyState !== WebSocket.OPEN) return;
      if (lifecycle.shuttingDown) throw new HotlineError('HL_ERR_SERVER_SHUTTING_DOWN', 'the server is shutting down; resend after reconnecting');
      const now = clock.now();
      const actx = { agreement, directory, now, sender: conn.claims, storedHash: async (id: string) => (await storedMessage(id))?.envelopeHash, ...verifier(check, urgent), ...timing };
      if (frame.t === 'envelope') {
        const write = await admitEnvelope(frame.envelope, actx);
        deadlines.prepareEnvelope(write);
        // Once its transaction is done, before its fsync: the addressee's copy goes out, and the
        // deadlines it opened are adopted (a receipt may now come back before the fsync ends, and
        // must find them open). The message waits on the addressee (to open it and sign its
        // receipt), the sender's answer on the disk (PROTOCOL.md "Delivery before durability").
        const visible = (result: WriteResult) => {
          deadlines.afterEnvelope(write, result);
          if (!result.ok || result.status !== 'new') return;
          remember(write);
          fanOut(result);
        };
        // Not awaited: the next frame is admitted while this one waits for its group commit.
        void lifecycle.track(writes.enqueue(write, visible)).then((result) => {
          if (!result.ok || result.status !== 'new') gate.release(write.envelope.header.id);
          if (!result.ok) return refuse(conn, result.error, ref);
          send(conn, { t: 'accepted', id: write.envelope.header.id, envelopeHash: write.envelopeHash, at: result.acceptedAt }, true);
          conn.log.info({ ref, status: result.status }, 'envelope accepted');
        });
      } else if (frame.t === 'receipt') {
        const stored = await storedMessage(frame.receipt.receipt.messageId);
        const write = await admitReceipt(frame.receipt, stored, actx);
        await deadlines.prepareReceipt(write);
        // The sender waits for this receipt, forwarded once its transaction is done; its signer's
        // answer waits for the fsync (as above).
        void lifecycle.track(writes.enqueue(write, fanOut)).then((result) => {
          deadlines.afterReceipt(result);
          if (!result.ok) return refuse(conn, result.error, ref);
          const r = write.receipt.receipt;
          // Any receipt: an `acknowledged` one says the device has the message too.
          gate.release(r.messageId);
          send(conn, { t: 'receipt-accepted', messageId: r.messageId, kind: r.kind, at: result.acceptedAt }, true);
          conn.log.info({ ref, kind: r.kind, status: result.status }, 'receipt accepted');
        });
      } else if (frame.t === 'refusal') {
        const stored = await storedMessage(frame.refusal.refusal.messageId);
        const write = await admitRefusal(frame.refusal, stored, actx);
        await deadlines.prepareRefusal(write);
        void lifecycle.track(writes.enqueue(write, fanOut)).then((result) => {
          deadlines.afterRefusal(write, result);
          if (!result.ok) return refuse(conn, result.error, ref);
          send(conn, { t: 'refusal-accepted', messageId: write.refusal.refusal.messageId, at: result.acceptedAt }, true);
          conn.log.info({ ref, code: write.refusal.refusal.code, status: result.status }, 'refusal accepted');
        });
      } else {
        // Through the write queue: the acks of a batch are one statement in its transaction, and
        // share its fsync instead of blocking the event loop on one each.
        const cursors = 'cursor' in frame ? [frame.cursor] : frame.cursors;
        void lifecycle.track(writes.enqueue({ kind: 'ack', device: conn.key, cursors, acceptedAt: now }));
      }
    } catch (error) {
      if (frame.t === 'envelope') gate.release(frame.envelope.header.id);
      refuse(conn, error, ref);
    }
  }

  function fanOut(result: WriteResult): void {
    if (result.ok && result.status === 'new') hub.push(result.delivered);
  }

  // Group commit waits (briefly) for frames already received: see WriteQueue.
  let inboundWaiting = 0;
  writes.holdWhile = () => inboundWaiting > 0;

  // ----- shutdown: finish in-flight work, then close the sockets -----

  app.addHook('preClose', async () => {
    lifecycle.shuttingDown = true;
    app.server.off('upgrade', onUpgrade);
    while (lifecycle.inFlight.size > 0) await Promise.allSettled([...lifecycle.inFlight]);
    await writes.drain();
    const closed = [...all].map((conn) => new Promise<void>((resolve) => {
      if (conn.ws.readyState === WebSocket.CLOSED) return resolve();
      conn.ws.once('close', () => resolve());
      closeWith(conn, 'HL_ERR_SERVER_SHUTTING_DOWN', 'the server is shutting down; reconnect shortly');
    }));
    await Promise.all(closed);
    wss.close();
  });
};
