import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { signReceipt } from '../../shared/crypto/receipt.js';
import { JWT_SECRET_FILE } from '../../server/main.js';
import { CN, JP } from '../helpers/deployment.js';
import { startTestServer } from '../helpers/test-server.js';
import { call, LinkClient, seal, UpgradeRefused } from '../helpers/ws-client.js';

describe('the log', () => {
  it('holds no plaintext, key, token or ciphertext during a full exchange, refusals included', async () => {
    const s = await startTestServer({ logLevel: 'trace' });
    const jpToken = await s.token(`${JP}/op1`);
    const cnToken = await s.token(`${CN}/op1`);
    const jp = await LinkClient.open(s.url, jpToken);
    const cn = await LinkClient.open(s.url, cnToken);
    await Promise.all([jp.waitForType('hello'), cn.waitForType('hello')]);
    const secretText = '極秘：第三艦隊は明朝〇六〇〇に帰港する 机密内容';
    const env = await seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq: 1, directory: await s.directory(), plaintext: { subject: '件名は秘密', body: secretText, lang: 'ja' } });
    jp.send({ t: 'envelope', envelope: env });
    await jp.waitForType('accepted');
    const d = await cn.waitForType('deliver');
    const receipt = await signReceipt(s.dep.devices[`${CN}/op1`]!, env.header, 'acknowledged', Date.now());
    cn.send({ t: 'receipt', receipt });
    await jp.waitForType('receipt');
    cn.send({ t: 'ack', cursor: d.cursor });

    // Refusals that carry secrets in what the peer sent.
    await LinkClient.open(s.url, undefined, { path: `/v1/link?token=${jpToken}` }).catch((e: unknown) => expect(e).toBeInstanceOf(UpgradeRefused));
    await call(s.url, 'GET', `/v1/directory?access_token=${cnToken}`, undefined, 'not-a-token');
    await call(s.url, 'POST', '/v1/auth/login', `{"party":"jp-mod","signSecret":"${s.dep.devices[`${JP}/op1`]!.signSecret}"`);
    jp.send({ t: 'envelope', envelope: { ...env, header: { ...env.header, seq: 'x' } } });
    await jp.waitForError('HL_ERR_ENVELOPE_MALFORMED');
    jp.sendRaw(`{"t":"envelope","body":"${secretText}",`);
    await jp.waitForError('HL_ERR_INPUT_MALFORMED_JSON');
    await jp.closed;
    await cn.close();
    await s.close();

    const log = s.logs.text();
    // The test would be empty if nothing logged: make sure the exchange is visible (as metadata).
    expect(log).toContain('envelope accepted');
    expect(log).toContain('receipt accepted');
    expect(log).toContain('frame refused');
    expect(log).toContain(env.header.id);

    const forbidden: [string, string][] = [
      ['plaintext', secretText],
      ['plaintext fragment', '第三艦隊'],
      ['subject', '件名は秘密'],
      ['jp token', jpToken],
      ['cn token', cnToken],
      ['token signature', jpToken.split('.')[2]!],
      ['ciphertext', env.ciphertext.slice(0, 40)],
      ['wrapped key', env.header.recipients[0]!.wrappedKey],
      ['jwt secret', readFileSync(join(s.dataDir, JWT_SECRET_FILE), 'utf8').trim()],
      ...Object.entries(s.dep.devices).flatMap(([k, dev]): [string, string][] => [
        [`${k} sign secret`, dev.signSecret],
        [`${k} box secret`, dev.boxSecret],
      ]),
      ...Object.entries(s.dep.parties).map(([k, p]): [string, string] => [`${k} root secret`, p.rootSecret]),
    ];
    for (const [what, secret] of forbidden) {
      expect(log.includes(secret), `${what} appears in the log`).toBe(false);
    }
    // Every line is JSON from pino with a level; per-connection lines carry connId and device.
    const records = s.logs.records();
    expect(records.filter((r) => r['msg'] === 'envelope accepted').every((r) => typeof r['connId'] === 'string' && r['device'] === `${JP}/op1`)).toBe(true);
  });
});
