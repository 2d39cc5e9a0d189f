import jwt from 'jsonwebtoken';
import { Type, type Static } from '@sinclair/typebox';
import { HotlineError } from '../shared/errors.js';
import { matchesSchema } from '../shared/protocol/validate.js';
import { Identifier, PublicKey, Role } from '../shared/protocol/schemas.js';
import type { Clock } from './clock.js';

export const TOKEN_TYPE = 'hotline+device';
export const TOKEN_ISSUER = 'hotline';
export const TOKEN_TTL_MS = 15 * 60_000;

/** What an access token says about its bearer. */
export const TokenClaims = Type.Object({
  party: Identifier,
  device: Identifier,
  role: Role,
  /** The certificate's signKey the login was proved with: revoking that certificate ends the token. */
  signKey: PublicKey,
});
export type TokenClaims = Static<typeof TokenClaims>;

/**
 * Short-lived access tokens (PROTOCOL.md "HTTP API and WebSocket frames"): HS256 with a per-deployment secret, the
 * algorithm pinned on verify (so `alg: none` and RS/HS confusion are refused), and iss, aud (the
 * agreement hash), typ and exp checked. Time comes from the injected clock.
 */
export class TokenService {
  constructor(
    private readonly secret: Uint8Array,
    private readonly audience: string,
    private readonly clock: Clock,
  ) {
    if (secret.length < 32) throw new HotlineError('HL_ERR_CONFIG_INVALID', 'the JWT secret must be at least 32 bytes');
  }

  issue(claims: TokenClaims): { token: string; expiresAt: number } {
    const now = this.clock.now();
    const iat = Math.floor(now / 1000);
    const exp = Math.floor((now + TOKEN_TTL_MS) / 1000);
    const token = jwt.sign(
      {
        iss: TOKEN_ISSUER,
        aud: this.audience,
        sub: `${claims.party}/${claims.device}`,
        typ: TOKEN_TYPE,
        party: claims.party,
        device: claims.device,
        role: claims.role,
        signKey: claims.signKey,
        iat,
        exp,
      },
      Buffer.from(this.secret),
      { algorithm: 'HS256', header: { alg: 'HS256', typ: TOKEN_TYPE } },
    );
    return { token, expiresAt: exp * 1000 };
  }

  /** Verify a bearer token (attacker-controlled). */
  verify(token: string): TokenClaims {
    let decoded: jwt.Jwt;
    try {
      decoded = jwt.verify(token, Buffer.from(this.secret), {
        algorithms: ['HS256'],
        issuer: TOKEN_ISSUER,
        audience: this.audience,
        clockTimestamp: Math.floor(this.clock.now() / 1000),
        complete: true,
      });
    } catch (cause) {
      if (cause instanceof jwt.TokenExpiredError) throw new HotlineError('HL_ERR_AUTH_TOKEN_EXPIRED', 'the access token has expired; log in again', { cause });
      throw new HotlineError('HL_ERR_AUTH_TOKEN_INVALID', 'the access token is not valid', { cause });
    }
    const payload = decoded.payload as Record<string, unknown>;
    if (decoded.header.typ !== TOKEN_TYPE || payload['typ'] !== TOKEN_TYPE || typeof payload['exp'] !== 'number') {
      throw new HotlineError('HL_ERR_AUTH_TOKEN_INVALID', 'the access token is not a Hotline device token');
    }
    const claims = { party: payload['party'], device: payload['device'], role: payload['role'], signKey: payload['signKey'] };
    if (!matchesSchema(TokenClaims, claims) || payload['sub'] !== `${claims.party}/${claims.device}`) {
      throw new HotlineError('HL_ERR_AUTH_TOKEN_INVALID', 'the access token has invalid claims');
    }
    return claims;
  }
}
