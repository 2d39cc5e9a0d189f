import type { FastifyPluginAsync } from 'fastify';
import { isHotlineError } from '../../shared/errors.js';
import type { Lifecycle } from '../lifecycle.js';
import type { Store } from '../store/store.js';
import type { ConnectionCapStats } from '../connection-cap.js';

export interface HealthPluginOptions {
  store: Pick<Store, 'ping'>;
  lifecycle: Lifecycle;
  /** The per-address connection cap's counters, exposed on /metrics. */
  connections?: ConnectionCapStats;
}

/** Liveness and readiness for orchestrators: /readyz answers 200 only while the store can write. */
export const healthPlugin: FastifyPluginAsync<HealthPluginOptions> = async (app, { store, lifecycle, connections }) => {
  app.get('/healthz', async () => ({ ok: true }));
  // Prometheus text format; counts only (no addresses: the log line has the address).
  app.get('/metrics', async (_request, reply) => {
    const lines = [
      '# HELP hotline_connections_open TCP connections open now.',
      '# TYPE hotline_connections_open gauge',
      `hotline_connections_open ${connections?.open ?? 0}`,
      '# HELP hotline_connections_refused_total Connections closed at once because their address had reached the per-address cap.',
      '# TYPE hotline_connections_refused_total counter',
      `hotline_connections_refused_total ${connections?.refused ?? 0}`,
    ];
    return reply.type('text/plain; version=0.0.4').send(`${lines.join('\n')}\n`);
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
