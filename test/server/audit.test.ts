import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startServer } from '../../server/main.js';
import { ALARMS_PER_HOUR } from '../../server/plugins/audit.js';
import { startTestServer } from '../helpers/test-server.js';
import { createDeployment, JP, CN, tempDir } from '../helpers/deployment.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { call, seal } from '../helpers/ws-client.js';
import { cosignCheckpoint, parseCheckpoint, verifyCheckpoint } from '../../shared/audit/checkpoint.js';
import { cosignerName, logKeyName, verifyAuditExport } from '../../shared/audit/log-verify.js';
import { leafHash, verifyConsistency, verifyInclusion } from '../../shared/audit/merkle.js';
import { createLogKey } from '../../shared/crypto/keys.js';
import { signReceipt } from '../../shared/crypto/receipt.js';
import { fromBase64, fromHex, utf8 } from '../../shared/encoding/base64.js';
import type { DeviceSecretFile } from '../../shared/protocol/schemas.js';

const INTERVAL = 60_000;

function cosigner(dev: DeviceSecretFile) {
  return { name: cosignerName(dev.certificate.cert), secretKey: fromBase64(dev.signSecret, 32) };
}

describe('audit API: who may call what', () => {
  it('auditors read everything; operators only checkpoints and consistency proofs; archives nothing', async () => {
    const s = await startTestServer({ withLogKey: true });
    const [aud, op, arc] = await Promise.all([s.token(`${JP}/audit1`), s.token(`${CN}/op1`), s.token(`${CN}/archive1`)]);
    await call(s.url, 'POST', '/v1/audit/checkpoints', undefined, aud);

    for (const path of ['/v1/audit/entries', '/v1/audit/export', '/v1/audit/proof/inclusion?index=0']) {
      const r = await call(s.url, 'GET', path, undefined, op);
      expect(r.status, path).toBe(403);
      expect(r.body.error.code, path).toBe('HL_ERR_AUTH_FORBIDDEN');
      expect((await call(s.url, 'GET', path, undefined, aud)).status, path).toBe(200);
    }
    for (const path of ['/v1/audit/checkpoint/latest', '/v1/audit/checkpoints', '/v1/audit/proof/consistency?from=1']) {
      expect((await call(s.url, 'GET', path, undefined, op)).status, path).toBe(200);
      const r = await call(s.url, 'GET', path, undefined, arc);
      expect(r.status, path).toBe(403);
      expect(r.body.error.code, path).toBe('HL_ERR_AUTH_FORBIDDEN');
    }
    const noToken = await call(s.url, 'GET', '/v1/audit/export');
    expect(noToken.body.error.code).toBe('HL_ERR_AUTH_TOKEN_MISSING');
  });

  it('limits audit alarms per device, so one device cannot flood the log and the consoles', async () => {
    const s = await startTestServer({ withLogKey: true });
    const [op, aud] = await Promise.all([s.token(`${JP}/op1`), s.token(`${JP}/audit1`)]);
    const alarm = (token: string) => call(s.url, 'POST', '/v1/audit/alarms', { code: 'HL_ERR_AUDIT_EQUIVOCATION', reason: 'two roots for one size' }, token);
    const before = await s.store.auditSize();
    const statuses: number[] = [];
    for (let i = 0; i < ALARMS_PER_HOUR + 3; i++) statuses.push((await alarm(op)).status);
    expect(statuses).toEqual([...Array<number>(ALARMS_PER_HOUR).fill(201), 429, 429, 429]);
    const refused = await alarm(op);
    expect(refused.body.error.code).toBe('HL_ERR_INPUT_RATE_LIMITED');
    // Another device of the party still reports; the flood added exactly the allowed entries.
    expect((await alarm(aud)).status).toBe(201);
    expect((await s.store.auditSize()) - before).toBe(ALARMS_PER_HOUR + 1);
  });

  it('an auditor device cannot send or acknowledge on the link', async () => {
    const s = await startTestServer({ withLogKey: true });
    const dir = await s.directory();
    const jp = await s.connect(`${JP}/op1`);
    const cn = await s.connect(`${CN}/op1`);
    const env = await seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq: 1, directory: dir, plaintext: { body: 'x', lang: 'en' } });
    jp.send({ t: 'envelope', envelope: env });
    await jp.waitForType('accepted');
    await cn.waitForType('deliver');

    const auditorDev = s.dep.devices[`${JP}/audit1`]!;
    const auditor = await s.connect(`${JP}/audit1`);
    const fromAuditor = await seal({ sender: auditorDev, to: CN, seq: 1, directory: dir, plaintext: { body: 'y', lang: 'en' } });
    auditor.send({ t: 'envelope', envelope: fromAuditor });
    await auditor.waitForError('HL_ERR_AUTH_FORBIDDEN');
    // An acknowledgement signed by the auditor's own key: refused too (not an operator of the addressee).
    const ack = await signReceipt(auditorDev, env.header, 'acknowledged', Date.now());
    auditor.send({ t: 'receipt', receipt: ack });
    const refused = await auditor.waitForType('error');
    expect(refused.code).toBe('HL_ERR_AUTH_FORBIDDEN');
    // Nothing from the auditor reached the log.
    const exp = await call(s.url, 'GET', '/v1/audit/export', undefined, await s.token(`${JP}/audit1`));
    expect(exp.body.entries.filter((e: string) => e.includes('"receipt.accepted"') || e.includes(fromAuditor.header.id))).toEqual([]);
  });
});

