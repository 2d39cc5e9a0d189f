import { describe, expect, it } from 'vitest';
import type { Socket } from 'node:net';
import { CN, JP } from '../helpers/deployment.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';
import { seal, type LinkClient } from '../helpers/ws-client.js';
import type { Envelope, Precedence } from '../../shared/protocol/schemas.js';
import { signReceipt } from '../../shared/crypto/receipt.js';

const ROUTINE_COUNT = 300;

async function sealMany(s: TestServer, from: number, count: number, precedence: Precedence, padding = ''): Promise<Envelope[]> {
  const dir = await s.directory();
  const sender = s.dep.devices[`${JP}/op1`]!;
  const out: Envelope[] = [];
  for (let i = 0; i < count; i++) out.push(await seal({ sender, to: CN, seq: from + i, precedence, directory: dir, plaintext: { body: `${precedence} ${from + i}${padding}`, lang: 'en' } }));
  return out;
}

async function sendAll(jp: LinkClient, envs: readonly Envelope[]): Promise<void> {
  for (const envelope of envs) jp.send({ t: 'envelope', envelope });
  for (const env of envs) await jp.waitForType('accepted', (f) => f.id === env.header.id);
}

describe('precedence first at the relay', () => {
  it('a FLASH queued after 300 ROUTINE for an offline device is the first delivered; every item arrives exactly once; acks are exact', async () => {
    const s = await startTestServer({ logLevel: 'warn' });
    const jp = await s.connect(`${JP}/op1`);
    const routine = await sealMany(s, 1, ROUTINE_COUNT, 'ROUTINE');
    const [flash] = await sealMany(s, ROUTINE_COUNT + 1, 1, 'FLASH');
    await sendAll(jp, routine);
    await sendAll(jp, [flash!]);

    const cn = await s.connect(`${CN}/op1`);
    await cn.waitFor(() => cn.ofType('deliver').length >= ROUTINE_COUNT + 1, 'the whole backlog', 30_000);
    const delivered = cn.ofType('deliver');
    expect(delivered[0]!.envelope.header.id).toBe(flash!.header.id);
    const ids = delivered.map((d) => d.envelope.header.id);
    expect(new Set(ids).size).toBe(ids.length);
    // Within ROUTINE, the sender's acceptance order.
    expect(delivered.slice(1).map((d) => d.envelope.header.seq)).toEqual(routine.map((e) => e.header.seq));

    // Acknowledge the FLASH alone: only it is gone on the next connection.
    cn.send({ t: 'ack', cursor: delivered[0]!.cursor });
    cn.send({ t: 'ack', cursors: delivered.slice(1, 11).map((d) => d.cursor) });
    const highest = Math.max(delivered[0]!.cursor, ...delivered.slice(1, 11).map((d) => d.cursor));
    // The acks ride the write queue's next commit: wait for it (bounded, by turns of the loop).
    for (let i = 0; i < 10_000 && (await s.store.ackedCursor(`${CN}/op1`)) !== highest; i++) await new Promise((r) => setImmediate(r));
    await cn.close();
    const again = await s.connect(`${CN}/op1`);
    expect(again.ofType('hello')[0]!.lastCursor).toBe(highest);
    await again.waitFor(() => again.ofType('deliver').length >= ROUTINE_COUNT - 10, 'the rest', 30_000);
    await again.sync();
    expect(again.ofType('deliver').map((d) => d.envelope.header.seq)).toEqual(routine.slice(10).map((e) => e.header.seq));
  });

  it('admission: a FLASH envelope overtakes the ROUTINE envelopes its connection has queued; each is accepted once, ROUTINE in order', async () => {
    const s = await startTestServer({ logLevel: 'warn' });
    const jp = await s.connect(`${JP}/op1`);
    const routine = await sealMany(s, 1, 200, 'ROUTINE');
    const [flash] = await sealMany(s, 201, 1, 'FLASH');
    // One burst: the relay has most ROUTINE still queued (each costs a signature check) when the
    // FLASH, sent last, is read.
    for (const envelope of [...routine, flash!]) jp.send({ t: 'envelope', envelope });
    await jp.waitFor(() => jp.ofType('accepted').length >= 201, 'every envelope accepted', 30_000);
    const order = jp.ofType('accepted').map((a) => a.id);
    expect(new Set(order).size).toBe(201);
    expect(order.indexOf(flash!.header.id)).toBeLessThan(200);
    expect(order.filter((id) => id !== flash!.header.id)).toEqual(routine.map((e) => e.header.id));
    expect(jp.ofType('error')).toEqual([]);
  });

  it('admission: the receipt of a FLASH the device was handed overtakes its queued ROUTINE receipts', async () => {
    const s = await startTestServer({ logLevel: 'warn' });
    const jp = await s.connect(`${JP}/op1`);
    const routine = await sealMany(s, 1, 200, 'ROUTINE');
    const [flash] = await sealMany(s, 201, 1, 'FLASH');
    await sendAll(jp, [...routine, flash!]);
    const cn = await s.connect(`${CN}/op1`);
    await cn.waitFor(() => cn.ofType('deliver').length >= 201, 'every envelope delivered', 30_000);
    const addressee = s.dep.devices[`${CN}/op1`]!;
    const receipts = [];
    for (const env of [...routine, flash!]) receipts.push(await signReceipt(addressee, env.header, 'delivered', Date.now()));
    // ROUTINE receipts first, the FLASH receipt last, in one burst.
    for (const receipt of receipts) cn.send({ t: 'receipt', receipt });
    await cn.waitFor(() => cn.ofType('receipt-accepted').length >= 201, 'every receipt accepted', 30_000);
    const order = cn.ofType('receipt-accepted').map((r) => r.messageId);
    expect(new Set(order).size).toBe(201);
    expect(order.indexOf(flash!.header.id)).toBeLessThan(200);
    expect(order.filter((id) => id !== flash!.header.id)).toEqual(routine.map((e) => e.header.id));
    expect(cn.ofType('error')).toEqual([]);
  });

  it('a FLASH arriving live while a ROUTINE backlog drains goes out before the rest of that backlog', async () => {
    const s = await startTestServer({ logLevel: 'warn', app: { slowConsumerBytes: 1024 * 1024 } });
    const jp = await s.connect(`${JP}/op1`);
    // 300 × 38 kB: far more than the loopback socket buffers hold, so the drain must wait for the reader.
    const routine = await sealMany(s, 1, ROUTINE_COUNT, 'ROUTINE', ' '.repeat(38_000));
    const [flash] = await sealMany(s, ROUTINE_COUNT + 1, 1, 'FLASH');
    await sendAll(jp, routine);

    // The recipient connects but reads nothing: the drain stops at the socket's high-water mark.
    const cn = await s.connect(`${CN}/op1`);
    const socket = (cn.ws as unknown as { _socket: Socket })._socket;
    socket.pause();
    await sendAll(jp, [flash!]);
    socket.resume();
    await cn.waitFor(() => cn.ofType('deliver').length >= ROUTINE_COUNT + 1, 'everything', 30_000);
    const seqs = cn.ofType('deliver').map((d) => d.envelope.header.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
    const at = seqs.indexOf(ROUTINE_COUNT + 1);
    // Some ROUTINE were already on their way when the FLASH came; the rest of the backlog followed it.
    expect(at).toBeLessThan(ROUTINE_COUNT);
    expect(seqs.filter((q) => q !== ROUTINE_COUNT + 1)).toEqual(routine.map((e) => e.header.seq));
  });

  it('accepts a device’s seqs out of order inside the replay window, each once (a FLASH sealed after ROUTINE may arrive first)', async () => {
    const s = await startTestServer({ logLevel: 'warn' });
    const jp = await s.connect(`${JP}/op1`);
    const [flash] = await sealMany(s, 5, 1, 'FLASH');
    const routine = await sealMany(s, 3, 2, 'ROUTINE');
    await sendAll(jp, [flash!, ...routine]);
    const [again] = await sealMany(s, 4, 1, 'ROUTINE');
    jp.send({ t: 'envelope', envelope: again });
    expect(await jp.waitForError('HL_ERR_ENVELOPE_REPLAY')).toMatchObject({ ref: again!.header.id });
    const hello = (await s.connect(`${JP}/op1`)).ofType('hello')[0]!;
    expect(hello.lastSeq).toBe(5);
  });

  it('while a FLASH is on its way through the relay, ROUTINE frames of other devices wait for its delivered receipt; nothing is lost', async () => {
    // A hold long enough that only the receipt ends it (FlashGate; the default is 25 ms).
    const s = await startTestServer({ logLevel: 'warn', app: { flashGate: { holdMs: 60_000, maxHeldMs: 120_000 } } });
    const jp1 = await s.connect(`${JP}/op1`);
    const jp2 = await s.connect(`${JP}/op2`);
    const cn = await s.connect(`${CN}/op1`);
    // One order of arrival across the three clients.
    const seen: string[] = [];
    for (const [who, c] of [['jp1', jp1], ['jp2', jp2], ['cn', cn]] as const) {
      c.ws.on('message', (data) => {
        const f = JSON.parse(String(data)) as { t: string; id?: string; messageId?: string; envelope?: Envelope };
        seen.push(`${who} ${f.t} ${f.id ?? f.messageId ?? f.envelope?.header.id ?? ''}`);
      });
    }
    const [f1] = await sealMany(s, 1, 1, 'FLASH');
    const dir = await s.directory();
    const op2 = s.dep.devices[`${JP}/op2`]!;
    const e = await seal({ sender: op2, to: CN, seq: 1, precedence: 'ROUTINE', directory: dir, plaintext: { body: 'routine', lang: 'en' } });
    const f2 = await seal({ sender: op2, to: CN, seq: 2, precedence: 'FLASH', directory: dir, plaintext: { body: 'flash 2', lang: 'en' } });

    jp1.send({ t: 'envelope', envelope: f1! });
    await cn.waitForType('deliver', (d) => d.envelope.header.id === f1!.header.id);
    // The FLASH is delivered, its receipt not in: op2's ROUTINE envelope waits. Its FLASH, sent
    // behind it on the same socket, does not (and proves the ROUTINE one has been read).
    jp2.send({ t: 'envelope', envelope: e });
    jp2.send({ t: 'envelope', envelope: f2 });
    await jp2.waitForType('accepted', (a) => a.id === f2.header.id);
    await cn.waitForType('deliver', (d) => d.envelope.header.id === f2.header.id);
    expect(jp2.ofType('accepted').map((a) => a.id)).toEqual([f2.header.id]);

    const addressee = s.dep.devices[`${CN}/op1`]!;
    for (const f of [f1!, f2]) cn.send({ t: 'receipt', receipt: await signReceipt(addressee, f.header, 'delivered', s.now()) });
    await jp2.waitForType('accepted', (a) => a.id === e.header.id);
    await cn.waitForType('deliver', (d) => d.envelope.header.id === e.header.id);
    // The ROUTINE envelope was accepted only after both FLASH receipts were.
    const at = (line: string) => seen.indexOf(line);
    expect(at(`jp2 accepted ${e.header.id}`)).toBeGreaterThan(at(`cn receipt-accepted ${f1!.header.id}`));
    expect(at(`jp2 accepted ${e.header.id}`)).toBeGreaterThan(at(`cn receipt-accepted ${f2.header.id}`));
    expect(at(`cn receipt-accepted ${f1!.header.id}`)).toBeGreaterThanOrEqual(0);
    // Each accepted once, delivered once, and no error anywhere.
    expect(jp2.ofType('accepted').map((a) => a.id).sort()).toEqual([e.header.id, f2.header.id].sort());
    expect(cn.ofType('deliver').map((d) => d.envelope.header.id).sort()).toEqual([f1!.header.id, e.header.id, f2.header.id].sort());
    expect([...jp1.ofType('error'), ...jp2.ofType('error'), ...cn.ofType('error')]).toEqual([]);
  });

  it('a FLASH whose receipt never comes holds the ROUTINE frames no longer than its hold', async () => {
    const s = await startTestServer({ logLevel: 'warn', app: { flashGate: { holdMs: 50 } } });
    const jp1 = await s.connect(`${JP}/op1`);
    const jp2 = await s.connect(`${JP}/op2`);
    // The addressee is offline: the FLASH is stored, nobody answers it.
    const [f1] = await sealMany(s, 1, 1, 'FLASH');
    await sendAll(jp1, [f1!]);
    const e = await seal({ sender: s.dep.devices[`${JP}/op2`]!, to: CN, seq: 1, precedence: 'ROUTINE', directory: await s.directory(), plaintext: { body: 'routine', lang: 'en' } });
    await sendAll(jp2, [e]);
    expect(jp2.ofType('accepted').map((a) => a.id)).toEqual([e.header.id]);
  });
});
