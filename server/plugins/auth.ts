import type { FastifyPluginAsync, FastifyRequest, onRequestHookHandler } from 'fastify';
import { Type } from '@sinclair/typebox';
import { HotlineError } from '../../shared/errors.js';
import { CONTEXT, signingBytes } from '../../shared/crypto/keys.js';
import { ed25519Verify } from '../../shared/crypto/ed25519.js';
import { randomBytes } from '../../shared/crypto/random.js';
import { fromBase64, toBase64 } from '../../shared/encoding/base64.js';
import { assertSchema } from '../../shared/protocol/validate.js';
import { DeviceCertificate, Identifier, Signature } from '../../shared/protocol/schemas.js';
import type { Clock } from '../clock.js';
import type { Directory } from '../directory.js';
import type { Store } from '../store/store.js';
import type { TokenClaims, TokenService } from '../tokens.js';
import type { RateLimits, RateScope } from '../rate-limits.js';
import { addressKey } from '../relay/rate-limit.js';

export const CHALLENGE_TTL_MS = 60_000;

const ChallengeRequest = Type.Object({ party: Identifier, device: Identifier }, { additionalProperties: false });
const LoginRequest = Type.Object(
  {
    party: Identifier,
    device: Identifier,
    challenge: Type.String({ pattern: '^[A-Za-z0-9+/]{43}=$' }),
    signature: Signature,
    certificate: Type.Optional(DeviceCertificate),
  },
  { additionalProperties: false },
);

/** What authenticating a device takes: its token, and its certificate in the directory now. */
export interface DeviceAuth {
  tokens: TokenService;
  directory: Directory;
  clock: Clock;
}

/**
 * The bearer of an `Authorization: Bearer <token>` header, with a certificate still valid now
 * (a token outlives neither the revocation nor the expiry of the certificate it was issued on).
 */
export function authenticateBearer(auth: DeviceAuth, authorization: string | undefined): TokenClaims {
  const m = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(authorization ?? '');
  if (!m) throw new HotlineError('HL_ERR_AUTH_TOKEN_MISSING', 'send the access token as "Authorization: Bearer <token>"');
  return authenticateToken(auth, m[1]!);
}

export function authenticateToken(auth: DeviceAuth, token: string): TokenClaims {
  const claims = auth.tokens.verify(token);
  auth.directory.current(claims.party, claims.device, auth.clock.now(), claims.signKey);
  return claims;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated device, set by `requireDevice`. */
    device?: TokenClaims;
  }
}

/** preHandler for routes that need a logged-in device. */
export function requireDevice(auth: DeviceAuth) {
  return async (request: FastifyRequest): Promise<void> => {
    request.device = authenticateBearer(auth, request.headers.authorization);
  };
}

/** onRequest hook (before the body is read): one attempt of the peer's address in `scope`. */
export function limitByAddress(limits: RateLimits, scope: RateScope): onRequestHookHandler {
  return async (request) => {
    const refused = limits.take(scope, addressKey(request.ip));
    if (refused) throw refused;
  };
}

/**
 * Challenge–response login with the device's Ed25519 key, then a short-lived JWT. A challenge is
 * single use and lives 60 s; it is bound to the device that asked for it.
 */
export interface AuthPluginOptions {
  auth: DeviceAuth;
  store: Pick<Store, 'appendAudit'>;
  limits: RateLimits;
  agreementHash: string;
  /** Login challenges outstanding at once; past it new ones are refused. */
  maxChallenges: number;
}

export const authPlugin: FastifyPluginAsync<AuthPluginOptions> = async (app, { auth, store, limits, agreementHash, maxChallenges }) => {
  const { tokens, directory, clock } = auth;
  const challenges = new Map<string, { party: string; device: string; expiresAt: number }>();

  // Outstanding challenges are bounded: they are created by unauthenticated peers. A full table
  // refuses new ones; it never evicts a challenge that is still valid.
  app.post('/v1/auth/challenge', { onRequest: limitByAddress(limits, 'login') }, async (request) => {
    const body = assertSchema(ChallengeRequest, request.body, 'HL_ERR_INPUT_SCHEMA');
    const now = clock.now();
    if (challenges.size >= maxChallenges) {
      // Insertion order is expiry order (one TTL); a clock stepped back only delays this pruning.
      for (const [k, v] of challenges) {
        if (v.expiresAt > now) break;
        challenges.delete(k);
      }
      const oldest = challenges.values().next().value;
      if (challenges.size >= maxChallenges && oldest) {
        const retryAfterSeconds = Math.max(1, Math.ceil((oldest.expiresAt - now) / 1000));
        throw new HotlineError('HL_ERR_INPUT_RATE_LIMITED', 'too many outstanding login challenges; retry shortly', { detail: { retryAfterSeconds } });
      }
    }
    const challenge = toBase64(randomBytes(32));
    const expiresAt = now + CHALLENGE_TTL_MS;
    challenges.set(challenge, { party: body.party, device: body.device, expiresAt });
    return { challenge, expiresAt };
  });

  app.post('/v1/auth/login', { onRequest: limitByAddress(limits, 'login') }, async (request) => {
    const body = assertSchema(LoginRequest, request.body, 'HL_ERR_INPUT_SCHEMA');
    const now = clock.now();
    const who = { party: body.party, device: body.device };
    try {
      const c = challenges.get(body.challenge);
      challenges.delete(body.challenge); // single use, whatever happens next
      if (!c || c.party !== body.party || c.device !== body.device || now >= c.expiresAt) {
        throw new HotlineError('HL_ERR_AUTH_CHALLENGE_INVALID', 'unknown, expired or already used challenge; ask for a new one');
      }
      if (body.certificate) {
        if (body.certificate.cert.party !== body.party || body.certificate.cert.device !== body.device) {
          throw new HotlineError('HL_ERR_CERT_MALFORMED', 'the certificate is for another device');
        }
        await directory.enrol(body.certificate, now);
      }
      const cert = directory.current(body.party, body.device, now, body.certificate?.cert.signKey);
      const signed = signingBytes(CONTEXT.login, { v: 1, challenge: body.challenge, party: body.party, device: body.device, agreement: agreementHash });
      if (!(await ed25519Verify(fromBase64(cert.signKey, 32), signed, fromBase64(body.signature, 64)))) {
        throw new HotlineError('HL_ERR_AUTH_BAD_SIGNATURE', 'the login signature does not verify against the device certificate');
      }
      const { token, expiresAt } = tokens.issue({ party: cert.party, device: cert.device, role: cert.role, signKey: cert.signKey });
      await store.appendAudit({ type: 'login', at: now, ...who, role: cert.role });
      request.log.info({ device: `${cert.party}/${cert.device}`, role: cert.role }, 'login');
      return { token, expiresAt, role: cert.role };
    } catch (error) {
      if (error instanceof HotlineError) {
        // Past the claimed device's limit a refusal is a 429 and only counted (one summary entry
        // per window), so no one can grow the audit log by failing logins under a device's name.
        const limited = limits.take('device', `${body.party}/${body.device}`);
        if (limited) throw limited;
        await store.appendAudit({ type: 'login.refused', at: now, ...who, code: error.code });
      }
      throw error;
    }
  });
};