describe('checkpoints', () => {
  it('are signed at start, on the clock interval when the log grew, and on demand; never twice for one size', async () => {
    const clock = new ManualClock(Date.now());
    const dep = await createDeployment(clock.now() - 1000);
    const s = await startTestServer({ dep, clock, withLogKey: true, app: { checkpointIntervalMs: INTERVAL } });
    const aud = await s.token(`${JP}/audit1`);
    const list = async () => (await call(s.url, 'GET', '/v1/audit/checkpoints', undefined, aud)).body.checkpoints as { size: number; note: string }[];
    const first = await list();
    expect(first).toHaveLength(1); // signed at start, after server.start
    const size0 = first[0]!.size;

    // The login above is an entry: the next tick signs it. The timer's signing is queued before
    // the on-demand request below, which therefore finds that size signed already.
    clock.advance(INTERVAL);
    const after = await call(s.url, 'POST', '/v1/audit/checkpoints', undefined, aud);
    expect(after.status).toBe(200);
    expect(after.body.created).toBe(false);
    expect(after.body.size).toBeGreaterThan(size0);
    const second = await list();
    expect(second).toHaveLength(2);
    expect(second[1]!.size).toBe(after.body.size);

    // Unchanged size (reading is not an entry): neither the tick nor a request signs again.
    clock.advance(INTERVAL);
    const same = await call(s.url, 'POST', '/v1/audit/checkpoints', undefined, aud);
    expect(same.body).toMatchObject({ created: false, size: after.body.size });
    expect(await list()).toHaveLength(2);

    // On demand, after an entry (another login): a new one at once.
    await s.token(`${CN}/op1`);
    const fresh = await call(s.url, 'POST', '/v1/audit/checkpoints', undefined, aud);
    expect(fresh.status).toBe(201);
    expect(fresh.body.size).toBe(after.body.size + 1);

    const log = { name: logKeyName(dep.agreement), publicKey: fromBase64(dep.agreement.logKey, 32) };
    for (const c of await list()) {
      const v = await verifyCheckpoint(c.note, [log]);
      expect(v.checkpoint.origin).toBe(logKeyName(dep.agreement));
      expect(v.checkpoint.size).toBe(c.size);
    }
  });

  it('inclusion and consistency proofs verify against the signed roots', async () => {
    const s = await startTestServer({ withLogKey: true });
    const aud = await s.token(`${JP}/audit1`);
    const a = (await call(s.url, 'POST', '/v1/audit/checkpoints', undefined, aud)).body;
    await s.token(`${CN}/op1`); // one more entry
    const b = (await call(s.url, 'POST', '/v1/audit/checkpoints', undefined, aud)).body;
    const ca = parseCheckpoint(a.note);
    const cb = parseCheckpoint(b.note);
    const cons = (await call(s.url, 'GET', `/v1/audit/proof/consistency?from=${ca.size}&to=${cb.size}`, undefined, aud)).body;
    verifyConsistency(ca.size, cb.size, cons.proof.map((p: string) => fromHex(p, 32)), ca.rootHash, cb.rootHash);

    const page = (await call(s.url, 'GET', `/v1/audit/entries?from=0&to=${cb.size}`, undefined, aud)).body;
    expect(page.entries).toHaveLength(cb.size);
    const idx = 2;
    const inc = (await call(s.url, 'GET', `/v1/audit/proof/inclusion?index=${idx}&size=${cb.size}`, undefined, aud)).body;
    verifyInclusion(leafHash(utf8(page.entries[idx].entry)), idx, cb.size, inc.proof.map((p: string) => fromHex(p, 32)), cb.rootHash);

    const bad = await call(s.url, 'GET', `/v1/audit/proof/consistency?from=${cb.size + 100}`, undefined, aud);
    expect(bad.body.error.code).toBe('HL_ERR_AUDIT_RANGE');
    const junk = await call(s.url, 'GET', '/v1/audit/entries?from=-1', undefined, aud);
    expect(junk.body.error.code).toBe('HL_ERR_INPUT_SCHEMA');
    const big = await call(s.url, 'GET', '/v1/audit/entries?from=0&to=5000', undefined, aud);
    expect(big.status).toBe(200);
    expect(big.body.entries.length).toBeLessThanOrEqual(1000);
  });

  it('stores a cosignature that verifies for the posting device, refuses others, and serves it merged into the note', async () => {
    const s = await startTestServer({ withLogKey: true });
    const jpOp = s.dep.devices[`${JP}/op1`]!;
    const cnOp = s.dep.devices[`${CN}/op1`]!;
    const tok = await s.token(`${JP}/op1`);
    const cp = (await call(s.url, 'POST', '/v1/audit/checkpoints', undefined, tok)).body as { size: number; note: string };

    // Signed by cn's key but posted by jp: no cosignature by jp-mod/op1 on it.
    const foreign = await cosignCheckpoint(cp.note, cosigner(cnOp), 1_800_000_000);
    const r1 = await call(s.url, 'POST', '/v1/audit/cosignatures', { size: cp.size, note: foreign }, tok);
    expect(r1.body.error.code).toBe('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE');
    // jp's name with cn's key: does not verify.
    const forged = await cosignCheckpoint(cp.note, { name: cosignerName(jpOp.certificate.cert), secretKey: fromBase64(cnOp.signSecret, 32) }, 1_800_000_000);
    const r2 = await call(s.url, 'POST', '/v1/audit/cosignatures', { size: cp.size, note: forged }, tok);
    expect(r2.status).toBe(400);
    // Another checkpoint's text.
    const other = await cosignCheckpoint(cp.note.replace(/\n\d+\n/, `\n${cp.size + 1}\n`), cosigner(jpOp), 1_800_000_000);
    expect((await call(s.url, 'POST', '/v1/audit/cosignatures', { size: cp.size, note: other }, tok)).body.error.code).toBe('HL_ERR_AUDIT_CHECKPOINT_MALFORMED');
    expect((await call(s.url, 'POST', '/v1/audit/cosignatures', { size: cp.size + 999, note: cp.note }, tok)).body.error.code).toBe('HL_ERR_AUDIT_RANGE');

    const good = await cosignCheckpoint(cp.note, cosigner(jpOp), 1_800_000_000);
    const r3 = await call(s.url, 'POST', '/v1/audit/cosignatures', { size: cp.size, note: good }, tok);
    expect(r3.status).toBe(201);
    expect(r3.body.cosigner).toBe(`${JP}/op1`);

    const all = (await call(s.url, 'GET', '/v1/audit/checkpoints', undefined, tok)).body.checkpoints as { size: number; note: string }[];
    const merged = all.find((c) => c.size === cp.size)!.note;
    const v = await verifyCheckpoint(merged, [
      { name: logKeyName(s.dep.agreement), publicKey: fromBase64(s.dep.agreement.logKey, 32) },
      { name: cosignerName(jpOp.certificate.cert), publicKey: fromBase64(jpOp.certificate.cert.signKey, 32), type: 'cosignature/v1' },
    ]);
    expect(v.verified.map((x) => x.name).sort()).toEqual([logKeyName(s.dep.agreement), `${JP}/op1`].sort());
    // Cosignatures are not entries.
    const exp = (await call(s.url, 'GET', '/v1/audit/export', undefined, await s.token(`${JP}/audit1`))).body;
    expect(exp.entries.some((e: string) => e.includes('cosign'))).toBe(false);
    expect(await verifyAuditExport(s.dep.agreement, exp)).toMatchObject({ ok: true, verifiedSize: cp.size, cosigners: [`${JP}/op1`] });
  });

  it('a server without a log key runs, says so at start, and has no checkpoint to serve', async () => {
    const s = await startTestServer({ withLogKey: false });
    expect(s.logs.text()).toContain('no log key configured');
    const r = await call(s.url, 'GET', '/v1/audit/checkpoint/latest', undefined, await s.token(`${JP}/audit1`));
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe('HL_ERR_NOT_FOUND');
    const exp = await call(s.url, 'GET', '/v1/audit/export', undefined, await s.token(`${JP}/audit1`));
    expect(exp.body.checkpoints).toEqual([]);
    expect(exp.body.entries[0]).toContain('"server.start"');
    expect(exp.body.entries[1]).toContain('"device.enrolled"');
  });

  it('refuses to start with a log key that is not the agreement\'s, or a key file others can read', async () => {
    const dep = await createDeployment();
    const dir = tempDir();
    try {
      await expect(startServer({ agreement: dep.agreement, dataDir: dir.path, port: 0, logLevel: 'silent', logSecret: createLogKey() })).rejects.toMatchObject({
        code: 'HL_ERR_CONFIG_INVALID',
      });
      const path = join(dir.path, 'log.secret.json');
      writeFileSync(path, JSON.stringify(dep.logSecret), { mode: 0o644 });
      await expect(startServer({ agreement: dep.agreement, dataDir: dir.path, port: 0, logLevel: 'silent', logKeyPath: path })).rejects.toMatchObject({
        code: 'HL_ERR_CONFIG_INVALID',
      });
      const other = join(dir.path, 'other.secret.json');
      writeFileSync(other, JSON.stringify(createLogKey()), { mode: 0o600 });
      await expect(startServer({ agreement: dep.agreement, dataDir: dir.path, port: 0, logLevel: 'silent', logKeyPath: other })).rejects.toMatchObject({
        code: 'HL_ERR_CONFIG_INVALID',
      });
      const good = join(dir.path, 'good.secret.json');
      writeFileSync(good, JSON.stringify(dep.logSecret), { mode: 0o600 });
      const s = await startServer({ agreement: dep.agreement, dataDir: dir.path, port: 0, logLevel: 'silent', logKeyPath: good });
      await s.close();
    } finally {
      dir.remove();
    }
  });
});

