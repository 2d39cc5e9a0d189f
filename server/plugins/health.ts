import type { FastifyPluginAsync } from 'fastify';
import { isHotlineError } from '../../shared/errors.js';
import type { Lifecycle } from '../lifecycle.js';
import type { Store } from '../store/store.js';

export interface HealthPluginOptions {
  store: Pick<Store, 'ping'>;
  lifecycle: Lifecycle;
}

/** Liveness and readiness for orchestrators: /readyz answers 200 only while the store can write. */
export const healthPlugin: FastifyPluginAsync<HealthPluginOptions> = async (app, { store, lifecycle }) => {
  app.get('/healthz', async () => ({ ok: true }));
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
