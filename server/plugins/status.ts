import type { FastifyPluginAsync } from 'fastify';
import { HotlineError } from '../../shared/errors.js';
import type { DeadlineScheduler } from '../deadline-scheduler.js';
import { StatusResponse as StatusResponseSchema, type RelayLinkStatus, type StatusDeadline, type StatusResponse } from '../../shared/protocol/status.js';
import type { DeadlineRecord } from '../relay/records.js';
import { requireDevice, type DeviceAuth } from './auth.js';

export interface StatusPluginOptions {
  auth: DeviceAuth;
  deadlines: Pick<DeadlineScheduler, 'snapshot'>;
  /** A party's own relay: the state of its relay-to-relay links. */
  relayLinks?: () => RelayLinkStatus[];
}

export type { StatusDeadline, StatusResponse } from '../../shared/protocol/status.js';

function view(r: DeadlineRecord, now: number): StatusDeadline {
  return {
    messageId: r.messageId,
    from: r.from,
    to: r.to,
    precedence: r.precedence,
    rung: r.rung,
    acceptedAt: r.acceptedAt,
    dueAt: r.dueAt,
    remainingMs: r.dueAt - now,
    overdue: now >= r.dueAt,
    level: r.level,
  };
}

/**
 * `GET /v1/status` (token; operator or auditor): the party's own view of open deadlines and link
 * tests, for `hotline status` and the consoles. Metadata only (ids, parties, precedence, times),
 * the same the server already holds; never another party's view of a third party's traffic.
 */
export const statusPlugin: FastifyPluginAsync<StatusPluginOptions> = async (app, { auth, deadlines, relayLinks }) => {
  app.get('/v1/status', { preHandler: requireDevice(auth), schema: { response: { 200: StatusResponseSchema } } }, async (request): Promise<StatusResponse> => {
    const device = request.device!;
    if (device.role !== 'operator' && device.role !== 'auditor') {
      throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `${device.role} devices do not read the status`);
    }
    const party = device.party;
    const now = auth.clock.now();
    const snap = await deadlines.snapshot();
    const byDue = (a: StatusDeadline, b: StatusDeadline) => a.dueAt - b.dueAt || (a.messageId < b.messageId ? -1 : 1);
    return {
      party,
      now,
      waiting: snap.deadlines.filter((r) => r.to === party).map((r) => view(r, now)).sort(byDue),
      sent: snap.deadlines.filter((r) => r.from === party).map((r) => view(r, now)).sort(byDue),
      links: snap.links.filter((p) => p.from === party || p.to === party).sort((a, b) => (a.from + a.to < b.from + b.to ? -1 : 1)),
      ...(relayLinks ? { relayLinks: relayLinks() } : {}),
    };
  });
};