describe('GET /v1/audit/checkpoints?after=', () => {
  it('lists only the checkpoints larger than `after`, each with its cosignatures; a bad value is refused', async () => {
    const s = await startTestServer({ withLogKey: true });
    const aud = await s.token(`${JP}/audit1`);
    const sizes: number[] = [];
    for (let i = 0; i < 3; i++) {
      await s.token(`${CN}/op1`); // a login appends an entry, so each checkpoint is larger
      const r = await call(s.url, 'POST', '/v1/audit/checkpoints', undefined, aud);
      sizes.push(r.body.size as number);
    }
    const cosigned = await cosignCheckpoint((await call(s.url, 'GET', '/v1/audit/checkpoint/latest', undefined, aud)).body.note as string, cosigner(s.dep.devices[`${JP}/audit1`]!), 1);
    expect((await call(s.url, 'POST', '/v1/audit/cosignatures', { size: sizes[2], note: cosigned }, aud)).status).toBeLessThan(300);

    const all = (await call(s.url, 'GET', '/v1/audit/checkpoints', undefined, aud)).body.checkpoints as { size: number; note: string }[];
    expect(all.map((c) => c.size)).toEqual(expect.arrayContaining(sizes));
    const newer = (await call(s.url, 'GET', `/v1/audit/checkpoints?after=${sizes[0]}`, undefined, aud)).body.checkpoints as { size: number; note: string }[];
    expect(newer.map((c) => c.size)).toEqual(all.filter((c) => c.size > sizes[0]!).map((c) => c.size));
    expect(newer.at(-1)!.note).toBe(all.at(-1)!.note); // cosignatures included
    expect(newer.at(-1)!.note).toContain(cosignerName(s.dep.devices[`${JP}/audit1`]!.certificate.cert));
    expect((await call(s.url, 'GET', `/v1/audit/checkpoints?after=${sizes[2]}`, undefined, aud)).body.checkpoints).toEqual([]);
    const bad = await call(s.url, 'GET', '/v1/audit/checkpoints?after=-1', undefined, aud);
    expect(bad.body.error.code).toBe('HL_ERR_INPUT_SCHEMA');
  });
});
