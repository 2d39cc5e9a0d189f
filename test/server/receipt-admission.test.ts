import { describe, expect, it, vi } from 'vitest';
import { signReceipt } from '../../shared/crypto/receipt.js';
import { CN, JP, tempDir } from '../helpers/deployment.js';
import { onCleanup, startTestServer } from '../helpers/test-server.js';
import { seal } from '../helpers/ws-client.js';

describe('receipts admitted against the messages a relay accepted lately', () => {
  it('a receipt for a message just accepted is admitted without reading the message back; a wrong hash is still refused; after a restart the store answers', async () => {
    const dataDir = tempDir();
    onCleanup(() => dataDir.remove());
    const a = await startTestServer({ dataDir: dataDir.path });
    const dir = await a.directory();
    const jp = await a.connect(`${JP}/op1`);
    const cn = await a.connect(`${CN}/op1`);
    const sender = a.dep.devices[`${JP}/op1`]!;
    const addressee = a.dep.devices[`${CN}/op1`]!;
    const envs = [];
    for (const seq of [1, 2]) {
      const env = await seal({ sender, to: CN, seq, precedence: 'ROUTINE', directory: dir, plaintext: { body: `receipt admission ${seq}`, lang: 'en' } });
      jp.send({ t: 'envelope', envelope: env });
      await cn.waitForType('deliver', (f) => f.envelope.header.id === env.header.id);
      envs.push(env);
    }
    const [first, second] = envs as [(typeof envs)[0], (typeof envs)[0]];

    const reads = vi.spyOn(a.store, 'getMessage');
    cn.send({ t: 'receipt', receipt: await signReceipt(addressee, first.header, 'delivered', a.now()) });
    await cn.waitForType('receipt-accepted', (f) => f.messageId === first.header.id);
    await jp.waitForType('receipt', (f) => f.receipt.receipt.messageId === first.header.id);
    // Bound to a header the relay never accepted under that id: its hash is not the stored one.
    cn.send({ t: 'receipt', receipt: await signReceipt(addressee, { ...second.header, sentAt: second.header.sentAt + 1 }, 'delivered', a.now()) });
    expect((await cn.waitForType('error', (f) => f.ref === second.header.id)).code).toBe('HL_ERR_RECEIPT_HASH_MISMATCH');
    expect(reads).not.toHaveBeenCalled();
    await a.close();

    // A new process knows nothing of the messages accepted before: the store is read.
    const b = await startTestServer({ dep: a.dep, dataDir: dataDir.path, enrolAll: false });
    const cn2 = await b.connect(`${CN}/op1`);
    const readsAfter = vi.spyOn(b.store, 'getMessage');
    cn2.send({ t: 'receipt', receipt: await signReceipt(addressee, second.header, 'delivered', b.now()) });
    await cn2.waitForType('receipt-accepted', (f) => f.messageId === second.header.id);
    expect(readsAfter).toHaveBeenCalledWith(second.header.id);
  });
});
