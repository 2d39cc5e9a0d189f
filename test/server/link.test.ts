import { describe, expect, it } from 'vitest';
import { openEnvelope, envelopeHash } from '../../shared/crypto/envelope.js';
import { signReceipt } from '../../shared/crypto/receipt.js';
import { CN, JP } from '../helpers/deployment.js';
import { startTestServer } from '../helpers/test-server.js';
import { seal } from '../helpers/ws-client.js';

describe('the link', () => {
  it('sends, delivers, and brings delivered and acknowledged receipts back; Japanese and Chinese text intact', async () => {
    const s = await startTestServer();
    const jp = await s.connect(`${JP}/op1`);
    const jp2 = await s.connect(`${JP}/op2`);
    const cn = await s.connect(`${CN}/op1`);
    const cnArchive = await s.connect(`${CN}/archive1`);
    const dir = await s.directory();
    const sender = s.dep.devices[`${JP}/op1`]!;
    const recipient = s.dep.devices[`${CN}/op1`]!;
    const plaintext = { subject: '緊急連絡', body: '本日一二時、演習を中止する。请确认收到：中华人民共和国国防部。🇯🇵🇨🇳', lang: 'ja' };
    const env = await seal({ sender, to: CN, seq: 1, directory: dir, plaintext });

    jp.send({ t: 'envelope', envelope: env });
    const accepted = await jp.waitForType('accepted');
    expect(accepted).toMatchObject({ id: env.header.id, envelopeHash: envelopeHash(env.header) });
    expect(accepted.at).toBeTypeOf('number');

    const deliver = await cn.waitForType('deliver');
    expect(deliver.envelope).toEqual(env);
    const opened = await openEnvelope(deliver.envelope, { device: recipient, senderCert: sender.certificate.cert });
    expect(opened.plaintext).toEqual(plaintext);
    // Archive copy and the sender's colleague get it too (they are among the wrapped recipients).
    expect((await cnArchive.waitForType('deliver')).envelope.header.id).toBe(env.header.id);
    expect((await jp2.waitForType('deliver')).envelope.header.id).toBe(env.header.id);
    cn.send({ t: 'ack', cursor: deliver.cursor });

    for (const kind of ['delivered', 'acknowledged'] as const) {
      const receipt = await signReceipt(recipient, env.header, kind, Date.now());
      cn.send({ t: 'receipt', receipt });
      expect(await cn.waitForType('receipt-accepted', (f) => f.kind === kind)).toMatchObject({ messageId: env.header.id, kind });
      const back = await jp.waitForType('receipt', (f) => f.receipt.receipt.kind === kind);
      expect(back.receipt).toEqual(receipt);
      // The colleague on the same watch sees it too.
      expect((await jp2.waitForType('receipt', (f) => f.receipt.receipt.kind === kind)).receipt).toEqual(receipt);
    }
    // Nothing was relayed to the archive but the envelope itself.
    await cnArchive.sync();
    expect(cnArchive.ofType('receipt')).toHaveLength(0);
  });
});
