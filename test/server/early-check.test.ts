import type { Socket } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import type { Ed25519Verifier } from '../../shared/crypto/ed25519.js';
import { verifyCheckedEnvelope } from '../../shared/crypto/envelope.js';
import { signReceipt, verifyCheckedReceipt } from '../../shared/crypto/receipt.js';
import { fromBase64, toBase64, utf8 } from '../../shared/encoding/base64.js';
import type { DeviceCertBody, Envelope } from '../../shared/protocol/schemas.js';
import { startEarlyCheck, withEarlyCheck, type DirectoryView } from '../../server/relay/admit.js';
import { nodeCrypto } from '../../server/node-crypto.js';
import { CN, JP } from '../helpers/deployment.js';
import { startTestServer } from '../helpers/test-server.js';
import { seal, type LinkClient } from '../helpers/ws-client.js';

/** A verifier that records what it is asked and answers as node:crypto. */
function recording(): { verify: Ed25519Verifier; asked: Parameters<Ed25519Verifier>[] } {
  const asked: Parameters<Ed25519Verifier>[] = [];
  const verify: Ed25519Verifier = vi.fn(async (k, m, s) => {
    asked.push([k, m, s]);
    return nodeCrypto.ed25519Verify(k, m, s);
  });
  return { verify, asked };
}

/** A directory that knows one certificate: all startEarlyCheck asks of it. */
const oneCert = (cert: DeviceCertBody) => ({ current: () => cert }) as unknown as DirectoryView;

/** Frames sent in one socket write, so that the relay reads them together (queued behind the first). */
function sendTogether(link: LinkClient, frames: readonly unknown[]): void {
  const socket = (link.ws as unknown as { _socket: Socket })._socket;
  socket.cork();
  for (const f of frames) link.send(f);
  socket.uncork();
}

