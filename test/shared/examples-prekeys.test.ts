import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { envelopeHash, openEnvelope } from '../../shared/crypto/envelope.js';
import { DEFAULT_PREKEY_ROTATION_MS, verifyPrekey } from '../../shared/crypto/prekey.js';

// The worked example of PROTOCOL.md "Prekeys and forward secrecy" comes from this file.
const ex = JSON.parse(readFileSync(new URL('../vectors/examples-v1.json', import.meta.url), 'utf8'));
const SPEC = readFileSync(new URL('../../shared/PROTOCOL.md', import.meta.url), 'utf8');
const pk = JSON.parse(readFileSync(new URL('../vectors/examples-prekeys.json', import.meta.url), 'utf8'));

describe('PROTOCOL.md prekey example (test/vectors/examples-prekeys.json)', () => {
  it('the signed prekey verifies against cn-op-1’s certificate; the envelope wrapped to it opens with its secret only, and PROTOCOL.md quotes them as they are', async () => {
    const body = await verifyPrekey(pk.prekey, ex.devices.cnOp.certificate.cert, DEFAULT_PREKEY_ROTATION_MS);
    expect(body.notAfter - body.notBefore).toBe(2 * DEFAULT_PREKEY_ROTATION_MS);
    const entry = pk.wrapped.header.recipients.find((r: { device: string }) => r.device === 'cn-op-1');
    expect(entry.keyId).toBe(pk.keyId);
    const senderCert = ex.devices.jpOp.certificate.cert;
    const { plaintext } = await openEnvelope(pk.wrapped, { device: ex.devices.cnOp, senderCert, prekeys: [{ keyId: pk.keyId, boxSecret: pk.boxSecret }] });
    expect(plaintext).toEqual({ body: '前方に予告なしの演習区域。', lang: 'ja' });
    expect(envelopeHash(pk.wrapped.header)).toBe(pk.wrappedHash);
    // The certificate's key alone does not open it: the secret is gone.
    await expect(openEnvelope(pk.wrapped, { device: ex.devices.cnOp, senderCert, prekeys: [] })).rejects.toMatchObject({ code: 'HL_ERR_PREKEY_SECRET_GONE' });
    expect(SPEC).toContain(JSON.stringify(pk.prekey, null, 2));
    expect(SPEC).toContain(`\`${pk.keyId}\``);
    expect(SPEC).toContain(`envelope hash \`${pk.wrappedHash.slice(0, 8)}…\``);
    expect(SPEC).toContain(`\`${JSON.stringify(plaintext)}\``);
  });
});
