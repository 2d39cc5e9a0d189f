import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import { HotlineError, isHotlineError, type HotlineErrorCode } from '../shared/errors.js';
import { agreementHash } from '../shared/crypto/keys.js';
import type { Agreement } from '../shared/protocol/schemas.js';
import { systemClock, type Clock } from './clock.js';
import { track, type AppContext, type AppOptions } from './context.js';
import { Directory } from './directory.js';
import type { Store } from './store/store.js';
import { WriteQueue } from './store/write-queue.js';
import { TokenService } from './tokens.js';
import { healthPlugin } from './plugins/health.js';
import { authPlugin } from './plugins/auth.js';
import { directoryPlugin } from './plugins/directory.js';
import { linkPlugin } from './plugins/link.js';
import { consolePlugin } from './plugins/console.js';
import { statusPlugin } from './plugins/status.js';
import { DeadlineScheduler } from './deadline-scheduler.js';
import { AuditLog, DEFAULT_CHECKPOINT_INTERVAL_MS } from './audit-log.js';
import { auditPlugin } from './plugins/audit.js';
import { RateLimits } from './rate-limits.js';

export type { AppOptions } from './context.js';

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

  const hash = agreementHash(deps.agreement);
  const directory = new Directory(deps.agreement, deps.store);
  await directory.load();
  const ctx: AppContext = {
    agreement: deps.agreement,
    agreementHash: hash,
    store: deps.store,
    clock,
    log: deps.logger,
    directory,
    tokens: new TokenService(deps.jwtSecret, hash, clock),
    writes: new WriteQueue(deps.store),
    options: {
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 30_000,
      slowConsumerBytes: options.slowConsumerBytes ?? 1024 * 1024,
      allowedOrigins: options.allowedOrigins ?? [],
      secure: options.secure ?? deps.https !== undefined,
      maxChallenges: options.maxChallenges ?? 10_000,
    },
    limits: new RateLimits({
      ...(options.rateLimits ? { settings: options.rateLimits } : {}),
      clock,
      log: deps.logger,
      audit: (entry) => track(ctx, deps.store.appendAudit(entry)),
    }),
    shuttingDown: false,
    inFlight: new Set(),
    disconnectRevoked: () => {},
    deadlines: undefined as unknown as DeadlineScheduler,
    audit: new AuditLog({
      agreement: deps.agreement,
      store: deps.store,
      clock,
      log: deps.logger,
      ...(deps.logSecret ? { logSecret: deps.logSecret } : {}),
      ...(options.checkpointIntervalMs === undefined ? {} : { intervalMs: options.checkpointIntervalMs }),
    }),
    pushLive: () => {},
    operatorOnline: () => false,
  };
  ctx.deadlines = new DeadlineScheduler({
    agreement: deps.agreement,
    store: deps.store,
    clock,
    log: deps.logger,
    enqueue: (w) => ctx.writes.enqueue(w),
    validBodies: (now, parties, roles) => directory.validBodies(now, parties, roles),
    operatorOnline: (party) => ctx.operatorOnline(party),
    push: (delivered) => ctx.pushLive(delivered),
  });

  app.setErrorHandler((error, request, reply) => {
    let e: HotlineError;
    if (isHotlineError(error)) e = error;
    else {
      const code = fastifyErrorCode(error as FastifyError);
      if (code === 'HL_ERR_INTERNAL') request.log.error({ err: { message: (error as Error).message, stack: (error as Error).stack } }, 'internal error');
      e = new HotlineError(code, code === 'HL_ERR_INTERNAL' ? 'internal error' : (error as Error).message);
    }
    request.log.info({ code: e.code }, 'request refused');
    const retryAfter = e.detail?.retryAfterSeconds;
    if (typeof retryAfter === 'number') void reply.header('retry-after', String(retryAfter));
    return reply.status(e.httpStatus).send({ error: { code: e.code, message: e.message } });
  });
  app.setNotFoundHandler((_request, reply) =>
    reply.status(404).send({ error: { code: 'HL_ERR_NOT_FOUND', message: 'no such endpoint' } }),
  );
  app.addHook('onResponse', async (request, reply) => {
    // The route pattern, never the raw URL: a query string may carry a token someone put there.
    request.log.info({ method: request.method, route: request.routeOptions.url ?? '(none)', status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
  });

  app.get('/v1/agreement', async () => deps.agreement);
  await app.register(healthPlugin, { ctx });
  await app.register(authPlugin, { ctx });
  await app.register(directoryPlugin, { ctx });
  await app.register(linkPlugin, { ctx });
  await app.register(statusPlugin, { ctx });
  await app.register(auditPlugin, { ctx });
  await app.register(consolePlugin);

  const recordLog = async (reason: 'checkpoint' | 'stop') => {
    if (!deps.recordLog) return;
    const tree = await ctx.audit.tree();
    deps.recordLog(reason, tree.size, await tree.root());
  };
  let recordTimer: ReturnType<Clock['setTimeout']> | undefined;
  const scheduleRecord = () => {
    recordTimer = clock.setTimeout(() => {
      void recordLog('checkpoint')
        .catch((err: unknown) => deps.logger.error({ err: { message: (err as Error).message } }, 'could not record the log state in the data directory'))
        .finally(() => {
          if (recordTimer !== undefined) scheduleRecord();
        });
    }, options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS);
  };

  app.addHook('onReady', async () => {
    await deps.store.appendAudit({ type: 'server.start', at: clock.now(), agreement: hash });
    // After server.start: what fell due while the server was down fires now, once.
    await ctx.deadlines.start();
    await ctx.audit.start();
    ctx.limits.start();
    if (deps.recordLog) scheduleRecord();
  });
  app.addHook('preClose', async () => {
    ctx.deadlines.stop();
    ctx.audit.stop();
    ctx.limits.stop();
    if (recordTimer !== undefined) clock.clearTimeout(recordTimer);
    recordTimer = undefined;
  });
  app.addHook('onClose', async () => {
    await ctx.writes.drain();
    await ctx.limits.flush();
    await deps.store.appendAudit({ type: 'server.stop', at: clock.now() });
    // A last checkpoint covers the whole log, server.stop included.
    if (ctx.audit.signing) await ctx.audit.signCheckpoint().catch((err: unknown) => deps.logger.error({ err: { message: (err as Error).message } }, 'final checkpoint failed'));
    await recordLog('stop').catch((err: unknown) => deps.logger.error({ err: { message: (err as Error).message } }, 'could not record the log state in the data directory'));
    await deps.store.close();
  });
  return app;
}
