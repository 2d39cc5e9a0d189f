import { describe, expect, it } from 'vitest';
import jwt from 'jsonwebtoken';
import { enrollDevice, revokeDevice } from '../../shared/crypto/keys.js';
import { signReceipt } from '../../shared/crypto/receipt.js';
import { toBase64, fromBase64 } from '../../shared/encoding/base64.js';
import type { Envelope } from '../../shared/protocol/schemas.js';
import { CN, JP } from '../helpers/deployment.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';
import { call, LinkClient, seal, tryLogin, UpgradeRefused } from '../helpers/ws-client.js';

/** A complete exchange on fresh connections: proof that the server still serves others. */
async function exchangeWorks(s: TestServer, seq: number): Promise<void> {
  const jp = await s.connect(`${JP}/op2`);
  const cn = await s.connect(`${CN}/op1`);
  const env = await seal({ sender: s.dep.devices[`${JP}/op2`]!, to: CN, seq, directory: await s.directory(), plaintext: { body: `check ${seq}`, lang: 'en' } });
  jp.send({ t: 'envelope', envelope: env });
  await jp.waitForType('accepted', (f) => f.id === env.header.id);
  await cn.waitForType('deliver', (f) => f.envelope.header.id === env.header.id);
  await Promise.all([jp.close(), cn.close()]);
}

function flipSignature(env: Envelope): Envelope {
  const sig = fromBase64(env.signature, 64);
  sig[0] = sig[0]! ^ 0x01;
  return { ...env, signature: toBase64(sig) };
}

