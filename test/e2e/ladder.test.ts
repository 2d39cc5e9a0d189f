import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { buildAuditReport } from '../../shared/audit/report.js';
import { verifyAuditExport } from '../../shared/audit/log-verify.js';
import { CONTEXT, signingBytes } from '../../shared/crypto/keys.js';
import { ed25519Sign } from '../../shared/crypto/ed25519.js';
import { fromBase64, toBase64 } from '../../shared/encoding/base64.js';
import type { HotlineEvent } from '../../shared/protocol/frames.js';
import type { HotlineError } from '../../shared/errors.js';
import { cliRun, cli } from '../helpers/cli.js';
import { fetchExport } from '../helpers/audit.js';
import { amendAgreement, CN, JP, createDeployment, tempDir, writeAgreement, type Deployment } from '../helpers/deployment.js';
import { next } from '../helpers/events.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { onCleanup, startTestServer, type TestServer } from '../helpers/test-server.js';

const MIN = 60_000;
/** Heartbeats run on the server's manual clock: keep them out of the way of hour-long jumps. */
const QUIET = { heartbeatIntervalMs: 365 * 24 * 60 * MIN };
const FLASH = { deliveredMs: 30_000, acknowledgedMs: 10 * MIN, answeredMs: 30 * MIN, compliedMs: 120 * MIN };

/** The test deployment with FLASH deadlines for every rung of the ladder. */
async function ladderDeployment(now: number): Promise<Deployment> {
  const dep = await createDeployment(now);
  dep.agreement = await amendAgreement(dep, { deadlines: { ...dep.agreement.deadlines, FLASH } });
  return dep;
}

function client(s: TestServer, key: string): HotlineClient {
  const c = new HotlineClient({ serverUrl: s.url, agreement: s.dep.agreement, device: s.dep.devices[key]!, storage: new MemoryStorage(), WebSocket });
  onCleanup(() => c.stop());
  return c;
}

function deadlineEvent(c: HotlineClient, type: HotlineEvent['type'], rung: string): Promise<HotlineEvent> {
  return next(c, 'event', (e) => e.type === type && 'rung' in e && e.rung === rung);
}

/** A server on a manual clock (starting now, so that devices on the real clock seal within its window), jp and cn operators connected. */
async function setup() {
  const clock = new ManualClock(Date.now());
  const s = await startTestServer({ clock, dep: await ladderDeployment(clock.now()), app: QUIET });
  const jp = client(s, `${JP}/op1`);
  const cn = client(s, `${CN}/op1`);
  await Promise.all([jp.start(), cn.start()]);
  return { s, clock, jp, cn };
}

async function sendFlash(jp: HotlineClient, cn: HotlineClient): Promise<{ id: string; acceptedAt: number }> {
  const got = next(cn, 'message');
  const accepted = next(jp, 'accepted');
  const { id } = await jp.send({ to: CN, precedence: 'FLASH', body: '至急：演習区域を変更してください' });
  const { at: acceptedAt } = await accepted;
  expect((await got).header.id).toBe(id);
  await next(jp, 'receipt', (r) => r.receipt.receipt.messageId === id && r.receipt.receipt.kind === 'delivered');
  return { id, acceptedAt };
}

async function answer(cn: HotlineClient, id: string, kind: 'acknowledged' | 'will-comply' | 'cannot-comply' | 'have-complied', reason?: 'not-feasible'): Promise<void> {
  const stored = next(cn, 'receipt-accepted', (r) => r.messageId === id && r.kind === kind);
  await cn.acknowledge(id, kind, reason === undefined ? {} : { reason });
  await stored;
}