describe('signature checks started before a frame\'s turn (EarlyCheck)', () => {
  it('asks about the very key, bytes and signature the admission\'s own check asks about, for an envelope and a receipt', async () => {
    const s = await startTestServer();
    const dir = await s.directory();
    const sender = s.dep.devices[`${JP}/op1`]!;
    const signer = s.dep.devices[`${CN}/op1`]!;
    const env = await seal({ sender, to: CN, seq: 1, precedence: 'ROUTINE', directory: dir, plaintext: { body: 'early check', lang: 'en' } });
    const receipt = await signReceipt(signer, env.header, 'delivered', s.now());

    const cases = [
      { frame: { t: 'envelope' as const, envelope: env }, cert: sender.certificate.cert, own: (v: Ed25519Verifier) => verifyCheckedEnvelope(env, sender.certificate.cert, v) },
      { frame: { t: 'receipt' as const, receipt }, cert: signer.certificate.cert, own: (v: Ed25519Verifier) => verifyCheckedReceipt(receipt, signer.certificate.cert, undefined, v) },
    ];
    for (const c of cases) {
      const early = recording();
      const check = startEarlyCheck(c.frame, { directory: oneCert(c.cert), now: s.now(), sender: { party: c.cert.party, device: c.cert.device, signKey: c.cert.signKey } }, early.verify);
      expect(check).toBeDefined();
      expect(await check!.result).toBe(true);
      const own = recording();
      await c.own(own.verify);
      expect(early.asked).toEqual(own.asked);
      // Through the wrapper, the admission's check is answered by the early one: no second check.
      const later = recording();
      await c.own(withEarlyCheck(check, later.verify));
      expect(later.asked).toEqual([]);
    }
  });

  it('never lends its answer to other bytes: a check about another message, key or signature is made afresh', async () => {
    const key = fromBase64('11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=', 32);
    const message = utf8('signed');
    const signature = new Uint8Array(64).fill(7);
    // An early answer of true (as if these bytes had passed), asked about with one part changed.
    const check = { publicKey: key, message, signature, result: Promise.resolve(true) };
    const fallback = vi.fn<Ed25519Verifier>(async () => false);
    const wrapped = withEarlyCheck(check, fallback);
    const other = (b: Uint8Array) => ((c) => (c[0]! ^= 1, c))(b.slice());
    expect(await wrapped(key, other(message), signature)).toBe(false);
    expect(await wrapped(other(key), message, signature)).toBe(false);
    expect(await wrapped(key, message, other(signature))).toBe(false);
    expect(await wrapped(key, utf8('signed, longer'), signature)).toBe(false);
    expect(fallback).toHaveBeenCalledTimes(4);
    expect(await wrapped(key, message.slice(), signature.slice())).toBe(true);
    expect(fallback).toHaveBeenCalledTimes(4);
    expect(withEarlyCheck(undefined, fallback)).toBe(fallback);
  });

  it('through the link: frames read together behind the first are checked in the signature thread, the forged one among them refused with its own code', async () => {
    const s = await startTestServer();
    const dir = await s.directory();
    const jp = await s.connect(`${JP}/op1`);
    const cn = await s.connect(`${CN}/op1`);
    const sender = s.dep.devices[`${JP}/op1`]!;
    const N = 12;
    const envs = await Promise.all(
      Array.from({ length: N }, (_, i) => seal({ sender, to: CN, seq: i + 1, precedence: 'ROUTINE', directory: dir, plaintext: { body: `burst #${i + 1}`, lang: 'en' } })),
    );
    const forged: Envelope = { ...envs[7]!, signature: toBase64(((b) => (b[0]! ^= 1, b))(fromBase64(envs[7]!.signature, 64))) };
    envs[7] = forged;
    sendTogether(jp, envs.map((envelope) => ({ t: 'envelope', envelope })));
    for (const env of envs) {
      if (env === forged) continue;
      await jp.waitForType('accepted', (f) => f.id === env.header.id);
      await cn.waitForType('deliver', (f) => f.envelope.header.id === env.header.id);
    }
    expect((await jp.waitForType('error', (f) => f.ref === forged.header.id)).code).toBe('HL_ERR_ENVELOPE_BAD_SIGNATURE');
    expect(jp.ofType('error')).toHaveLength(1);
    expect(await s.store.getEnvelope(forged.header.id)).toBeUndefined();

    // The addressee's receipts, together too.
    const signer = s.dep.devices[`${CN}/op1`]!;
    const accepted = envs.filter((e) => e !== forged);
    sendTogether(cn, await Promise.all(accepted.map(async (e) => ({ t: 'receipt', receipt: await signReceipt(signer, e.header, 'delivered', s.now()) }))));
    for (const e of accepted) await cn.waitForType('receipt-accepted', (f) => f.messageId === e.header.id);
    expect(cn.ofType('error')).toEqual([]);

    // One connection, no other waiting: without early checks every one is made on the event loop
    // at its turn. Here the frames behind the first went to the thread (batches of two or more).
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    const count = (thread: string) => Number(new RegExp(`hotline_signature_checks_total\\{thread="${thread}"\\} (\\d+)`).exec(metrics)?.[1]);
    expect(count('worker') + count('event_loop')).toBe(N + accepted.length);
    expect(count('worker')).toBeGreaterThanOrEqual(N);
  });

  it('none while a FLASH is on its way through the relay: the frames read behind it wait, and are checked at their turn', async () => {
    // The gate held until the addressee's receipt, however long the test takes.
    const s = await startTestServer({ app: { flashGate: { holdMs: 600_000, maxHeldMs: 600_000 } } });
    const dir = await s.directory();
    const jp = await s.connect(`${JP}/op1`);
    const cn = await s.connect(`${CN}/op1`);
    const sender = s.dep.devices[`${JP}/op1`]!;
    const seal1 = (seq: number, precedence: 'FLASH' | 'ROUTINE') => seal({ sender, to: CN, seq, precedence, directory: dir, plaintext: { body: `${precedence} ${seq}`, lang: 'en' } });
    const flash = await seal1(1, 'FLASH');
    const routine = await Promise.all(Array.from({ length: 8 }, (_, i) => seal1(i + 2, 'ROUTINE')));
    // In one socket read: the FLASH holds the gate as it is decoded, before the frames behind it are.
    sendTogether(jp, [flash, ...routine].map((envelope) => ({ t: 'envelope', envelope })));
    await cn.waitForType('deliver', (f) => f.envelope.header.id === flash.header.id);
    cn.send({ t: 'receipt', receipt: await signReceipt(s.dep.devices[`${CN}/op1`]!, flash.header, 'delivered', s.now()) });
    for (const env of routine) await jp.waitForType('accepted', (f) => f.id === env.header.id);
    expect(jp.ofType('error')).toEqual([]);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    const count = (thread: string) => Number(new RegExp(`hotline_signature_checks_total\\{thread="${thread}"\\} (\\d+)`).exec(metrics)?.[1]);
    expect(count('event_loop')).toBe(1 + routine.length + 1);
    expect(count('worker')).toBe(0);
  });
});
