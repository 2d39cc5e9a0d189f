import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { HotlineError, type HotlineErrorCode } from '../../shared/errors.js';
import { toHex } from '../../shared/encoding/base64.js';
import { parseJson, assertSchema } from '../../shared/protocol/validate.js';
import { AUDIT_EXPORT_TYPE, type AuditExport } from '../../shared/audit/log-verify.js';
import type { HotlineEvent } from '../../shared/protocol/frames.js';
import type { RelayCertificate, Role } from '../../shared/protocol/schemas.js';
import type { AuditLog } from '../audit-log.js';
import type { DeadlineScheduler } from '../deadline-scheduler.js';
import type { LinkHub } from '../link-hub.js';
import { RateLimiter } from '../relay/rate-limit.js';
import type { Store } from '../store/store.js';
import type { WriteQueue } from '../store/write-queue.js';
import type { TokenClaims } from '../tokens.js';
import { requireDevice, type DeviceAuth } from './auth.js';

export interface AuditPluginOptions {
  auth: DeviceAuth;
  store: Pick<Store, 'auditSize' | 'auditEntries' | 'getCheckpoint' | 'getEnvelope' | 'listDevices' | 'listRevocations'>;
  audit: AuditLog;
  /** Who an alarm event goes to. */
  deadlines: Pick<DeadlineScheduler, 'eventWrite'>;
  writes: Pick<WriteQueue, 'enqueue'>;
  /** Alarms reach the connected consoles at once. */
  hub: Pick<LinkHub, 'push'>;
  agreementHash: string;
  /** Two relays: the certificates of the peer relays that cosigned this log's checkpoints (for the export). */
  witnesses?: () => Promise<RelayCertificate[]>;
}

/** Audit alarms one device may report per hour (each is a log entry and a console event). */
export const ALARMS_PER_HOUR = 20;

/** Entries per page of `GET /v1/audit/entries`. */
export const MAX_ENTRIES_PAGE = 1000;

const CosignatureRequest = Type.Object(
  { size: Type.Integer({ minimum: 1 }), note: Type.String({ minLength: 1, maxLength: 16 * 1024 }) },
  { additionalProperties: false },
);
const AlarmRequest = Type.Object(
  { code: Type.String({ pattern: '^HL_ERR_[A-Z_]+$', maxLength: 64 }), reason: Type.String({ minLength: 1, maxLength: 400 }) },
  { additionalProperties: false },
);

/** Who may call what (PROTOCOL.md "Audit API"). */
const READERS: readonly Role[] = ['auditor'];
const COSIGNERS: readonly Role[] = ['operator', 'auditor'];

function allow(request: FastifyRequest, roles: readonly Role[], what: string): TokenClaims {
  const d = request.device!;
  if (!roles.includes(d.role)) {
    throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `${d.role} devices may not ${what} (only ${roles.join(' and ')} devices)`);
  }
  return d;
}

/** A non-negative integer query parameter (attacker-controlled). */
function intParam(query: unknown, name: string, fallback?: number): number {
  const raw = (query as Record<string, unknown> | undefined)?.[name];
  if (raw === undefined || raw === '') {
    if (fallback !== undefined) return fallback;
    throw new HotlineError('HL_ERR_INPUT_SCHEMA', `the query parameter ${name} is required`);
  }
  if (typeof raw !== 'string' || !/^(0|[1-9][0-9]{0,14})$/.test(raw)) {
    throw new HotlineError('HL_ERR_INPUT_SCHEMA', `the query parameter ${name} must be a non-negative integer`);
  }
  return Number(raw);
}

/**
 * The audit API (issue 5; PROTOCOL.md "Audit API"). Auditor devices read everything: entries,
 * checkpoints, proofs and the export. Operator devices get only what cosigning needs: the
 * checkpoints (tree heads and signatures, no entry), consistency proofs, posting a cosignature
 * and reporting an alarm. Archive devices get nothing. Every route needs a token.
 */
