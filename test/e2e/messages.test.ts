import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { buildAuditReport } from '../../shared/audit/report.js';
import { expectedRecipients, sealEnvelope } from '../../shared/crypto/envelope.js';
import { randomId } from '../../shared/crypto/random.js';
import { MAX_ATTACHMENT_BYTES } from '../../shared/protocol/attachments.js';
import { cli, cliRun } from '../helpers/cli.js';
import { fetchExport } from '../helpers/audit.js';
import { amendAgreement, CN, JP, createDeployment, tempDir, writeAgreement } from '../helpers/deployment.js';
import { next } from '../helpers/events.js';
import { onCleanup, startTestServer, type TestServer } from '../helpers/test-server.js';

/**
 * Issue 15's message content, end to end through a real relay: attachments (`--attach`,
 * `--save-attachments`), the catalogue of pre-agreed messages (`--code`) and signed translations
 * (`hotline translate`, bound to their original's envelope hash).
 */

const CATALOGUE = [
  { code: 'C07', text: { ja: '直ちに連絡を求む。', zh: '请求立即联系。', en: 'Request immediate contact.' } },
  { code: 'C12', text: { ja: '海上で事案発生、敵対意図なし。', zh: '海上发生事件，无敌对意图。', en: 'Incident at sea, no hostile intent.' } },
];

async function server(): Promise<TestServer> {
  const dep = await createDeployment();
  dep.agreement = await amendAgreement(dep, { catalogue: CATALOGUE });
  return startTestServer({ dep });
}

function client(s: TestServer, key: string): HotlineClient {
  const c = new HotlineClient({ serverUrl: s.url, agreement: s.dep.agreement, device: s.dep.devices[key]!, storage: new MemoryStorage(), WebSocket });
  onCleanup(() => c.stop());
  return c;
}

/** Device files and flags for the CLI, in a temporary folder; jp's op1 has confirmed the peers' keys. */
async function cliSetup(s: TestServer) {
  const dir = tempDir();
  onCleanup(() => dir.remove());
  const agreement = writeAgreement(dir.path, s.dep.agreement);
  const flags = (key: string) => {
    const file = join(dir.path, `${key.replace('/', '-')}.secret.json`);
    writeFileSync(file, JSON.stringify(s.dep.devices[key]), { mode: 0o600 });
    return ['--device', file, '--agreement', agreement, '--server', s.url];
  };
  const jp = flags(`${JP}/op1`);
  const cn = flags(`${CN}/op1`);
  expect((await cli(['peers', 'confirm', ...jp])).code).toBe(0);
  return { dir: dir.path, jp, cn };
}

/** A CLI listener printing JSON lines, and the message line of a given id once it is printed. */
function listenJson(flags: string[], extra: string[] = []) {
  const run = cliRun(['listen', ...flags, '--json', ...extra]);
  onCleanup(async () => {
    run.stop();
    await run.exited;
  });
  return {
    run,
    message: async (id: string) => JSON.parse(await run.line(new RegExp(`^\\{"type":"message","id":"${id}"`))) as Record<string, unknown>,
  };
}