async function refusedUpgrade(p: Promise<LinkClient>): Promise<UpgradeRefused> {
  const e = await p.then(
    () => new Error('the upgrade was accepted'),
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(UpgradeRefused);
  return e as UpgradeRefused;
}

describe('envelopes the link refuses', () => {
  it('refuses forged, replayed, re-used-id, impersonating and auditor envelopes, each with its code, and keeps serving', async () => {
    const s = await startTestServer();
    const dir = await s.directory();
    const op1 = s.dep.devices[`${JP}/op1`]!;
    const jp = await s.connect(`${JP}/op1`);
    const first = await seal({ sender: op1, to: CN, seq: 1, directory: dir, plaintext: { body: 'one', lang: 'en' } });

    jp.send({ t: 'envelope', envelope: flipSignature(first) });
    expect((await jp.waitForError('HL_ERR_ENVELOPE_BAD_SIGNATURE')).ref).toBe(first.header.id);

    const tampered = { ...first, header: { ...first.header, precedence: 'ROUTINE' as const } };
    jp.send({ t: 'envelope', envelope: tampered });
    await jp.waitForError('HL_ERR_ENVELOPE_BAD_SIGNATURE');

    jp.send({ t: 'envelope', envelope: first });
    await jp.waitForType('accepted', (f) => f.id === first.header.id);

    // Same seq, new id: a replay.
    const replay = await seal({ sender: op1, to: CN, seq: 1, directory: dir, plaintext: { body: 'one again', lang: 'en' } });
    jp.send({ t: 'envelope', envelope: replay });
    await jp.waitForError('HL_ERR_ENVELOPE_REPLAY');

    // Same id, other content.
    const reuse = await seal({ sender: op1, to: CN, seq: 2, directory: dir, plaintext: { body: 'other', lang: 'en' }, id: first.header.id });
    jp.send({ t: 'envelope', envelope: reuse });
    await jp.waitForError('HL_ERR_ENVELOPE_DUPLICATE_ID');

    // A device of one party sending as the other: a genuine CN envelope pushed through JP's link.
    const asCn = await seal({ sender: s.dep.devices[`${CN}/op1`]!, to: JP, seq: 1, directory: dir, plaintext: { body: 'x', lang: 'zh' } });
    jp.send({ t: 'envelope', envelope: asCn });
    await jp.waitForError('HL_ERR_ENVELOPE_SENDER_MISMATCH');

    // To one's own party, and to a party outside the agreement.
    const own = await seal({ sender: op1, to: JP, seq: 3, directory: dir, plaintext: { body: 'x', lang: 'en' } });
    jp.send({ t: 'envelope', envelope: own });
    await jp.waitForError('HL_ERR_ENVELOPE_UNKNOWN_PARTY');

    // Wrapped for the wrong set of devices (the sender's colleague left out).
    const fewer = await seal({ sender: op1, to: CN, seq: 4, directory: dir.filter((c) => !(c.party === JP && c.device === 'op2')), plaintext: { body: 'x', lang: 'en' } });
    jp.send({ t: 'envelope', envelope: fewer });
    await jp.waitForError('HL_ERR_ENVELOPE_RECIPIENTS');

    // An auditor may not send.
    const auditor = await s.connect(`${JP}/audit1`);
    const fromAuditor = await seal({ sender: s.dep.devices[`${JP}/audit1`]!, to: CN, seq: 1, directory: dir, plaintext: { body: 'x', lang: 'en' } });
    auditor.send({ t: 'envelope', envelope: fromAuditor });
    await auditor.waitForError('HL_ERR_AUTH_FORBIDDEN');

    // Resending the accepted envelope is idempotent: accepted again, same time.
    jp.send({ t: 'envelope', envelope: first });
    const again = await jp.waitForType('accepted', (f) => f.id === first.header.id);
    expect(again.at).toBe(jp.ofType('accepted')[0]!.at);

    // The refusing connections stayed open and work.
    const next = await seal({ sender: op1, to: CN, seq: 5, directory: dir, plaintext: { body: 'five', lang: 'en' } });
    jp.send({ t: 'envelope', envelope: next });
    await jp.waitForType('accepted', (f) => f.id === next.header.id);

    // The recipient got each accepted envelope once.
    const cn = await s.connect(`${CN}/op1`);
    await cn.sync();
    expect(cn.ofType('deliver').map((d) => d.envelope.header.id)).toEqual([first.header.id, next.header.id]);
    await exchangeWorks(s, 1);

    // Each refusal is in the log by code (and nothing more of the frame).
    const refused = s.logs.records().filter((r) => r['msg'] === 'frame refused').map((r) => r['code']);
    expect(refused).toEqual(expect.arrayContaining(['HL_ERR_ENVELOPE_BAD_SIGNATURE', 'HL_ERR_ENVELOPE_REPLAY', 'HL_ERR_ENVELOPE_DUPLICATE_ID', 'HL_ERR_AUTH_FORBIDDEN']));
  });

  it('refuses forged receipts, receipts from the wrong side and for unknown messages', async () => {
    const s = await startTestServer();
    const dir = await s.directory();
    const jp = await s.connect(`${JP}/op1`);
    const cn = await s.connect(`${CN}/op1`);
    const env = await seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq: 1, directory: dir, plaintext: { body: 'x', lang: 'en' } });
    jp.send({ t: 'envelope', envelope: env });
    await cn.waitForType('deliver');

    const good = await signReceipt(s.dep.devices[`${CN}/op1`]!, env.header, 'delivered', Date.now());
    const sig = fromBase64(good.signature, 64);
    sig[5] = sig[5]! ^ 0x80;
    cn.send({ t: 'receipt', receipt: { ...good, signature: toBase64(sig) } });
    await cn.waitForError('HL_ERR_RECEIPT_BAD_SIGNATURE');

    const unknown = await signReceipt(s.dep.devices[`${CN}/op1`]!, { ...env.header, id: 'ab'.repeat(16) }, 'delivered', Date.now());
    cn.send({ t: 'receipt', receipt: unknown });
    await cn.waitForError('HL_ERR_RECEIPT_UNKNOWN_MESSAGE');

    // The sender's own colleague cannot acknowledge on the addressee's behalf.
    const jp2 = await s.connect(`${JP}/op2`);
    jp2.send({ t: 'receipt', receipt: await signReceipt(s.dep.devices[`${JP}/op2`]!, env.header, 'acknowledged', Date.now()) });
    await jp2.waitForError('HL_ERR_RECEIPT_NOT_RECIPIENT');

    // A receipt signed by another device than the connection's.
    jp.send({ t: 'receipt', receipt: good });
    await jp.waitForError('HL_ERR_RECEIPT_SENDER_MISMATCH');

    cn.send({ t: 'receipt', receipt: good });
    await cn.waitForType('receipt-accepted');
    cn.send({ t: 'receipt', receipt: good });
    await cn.waitForType('receipt-accepted');
    await jp.sync();
    expect(jp.ofType('receipt')).toHaveLength(1);
  });
});

describe('framing the link refuses', () => {
  it('closes a connection on malformed JSON, oversized and unknown frames with the code’s close code; others are unaffected', async () => {
    const s = await startTestServer();
    const cases: [string | Buffer, string, number][] = [
      ['{"t":"envelope",', 'HL_ERR_INPUT_MALFORMED_JSON', 4400],
      ['x'.repeat(70 * 1024), 'HL_ERR_INPUT_TOO_LARGE', 4413],
      [JSON.stringify({ t: 'hello' }), 'HL_ERR_INPUT_UNKNOWN_FRAME', 4402],
      [JSON.stringify([1, 2]), 'HL_ERR_INPUT_UNKNOWN_FRAME', 4402],
      [Buffer.from([0x7b, 0x7d]), 'HL_ERR_INPUT_MALFORMED_JSON', 4400],
    ];
    const bystander = await s.connect(`${CN}/op1`);
    let seq = 0;
    for (const [data, code, closeCode] of cases) {
      const c = await s.connect(`${JP}/op1`);
      c.sendRaw(data);
      await c.waitForError(code);
      expect((await c.closed).code).toBe(closeCode);
      await exchangeWorks(s, ++seq);
    }
    expect(bystander.ws.readyState).toBe(bystander.ws.OPEN);
  });

  it('answers wrong types with an error and keeps the connection open', async () => {
    const s = await startTestServer();
    const c = await s.connect(`${JP}/op1`);
    c.send({ t: 'envelope', envelope: { header: 5 } });
    await c.waitForError('HL_ERR_ENVELOPE_MALFORMED');
    c.send({ t: 'receipt', receipt: 'no' });
    await c.waitForError('HL_ERR_RECEIPT_MALFORMED');
    c.send({ t: 'ack', cursor: 'x' });
    await c.waitForError('HL_ERR_INPUT_SCHEMA');
    const env = await seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq: 1, directory: await s.directory(), plaintext: { body: 'still here', lang: 'en' } });
    c.send({ t: 'envelope', envelope: env });
    await c.waitForType('accepted');
  });
});