export const auditPlugin: FastifyPluginAsync<AuditPluginOptions> = async (app, { auth, store, audit, deadlines, writes, hub, agreementHash, witnesses }) => {
  const { directory, clock } = auth;
  const alarmLimiter = new RateLimiter({ limit: ALARMS_PER_HOUR, windowMs: 3_600_000, maxKeys: 10_000 });
  const authenticated = { preHandler: requireDevice(auth) };

  app.get('/v1/audit/entries', authenticated, async (request) => {
    allow(request, READERS, 'read audit entries');
    const size = await store.auditSize();
    const from = intParam(request.query, 'from', 0);
    const to = Math.min(intParam(request.query, 'to', Math.min(from + MAX_ENTRIES_PAGE, size)), size);
    if (from > to) throw new HotlineError('HL_ERR_AUDIT_RANGE', `from (${from}) is beyond to (${to}) or the log size (${size})`);
    if (to - from > MAX_ENTRIES_PAGE) throw new HotlineError('HL_ERR_AUDIT_RANGE', `at most ${MAX_ENTRIES_PAGE} entries per page`);
    const rows = await store.auditEntries(from, to);
    return { from, to, size, entries: rows.map((r) => ({ idx: r.idx, entry: r.entry, leafHash: toHex(r.leafHash) })) };
  });

  app.get('/v1/audit/checkpoints', authenticated, async (request) => {
    allow(request, COSIGNERS, 'read checkpoints');
    const after = (request.query as Record<string, unknown> | undefined)?.['after'] === undefined ? undefined : intParam(request.query, 'after');
    return { checkpoints: await audit.checkpointNotes(after) };
  });

  app.get('/v1/audit/checkpoint/latest', authenticated, async (request) => {
    allow(request, COSIGNERS, 'read checkpoints');
    const latest = await store.getCheckpoint();
    if (!latest) {
      throw new HotlineError('HL_ERR_NOT_FOUND', audit.signing ? 'no checkpoint has been signed yet' : 'this server has no log key configured: it signs no checkpoints');
    }
    return { size: latest.size, note: await audit.withCosignatures(latest) };
  });

  app.post('/v1/audit/checkpoints', authenticated, async (request, reply) => {
    allow(request, COSIGNERS, 'ask for a checkpoint');
    const { checkpoint, created } = await audit.signCheckpoint();
    if (!checkpoint) throw new HotlineError('HL_ERR_NOT_FOUND', 'the audit log is empty');
    return reply.status(created ? 201 : 200).send({ size: checkpoint.size, note: await audit.withCosignatures(checkpoint), created });
  });

  app.get('/v1/audit/proof/inclusion', authenticated, async (request) => {
    allow(request, READERS, 'read inclusion proofs');
    const tree = await audit.tree();
    const index = intParam(request.query, 'index');
    const size = intParam(request.query, 'size', tree.size);
    // The tree checks the range (HL_ERR_AUDIT_RANGE).
    const proof = await tree.inclusionProof(index, size);
    return { index, size, leafHash: toHex(await tree.leafHash(index)), proof: proof.map(toHex) };
  });

  app.get('/v1/audit/proof/consistency', authenticated, async (request) => {
    allow(request, COSIGNERS, 'read consistency proofs');
    const tree = await audit.tree();
    const from = intParam(request.query, 'from');
    const to = intParam(request.query, 'to', tree.size);
    return { from, to, proof: (await tree.consistencyProof(from, to)).map(toHex) };
  });

  app.post('/v1/audit/cosignatures', authenticated, async (request, reply) => {
    const d = allow(request, COSIGNERS, 'cosign checkpoints');
    const body = assertSchema(CosignatureRequest, request.body, 'HL_ERR_INPUT_SCHEMA');
    const cert = directory.current(d.party, d.device, clock.now(), d.signKey);
    const stored = await audit.addCosignature(cert, body.size, body.note);
    request.log.info({ size: body.size, cosigner: stored.cosigner }, 'checkpoint cosigned');
    return reply.status(201).send({ cosigned: true, size: body.size, cosigner: stored.cosigner });
  });

  // A cosigning client that finds a bad proof or two checkpoints of one size reports it here: it
  // goes into the log and to every operator and auditor console of the reporting party. (The
  // client raises it locally first: a dishonest server could drop this report, never hide the
  // local alarm.)
  app.post('/v1/audit/alarms', authenticated, async (request, reply) => {
    const d = allow(request, COSIGNERS, 'report audit alarms');
    const body = assertSchema(AlarmRequest, request.body, 'HL_ERR_INPUT_SCHEMA');
    const now = clock.now();
    // Each alarm is a log entry and an event on every console of the party: one device may not
    // flood either. A real alarm is raised once per bad checkpoint, far below this.
    const decision = alarmLimiter.take(`${d.party}/${d.device}`, now);
    if (!decision.allowed) {
      const retryAfterSeconds = Math.ceil(decision.retryAfterMs / 1000);
      throw new HotlineError('HL_ERR_INPUT_RATE_LIMITED', `at most ${ALARMS_PER_HOUR} audit alarms per device per hour; retry in ${retryAfterSeconds} s`, { detail: { retryAfterSeconds } });
    }
    const event: Extract<HotlineEvent, { type: 'audit.alarm' }> = { type: 'audit.alarm', party: d.party, reason: `${d.party}/${d.device}: ${body.code}: ${body.reason}`.slice(0, 500), at: now };
    const result = await writes.enqueue({ kind: 'events', acceptedAt: now, events: [deadlines.eventWrite(event, now)] });
    if (!result.ok) throw result.error instanceof HotlineError ? result.error : new HotlineError('HL_ERR_STORE_FAILED', 'the alarm could not be stored');
    if (result.status === 'new') hub.push(result.delivered);
    request.log.warn({ party: d.party, device: d.device, code: body.code as HotlineErrorCode }, 'audit alarm reported');
    return reply.status(201).send({ reported: true });
  });

  app.get('/v1/audit/export', authenticated, async (request): Promise<AuditExport> => {
    allow(request, READERS, 'export the audit log');
    // Checkpoints first: the log only grows, so every checkpoint read is covered by the entries read after.
    const checkpoints = (await audit.checkpointNotes()).map((c) => c.note);
    // Paged by index range (never OFFSET, which rereads every row before the page).
    const entries: string[] = [];
    for (let from = 0, size = await store.auditSize(); from < size; from += MAX_ENTRIES_PAGE) {
      for (const r of await store.auditEntries(from, from + MAX_ENTRIES_PAGE)) entries.push(r.entry);
    }
    const ciphertexts: Record<string, string> = {};
    for (const text of entries) {
      let id: unknown;
      try {
        const e = parseJson(text) as { type?: unknown; header?: { id?: unknown } };
        if (e.type === 'envelope.accepted') id = e.header?.id;
      } catch {
        continue; // a damaged row is exported as it is; the verifier names it
      }
      if (typeof id !== 'string' || id in ciphertexts) continue;
      const stored = await store.getEnvelope(id);
      if (stored) ciphertexts[id] = stored.envelope.ciphertext;
    }
    const relays = witnesses ? await witnesses() : [];
    request.log.info({ entries: entries.length, checkpoints: checkpoints.length }, 'audit export');
    return {
      type: AUDIT_EXPORT_TYPE,
      v: 1,
      agreementHash: agreementHash,
      exportedAt: clock.now(),
      entries,
      checkpoints,
      certificates: await store.listDevices(),
      revocations: await store.listRevocations(),
      ciphertexts,
      ...(relays.length > 0 ? { relays } : {}),
    };
  });
};