describe('the response ladder, end to end', () => {
  it('will-comply and have-complied: each rung has its own deadline, missed and met late, seen verified by the sender and counted in the report', async () => {
    const { s, clock, jp, cn } = await setup();
    const { id, acceptedAt } = await sendFlash(jp, cn);
    await answer(cn, id, 'acknowledged');

    // The answer is due 30 min after acceptance: missed at the sender's side.
    const answeredMissed = deadlineEvent(jp, 'deadline.missed', 'answered');
    clock.advance(FLASH.answeredMs);
    expect(await answeredMissed).toMatchObject({ messageId: id, rung: 'answered', level: 1, from: JP, to: CN });

    const willComply = next(jp, 'receipt', (r) => r.receipt.receipt.kind === 'will-comply');
    const answeredMet = deadlineEvent(jp, 'deadline.met', 'answered');
    clock.advance(MIN);
    await answer(cn, id, 'will-comply');
    expect(await willComply).toMatchObject({ verified: true, receipt: { receipt: { messageId: id, by: { party: CN } } } });
    expect(await answeredMet).toMatchObject({ messageId: id, late: true, lateMs: MIN });

    // Compliance is due at 2 h: nothing before, missed at the time, met late by have-complied.
    const compliedMissed = deadlineEvent(jp, 'deadline.missed', 'complied');
    clock.advance(FLASH.compliedMs - FLASH.answeredMs - MIN);
    expect(await compliedMissed).toMatchObject({ messageId: id, rung: 'complied', level: 1, dueAt: acceptedAt + FLASH.compliedMs });
    const compliedMet = deadlineEvent(jp, 'deadline.met', 'complied');
    clock.advance(2 * MIN);
    await answer(cn, id, 'have-complied');
    expect(await compliedMet).toMatchObject({ messageId: id, late: true, lateMs: 2 * MIN });

    // The export, with its answered and complied deadline events, verifies as a whole.
    const exported = await fetchExport(s.url, s.dep.devices[`${JP}/audit1`]!, s.dep.agreement);
    expect((await verifyAuditExport(s.dep.agreement, exported)).ok).toBe(true);
    const report = buildAuditReport(exported.entries);
    expect(report.rows.find((r) => r.precedence === 'FLASH')).toMatchObject({
      sent: 1, delivered: 1, acknowledged: 1, answered: 1, willComply: 1, cannotComply: 0, complied: 1, deadlinesMissed: 2,
      toAnswered: { count: 1, worstMs: FLASH.answeredMs + MIN }, toComplied: { count: 1, worstMs: FLASH.compliedMs + 2 * MIN },
    });
  });

  it('cannot-comply: refused without a reason (HL_ERR_RECEIPT_REASON_REQUIRED, by the client and by the relay); with one it answers in time and closes the complied deadline', async () => {
    const { s, clock, jp, cn } = await setup();
    const { id } = await sendFlash(jp, cn);

    await expect(cn.acknowledge(id, 'cannot-comply')).rejects.toMatchObject({ code: 'HL_ERR_RECEIPT_REASON_REQUIRED' } satisfies Partial<HotlineError>);
    await expect(cn.acknowledge(id, 'will-comply', { reason: 'declined' })).rejects.toMatchObject({ code: 'HL_ERR_RECEIPT_REASON_UNEXPECTED' });
    // A device that signs one anyway, past the client library: the relay refuses it.
    const link = await s.connect(`${CN}/op1`);
    const dev = s.dep.devices[`${CN}/op1`]!;
    const message = (await s.store.getMessage(id))!;
    const body = { v: 1 as const, messageId: id, envelopeHash: message.envelopeHash, kind: 'cannot-comply' as const, by: { party: CN, device: 'op1' }, at: Date.now() };
    const signature = toBase64(await ed25519Sign(fromBase64(dev.signSecret, 32), signingBytes(CONTEXT.receipt, body)));
    link.send({ t: 'receipt', receipt: { receipt: body, signature } });
    expect(await link.waitForError('HL_ERR_RECEIPT_REASON_REQUIRED')).toMatchObject({ code: 'HL_ERR_RECEIPT_REASON_REQUIRED' });

    const closed = deadlineEvent(jp, 'deadline.closed', 'complied');
    const no = next(jp, 'receipt', (r) => r.receipt.receipt.kind === 'cannot-comply');
    clock.advance(5_000);
    await answer(cn, id, 'cannot-comply', 'not-feasible');
    expect(await no).toMatchObject({ verified: true, receipt: { receipt: { reason: 'not-feasible' } } });
    expect(await closed).toMatchObject({ messageId: id, reason: 'cannot-comply' });
    // Nothing is left to miss: the acknowledged, answered and complied rungs are all closed.
    clock.advance(FLASH.compliedMs);
    const events: HotlineEvent[] = [];
    jp.on('event', (e) => events.push(e));
    await answer(cn, id, 'acknowledged'); // a round trip after the jump: any missed event came before
    expect(events.filter((e) => e.type === 'deadline.missed')).toEqual([]);

    const exported = await fetchExport(s.url, s.dep.devices[`${JP}/audit1`]!, s.dep.agreement);
    expect((await verifyAuditExport(s.dep.agreement, exported)).ok).toBe(true);
    const report = buildAuditReport(exported.entries);
    expect(report.rows.find((r) => r.precedence === 'FLASH')).toMatchObject({ sent: 1, acknowledged: 1, answered: 1, willComply: 0, cannotComply: 1, complied: 0, deadlinesMissed: 0 });
  });
});

describe('hotline send --wait have-complied', () => {
  async function cliSetup() {
    const s = await startTestServer();
    const dir = tempDir();
    onCleanup(() => dir.remove());
    const agreement = writeAgreement(dir.path, s.dep.agreement);
    const device = join(dir.path, 'jp-op1.secret.json');
    writeFileSync(device, JSON.stringify(s.dep.devices[`${JP}/op1`]), { mode: 0o600 });
    const flags = ['--device', device, '--agreement', agreement, '--server', s.url];
    expect((await cli(['peers', 'confirm', ...flags])).code).toBe(0);
    const cn = client(s, `${CN}/op1`);
    await cn.start();
    return { s, cn, flags };
  }

  it('waits past will-comply and returns when have-complied arrives', async () => {
    const { cn, flags } = await cliSetup();
    const got = next(cn, 'message');
    const run = cliRun(['send', ...flags, '--to', CN, '--precedence', 'flash', '--wait', 'have-complied', '--timeout', '120', '请立即联系']);
    let done = false;
    void run.exited.then(() => (done = true));
    const id = (await got).header.id;
    await answer(cn, id, 'will-comply');
    await run.line(/^will-comply by cn-mnd\/op1 .*signature verified/);
    expect(done).toBe(false);
    await answer(cn, id, 'have-complied');
    expect(await run.exited).toBe(0);
    expect(run.text()).toMatch(/have-complied by cn-mnd\/op1 .*signature verified/);
  });

  it('a cannot-comply ends the wait: exit 1, HL_ERR_CLIENT_CANNOT_COMPLY with the reason', async () => {
    const { cn, flags } = await cliSetup();
    const got = next(cn, 'message');
    const run = cliRun(['send', ...flags, '--to', CN, '--precedence', 'immediate', '--wait', 'have-complied', '--timeout', '120', '请立即联系']);
    const id = (await got).header.id;
    await answer(cn, id, 'cannot-comply', 'not-feasible');
    expect(await run.exited).toBe(1);
    expect(run.text()).toMatch(/answered cannot-comply \(not-feasible\).*HL_ERR_CLIENT_CANNOT_COMPLY/);
  });
});
