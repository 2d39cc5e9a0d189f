import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import { HotlineError, isHotlineError, type HotlineErrorCode } from '../shared/errors.js';
import { agreementHash } from '../shared/crypto/keys.js';
import type { Agreement } from '../shared/protocol/schemas.js';
import { systemClock, type Clock } from './clock.js';
import { Lifecycle } from './lifecycle.js';
import { LinkHub } from './link-hub.js';
import { Directory } from './directory.js';
import { DirectoryFollower } from './directory-follower.js';
import type { ClusterStore, MailboxListening, Store } from './store/store.js';
import type { GuardedStore } from './store/guarded-store.js';
import type { OperatorNotice } from '../shared/protocol/frames.js';
import { WriteQueue } from './store/write-queue.js';
import { TokenService } from './tokens.js';
import { healthPlugin } from './plugins/health.js';
import { authPlugin } from './plugins/auth.js';
import { directoryPlugin } from './plugins/directory.js';
import { linkPlugin } from './plugins/link.js';
import type { FlashGateBounds } from './relay/flash-gate.js';
import { consolePlugin } from './plugins/console.js';
import { statusPlugin } from './plugins/status.js';
import { DeadlineScheduler } from './deadline-scheduler.js';
import { AuditLog, DEFAULT_CHECKPOINT_INTERVAL_MS } from './audit-log.js';
import { auditPlugin } from './plugins/audit.js';
import { RateLimits, type RateLimitSettings } from './rate-limits.js';
import { capConnections, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS } from './connection-cap.js';
import type { RelaySecretFile } from '../shared/protocol/schemas.js';
import { relayLinkPlugin } from './plugins/relay-link.js';
import { relayLinksFor, RelayDirectory, RelayWriteQueue } from './federation/setup.js';
import type { RelayLink } from './federation/relay-link.js';
import { RELAY_LINK_PATH } from '../shared/protocol/relay-frames.js';
import { Metrics } from './metrics.js';
import { VerifyPool } from './verify-pool.js';
import { Escalation } from './escalation/escalation.js';
import type { EscalationConfig } from './escalation/config.js';
import fastifySwagger from '@fastify/swagger';

/** One HTTP route as registered (method and URL pattern). */
export interface RouteEntry {
  method: string;
  url: string;
}
const ROUTES = new WeakMap<FastifyInstance, RouteEntry[]>();
/** Every HTTP route the app registered (HEAD ones included), for the OpenAPI check. */
export function routesOf(app: FastifyInstance): readonly RouteEntry[] {
  return ROUTES.get(app) ?? [];
}

/** The version the OpenAPI document states (package.json's). */
const OPENAPI_DOC_VERSION = '0.1.0';

/** Limits and knobs of the app; every one has a safe default. */
export interface AppOptions {
  /** Interval of WebSocket pings; a connection that has not answered the previous ping is ended. Default 30 s. */
  heartbeatIntervalMs?: number;
  /** Bytes queued on a socket beyond which the device counts as a slow consumer. Default 1 MiB. */
  slowConsumerBytes?: number;
  /**
   * How long a FLASH on its way through the relay holds lower-rank work at most (server/relay/flash-gate.ts):
   * default 25 ms each, and a gate held for 100 ms without a break opens for 25 ms.
   */
  flashGate?: Partial<FlashGateBounds>;
  /** Browser origins allowed on the WebSocket besides the server's own. */
  allowedOrigins?: readonly string[];
  /** Whether the server is reached over TLS (for the same-origin check). */
  secure?: boolean;
  /** How often a checkpoint of the audit log is signed, when it has grown. Default 60 s. */
  checkpointIntervalMs?: number;
  /** Per-minute limits of what unauthenticated peers may ask for (see RATE_LIMIT_DEFAULTS). */
  rateLimits?: RateLimitSettings;
  /** Concurrent connections per peer address (IPv4, or IPv6 /64). Default 512. */
  maxConnectionsPerAddress?: number;
  /** Several nodes on one database: the longest the deadline timer waits before looking at the database again. Default 1 s. */
  clusterPollMs?: number;
  /** Bearer token that opens /metrics to other hosts (without it: loopback peers only). */
  metricsToken?: string;
  /** Webhooks and e-mail for the relay's alarms (HOTLINE_WEBHOOKS, docs/escalation.md), loaded with their secrets. */
  escalation?: EscalationConfig;
  /** With `escalation`: the longest wait before the events table is read again. Default 5 s. */
  escalationPollMs?: number;
  /**
   * The frames' signature checks go to a worker thread when several wait in one turn
   * (server/verify-pool.ts). Default true; false keeps every check on the event loop.
   */
  verifyThread?: boolean;
  /** Checks in one turn from which they go to that thread (VerifyPool.MIN_BATCH); tests: 1, every check, even on a relay with one connection busy. */
  verifyMinBatch?: number;
}