describe('attachments', () => {
  it('an attachment round trip at the size limit: 30 KiB in all goes and is saved byte for byte; one byte more is refused before sealing', async () => {
    const s = await server();
    const { dir, jp, cn } = await cliSetup(s);
    const a = join(dir, 'chart.png');
    const b = join(dir, 'orders.txt');
    const bytesA = randomBytes(MAX_ATTACHMENT_BYTES - 1000);
    const bytesB = randomBytes(1000);
    writeFileSync(a, bytesA);
    writeFileSync(b, bytesB);
    const save = join(dir, 'received');
    const listener = listenJson(cn, ['--save-attachments', save]);
    await listener.run.line(/^\{"type":"connected"/);

    const sent = await cli(['send', ...jp, '--to', CN, '--precedence', 'routine', '--attach', a, '--attach', b, '演習区域の海図を添付する。']);
    expect(sent.code, sent.err).toBe(0);
    const id = sent.out.trim();
    const m = await listener.message(id);
    expect(m['attachments']).toEqual([
      { name: 'chart.png', type: 'image/png', size: bytesA.length, savedAs: join(save, 'chart.png') },
      { name: 'orders.txt', type: 'text/plain', size: bytesB.length, savedAs: join(save, 'orders.txt') },
    ]);
    expect(Buffer.from(readFileSync(join(save, 'chart.png'))).equals(bytesA)).toBe(true);
    expect(Buffer.from(readFileSync(join(save, 'orders.txt'))).equals(bytesB)).toBe(true);

    // Sent again: the files already there are kept, the new ones numbered.
    const again = await cli(['send', ...jp, '--to', CN, '--precedence', 'routine', '--attach', b, 'again']);
    expect(again.code, again.err).toBe(0);
    const m2 = await listener.message(again.out.trim());
    expect(m2['attachments']).toEqual([{ name: 'orders.txt', type: 'text/plain', size: bytesB.length, savedAs: join(save, 'orders (2).txt') }]);
    expect(readdirSync(save).sort()).toEqual(['chart.png', 'orders (2).txt', 'orders.txt']);

    // One byte over the limit: refused with its own code, nothing sealed.
    writeFileSync(b, randomBytes(1001));
    const over = await cli(['send', ...jp, '--to', CN, '--precedence', 'routine', '--attach', a, '--attach', b, 'too much']);
    expect(over.code).toBe(1);
    expect(over.err).toContain('HL_ERR_ATTACHMENT_TOO_LARGE');
    expect(over.err).toContain('1 over the limit of 30720 bytes');
    const nine = await cli(['send', ...jp, '--to', CN, '--precedence', 'routine', ...Array.from({ length: 9 }, () => ['--attach', b]).flat(), 'nine']);
    expect(nine.code).toBe(1);
    expect(nine.err).toContain('HL_ERR_ATTACHMENT_TOO_MANY');
    const outbox = await cli(['outbox', ...jp.slice(0, 4)]);
    expect(outbox.out).not.toContain('too much');
  });
});

describe('the catalogue', () => {
  it('a catalogue message shown in the recipient\'s language from the recipient\'s copy; the code alone travels', async () => {
    const s = await server();
    const { jp, cn } = await cliSetup(s);
    const listener = listenJson(cn);
    await listener.run.line(/^\{"type":"connected"/);
    const colleague = client(s, `${JP}/op2`);
    await colleague.start();
    const seenByColleague = next(colleague, 'message');

    const free = '巡視船一隻が接近中。';
    const sent = await cli(['send', ...jp, '--to', CN, '--precedence', 'flash', '--code', 'C12', '--lang', 'ja', free]);
    expect(sent.code, sent.err).toBe(0);
    const m = await listener.message(sent.out.trim());
    // The recipient's party reads zh first: the entry in Chinese from its own agreement, the free text beside it.
    expect(m).toMatchObject({ code: 'C12', catalogue: { code: 'C12', lang: 'zh', text: '海上发生事件，无敌对意图。' }, body: free, lang: 'ja' });
    // What was signed and sealed is the code, not the text of any language.
    const colleagueCopy = await seenByColleague;
    expect(colleagueCopy.plaintext).toEqual({ body: free, lang: 'ja', code: 'C12' });

    // Printed for people: the entry first, marked as the catalogue's.
    const human = cliRun(['listen', ...cn]);
    onCleanup(async () => {
      human.stop();
      await human.exited;
    });
    const code = await cli(['send', ...jp, '--to', CN, '--precedence', 'immediate', '--code', 'C07']);
    expect(code.code, code.err).toBe(0);
    expect(await human.line(/\[C07\]/)).toBe('   [C07] 请求立即联系。 (catalogue, zh)');

    // A code the agreement lacks is refused by the sender's CLI before anything is sealed.
    const unknown = await cli(['send', ...jp, '--to', CN, '--precedence', 'flash', '--code', 'C99']);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain('HL_ERR_CATALOGUE_UNKNOWN_CODE');
    expect(unknown.err).toContain('codes: C07, C12');
  });
});

describe('translations', () => {
  /** Seal and send, over cn's raw link, a translation claiming to be of `translationOf`: what a faulty or hostile client could send. */
  async function forge(s: TestServer, seq: number, translationOf: { id: string; envelopeHash: string }): Promise<string> {
    const link = await s.connect(`${CN}/op1`);
    const sender = s.dep.devices[`${CN}/op1`]!;
    const envelope = await sealEnvelope({
      sender,
      id: randomId(),
      to: JP,
      precedence: 'ROUTINE',
      seq,
      sentAt: Date.now(),
      recipients: expectedRecipients(await s.directory(), sender.certificate.cert, JP),
      plaintext: { body: 'Change of exercise area from 14:00 today.', lang: 'en' },
      translationOf,
    });
    link.send({ t: 'envelope', envelope });
    await link.waitForType('accepted', (f) => f.id === envelope.header.id);
    link.ws.close();
    return envelope.header.id;
  }

  it('a translation bound to its original and refused when bound to another', async () => {
    const s = await server();
    const jp = client(s, `${JP}/op1`);
    const colleague = client(s, `${JP}/op2`);
    await Promise.all([jp.start(), colleague.start()]);
    const m1 = next(colleague, 'message', (m) => m.plaintext.body.startsWith('本日'));
    const m2 = next(colleague, 'message', (m) => m.plaintext.body.startsWith('明日'));
    const { id: id1 } = await jp.send({ to: CN, precedence: 'routine', body: '本日一四〇〇時、演習区域を変更する。' });
    await jp.send({ to: CN, precedence: 'routine', body: '明日の演習は中止する。' });
    const [one, two] = [await m1, await m2];
    expect(one.header.id).toBe(id1);

    // Bound to message 1's id but message 2's envelope: refused by every holder of message 1, signed.
    const mismatch = next(colleague, 'error', (e) => e.code === 'HL_ERR_TRANSLATION_MISMATCH');
    const mismatchAtSender = next(jp, 'error', (e) => e.code === 'HL_ERR_TRANSLATION_MISMATCH');
    const shown: string[] = [];
    colleague.on('message', (m) => shown.push(m.header.id));
    const wrong = await forge(s, 1, { id: id1, envelopeHash: two.envelopeHash });
    expect((await mismatch).message).toContain(wrong);
    await mismatchAtSender;
    // A message id nobody here holds: refused as well.
    const unknown = next(colleague, 'error', (e) => e.code === 'HL_ERR_TRANSLATION_UNKNOWN_ORIGINAL');
    await forge(s, 2, { id: randomId(), envelopeHash: one.envelopeHash });
    await unknown;

    // Bound to message 1 as it is held: shown, marked as its translation.
    const translated = next(colleague, 'message', (m) => m.header.translationOf !== undefined);
    const atSender = next(jp, 'message', (m) => m.header.translationOf !== undefined);
    const good = await forge(s, 3, { id: id1, envelopeHash: one.envelopeHash });
    const t = await translated;
    expect(t.header).toMatchObject({ id: good, from: { party: CN, device: 'op1' }, translationOf: { id: id1, envelopeHash: one.envelopeHash } });
    expect(t.plaintext.lang).toBe('en');
    expect((await atSender).header.id).toBe(good);
    expect(shown).toEqual([good]);
  });

  it('hotline translate binds the translation to the message held, sends it to the other party, and the audit report lists it under its original', async () => {
    const s = await server();
    const { jp } = await cliSetup(s);
    const cn = client(s, `${CN}/op1`);
    await cn.start();
    const original = next(cn, 'message');
    const sent = await cli(['send', ...jp, '--to', CN, '--precedence', 'priority', '本日一四〇〇時、演習区域を変更する。']);
    expect(sent.code, sent.err).toBe(0);
    const id = sent.out.trim();
    const o = await original;

    const translation = next(cn, 'message', (m) => m.header.translationOf !== undefined);
    const tr = await cli(['translate', ...jp, id, '--lang', 'zh', '今天十四时起变更演习区域。']);
    expect(tr.code, tr.err).toBe(0);
    const t = await translation;
    expect(t.header).toMatchObject({ id: tr.out.trim(), to: CN, precedence: 'PRIORITY', translationOf: { id, envelopeHash: o.envelopeHash } });
    expect(t.plaintext).toEqual({ body: '今天十四时起变更演习区域。', lang: 'zh' });

    const nothing = await cli(['translate', ...jp, randomId(), '--lang', 'zh', '无']);
    expect(nothing.code).toBe(1);
    expect(nothing.err).toContain('HL_ERR_TRANSLATION_UNKNOWN_ORIGINAL');

    const exp = await fetchExport(s.url, s.dep.devices[`${JP}/audit1`]!, s.dep.agreement);
    const report = buildAuditReport(exp.entries);
    expect(report.translations).toEqual({ [id]: [{ id: t.header.id, by: `${JP}/op1`, at: expect.any(Number) }] });
  });
});
