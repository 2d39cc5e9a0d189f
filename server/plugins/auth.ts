import type { FastifyPluginAsync, FastifyRequest, onRequestHookHandler } from 'fastify';
import { createHmac, timingSafeEqual } from 'node:crypto';
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
  /** The per-deployment secret the challenge MAC key is derived from (every node of a relay shares it). */
  secret: Uint8Array;
  /** A party's own relay (two-relay deployments) logs in that party's devices only. */
  servesParty?: string;
}

/** Used challenges remembered per device until they expire; past this a device's logins wait. */
const USED_PER_DEVICE = 1024;

/**
 * Stateless login challenges: nothing is stored when one is issued, so a flood of challenge
 * requests under other names (from however many addresses) can never fill a table and lock a real
 * device out. A challenge is 32 bytes: a random nonce (12), its expiry in seconds (4, big-endian)
 * and an HMAC-SHA-256 (truncated to 16 bytes) over both and the party and device it was issued to.
 * Single use is kept by remembering used challenges per enrolled device until they expire.
 */
class Challenges {
  readonly #key: Buffer;
  readonly #used = new Map<string, Map<string, number>>();

  constructor(secret: Uint8Array) {
    // A key of its own, derived: the token secret itself never signs anything but tokens.
    this.#key = createHmac('sha256', secret).update('hotline.challenge-key.v1').digest();
  }

  #mac(party: string, device: string, head: Uint8Array): Buffer {
    return createHmac('sha256', this.#key).update(`hotline.challenge.v1\0${party}\0${device}\0`).update(head).digest().subarray(0, 16);
  }

  issue(party: string, device: string, now: number): { challenge: string; expiresAt: number } {
    // Whole seconds, rounded down: a challenge never lives longer than the TTL.
    const expiresAt = Math.floor((now + CHALLENGE_TTL_MS) / 1000) * 1000;
    const head = new Uint8Array(16);
    head.set(randomBytes(12));
    new DataView(head.buffer).setUint32(12, expiresAt / 1000);
    const bytes = new Uint8Array(32);
    bytes.set(head);
    bytes.set(this.#mac(party, device, head), 16);
    return { challenge: toBase64(bytes), expiresAt };
  }

  /** Check a presented challenge (attacker-controlled) against its MAC, device and expiry. */
  check(challenge: string, party: string, device: string, now: number): number {
    const invalid = () => new HotlineError('HL_ERR_AUTH_CHALLENGE_INVALID', 'unknown, expired or already used challenge; ask for a new one');
    const bytes = fromBase64(challenge, 32);
    const head = bytes.subarray(0, 16);
    if (!timingSafeEqual(this.#mac(party, device, head), bytes.subarray(16))) throw invalid();
    const expiresAt = new DataView(bytes.buffer, bytes.byteOffset).getUint32(12) * 1000;
    if (now >= expiresAt) throw invalid();
    return expiresAt;
  }

  /** Use a valid challenge of an enrolled device once; false when it was used before. */
  use(challenge: string, key: string, expiresAt: number, now: number): boolean {
    let used = this.#used.get(key);
    if (!used) this.#used.set(key, (used = new Map()));
    if (used.has(challenge)) return false;
    if (used.size >= USED_PER_DEVICE) for (const [c, exp] of used) if (exp <= now) used.delete(c);
    if (used.size >= USED_PER_DEVICE) {
      throw new HotlineError('HL_ERR_INPUT_RATE_LIMITED', 'too many logins for this device in the last minute; retry shortly', { detail: { retryAfterSeconds: Math.ceil(CHALLENGE_TTL_MS / 1000) } });
    }
    used.set(challenge, expiresAt);
    return true;
  }
}

export const authPlugin: FastifyPluginAsync<AuthPluginOptions> = async (app, { auth, store, limits, agreementHash, secret, servesParty }) => {
  const { tokens, directory, clock } = auth;
  const challenges = new Challenges(secret);

  app.post('/v1/auth/challenge', { onRequest: limitByAddress(limits, 'login') }, async (request) => {
    const body = assertSchema(ChallengeRequest, request.body, 'HL_ERR_INPUT_SCHEMA');
    return challenges.issue(body.party, body.device, clock.now());
  });

  app.post('/v1/auth/login', { onRequest: limitByAddress(limits, 'login') }, async (request) => {
    const body = assertSchema(LoginRequest, request.body, 'HL_ERR_INPUT_SCHEMA');
    const now = clock.now();
    const who = { party: body.party, device: body.device };
    try {
      if (servesParty !== undefined && body.party !== servesParty) {
        throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `this is the relay of ${servesParty}; devices of ${body.party} log in at their own party's relay`);
      }
      const challengeExpiry = challenges.check(body.challenge, body.party, body.device, now);
      if (body.certificate) {
        if (body.certificate.cert.party !== body.party || body.certificate.cert.device !== body.device) {
          throw new HotlineError('HL_ERR_CERT_MALFORMED', 'the certificate is for another device');
        }
        await directory.enrol(body.certificate, now);
      }
      const cert = directory.current(body.party, body.device, now, body.certificate?.cert.signKey);
      // Single use, whatever happens next; remembered only for enrolled devices, so the memory is
      // bounded by the directory, not by what strangers ask for.
      if (!challenges.use(body.challenge, `${cert.party}/${cert.device}`, challengeExpiry, now)) {
        throw new HotlineError('HL_ERR_AUTH_CHALLENGE_INVALID', 'unknown, expired or already used challenge; ask for a new one');
      }
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
