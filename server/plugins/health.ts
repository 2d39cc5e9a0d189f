import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { HotlineError, isHotlineError } from '../../shared/errors.js';
import type { Lifecycle } from '../lifecycle.js';
import type { Store } from '../store/store.js';
import type { Metrics } from '../metrics.js';

export interface HealthPluginOptions {
  store: Pick<Store, 'ping'>;
  lifecycle: Lifecycle;
  /** What /metrics exposes. */
  metrics: Metrics;
  /**
   * The bearer token that opens /metrics to a scraper on another host (HOTLINE_METRICS_TOKEN_FILE);
   * without it /metrics answers loopback peers only.
   */
  metricsToken?: string;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Whether this request may read /metrics (docs/operations-endpoints.md "Access"): the bearer
 * token when one is set, or a loopback peer that is not a reverse proxy passing a request on (a
 * proxy on the same host, Caddy or nginx, adds X-Forwarded-For / Forwarded: its requests are
 * treated as remote, so a proxied /metrics is never public by accident).
 */
export function metricsAllowed(request: FastifyRequest, token: string | undefined): boolean {
  const m = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '');
  if (token !== undefined && m) return timingSafeEqual(digest(m[1]!), digest(token));
  if (request.headers['x-forwarded-for'] !== undefined || request.headers['forwarded'] !== undefined) return false;
  const a = request.socket.remoteAddress ?? '';
  return a === '::1' || /^(::ffff:)?127\./.test(a);
}

/** Liveness and readiness for orchestrators: /readyz answers 200 only while the store can write. */
export const healthPlugin: FastifyPluginAsync<HealthPluginOptions> = async (app, { store, lifecycle, metrics, metricsToken }) => {
  app.get('/healthz', async () => ({ ok: true }));
  // Prometheus text format; counts and timings only, labels from fixed sets (server/metrics.ts).
  app.get('/metrics', async (request, reply) => {
    if (!metricsAllowed(request, metricsToken)) {
      throw new HotlineError(
        'HL_ERR_METRICS_FORBIDDEN',
        metricsToken === undefined
          ? '/metrics answers loopback peers only; set HOTLINE_METRICS_TOKEN_FILE to let a scraper on another host in with a bearer token'
          : '/metrics needs the bearer token of HOTLINE_METRICS_TOKEN_FILE (Authorization: Bearer …) or a loopback peer',
      );
    }
    const { contentType, body } = await metrics.text();
    return reply.type(contentType).send(body);
  });
  app.get('/readyz', async (_request, reply) => {
    if (lifecycle.shuttingDown) {
      return reply.status(503).send({ error: { code: 'HL_ERR_SERVER_SHUTTING_DOWN', message: 'the server is shutting down' } });
    }
    try {
      await store.ping();
      return { ok: true };
    } catch (err) {
      // The reason (disk full, corrupt, unreachable) is the store's own words: no data, no secrets.
      const reason = isHotlineError(err) ? err.message : 'the store does not answer';
      return reply.status(503).send({ error: { code: 'HL_ERR_STORE_FAILED', message: reason } });
    }
  });
};