describe('authentication the server refuses', () => {
  it('refuses alg:none, a foreign key, a token in the URL, a wrong origin, and missing tokens', async () => {
    const s = await startTestServer();
    const token = await s.token(`${JP}/op1`);
    const claims = jwt.decode(token) as Record<string, unknown>;
    const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${b64url({ alg: 'none', typ: 'hotline+device' })}.${b64url(claims)}.`;
    const foreign = jwt.sign(claims, 'another deployment secret of enough length!!', { algorithm: 'HS256', header: { alg: 'HS256', typ: 'hotline+device' } });

    for (const bad of [none, foreign, token.slice(0, -3) + 'AAA']) {
      const e = await refusedUpgrade(LinkClient.open(s.url, bad));
      expect([e.status, e.body.error.code]).toEqual([401, 'HL_ERR_AUTH_TOKEN_INVALID']);
      const r = await call(s.url, 'GET', '/v1/directory', undefined, bad);
      expect([r.status, r.body.error.code]).toEqual([401, 'HL_ERR_AUTH_TOKEN_INVALID']);
    }
    const inUrl = await refusedUpgrade(LinkClient.open(s.url, undefined, { path: `/v1/link?token=${token}&access_token=${token}` }));
    expect([inUrl.status, inUrl.body.error.code]).toEqual([401, 'HL_ERR_AUTH_TOKEN_MISSING']);
    const origin = await refusedUpgrade(LinkClient.open(s.url, token, { headers: { origin: 'https://evil.example' } }));
    expect([origin.status, origin.body.error.code]).toEqual([403, 'HL_ERR_AUTH_ORIGIN']);
    const noDir = await call(s.url, 'GET', '/v1/directory');
    expect([noDir.status, noDir.body.error.code]).toEqual([401, 'HL_ERR_AUTH_TOKEN_MISSING']);

    // The same-origin browser and the Authorization header (Node clients) are accepted.
    const own = await LinkClient.open(s.url, token, { headers: { origin: s.url } });
    await own.waitForType('hello');
    await own.close();
    const header = await LinkClient.open(s.url, undefined, { headers: { authorization: `Bearer ${token}` } });
    await header.waitForType('hello');
    await header.close();
    expect(s.logs.text()).not.toContain(token);
    await exchangeWorks(s, 1);
  });

  it('refuses a reused or expired challenge, a bad login signature, and an expired token', async () => {
    const clock = new ManualClock(Date.now());
    const s = await startTestServer({ clock, app: { heartbeatIntervalMs: 1e12 } });
    const op1 = s.dep.devices[`${JP}/op1`]!;
    const ch = await call(s.url, 'POST', '/v1/auth/challenge', { party: JP, device: 'op1' });
    const { loginSignature } = await import('../helpers/ws-client.js');
    const body = { party: JP, device: 'op1', challenge: ch.body.challenge, signature: await loginSignature(op1, ch.body.challenge, s.dep.agreement) };
    const bad = await call(s.url, 'POST', '/v1/auth/login', { ...body, signature: await loginSignature(s.dep.devices[`${JP}/op2`]!, ch.body.challenge, s.dep.agreement) });
    expect(bad.body.error.code).toBe('HL_ERR_AUTH_BAD_SIGNATURE');
    // The failed attempt used the challenge up.
    expect((await call(s.url, 'POST', '/v1/auth/login', body)).body.error.code).toBe('HL_ERR_AUTH_CHALLENGE_INVALID');

    const ch2 = await call(s.url, 'POST', '/v1/auth/challenge', { party: JP, device: 'op1' });
    clock.advance(60_001);
    const late = await call(s.url, 'POST', '/v1/auth/login', { ...body, challenge: ch2.body.challenge, signature: await loginSignature(op1, ch2.body.challenge, s.dep.agreement) });
    expect([late.status, late.body.error.code]).toEqual([401, 'HL_ERR_AUTH_CHALLENGE_INVALID']);

    const token = await s.token(`${JP}/op1`);
    expect((await call(s.url, 'GET', '/v1/directory', undefined, token)).status).toBe(200);
    clock.advance(15 * 60_000 + 1000);
    const expired = await call(s.url, 'GET', '/v1/directory', undefined, token);
    expect([expired.status, expired.body.error.code]).toEqual([401, 'HL_ERR_AUTH_TOKEN_EXPIRED']);
    const e = await refusedUpgrade(LinkClient.open(s.url, token));
    expect(e.body.error.code).toBe('HL_ERR_AUTH_TOKEN_EXPIRED');

    const audit = await s.store.auditEntries(0, await s.store.auditSize());
    const refusedLogins = audit.map((a) => JSON.parse(a.entry) as { type: string; code?: string }).filter((a) => a.type === 'login.refused');
    expect(refusedLogins.map((a) => a.code)).toEqual(['HL_ERR_AUTH_BAD_SIGNATURE', 'HL_ERR_AUTH_CHALLENGE_INVALID', 'HL_ERR_AUTH_CHALLENGE_INVALID']);
  });
});

describe('certificates the server refuses', () => {
  it('refuses an expired certificate at enrolment and login, and on the link once it expires', async () => {
    const clock = new ManualClock(Date.now());
    const s = await startTestServer({ clock, app: { heartbeatIntervalMs: 1e12 } });
    const old = await enrollDevice(s.dep.parties[JP]!, { device: 'old1', role: 'operator', now: clock.now() - 2 * 3600_000, validForMs: 3600_000 });
    const enrolled = await call(s.url, 'POST', '/v1/directory/devices', old.certificate);
    expect([enrolled.status, enrolled.body.error.code]).toEqual([403, 'HL_ERR_CERT_EXPIRED']);
    const login = await tryLogin(s.url, old, s.dep.agreement, { withCertificate: true });
    expect([login.status, login.body.error.code]).toEqual([403, 'HL_ERR_CERT_EXPIRED']);

    // A short-lived device, connected, whose certificate runs out while it is connected.
    const brief = await enrollDevice(s.dep.parties[JP]!, { device: 'brief1', role: 'operator', now: clock.now(), validForMs: 10 * 60_000 });
    const r = await tryLogin(s.url, brief, s.dep.agreement, { withCertificate: true });
    expect(r.status).toBe(200);
    const c = await LinkClient.open(s.url, r.body.token);
    await c.waitForType('hello');
    const dir = await s.directory();
    clock.advance(11 * 60_000);
    const env = await seal({ sender: brief, to: CN, seq: 1, directory: dir, plaintext: { body: 'late', lang: 'en' } });
    c.send({ t: 'envelope', envelope: env });
    await c.waitForError('HL_ERR_CERT_EXPIRED');
    await c.close();
  });

  it('refuses a revoked certificate: its link is closed, login and enrolment refused, and it drops out of the directory', async () => {
    const s = await startTestServer();
    const op2 = s.dep.devices[`${JP}/op2`]!;
    const live = await s.connect(`${JP}/op2`);
    const dirBefore = await s.directory();
    const rev = await revokeDevice(s.dep.parties[JP]!, op2.certificate.cert, { at: Date.now(), reason: 'lost' });
    expect((await call(s.url, 'POST', '/v1/directory/revocations', rev)).status).toBe(201);
    expect((await call(s.url, 'POST', '/v1/directory/revocations', rev)).status).toBe(201); // idempotent

    await live.waitForError('HL_ERR_CERT_REVOKED');
    expect((await live.closed).code).toBe(4416);
    const login = await tryLogin(s.url, op2, s.dep.agreement);
    expect([login.status, login.body.error.code]).toEqual([403, 'HL_ERR_CERT_REVOKED']);
    const again = await call(s.url, 'POST', '/v1/directory/devices', op2.certificate);
    expect(again.body.error.code).toBe('HL_ERR_CERT_REVOKED');
    const dirAfter = await s.directory();
    expect(dirAfter.some((c) => c.party === JP && c.device === 'op2')).toBe(false);

    // An envelope still wrapped for the revoked device is refused; one for the current directory passes.
    const jp = await s.connect(`${JP}/op1`);
    const stale = await seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq: 1, directory: dirBefore, plaintext: { body: 'x', lang: 'en' } });
    jp.send({ t: 'envelope', envelope: stale });
    await jp.waitForError('HL_ERR_ENVELOPE_RECIPIENTS');
    const fresh = await seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq: 2, directory: dirAfter, plaintext: { body: 'x', lang: 'en' } });
    jp.send({ t: 'envelope', envelope: fresh });
    await jp.waitForType('accepted');
  });
});
