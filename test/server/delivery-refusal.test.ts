import { describe, expect, it } from 'vitest';
import { verifyAuditExport } from '../../shared/audit/log-verify.js';
import { envelopeHash } from '../../shared/crypto/envelope.js';
import { canonicalize } from '../../shared/encoding/canonical-json.js';
import { enrollDevice, revokeDevice } from '../../shared/crypto/keys.js';
import { signReceipt } from '../../shared/crypto/receipt.js';
import { signRefusal } from '../../shared/crypto/refusal.js';
import type { HotlineEvent } from '../../shared/protocol/frames.js';
import type { DeviceSecretFile, Envelope } from '../../shared/protocol/schemas.js';
import type { StatusResponse } from '../../server/plugins/status.js';
import { CN, JP, type Deployment } from '../helpers/deployment.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';
import { call, fetchDirectory, LinkClient, login, seal } from '../helpers/ws-client.js';

const MIN = 60_000;
/** Heartbeats run on the manual clock too: keep them out of the way of hour-long jumps. */
const QUIET = { heartbeatIntervalMs: 365 * 24 * 60 * MIN };

type Closed = Extract<HotlineEvent, { type: 'deadline.closed' }>;

async function status(s: TestServer, key: string): Promise<StatusResponse> {
  const r = await call(s.url, 'GET', '/v1/status', undefined, await login(s.url, s.dep.devices[key]!, s.dep.agreement));
  expect(r.status).toBe(200);
  return r.body as StatusResponse;
}

const openRungs = async (s: TestServer, id: string) =>
  (await status(s, `${JP}/op1`)).sent
    .filter((w) => w.messageId === id)
    .map((w) => w.rung)
    .sort();

async function auditOf(s: TestServer, id: string): Promise<string[]> {
  const entries = await s.store.auditEntries(0, await s.store.auditSize());
  return entries
    .map((e) => JSON.parse(e.entry) as { type: string; messageId?: string; header?: { id: string }; receipt?: { receipt: { messageId: string } }; refusal?: { refusal: { messageId: string } } })
    .filter((e) => (e.messageId ?? e.header?.id ?? e.receipt?.receipt.messageId ?? e.refusal?.refusal.messageId) === id)
    .map((e) => e.type);
}

/** jp-mod/op1 sends a PRIORITY message to cn-mnd; it waits until `to` has it delivered. */
async function send(s: TestServer, clock: ManualClock, jp: LinkClient, to: LinkClient, seq: number): Promise<Envelope> {
  const dir = await fetchDirectory(s.url, await login(s.url, s.dep.devices[`${JP}/op1`]!, s.dep.agreement));
  const env = await seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq, directory: dir, precedence: 'PRIORITY', plaintext: { body: 'exercise area', lang: 'en' }, sentAt: clock.now() });
  jp.send({ t: 'envelope', envelope: env });
  await jp.waitForType('accepted', (f) => f.id === env.header.id);
  await to.waitForType('deliver', (f) => f.envelope.header.id === env.header.id);
  return env;
}

const refusalOf = (dev: DeviceSecretFile, env: Envelope, code = 'HL_ERR_CERT_UNKNOWN_DEVICE', at = 1) => signRefusal(dev, env.header.id, envelopeHash(env.header), code, at);

async function setup(): Promise<{ s: TestServer; clock: ManualClock; dep: Deployment; jp: LinkClient; jpAudit: LinkClient; cn: LinkClient }> {
  const clock = new ManualClock();
  const s = await startTestServer({ clock, app: QUIET });
  return { s, clock, dep: s.dep, jp: await s.connect(`${JP}/op1`), jpAudit: await s.connect(`${JP}/audit1`), cn: await s.connect(`${CN}/op1`) };
}