/** What the app is built from; main.ts (or a test) makes these. */
export interface AppDeps {
  store: Store;
  agreement: Agreement;
  /** The per-deployment HS256 secret (at least 32 bytes). */
  jwtSecret: Uint8Array;
  logger: FastifyBaseLogger;
  clock?: Clock;
  /** PEM certificate and key: the app then serves HTTPS (and WSS). */
  https?: { cert: string | Buffer; key: string | Buffer };
  /** The log key's Ed25519 seed (public key = agreement.logKey): without it no checkpoint is signed. */
  logSecret?: Uint8Array;
  /**
   * Called with the audit log's size and root on every checkpoint interval and after the last
   * entry at a clean stop: the data directory keeps them to find a lost or rolled-back database
   * at the next start (server/data-dir.ts).
   */
  recordLog?: (reason: 'checkpoint' | 'stop', size: number, root: Uint8Array) => void;
  /**
   * What is known of the store's health (the guarded store main.ts makes): a corruption found at
   * run time is logged and told to every open link as an operator notice.
   */
  storeHealth?: Pick<GuardedStore, 'failure' | 'onCorrupt'>;
  /**
   * This server is the relay of one party (agreement v2, PROTOCOL.md "The relay-to-relay link"):
   * its certificate and link key, and where to dial the peer relays (default: the agreement's URLs).
   * Without it the server is the shared relay of every party, as before.
   */
  /**
   * This node is one of several on one database (PostgreSQL; docs/postgresql.md): new items reach
   * devices through the database's notifications, deadlines are fired from the database by one node
   * at a time, and periodic checkpoints are signed once per interval across the nodes.
   */
  cluster?: ClusterStore;
  relay?: {
    identity: RelaySecretFile;
    peerUrls?: Readonly<Record<string, readonly string[]>>;
    heartbeatIntervalMs?: number;
    backoff?: { minMs: number; maxMs: number };
  };
}

/** HTTP request bodies are small JSON documents (certificates, revocations, logins). */
const BODY_LIMIT = 64 * 1024;

function fastifyErrorCode(error: FastifyError): HotlineErrorCode {
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return 'HL_ERR_INPUT_TOO_LARGE';
  if (error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error instanceof SyntaxError) return 'HL_ERR_INPUT_MALFORMED_JSON';
  if ((error.statusCode ?? 500) < 500) return 'HL_ERR_INPUT_SCHEMA';
  return 'HL_ERR_INTERNAL';
}

/**
 * Build the Hotline server app: HTTP API and WebSocket link on one Fastify instance. It never
 * listens (main.ts or the test does), and it owns the store from here on: closing the app
 * finishes in-flight writes, closes the sockets, records `server.stop` and closes the store.
 *
 * @example
 * const app = await buildApp({ store, agreement, jwtSecret, logger });
 * await app.listen({ host: '127.0.0.1', port: 0 });
 */
