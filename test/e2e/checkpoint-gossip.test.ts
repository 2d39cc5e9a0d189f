import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../server/main.js';
import { CHECKPOINT_ATTACHMENT, type AuditAlarm, type HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { formatCheckpointBody, parseCheckpoint, signNote } from '../../shared/audit/checkpoint.js';
import { logKeyName } from '../../shared/audit/log-verify.js';
import { randomBytes } from '../../shared/crypto/random.js';
import { fromBase64, fromUtf8, toBase64, utf8 } from '../../shared/encoding/base64.js';
import type { DeviceSecretFile } from '../../shared/protocol/schemas.js';
import { makeDeployment, type TestDeployment } from '../helpers/fixtures.js';
import { logSecretFile, makeClient, next, sendAndAck, signNow, startAuditServer } from '../helpers/audit.js';

// Checkpoint gossip (issue 5, equivocation): each party's link test carries the newest checkpoint
// its device verified, end to end, so a server that shows the two parties two self-consistent but
// different histories is caught by the party that receives the test.

let dir: string;
let server: RunningServer;
let d: TestDeployment;
const clients: HotlineClient[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hotline-gossip-'));
  d = await makeDeployment(Date.now() - 60_000);
  server = await startAuditServer(d.agreement, logSecretFile(d.agreement, d.logSecret), join(dir, 'server'), Object.values(d.devices));
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

function client(device: DeviceSecretFile, storage: MemoryStorage, fetchImpl?: typeof fetch): HotlineClient {
  const c = makeClient(server.url, d.agreement, device, storage, fetchImpl ? { fetch: fetchImpl } : {});
  clients.push(c);
  return c;
}

function alarmsOf(c: HotlineClient): AuditAlarm[] {
  const out: AuditAlarm[] = [];
  c.on('audit.alarm', (a) => out.push(a));
  return out;
}

async function seen(storage: MemoryStorage, device: DeviceSecretFile): Promise<Record<string, string>> {
  const { party, device: id } = device.certificate.cert;
  return (await storage.read(`${party}/${id}`)).audit?.seen ?? {};
}

async function forgedCheckpoint(size: number, rootHash: Uint8Array, origin = logKeyName(d.agreement)): Promise<string> {
  return signNote(formatCheckpointBody({ origin, size, rootHash }), { name: logKeyName(d.agreement), secretKey: fromBase64(d.logSecret, 32) });
}

/**
 * The server as one client sees it, lying consistently: its own checkpoint list, and it accepts
 * the client's cosignature of it. Nothing this client can ask the server reveals the other view.
 */
function splitViewFetch(size: number, note: string): typeof fetch {
  return async (input, init) => {
    const url = new URL(String(input));
    const method = init?.method ?? 'GET';
    const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
    if (method === 'GET' && url.pathname === '/v1/audit/checkpoint/latest') return json(200, { size, note });
    if (method === 'GET' && url.pathname === '/v1/audit/checkpoints') return json(200, { checkpoints: [{ size, note }] });
    if (method === 'POST' && url.pathname === '/v1/audit/cosignatures') return json(201, { cosigned: true, size });
    return fetch(input, init);
  };
}

describe('checkpoint gossip through the link test', () => {
  it('on connecting, the first link test gossips the checkpoint just cosigned, not an older one', async () => {
    const cn = client(d.devices.cnOp, new MemoryStorage());
    const gossip = next(cn, 'checkpoint-gossip');
    await cn.start();
    // A fresh device with no remembered checkpoint: only this connection's cosign round can give
    // its first test something to carry.
    const latest = await signNow(server.url, d.devices.jpAud, d.agreement);
    const jp = makeClient(server.url, d.agreement, d.devices.jpOp, new MemoryStorage(), { cosign: true, testAgent: true });
    clients.push(jp);
    const firstTest = next(jp, 'link-test-sent');
    await jp.start();
    await firstTest;
    const g = await gossip;
    expect(g.from).toMatchObject({ party: 'jp-mod' });
    expect(g.size).toBe(latest.size);
  });

  it('honest server: each test agent gossips its checkpoint, no alarm, and each side remembers the other’s', async () => {
    const jpState = new MemoryStorage();
    const cnState = new MemoryStorage();
    const jp = client(d.devices.jpOp, jpState);
    const cn = client(d.devices.cnOp, cnState);
    const jpAlarms = alarmsOf(jp);
    const cnAlarms = alarmsOf(cn);
    await Promise.all([jp.start(), cn.start()]);

    // No checkpoint verified yet: the link test carries none.
    const bare = next(cn, 'message', (m) => m.header.linkTest === true);
    await jp.sendLinkTests();
    const bareTest = await bare;
    expect(bareTest.plaintext.attachments).toBeUndefined();
    expect(bareTest.plaintext.body).toBe('link test');

    const first = await signNow(server.url, d.devices.jpAud, d.agreement);
    expect(await jp.cosignLatest()).toMatchObject({ status: 'cosigned', size: first.size });
    await sendAndAck(jp, cn, '定時連絡');
    const second = await signNow(server.url, d.devices.jpAud, d.agreement);
    expect(second.size).toBeGreaterThan(first.size);
    expect(await cn.cosignLatest()).toMatchObject({ status: 'cosigned', size: second.size });
    // jp has not yet seen the second checkpoint.
    expect((await seen(jpState, d.devices.jpOp))[String(second.size)]).toBeUndefined();

    // jp → cn: the note jp verified (the log signature and jp's cosignature) rides along.
    const jpTest = next(cn, 'message', (m) => m.header.linkTest === true);
    const atCn = next(cn, 'checkpoint-gossip');
    await jp.sendLinkTests();
    const msg = await jpTest;
    expect(msg.plaintext.body).toBe('link test');
    expect(msg.plaintext.attachments).toHaveLength(1);
    const att = msg.plaintext.attachments![0]!;
    expect({ name: att.name, type: att.type }).toEqual(CHECKPOINT_ATTACHMENT);
    const note = fromUtf8(fromBase64(att.data));
    expect(parseCheckpoint(note).size).toBe(first.size);
    expect(note).toContain('— jp-mod/jp-op-1 ');
    expect(await atCn).toMatchObject({ from: { party: 'jp-mod', device: 'jp-op-1' }, size: first.size, known: true });

    // cn → jp: jp learns the second checkpoint from cn, with the root cn was shown.
    const atJp = next(jp, 'checkpoint-gossip');
    await cn.sendLinkTests();
    expect(await atJp).toMatchObject({ from: { party: 'cn-mnd', device: 'cn-op-1' }, size: second.size, known: false });
    const secondRoot = toBase64(parseCheckpoint(second.note).rootHash);
    expect((await seen(jpState, d.devices.jpOp))[String(second.size)]).toBe(secondRoot);
    expect((await seen(cnState, d.devices.cnOp))[String(first.size)]).toBe(toBase64(parseCheckpoint(first.note).rootHash));

    // The server's next answer is held to it, and it agrees.
    expect(await jp.cosignLatest()).toEqual({ status: 'cosigned', size: second.size, from: first.size });
    expect(jpAlarms).toEqual([]);
    expect(cnAlarms).toEqual([]);
  });

  it('split view: the server shows each party its own tree head of the same size; neither sees it alone, the link test’s gossip raises the alarm at the receiver', async () => {
    const jpState = new MemoryStorage();
    const cnState = new MemoryStorage();
    const jp = client(d.devices.jpOp, jpState);
    await jp.start();
    const real = await signNow(server.url, d.devices.jpAud, d.agreement);
    const forged = await forgedCheckpoint(real.size, randomBytes(32));
    const cn = client(d.devices.cnOp, cnState, splitViewFetch(real.size, forged));
    await cn.start();
    const jpAlarms = alarmsOf(jp);
    const cnAlarms = alarmsOf(cn);

    // From the server alone, each party's view is sound.
    expect(await jp.cosignLatest()).toMatchObject({ status: 'cosigned', size: real.size });
    expect(await cn.cosignLatest()).toMatchObject({ status: 'cosigned', size: real.size });
    expect(await jp.cosignLatest()).toMatchObject({ status: 'unchanged', size: real.size });
    expect(await cn.cosignLatest()).toMatchObject({ status: 'unchanged', size: real.size });
    expect(jpAlarms).toEqual([]);
    expect(cnAlarms).toEqual([]);

    // jp's test agent gossips: cn finds the other tree head.
    const atCn = next(cn, 'audit.alarm');
    await jp.sendLinkTests();
    const a = await atCn;
    expect(a).toMatchObject({ type: 'audit.alarm', party: 'cn-mnd', code: 'HL_ERR_AUDIT_EQUIVOCATION' });
    expect(a.reason).toContain(`the log server showed jp-mod a different tree head for size ${real.size} than it showed us: equivocation`);

    // And the other way round.
    const atJp = next(jp, 'audit.alarm');
    await cn.sendLinkTests();
    const b = await atJp;
    expect(b).toMatchObject({ party: 'jp-mod', code: 'HL_ERR_AUDIT_EQUIVOCATION' });
    expect(b.reason).toContain(`the log server showed cn-mnd a different tree head for size ${real.size} than it showed us`);
    expect(jpAlarms).toHaveLength(1);
    expect(cnAlarms).toHaveLength(1);

    // The conflicting root was not taken into memory; the alarm reached the party's other consoles through the server.
    expect((await seen(cnState, d.devices.cnOp))[String(real.size)]).toBe(toBase64(parseCheckpoint(forged).rootHash));
    const jpAuditor = client(d.devices.jpAud, new MemoryStorage());
    const relayed = next(jpAuditor, 'event', (e) => e.type === 'audit.alarm' && e.reason.includes('HL_ERR_AUDIT_EQUIVOCATION'));
    await jpAuditor.start();
    expect(await relayed).toMatchObject({ type: 'audit.alarm', party: 'jp-mod' });
  });

  it('a gossiped note that does not verify (bad signature, another log, not a note) raises an alarm and is not remembered', async () => {
    const cnState = new MemoryStorage();
    const jp = client(d.devices.jpOp, new MemoryStorage());
    const cn = client(d.devices.cnOp, cnState);
    await Promise.all([jp.start(), cn.start()]);
    const real = await signNow(server.url, d.devices.jpAud, d.agreement);
    const realRoot = toBase64(parseCheckpoint(real.note).rootHash);
    const otherRoot = toBase64(randomBytes(32));
    const tampered = real.note.replace(realRoot, otherRoot);
    expect(tampered).not.toBe(real.note);

    const gossip = async (data: string) => {
      const alarm = next(cn, 'audit.alarm');
      await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'link test', lang: 'en', linkTest: true, attachments: [{ ...CHECKPOINT_ATTACHMENT, data }] });
      return alarm;
    };
    const badSig = await gossip(toBase64(utf8(tampered)));
    expect(badSig).toMatchObject({ party: 'cn-mnd', code: 'HL_ERR_AUDIT_CHECKPOINT_SIGNATURE' });
    expect(badSig.reason).toContain('jp-mod/jp-op-1');

    const otherLog = await gossip(toBase64(utf8(await forgedCheckpoint(real.size + 5, randomBytes(32), 'elsewhere.example/log'))));
    expect(otherLog.code).toBe('HL_ERR_AUDIT_CHECKPOINT_MALFORMED');

    const notANote = await gossip(toBase64(utf8('hello\n')));
    expect(notANote.code).toBe('HL_ERR_AUDIT_CHECKPOINT_MALFORMED');

    const remembered = await seen(cnState, d.devices.cnOp);
    expect(Object.values(remembered)).not.toContain(otherRoot);
    expect(remembered[String(real.size + 5)]).toBeUndefined();
    // A sound checkpoint still goes through afterwards.
    const ok = next(cn, 'checkpoint-gossip');
    await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'link test', lang: 'en', linkTest: true, attachments: [{ ...CHECKPOINT_ATTACHMENT, data: toBase64(utf8(real.note)) }] });
    expect(await ok).toMatchObject({ size: real.size, root: realRoot, known: false });
  });
});
