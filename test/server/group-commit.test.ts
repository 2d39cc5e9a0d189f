import { describe, expect, it, vi } from 'vitest';
import { leafHash } from '../../shared/audit/merkle.js';
import { toHex, utf8 } from '../../shared/encoding/base64.js';
import { CN, JP } from '../helpers/deployment.js';
import { startTestServer } from '../helpers/test-server.js';
import { seal } from '../helpers/ws-client.js';

describe('group commit', () => {
  it('accepts and stores N envelopes sent at once from two devices, in order, with contiguous audit entries', async () => {
    const N = 25;
    const s = await startTestServer();
    const dir = await s.directory();
    const senders = [`${JP}/op1`, `${JP}/op2`];
    const links = await Promise.all(senders.map((k) => s.connect(k)));
    const cn = await s.connect(`${CN}/op1`);
    const batches = await Promise.all(
      senders.map((k) =>
        Promise.all(Array.from({ length: N }, (_, i) => seal({ sender: s.dep.devices[k]!, to: CN, seq: i + 1, directory: dir, plaintext: { body: `${k} #${i + 1}`, lang: 'en' } }))),
      ),
    );
    const sizeBefore = await s.store.auditSize();
    // Everything leaves both sockets before any answer can come back.
    batches.forEach((envs, i) => envs.forEach((envelope) => links[i]!.send({ t: 'envelope', envelope })));

    for (const [i, envs] of batches.entries()) {
      for (const env of envs) await links[i]!.waitForType('accepted', (f) => f.id === env.header.id);
      expect(links[i]!.ofType('error')).toEqual([]);
    }
    for (const env of batches.flat()) expect((await s.store.getEnvelope(env.header.id))?.envelope).toEqual(env);

    const size = await s.store.auditSize();
    const entries = await s.store.auditEntries(0, size);
    expect(entries.map((e) => e.idx)).toEqual(Array.from({ length: size }, (_, i) => i));
    for (const e of entries) expect(toHex(e.leafHash)).toBe(toHex(leafHash(utf8(e.entry))));
    const accepted = entries.slice(sizeBefore).map((e) => JSON.parse(e.entry) as { type: string; header: { from: { device: string }; seq: number } });
    expect(accepted.filter((e) => e.type === 'envelope.accepted')).toHaveLength(2 * N);

    // The recipient sees each sender's messages in its seq order.
    await cn.waitFor(() => cn.ofType('deliver').length === 2 * N, 'all deliveries');
    for (const k of senders) {
      const seqs = cn.ofType('deliver').filter((d) => `${d.envelope.header.from.party}/${d.envelope.header.from.device}` === k).map((d) => d.envelope.header.seq);
      expect(seqs).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    }
  });

  it('commits a burst of mailbox acks in shared transactions, not one fsync each', async () => {
    const N = 40;
    const s = await startTestServer();
    const dir = await s.directory();
    const jp = await s.connect(`${JP}/op1`);
    const cn = await s.connect(`${CN}/op1`);
    for (let i = 0; i < N; i++) {
      jp.send({ t: 'envelope', envelope: await seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq: i + 1, directory: dir, plaintext: { body: `#${i}`, lang: 'en' } }) });
    }
    await cn.waitFor(() => cn.ofType('deliver').length === N, 'all deliveries');
    const commit = vi.spyOn(s.store, 'commit');
    const cursors = cn.ofType('deliver').map((d) => d.cursor);
    for (const cursor of cursors) cn.send({ t: 'ack', cursor });
    // Writes commit in arrival order: once a later envelope is accepted, every ack before it is on
    // disk. A ROUTINE one: a FLASH may commit beside the batch in progress, ahead of acks still
    // gathering (WriteQueue, PROTOCOL.md "Delivery order").
    const probe = await seal({ sender: s.dep.devices[`${CN}/op1`]!, to: JP, seq: 1, precedence: 'ROUTINE', directory: dir, plaintext: { body: 'probe', lang: 'en' } });
    cn.send({ t: 'envelope', envelope: probe });
    await cn.waitForType('accepted', (f) => f.id === probe.header.id);
    expect(await s.store.ackedCursor(`${CN}/op1`)).toBe(Math.max(...cursors));
    const ackWrites = commit.mock.calls.flatMap(([writes]) => writes.filter((w) => w.kind === 'ack'));
    expect(ackWrites).toHaveLength(N);
    expect(commit.mock.calls.length).toBeLessThan(N);
  });
});
