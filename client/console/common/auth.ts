import { HotlineError, isHotlineErrorCode } from '../../../shared/errors.js';
import { agreementHash, CONTEXT, signingBytes } from '../../../shared/crypto/keys.js';
import { ed25519Sign } from '../../../shared/crypto/ed25519.js';
import { fromBase64, toBase64 } from '../../../shared/encoding/base64.js';
import type { Agreement, DeviceSecretFile } from '../../../shared/protocol/schemas.js';

/**
 * Challenge–response login for consoles that only read over HTTP (the auditor's): the device key
 * signs the server's challenge in the browser (WebCrypto Ed25519) and gets a short-lived token.
 * The operator console logs in through HotlineClient instead.
 */
export async function login(device: DeviceSecretFile, agreement: Agreement): Promise<{ token: string; expiresAt: number }> {
  const { party, device: id } = device.certificate.cert;
  const ch = (await requestJson('POST', '/v1/auth/challenge', undefined, { party, device: id })) as { challenge?: unknown };
  if (typeof ch.challenge !== 'string') throw new HotlineError('HL_ERR_AUTH_CHALLENGE_INVALID', 'the server sent no challenge');
  const signature = await ed25519Sign(
    fromBase64(device.signSecret, 32),
    signingBytes(CONTEXT.login, { v: 1, challenge: ch.challenge, party, device: id, agreement: agreementHash(agreement) }),
  );
  const res = (await requestJson('POST', '/v1/auth/login', undefined, {
    party,
    device: id,
    challenge: ch.challenge,
    signature: toBase64(signature),
    certificate: device.certificate,
  })) as { token?: unknown; expiresAt?: unknown };
  if (typeof res.token !== 'string' || typeof res.expiresAt !== 'number') throw new HotlineError('HL_ERR_AUTH_TOKEN_INVALID', 'malformed login answer');
  return { token: res.token, expiresAt: res.expiresAt };
}

/** A JSON request to this console's server; refusals become HotlineErrors with the server's code. */
export async function requestJson(method: 'GET' | 'POST', path: string, token?: string, body?: unknown): Promise<unknown> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  let res: Response;
  try {
    res = await fetch(path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  } catch (cause) {
    throw new HotlineError('HL_ERR_CLIENT_UNREACHABLE', 'the server cannot be reached', { cause });
  }
  const json = (await res.json().catch(() => ({}))) as { error?: { code?: unknown; message?: unknown } };
  if (!res.ok) {
    const code = isHotlineErrorCode(json.error?.code) ? json.error.code : 'HL_ERR_CLIENT_REFUSED';
    throw new HotlineError(code, `${method} ${path}: ${typeof json.error?.message === 'string' ? json.error.message : `HTTP ${res.status}`}`);
  }
  return json;
}
