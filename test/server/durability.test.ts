import { describe, expect, it } from 'vitest';
import { openEnvelope } from '../../shared/crypto/envelope.js';
import { CN, createDeployment, JP, tempDir, writeAgreement } from '../helpers/deployment.js';
import { spawnServer } from '../helpers/spawn-server.js';
import { onCleanup, startTestServer } from '../helpers/test-server.js';
import { enrol, fetchDirectory, LinkClient, login, seal } from '../helpers/ws-client.js';

describe('store and forward', () => {
  it('keeps a message for an offline recipient and delivers it once when it connects', async () => {
    const s = await startTestServer();
    const jp = await s.connect(`${JP}/op1`);
    const env = await seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq: 1, directory: await s.directory(), plaintext: { body: '离线时发送的消息', lang: 'zh' } });
    jp.send({ t: 'envelope', envelope: env });
    await jp.waitForType('accepted');

    const cn = await s.connect(`${CN}/op1`);
    const d = await cn.waitForType('deliver');
    const opened = await openEnvelope(d.envelope, { device: s.dep.devices[`${CN}/op1`]!, senderCert: s.dep.devices[`${JP}/op1`]!.certificate.cert });
    expect(opened.plaintext.body).toBe('离线时发送的消息');
    await cn.sync();
    expect(cn.ofType('deliver')).toHaveLength(1);

    // Not acknowledged: it comes again on the next connection; acknowledged: never again.
    await cn.close();
    const again = await s.connect(`${CN}/op1`);
    const d2 = await again.waitForType('deliver');
    expect(d2.cursor).toBe(d.cursor);
    again.send({ t: 'ack', cursor: d2.cursor });
    await again.sync();
    await again.close();
    const third = await s.connect(`${CN}/op1`);
    expect(third.ofType('hello')[0]!.lastCursor).toBe(d.cursor);
    await third.sync();
    expect(third.ofType('deliver')).toHaveLength(0);
  });

  it('delivers, once, a message accepted just before the server was killed with SIGKILL', async () => {
    const dep = await createDeployment();
    const dir = tempDir();
    onCleanup(() => dir.remove());
    const agreementPath = writeAgreement(dir.path, dep.agreement);
    const dataDir = `${dir.path}/data`;

    const first = await spawnServer({ agreementPath, dataDir });
    onCleanup(() => {
      first.child.kill('SIGKILL');
    });
    for (const d of Object.values(dep.devices)) await enrol(first.url, d.certificate);
    const sender = dep.devices[`${JP}/op1`]!;
    const token = await login(first.url, sender, dep.agreement);
    const jp = await LinkClient.open(first.url, token);
    await jp.waitForType('hello');
    const env = await seal({ sender, to: CN, seq: 1, directory: await fetchDirectory(first.url, token), plaintext: { body: '強制終了の直前に送信', lang: 'ja' } });
    jp.send({ t: 'envelope', envelope: env });
    await jp.waitForType('accepted');
    first.child.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    await jp.closed;

    const second = await spawnServer({ agreementPath, dataDir });
    onCleanup(async () => {
      second.child.kill('SIGTERM');
      await second.exited;
    });
    const recipient = dep.devices[`${CN}/op1`]!;
    const cn = await LinkClient.open(second.url, await login(second.url, recipient, dep.agreement));
    const d = await cn.waitForType('deliver');
    expect(d.envelope).toEqual(env);
    const opened = await openEnvelope(d.envelope, { device: recipient, senderCert: sender.certificate.cert });
    expect(opened.plaintext.body).toBe('強制終了の直前に送信');
    cn.send({ t: 'ack', cursor: d.cursor });
    await cn.sync();
    expect(cn.ofType('deliver')).toHaveLength(1);

    // The sender resends after reconnecting (it never saw a receipt): idempotent, not delivered again.
    const jp2 = await LinkClient.open(second.url, await login(second.url, sender, dep.agreement));
    jp2.send({ t: 'envelope', envelope: env });
    await jp2.waitForType('accepted', (f) => f.id === env.header.id);
    await cn.sync();
    expect(cn.ofType('deliver')).toHaveLength(1);
    await Promise.all([cn.close(), jp2.close()]);
  });
});
