import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { amendAgreement, CN, createDeployment, JP, LABELS, tempDir, writeAgreement, type Deployment } from '../helpers/deployment.js';
import WebSocket from 'ws';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { next } from '../helpers/events.js';
import { onCleanup, startTestServer } from '../helpers/test-server.js';
import { seal } from '../helpers/ws-client.js';
import { cli, cliRun } from '../helpers/cli.js';

/**
 * Issue 15: "a label shown and a label outside the agreement refused" (PROTOCOL.md "Security labels").
 * The test deployment with labels in its agreement, signed again by both roots.
 */
async function labelledDeployment(): Promise<Deployment> {
  const dep = await createDeployment();
  return { ...dep, agreement: await amendAgreement(dep, { labels: LABELS }) };
}

const dirs: { remove(): void }[] = [];
afterEach(() => {
  while (dirs.length > 0) dirs.pop()!.remove();
});

describe('security labels', () => {
  it('the relay refuses a label the agreement does not define, and delivers one it does with the header', async () => {
    const s = await startTestServer({ dep: await labelledDeployment() });
    const dir = await s.directory();
    const op = s.dep.devices[`${JP}/op1`]!;
    const jp = await s.connect(`${JP}/op1`);
    const cn = await s.connect(`${CN}/op1`);
    const plaintext = { body: 'labelled', lang: 'en' };

    const unknownClass = await seal({ sender: op, to: CN, seq: 1, directory: dir, plaintext, label: { classification: 'TOP-SECRET' } });
    jp.send({ t: 'envelope', envelope: unknownClass });
    expect((await jp.waitForError('HL_ERR_ENVELOPE_LABEL')).ref).toBe(unknownClass.header.id);
    const unknownCaveat = await seal({ sender: op, to: CN, seq: 2, directory: dir, plaintext, label: { classification: 'RESTRICTED', caveats: ['NOFORN'] } });
    jp.send({ t: 'envelope', envelope: unknownCaveat });
    expect((await jp.waitForError('HL_ERR_ENVELOPE_LABEL')).ref).toBe(unknownCaveat.header.id);

    const good = await seal({ sender: op, to: CN, seq: 3, directory: dir, plaintext, label: { classification: 'RESTRICTED', caveats: ['HOTLINE-ONLY'] } });
    jp.send({ t: 'envelope', envelope: good });
    await jp.waitForType('accepted', (f) => f.id === good.header.id);
    const delivered = await cn.waitForType('deliver', (f) => f.envelope.header.id === good.header.id);
    expect(delivered.envelope.header.label).toEqual({ classification: 'RESTRICTED', caveats: ['HOTLINE-ONLY'] });
    // Unlabelled messages stay valid under an agreement with labels.
    const plain = await seal({ sender: op, to: CN, seq: 4, directory: dir, plaintext });
    jp.send({ t: 'envelope', envelope: plain });
    await jp.waitForType('accepted', (f) => f.id === plain.header.id);
  });

  it('a translation goes with the label of its original', async () => {
    const s = await startTestServer({ dep: await labelledDeployment() });
    const [jp, cn] = [`${JP}/op1`, `${CN}/op1`].map((k) => {
      const c = new HotlineClient({ serverUrl: s.url, agreement: s.dep.agreement, device: s.dep.devices[k]!, storage: new MemoryStorage(), WebSocket });
      onCleanup(() => c.stop());
      return c;
    }) as [HotlineClient, HotlineClient];
    await Promise.all([jp.start(), cn.start()]);
    const label = { classification: 'RESTRICTED', caveats: ['HOTLINE-ONLY'] };
    const arrived = next(cn, 'message', (m) => m.header.translationOf === undefined);
    const { id } = await jp.send({ to: CN, precedence: 'routine', body: '演習区域の変更', label });
    await arrived;
    const translated = next(jp, 'message', (m) => m.header.translationOf?.id === id);
    await cn.send({ to: JP, precedence: 'routine', body: '演习区域变更', lang: 'zh', translationOf: id });
    expect((await translated).header.label).toEqual(label);
  });

  it('an agreement without labels refuses any label', async () => {
    const s = await startTestServer();
    const jp = await s.connect(`${JP}/op1`);
    const env = await seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq: 1, directory: await s.directory(), plaintext: { body: 'x', lang: 'en' }, label: { classification: 'RESTRICTED' } });
    jp.send({ t: 'envelope', envelope: env });
    await jp.waitForError('HL_ERR_ENVELOPE_LABEL');
  });

  it('hotline send --label/--caveat: listen shows the banner in the reader’s language; a label outside the agreement is refused before sealing', async () => {
    const dep = await labelledDeployment();
    const s = await startTestServer({ dep });
    const tmp = tempDir();
    dirs.push(tmp);
    const path = writeAgreement(tmp.path, dep.agreement);
    const key = (k: string) => {
      const p = join(tmp.path, `${k.replace('/', '-')}.secret.json`);
      writeFileSync(p, JSON.stringify(dep.devices[k]), { mode: 0o600 });
      return p;
    };
    const jpOp = key(`${JP}/op1`);
    const cnOp = key(`${CN}/op1`);
    const env = { HOTLINE_SERVER: s.url, HOTLINE_AGREEMENT: path };
    const listen = cliRun(['listen', '--device', cnOp], env);
    await listen.line(/connected as/);
    expect((await cli(['peers', 'confirm', '--device', jpOp, '--party', CN], env)).code).toBe(0);

    const refused = await cli(['send', '--device', jpOp, '--to', CN, '--precedence', 'immediate', '--label', 'TOP-SECRET', 'not sent'], env);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('HL_ERR_ENVELOPE_LABEL');
    const noClass = await cli(['send', '--device', jpOp, '--to', CN, '--precedence', 'immediate', '--caveat', 'HOTLINE-ONLY', 'not sent'], env);
    expect(noClass.code).toBe(1);
    expect(noClass.err).toContain('HL_ERR_ENVELOPE_LABEL');

    const sent = await cli(['send', '--device', jpOp, '--to', CN, '--precedence', 'immediate', '--label', 'RESTRICTED', '--caveat', 'HOTLINE-ONLY', '--wait', 'delivered', '演習区域の変更'], env);
    expect(sent.code, sent.err).toBe(0);
    // cn-mnd reads Chinese first: the names from its agreement, then the codes.
    expect(await listen.line(/LABEL:/)).toBe('   LABEL: 内部 // 仅限热线 [RESTRICTED // HOTLINE-ONLY]');
    // status: the sender's line of the message still to be acknowledged carries its label.
    const id = sent.out.trim().split('\n')[0]!;
    const st = await cli(['status', '--device', jpOp], env);
    expect(st.code, st.err).toBe(0);
    expect(st.out.split('\n').find((l) => l.includes(id))).toContain('[RESTRICTED // HOTLINE-ONLY]');
    // The audit report counts the message under its label; the archive reads the label in ja.
    const jpAudit = key(`${JP}/audit1`);
    const report = await cli(['audit', 'report', '--device', jpAudit], env);
    expect(report.code, report.err).toBe(0);
    const byLabel = report.out.split('\n').slice(report.out.split('\n').indexOf('by security label:'));
    expect(byLabel.find((l) => l.trim().startsWith('RESTRICTED // HOTLINE-ONLY'))).toMatch(/ 1 sent$/);
    const decrypted = await cli(['audit', 'decrypt', '--device', key(`${JP}/archive1`), '--auditor', jpAudit, s.url], env);
    expect(decrypted.code, decrypted.err).toBe(0);
    expect(decrypted.out).toContain('   LABEL: 取扱注意 // ホットライン限り [RESTRICTED // HOTLINE-ONLY]');
    listen.stop();
    expect(await listen.exited).toBe(0);
  });
});