export async function buildApp(deps: AppDeps, options: AppOptions = {}): Promise<FastifyInstance> {
  const clock = deps.clock ?? systemClock;
  const app = Fastify({
    loggerInstance: deps.logger,
    // Fastify's own request lines carry the full URL; ours (onResponse) carry the route only.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT,
    ...(deps.https ? { https: deps.https } : {}),
  }) as unknown as FastifyInstance;

  const connections = capConnections(app.server, deps.logger, options.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS);
  const metrics = new Metrics();
  metrics.sources.connections = () => connections;

  const hash = agreementHash(deps.agreement);
  const store = deps.store;
  const log = deps.logger;
  const verifyPool =
    options.verifyThread === false
      ? undefined
      : new VerifyPool(
          (error) => log.warn({ err: { message: error.message } }, 'the signature-check worker failed: frames are verified on the event loop again (slower; nothing is refused that should pass)'),
          options.verifyMinBatch === undefined ? {} : { minBatch: options.verifyMinBatch },
        );
  const directory = deps.relay ? new RelayDirectory(deps.agreement, store, deps.relay.identity.certificate.cert.party) : new Directory(deps.agreement, store);
  await directory.load();
  // Everything the plugins use is built here, before them, and each is given only what it needs:
  // no plugin reaches another through a shared object.
  const lifecycle = new Lifecycle();
  const hub = new LinkHub();
  const writes = deps.relay ? new RelayWriteQueue(store, deps.relay.identity.certificate.cert.party) : new WriteQueue(store);
  writes.onCommit = (seconds) => metrics.commitTook(seconds);
  metrics.sources.writeQueue = () => writes.depth;
  if (verifyPool) metrics.sources.signatureChecks = () => verifyPool.counts;
  const auth = { tokens: new TokenService(deps.jwtSecret, hash, clock), directory, clock };
  const limits = new RateLimits({
    ...(options.rateLimits ? { settings: options.rateLimits } : {}),
    clock,
    log,
    audit: (entry) => lifecycle.track(store.appendAudit(entry)),
  });
  const audit = new AuditLog({
    agreement: deps.agreement,
    store,
    clock,
    log,
    ...(deps.logSecret ? { logSecret: deps.logSecret } : {}),
    ...(options.checkpointIntervalMs === undefined ? {} : { intervalMs: options.checkpointIntervalMs }),
    ...(deps.cluster ? { cluster: deps.cluster } : {}),
  });
  // Built after the scheduler (they use it); read by it only once the app runs.
  let relayLinks: RelayLink[] = [];
  const deadlines = new DeadlineScheduler({
    agreement: deps.agreement,
    store,
    clock,
    log,
    enqueue: (w) => writes.enqueue(w),
    validBodies: (now, parties, roles) => directory.validBodies(now, parties, roles),
    // A party served by another relay is reachable while the relay link to it is up: its relay
    // hands the test on, and the answer comes back the same way (README "Two relays").
    operatorOnline: (party) => hub.isOnline(party, 'operator') || relayLinks.some((l) => l.peer === party && l.up),
    push: (delivered) => hub.push(delivered),
    ...(deps.cluster ? { cluster: deps.cluster } : {}),
    ...(options.clusterPollMs === undefined ? {} : { pollMs: options.clusterPollMs }),
    metrics,
  });

  // Alarms beyond the console: read from the events table once committed (a commit is the cue; a
  // poll finds what other nodes, or writes outside the queue, committed).
  const escalation = options.escalation
    ? new Escalation({ config: options.escalation, store, clock, log, metrics, ...(options.escalationPollMs === undefined ? {} : { pollMs: options.escalationPollMs }) })
    : undefined;
  if (escalation) writes.onCommitted = () => escalation.kick();

  // Corruption found at run time: writes are already refused (the guarded store) and /readyz says
  // 503; here it is said loudly, in the log and to every console and CLI that holds a link.
  const corruptNotice = (): OperatorNotice | undefined => {
    const f = deps.storeHealth?.failure();
    return f?.kind === 'corrupt' ? { type: 'store.corrupt', reason: f.reason.slice(0, 1000), at: f.since } : undefined;
  };
  deps.storeHealth?.onCorrupt((f) => {
    const notice = corruptNotice() ?? { type: 'store.corrupt' as const, reason: f.reason.slice(0, 1000), at: f.since };
    const told = hub.noticeAll(notice);
    log.fatal({ reason: f.reason, linksTold: told }, 'the database is corrupt: writes are stopped and /readyz answers 503; restore the data directory from a backup (README "Operations")');
  });
  relayLinks = deps.relay
    ? relayLinksFor({
        ...deps.relay,
        agreement: deps.agreement,
        agreementHash: hash,
        store,
        directory,
        writes,
        deadlines,
        hub,
        lifecycle,
        clock,
        log,
        onRefused: (code) => metrics.refused(code, 'relay-link'),
        ...(audit.signing ? { audit } : {}),
      })
    : [];
  metrics.sources.relayLinks = () => relayLinks.map((l) => ({ peer: l.peer, up: l.up, inFlight: l.inFlight }));
  audit.onCheckpoint = () => relayLinks.forEach((l) => l.checkpointSigned());
  if (writes instanceof RelayWriteQueue) writes.onForward = () => relayLinks.forEach((l) => l.kick());
  // Every open link hears of a new revocation at once (PROTOCOL.md "Directory changes"); a relay
  // directory also stores those a peer relay passes on, so they are pushed the same way.
  directory.onNewRevocation = (rev, elsewhere) => {
    const told = hub.directoryChangedAll({ party: rev.party, device: rev.device, signKey: rev.signKey, at: rev.at });
    log.info({ device: `${rev.party}/${rev.device}`, linksTold: told, ...(elsewhere ? { storedBy: 'another node' } : {}) }, 'revocation pushed to open links');
    // Stored through another node on the database: its links here end as they would had it been posted here.
    if (elsewhere) hub.revoked(rev);
  };
  // Several nodes: what another node enrols or revokes reaches this node's directory (docs/postgresql.md).
  const follower = deps.cluster ? new DirectoryFollower(directory, deps.cluster, log) : undefined;
  if (directory instanceof RelayDirectory) {
    directory.onLocalChange = (change) => relayLinks.forEach((l) => l.directoryChanged(change));
    directory.onRevoked = (rev) => relayLinks.forEach((l) => l.revoked(rev));
  }

  app.setErrorHandler((error, request, reply) => {
    let e: HotlineError;
    if (isHotlineError(error)) e = error;
    else {
      const code = fastifyErrorCode(error as FastifyError);
      if (code === 'HL_ERR_INTERNAL') request.log.error({ err: { message: (error as Error).message, stack: (error as Error).stack } }, 'internal error');
      e = new HotlineError(code, code === 'HL_ERR_INTERNAL' ? 'internal error' : (error as Error).message);
    }
    request.log.info({ code: e.code }, 'request refused');
    metrics.refused(e.code, 'http');
    const retryAfter = e.detail?.retryAfterSeconds;
    if (typeof retryAfter === 'number') void reply.header('retry-after', String(retryAfter));
    return reply.status(e.httpStatus).send({ error: { code: e.code, message: e.message } });
  });
  app.setNotFoundHandler((_request, reply) => {
    metrics.refused('HL_ERR_NOT_FOUND', 'http');
    return reply.status(404).send({ error: { code: 'HL_ERR_NOT_FOUND', message: 'no such endpoint' } });
  });
  app.addHook('onResponse', async (request, reply) => {
    // The route pattern, never the raw URL: a query string may carry a token someone put there.
    request.log.info({ method: request.method, route: request.routeOptions.url ?? '(none)', status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
  });

  const table: RouteEntry[] = [];
  ROUTES.set(app, table);
  app.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) table.push({ method, url: r.url ?? r.path });
  });
  // Before every route: @fastify/swagger collects each route's TypeBox schemas as it is added.
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Hotline relay', version: OPENAPI_DOC_VERSION, description: 'HTTP API of a Hotline relay (shared/PROTOCOL.md "HTTP API"). The WebSocket link (/v1/link) is specified in PROTOCOL.md, not here.' },
    },
  });
  app.get('/v1/openapi.json', async () => app.swagger());
  app.get('/v1/agreement', async () => deps.agreement);
  await app.register(healthPlugin, { store, lifecycle, metrics, ...(options.metricsToken === undefined ? {} : { metricsToken: options.metricsToken }) });
  await app.register(authPlugin, {
    auth,
    store,
    limits,
    agreementHash: hash,
    secret: deps.jwtSecret,
    ...(deps.relay ? { servesParty: deps.relay.identity.certificate.cert.party } : {}),
  });
  await app.register(directoryPlugin, {
    auth,
    limits,
    hub,
    store,
    revoked: (party) => deadlines.closeUndeliverable(party),
    // One relay per party: its devices' prekeys wait for every peer relay's drained watermark (PROTOCOL.md "Prekeys between relays").
    ...(deps.relay ? { peerDrainedAt: async () => (relayLinks.length === 0 ? undefined : Math.min(...(await Promise.all(relayLinks.map((l) => l.drainedAt()))))) } : {}),
  });
  await app.register(linkPlugin, {
    agreement: deps.agreement,
    store,
    log,
    auth,
    writes,
    limits,
    lifecycle,
    deadlines,
    hub,
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? 30_000,
    slowConsumerBytes: options.slowConsumerBytes ?? 1024 * 1024,
    ...(options.flashGate ? { flashGate: options.flashGate } : {}),
    allowedOrigins: options.allowedOrigins ?? [],
    secure: options.secure ?? deps.https !== undefined,
    storeNotice: corruptNotice,
    ...(deps.cluster ? { cluster: deps.cluster } : {}),
    metrics,
    ...(deps.relay ? { otherPaths: [RELAY_LINK_PATH] } : {}),
    // verifyMinBatch 1 (tests): every check to the thread, even one alone.
    ...(verifyPool ? { verify: { gathered: verifyPool.verify, now: options.verifyMinBatch === 1 ? verifyPool.verify : verifyPool.verifyNow } } : {}),
  });
  if (deps.relay) await app.register(relayLinkPlugin, { links: relayLinks, lifecycle });
  await app.register(statusPlugin, { auth, deadlines, ...(deps.relay ? { relayLinks: () => relayLinks.map((l) => l.status()) } : {}) });
  await app.register(auditPlugin, {
    auth,
    store,
    audit,
    deadlines,
    writes,
    hub,
    agreementHash: hash,
    ...(deps.relay ? { witnesses: async () => (await Promise.all(relayLinks.map((l) => l.witnessCertificates()))).flat() } : {}),
  });
  await app.register(consolePlugin);

  const recordLog = async (reason: 'checkpoint' | 'stop') => {
    if (!deps.recordLog) return;
    const tree = await audit.tree();
    deps.recordLog(reason, tree.size, await tree.root());
  };
  let recordTimer: ReturnType<Clock['setTimeout']> | undefined;
  const scheduleRecord = () => {
    recordTimer = clock.setTimeout(() => {
      void recordLog('checkpoint')
        .catch((err: unknown) => log.error({ err: { message: (err as Error).message } }, 'could not record the log state in the data directory'))
        .finally(() => {
          if (recordTimer !== undefined) scheduleRecord();
        });
    }, options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS);
  };

  let listening: MailboxListening | undefined;
  app.addHook('onReady', async () => {
    if (deps.cluster) {
      // Before anything is served: a device's items committed by another node are read when named.
      listening = await deps.cluster.listenMailboxes({
        devices: (keys) => hub.pull(keys),
        directory: (key) => follower?.changed(key),
        restored: () => {
          log.info('listening for new mailbox items again: reading what was committed meanwhile');
          hub.pullAll();
          void follower?.catchUp();
        },
        lost: (err) => log.warn({ err: { message: err.message } }, 'the connection listening for new mailbox items was lost; reopening it'),
      });
      // What another node stored between this node's first read of the directory (buildApp) and now.
      await follower?.catchUp();
    }
    await store.appendAudit({ type: 'server.start', at: clock.now(), agreement: hash });
    // After server.start: what fell due while the server was down fires now, once.
    await deadlines.start();
    await audit.start();
    escalation?.start();
    limits.start();
    if (deps.recordLog) scheduleRecord();
  });
  app.addHook('preClose', async () => {
    await listening?.close();
    follower?.stop();
    deadlines.stop();
    audit.stop();
    await escalation?.stop();
    limits.stop();
    if (recordTimer !== undefined) clock.clearTimeout(recordTimer);
    recordTimer = undefined;
  });
  app.addHook('onClose', async () => {
    await writes.drain();
    await verifyPool?.close();
    await limits.flush();
    try {
      await store.appendAudit({ type: 'server.stop', at: clock.now() });
    } catch (err) {
      // A store that cannot write (corrupt, full) must still be closed, and the stop still end.
      log.error({ err: { message: (err as Error).message } }, 'could not record server.stop in the audit log');
      await store.close();
      return;
    }
    // A last checkpoint covers the whole log, server.stop included.
    if (audit.signing) await audit.signCheckpoint().catch((err: unknown) => log.error({ err: { message: (err as Error).message } }, 'final checkpoint failed'));
    await recordLog('stop').catch((err: unknown) => log.error({ err: { message: (err as Error).message } }, 'could not record the log state in the data directory'));
    await store.close();
  });
  return app;
}
