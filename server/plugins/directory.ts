import type { FastifyPluginAsync } from 'fastify';
import type { LinkHub } from '../link-hub.js';
import type { RateLimits } from '../rate-limits.js';
import { limitByAddress, requireDevice, type DeviceAuth } from './auth.js';

export interface DirectoryPluginOptions {
  auth: DeviceAuth;
  limits: RateLimits;
  /** A revocation ends the revoked certificate's live links. */
  hub: LinkHub;
  /** After a revocation: close the deadlines of messages to this party that nobody can answer any more. */
  revoked?: (party: string) => Promise<unknown>;
}

/**
 * Enrolment and revocation need no token: a certificate or a revocation is self-authenticating
 * through its party root's signature. Listing the directory needs a logged-in device of any role.
 */
export const directoryPlugin: FastifyPluginAsync<DirectoryPluginOptions> = async (app, { auth, limits, hub, revoked }) => {
  const { directory, clock } = auth;
  app.post('/v1/directory/devices', { onRequest: limitByAddress(limits, 'directory') }, async (request, reply) => {
    const certificate = await directory.enrol(request.body, clock.now());
    request.log.info({ device: `${certificate.cert.party}/${certificate.cert.device}`, role: certificate.cert.role }, 'device enrolled');
    return reply.status(201).send({ enrolled: true });
  });

  app.post('/v1/directory/revocations', { onRequest: limitByAddress(limits, 'directory') }, async (request, reply) => {
    const rev = await directory.revoke(request.body, clock.now());
    const r = rev.revocation;
    request.log.info({ device: `${r.party}/${r.device}` }, 'device revoked');
    hub.revoked(r);
    // Awaited: when the answer arrives, no deadline is left open on a message nobody can answer.
    await revoked?.(r.party);
    return reply.status(201).send({ revoked: true });
  });

  app.get('/v1/directory', { preHandler: requireDevice(auth) }, async () => {
    const now = clock.now();
    return { certificates: directory.validCertificates(now), revocations: directory.allRevocations(), past: directory.pastCertificates(now) };
  });
};