describe('a refusal from the device a message was delivered to', () => {
  it('closes the deadlines of a message its only addressee operator refused, with the reason, at both parties; audited; nothing fires later; a resend changes nothing', async () => {
    const { s, clock, dep, jp, jpAudit, cn } = await setup();
    const env = await send(s, clock, jp, cn, 1);
    const id = env.header.id;
    expect(await openRungs(s, id)).toEqual(['acknowledged', 'delivered']);

    const refusal = await refusalOf(dep.devices[`${CN}/op1`]!, env, 'HL_ERR_CERT_UNKNOWN_DEVICE', clock.now());
    cn.send({ t: 'refusal', refusal });
    expect((await cn.waitForType('refusal-accepted', (f) => f.messageId === id)).at).toBe(clock.now());
    // The sender, its auditor and the refusing side are all told why, rung by rung.
    for (const c of [jp, jpAudit, cn]) {
      for (const rung of ['delivered', 'acknowledged'] as const) {
        const f = await c.waitFor((x) => x.t === 'event' && x.event.type === 'deadline.closed' && x.event.messageId === id && x.event.rung === rung, `deadline.closed ${rung}`);
        const e = (f as { event: Closed }).event;
        expect(e).toMatchObject({ reason: 'recipient-refused', from: JP, to: CN, precedence: 'PRIORITY' });
        expect(e.detail).toContain(`${CN}/op1 (HL_ERR_CERT_UNKNOWN_DEVICE)`);
      }
    }
    expect(await openRungs(s, id)).toEqual([]);
    expect(await auditOf(s, id)).toEqual(['envelope.accepted', 'refusal.accepted', 'deadline.closed', 'deadline.closed']);

    // The same refusal again (a client that lost the answer): answered again, nothing new.
    cn.send({ t: 'refusal', refusal });
    await cn.waitForType('refusal-accepted', (f) => f.messageId === id);
    clock.advance(48 * 60 * MIN);
    await jp.sync();
    expect(await auditOf(s, id)).toEqual(['envelope.accepted', 'refusal.accepted', 'deadline.closed', 'deadline.closed']);
    expect(jp.ofType('event').filter((f) => f.event.type === 'deadline.missed')).toEqual([]);

    // An auditor's verification of the exported log checks the refusal's signature and message.
    const exp = await call(s.url, 'GET', '/v1/audit/export', undefined, await login(s.url, dep.devices[`${JP}/audit1`]!, dep.agreement));
    expect(exp.status).toBe(200);
    const verified = await verifyAuditExport(dep.agreement, exp.body);
    expect(verified.problem).toBeUndefined();
    // A refusal whose signature was changed in the log is caught by its own check, before the hash chain.
    const i = (exp.body.entries as string[]).findIndex((e) => e.includes('"refusal.accepted"'));
    const tampered = JSON.parse(exp.body.entries[i]) as { refusal: { signature: string } };
    tampered.refusal.signature = (await refusalOf(dep.devices[`${CN}/archive1`]!, env)).signature;
    const entries = [...(exp.body.entries as string[])];
    entries[i] = canonicalize(tampered);
    expect((await verifyAuditExport(dep.agreement, { ...exp.body, entries })).problem).toMatchObject({ index: i, code: 'HL_ERR_REFUSAL_BAD_SIGNATURE' });
  });

  it('refuses forged, misattributed, conflicting and misdirected refusals, and they close nothing', async () => {
    const { s, clock, dep, jp, cn } = await setup();
    const env = await send(s, clock, jp, cn, 1);
    const id = env.header.id;
    const cnOp = dep.devices[`${CN}/op1`]!;
    const cnArchive = await s.connect(`${CN}/archive1`);

    // Signed with another device's key while naming cn-mnd/op1.
    const forged = await refusalOf(cnOp, env);
    const other = await refusalOf(dep.devices[`${CN}/archive1`]!, env);
    cn.send({ t: 'refusal', refusal: { refusal: forged.refusal, signature: other.signature } });
    await cn.waitForError('HL_ERR_REFUSAL_BAD_SIGNATURE');
    // cn-mnd/op1's genuine refusal replayed by another device's connection.
    cnArchive.send({ t: 'refusal', refusal: forged });
    await cnArchive.waitForError('HL_ERR_REFUSAL_SENDER_MISMATCH');
    // Bound to another envelope than the one stored under that id.
    cn.send({ t: 'refusal', refusal: await signRefusal(cnOp, id, 'a'.repeat(64), 'HL_ERR_CERT_UNKNOWN_DEVICE', 1) });
    await cn.waitForError('HL_ERR_REFUSAL_HASH_MISMATCH');
    // A message the relay never stored.
    cn.send({ t: 'refusal', refusal: await signRefusal(cnOp, 'f'.repeat(32), 'a'.repeat(64), 'HL_ERR_CERT_UNKNOWN_DEVICE', 1) });
    await cn.waitForError('HL_ERR_REFUSAL_UNKNOWN_MESSAGE');
    // Not a code.
    cn.send({ t: 'refusal', refusal: { ...forged, refusal: { ...forged.refusal, code: 'no such thing' } } });
    await cn.waitForError('HL_ERR_REFUSAL_MALFORMED');
    // A device the envelope was not wrapped for (enrolled after it was sealed).
    const late = await enrollDevice(dep.parties[CN]!, { device: 'op9', role: 'operator', now: clock.now() });
    expect((await call(s.url, 'POST', '/v1/directory/devices', late.certificate)).status).toBe(201);
    const lateLink = await LinkClient.open(s.url, await login(s.url, late, dep.agreement));
    lateLink.send({ t: 'refusal', refusal: await refusalOf(late, env) });
    await lateLink.waitForError('HL_ERR_REFUSAL_NOT_RECIPIENT');
    await lateLink.close();
    // A device that has already said it holds the message cannot refuse it afterwards.
    cn.send({ t: 'receipt', receipt: await signReceipt(cnOp, env.header, 'delivered', clock.now()) });
    await cn.waitForType('receipt-accepted', (f) => f.messageId === id);
    cn.send({ t: 'refusal', refusal: forged });
    await cn.waitForError('HL_ERR_REFUSAL_CONFLICT');

    // None of them closed anything: the acknowledgement is still awaited, and nothing was audited.
    expect(await openRungs(s, id)).toEqual(['acknowledged']);
    expect(await auditOf(s, id)).toEqual(['envelope.accepted', 'receipt.accepted']);
    await cnArchive.close();
  });

  it('a second refusal with another code from the same device is a conflict; one refusal among two addressee operators closes nothing until the other cannot answer either', async () => {
    const { s, clock, dep, jp, cn } = await setup();
    // A second operator at cn-mnd, enrolled before the message is sealed.
    const op2 = await enrollDevice(dep.parties[CN]!, { device: 'op2', role: 'operator', now: clock.now() });
    expect((await call(s.url, 'POST', '/v1/directory/devices', op2.certificate)).status).toBe(201);
    const env = await send(s, clock, jp, cn, 1);
    const id = env.header.id;

    cn.send({ t: 'refusal', refusal: await refusalOf(dep.devices[`${CN}/op1`]!, env, 'HL_ERR_ENVELOPE_BAD_SIGNATURE') });
    await cn.waitForType('refusal-accepted', (f) => f.messageId === id);
    cn.send({ t: 'refusal', refusal: await refusalOf(dep.devices[`${CN}/op1`]!, env, 'HL_ERR_ENVELOPE_DECRYPT_FAILED') });
    await cn.waitForError('HL_ERR_REFUSAL_CONFLICT');
    // cn-mnd/op2 can still read it: the deadlines stay.
    expect(await openRungs(s, id)).toEqual(['acknowledged', 'delivered']);
    expect(await auditOf(s, id)).toEqual(['envelope.accepted', 'refusal.accepted']);

    // Then op2 is revoked: now nobody at cn-mnd can answer; the reason names the refusal.
    const rev = await revokeDevice(dep.parties[CN]!, op2.certificate.cert, { at: clock.now(), reason: 'lost' });
    expect((await call(s.url, 'POST', '/v1/directory/revocations', rev)).status).toBe(201);
    const f = await jp.waitFor((x) => x.t === 'event' && x.event.type === 'deadline.closed' && x.event.messageId === id, 'deadline.closed');
    const e = (f as { event: Closed }).event;
    expect(e.reason).toBe('recipient-refused');
    expect(e.detail).toContain(`${CN}/op1 (HL_ERR_ENVELOPE_BAD_SIGNATURE)`);
    expect(e.detail).toContain(`revoked or no longer valid: ${CN}/op2`);
    expect(await openRungs(s, id)).toEqual([]);
  });
});
