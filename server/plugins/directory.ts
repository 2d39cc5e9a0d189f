import type { FastifyPluginAsync } from 'fastify';
import type { LinkHub } from '../link-hub.js';
import type { RateLimits } from '../rate-limits.js';
import { limitByAddress, requireDevice, type DeviceAuth } from './auth.js';
import type { Store } from '../store/store.js';
import { deviceKey, type MailboxPosition } from '../relay/records.js';
import type { Envelope } from '../../shared/protocol/schemas.js';
import { keyIdOf } from '../../shared/crypto/keys.js';
import { fromBase64 } from '../../shared/encoding/base64.js';

export interface DirectoryPluginOptions {
  auth: DeviceAuth;
  limits: RateLimits;
  /** A revocation ends the revoked certificate's live links. */
  hub: LinkHub;
  /** After a revocation: close the deadlines of messages to this party that nobody can answer any more. */
  revoked?: (party: string) => Promise<unknown>;
  /** The mailboxes, to tell a device which of its prekeys still have messages waiting. */
  store?: Pick<Store, 'mailbox' | 'maxCursor' | 'listPrekeys'>;
  /**
   * With one relay per party: the earliest drained watermark of the peer relays (PROTOCOL.md
   * "Prekeys between relays"), 0 for one that never sent one; undefined without peer relays. A
   * device's prekey whose notAfter is above it may still have an envelope on its way from a peer
   * relay, so it is reported pending.
   */
  peerDrainedAt?: () => Promise<number | undefined>;
}

/** Mailbox items read per page when counting a device's pending prekeys. */
const PENDING_PAGE = 500;

/**
 * Enrolment and revocation need no token: a certificate or a revocation is self-authenticating
 * through its party root's signature. Listing the directory needs a logged-in device of any role.
 */
export const directoryPlugin: FastifyPluginAsync<DirectoryPluginOptions> = async (app, { auth, limits, hub, revoked, store, peerDrainedAt }) => {
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

  app.get('/v1/directory', { preHandler: requireDevice(auth) }, async (request) => {
    const now = clock.now();
    // Unread, the prekeys known here are served (a store outage does not take the directory down).
    await directory.refreshPrekeys(now).catch((err: unknown) => request.log.warn({ err }, 'prekeys not re-read from the store'));
    return { certificates: directory.validCertificates(now), revocations: directory.allRevocations(), past: directory.pastCertificates(now), prekeys: directory.validPrekeys(now) };
  });

  // A prekey is self-authenticating (signed by its device's certificate key), like an enrolment.
  app.post('/v1/prekeys', { onRequest: limitByAddress(limits, 'directory') }, async (request, reply) => {
    const signed = await directory.putPrekey(request.body, clock.now());
    request.log.info({ device: `${signed.prekey.party}/${signed.prekey.device}` }, 'prekey published');
    return reply.status(201).send({ stored: true });
  });

  // Which of this device's box keys still have messages waiting in its mailbox (PROTOCOL.md "When a
  // prekey's secret is deleted"): read before serverTime, so a key past its notAfter at serverTime
  // gets no message after this answer.
  if (store) {
    app.get('/v1/prekeys/pending', { preHandler: requireDevice(auth) }, async (request) => {
      const serverTime = clock.now();
      const me = request.device!;
      const key = deviceKey(me);
      const pending = new Set<string>();
      // Read before the mailbox: a prekey the peers have not drained past is held whatever the mailbox says.
      const drained = peerDrainedAt ? await peerDrainedAt() : undefined;
      if (drained !== undefined) {
        for (const p of await store.listPrekeys(drained)) {
          if (p.prekey.party === me.party && p.prekey.device === me.device) pending.add(keyIdOf(fromBase64(p.prekey.boxKey, 32)));
        }
      }
      const upTo = await store.maxCursor();
      let after: MailboxPosition | undefined;
      for (;;) {
        const page = await store.mailbox(key, { ...(after ? { after } : {}), upTo, limit: PENDING_PAGE });
        for (const item of page) {
          if (item.kind !== 'envelope') continue;
          const env = JSON.parse(item.json) as Envelope;
          const entry = env.header.recipients.find((r) => r.party === me.party && r.device === me.device);
          if (entry) pending.add(entry.keyId);
        }
        if (page.length < PENDING_PAGE) break;
        const last = page[page.length - 1]!;
        after = { rank: last.rank, cursor: last.cursor };
      }
      return { serverTime, pending: [...pending].sort(), ...(drained === undefined ? {} : { peerDrainedAt: drained }) };
    });
  }
};
