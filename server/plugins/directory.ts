import type { FastifyPluginAsync } from 'fastify';
import type { AppContext } from '../context.js';
import { limitByAddress, requireDevice } from './auth.js';

/**
 * Enrolment and revocation need no token: a certificate or a revocation is self-authenticating
 * through its party root's signature. Listing the directory needs a logged-in device of any role.
 */
export const directoryPlugin: FastifyPluginAsync<{ ctx: AppContext }> = async (app, { ctx }) => {
  app.post('/v1/directory/devices', { onRequest: limitByAddress(ctx, 'directory') }, async (request, reply) => {
    const certificate = await ctx.directory.enrol(request.body, ctx.clock.now());
    request.log.info({ device: `${certificate.cert.party}/${certificate.cert.device}`, role: certificate.cert.role }, 'device enrolled');
    return reply.status(201).send({ enrolled: true });
  });

  app.post('/v1/directory/revocations', { onRequest: limitByAddress(ctx, 'directory') }, async (request, reply) => {
    const rev = await ctx.directory.revoke(request.body, ctx.clock.now());
    const r = rev.revocation;
    request.log.info({ device: `${r.party}/${r.device}` }, 'device revoked');
    ctx.disconnectRevoked(r.party, r.device, r.signKey);
    return reply.status(201).send({ revoked: true });
  });

  app.get('/v1/directory', { preHandler: requireDevice(ctx) }, async () => {
    return { certificates: ctx.directory.validCertificates(ctx.clock.now()), revocations: ctx.directory.allRevocations() };
  });
};
