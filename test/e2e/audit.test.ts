import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { signAgreementByAll } from '../../shared/crypto/agreement-signatures.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../server/main.js';
import type { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { runCli } from '../../client/cli/run.js';
import type { Io } from '../../client/cli/common.js';
import { formatCheckpointBody, parseCheckpoint, signNote } from '../../shared/audit/checkpoint.js';
import { logKeyName, parseAuditExport, verifyAuditExport } from '../../shared/audit/log-verify.js';
import { MerkleLog } from '../../shared/audit/merkle.js';
import { createAgreement, createParty, enrollDevice, parseAgreement } from '../../shared/crypto/keys.js';
import { randomBytes } from '../../shared/crypto/random.js';
import { fromBase64, fromHex, toHex } from '../../shared/encoding/base64.js';
import type { Agreement, DeviceSecretFile, LogSecretFile } from '../../shared/protocol/schemas.js';
import { makeDeployment, type TestDeployment } from '../helpers/fixtures.js';
import { call, login } from '../helpers/ws-client.js';
import { cli, logSecretFile, makeClient, next, sendAndAck, signNow, startAuditServer } from '../helpers/audit.js';

let dir: string;
let server: RunningServer | undefined;
const clients: HotlineClient[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hotline-audit-e2e-'));
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  await server?.close();
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

function client(url: string, agreement: Agreement, device: DeviceSecretFile, storage = new MemoryStorage(), fetchImpl?: typeof fetch): HotlineClient {
  const c = makeClient(url, agreement, device, storage, fetchImpl ? { fetch: fetchImpl } : {});
  clients.push(c);
  return c;
}

function writeSecret(path: string, value: unknown): string {
  writeFileSync(path, JSON.stringify(value), { mode: 0o600 });
  return path;
}

/** A `fetch` that answers some audit requests itself: the server seen by one client, lying. */
function lyingFetch(answers: Record<string, unknown | ((url: URL) => unknown)>): typeof fetch {
  return async (input, init) => {
    const url = new URL(String(input));
    const answer = answers[url.pathname];
    if (answer !== undefined && (init?.method ?? 'GET') === 'GET') {
      const body = typeof answer === 'function' ? (answer as (u: URL) => unknown)(url) : answer;
      return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } });
    }
    return fetch(input, init);
  };
}

describe('a full exchange, exported and verified offline', () => {
  it('verifies with nothing but the export file and the agreement file, on a machine that never talked to the server', async () => {
    const d = await makeDeployment(Date.now() - 60_000);
    server = await startAuditServer(d.agreement, logSecretFile(d.agreement, d.logSecret), join(dir, 'server'), Object.values(d.devices));
    const jp = client(server.url, d.agreement, d.devices.jpOp);
    const cn = client(server.url, d.agreement, d.devices.cnOp);
    await Promise.all([jp.start(), cn.start()]);
    await sendAndAck(jp, cn, '至急：明朝の演習について確認されたい', 'FLASH');
    await sendAndAck(cn, jp, '紧急：请确认', 'IMMEDIATE');
    const cp = await signNow(server.url, d.devices.jpAud, d.agreement);
    expect(await jp.cosignLatest()).toEqual({ status: 'cosigned', size: cp.size });
    expect(await cn.cosignLatest()).toEqual({ status: 'cosigned', size: cp.size });

    // The auditor exports with the CLI.
    const work = join(dir, 'auditor');
    mkdirSync(work);
    const agreementPath = join(work, 'agreement.json');
    writeFileSync(agreementPath, JSON.stringify(d.agreement));
    const auditorKey = writeSecret(join(work, 'auditor.secret.json'), d.devices.jpAud);
    const exported = join(work, 'export.json');
    const r = await cli(['audit', 'export', '--device', auditorKey, '--out', exported, '--server', server.url, '--agreement', agreementPath]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain('verified:');

    // An operator device is not let in.
    const opKey = writeSecret(join(work, 'op.secret.json'), d.devices.jpOp);
    const refused = await cli(['audit', 'export', '--device', opKey, '--out', join(work, 'x.json'), '--server', server.url, '--agreement', agreementPath]);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('HL_ERR_AUTH_FORBIDDEN');

    // The server and its data are gone; only the two files travel to the offline machine.
    for (const c of clients.splice(0)) await c.stop();
    await server.close();
    server = undefined;
    rmSync(join(dir, 'server'), { recursive: true, force: true });
    const offline = join(dir, 'offline');
    mkdirSync(offline);
    copyFileSync(agreementPath, join(offline, 'agreement.json'));
    copyFileSync(exported, join(offline, 'export.json'));

    const agreement = parseAgreement(JSON.parse(readFileSync(join(offline, 'agreement.json'), 'utf8')));
    const v = await verifyAuditExport(agreement, parseAuditExport(readFileSync(join(offline, 'export.json'))));
    expect(v).toMatchObject({ ok: true, envelopes: 2, receipts: 4, verifiedSize: cp.size });
    expect(v.cosigners.sort()).toEqual(['cn-mnd/cn-op-1', 'jp-mod/jp-op-1']);

    const ok = await cli(['audit', 'verify', '--agreement', join(offline, 'agreement.json'), join(offline, 'export.json')]);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/^OK: \d+ entries/);

    const report = await cli(['audit', 'report', join(offline, 'export.json'), '--json'], { HOTLINE_AGREEMENT: join(offline, 'agreement.json') });
    expect(report.code).toBe(0);
    const rows = (JSON.parse(report.out) as { rows: { precedence: string; sent: number; delivered: number; acknowledged: number; toAcknowledged: { count: number } }[] }).rows;
    expect(rows.find((x) => x.precedence === 'FLASH')).toMatchObject({ sent: 1, delivered: 1, acknowledged: 1, toAcknowledged: { count: 1 } });
    expect(rows.find((x) => x.precedence === 'IMMEDIATE')).toMatchObject({ sent: 1, delivered: 1, acknowledged: 1 });
    const table = await cli(['audit', 'report', join(offline, 'export.json')], { HOTLINE_AGREEMENT: join(offline, 'agreement.json') });
    expect(table.out).toContain('link tests: 0 passed, 0 failed');

    // One changed byte in the file: refused, and the report will not run on it.
    const text = readFileSync(join(offline, 'export.json'), 'utf8');
    // Entries are JSON strings inside the file: their quotes are escaped.
    const bad = text.replace('\\"FLASH\\"', '\\"ROUTINE\\"');
    expect(bad).not.toBe(text);
    writeFileSync(join(offline, 'bad.json'), bad);
    const failed = await cli(['audit', 'verify', '--agreement', join(offline, 'agreement.json'), join(offline, 'bad.json')]);
    expect(failed.code).toBe(1);
    expect(failed.err).toMatch(/FAILED at entry \d+: /);
    const noReport = await cli(['audit', 'report', join(offline, 'bad.json')], { HOTLINE_AGREEMENT: join(offline, 'agreement.json') });
    expect(noReport.code).toBe(1);
  });
});

describe('cosigning', () => {
  let d: TestDeployment;
  beforeEach(async () => {
    d = await makeDeployment(Date.now() - 60_000);
    server = await startAuditServer(d.agreement, logSecretFile(d.agreement, d.logSecret), join(dir, 'server'), Object.values(d.devices));
  });

  async function forgedCheckpoint(size: number, rootHash: Uint8Array): Promise<string> {
    const name = logKeyName(d.agreement);
    return signNote(formatCheckpointBody({ origin: name, size, rootHash }), { name, secretKey: fromBase64(d.logSecret, 32) });
  }

  it('consecutive checkpoints are cosigned after a consistency proof from the last one', async () => {
    const jp = client(server!.url, d.agreement, d.devices.jpOp);
    await jp.start();
    const first = await signNow(server!.url, d.devices.jpAud, d.agreement);
    expect(await jp.cosignLatest()).toEqual({ status: 'cosigned', size: first.size });
    expect(await jp.cosignLatest()).toEqual({ status: 'unchanged', size: first.size });
    const cn = client(server!.url, d.agreement, d.devices.cnOp);
    await cn.start();
    await sendAndAck(jp, cn, 'test');
    const second = await signNow(server!.url, d.devices.jpAud, d.agreement);
    const cosigned = next(jp, 'cosigned');
    expect(await jp.cosignLatest()).toEqual({ status: 'cosigned', size: second.size, from: first.size });
    expect(await cosigned).toMatchObject({ size: second.size, from: first.size });
  });

  it('the server shows the two parties two different checkpoints of the same size: the cosigning client detects it and raises an alarm', async () => {
    const jpState = new MemoryStorage();
    const jp = client(server!.url, d.agreement, d.devices.jpOp, jpState);
    await jp.start();
    const real = await signNow(server!.url, d.devices.jpAud, d.agreement);
    expect(await jp.cosignLatest()).toMatchObject({ status: 'cosigned', size: real.size });

    // To cn, the server presents another tree head of the same size, signed with the log key.
    const forged = await forgedCheckpoint(real.size, randomBytes(32));
    const cn = client(server!.url, d.agreement, d.devices.cnOp, new MemoryStorage(), lyingFetch({ '/v1/audit/checkpoint/latest': { size: real.size, note: forged } }));
    const alarms: string[] = [];
    cn.on('event', (e) => e.type === 'audit.alarm' && alarms.push(e.reason));
    const alarm = next(cn, 'audit.alarm');
    await expect(cn.cosignLatest()).rejects.toMatchObject({ code: 'HL_ERR_AUDIT_EQUIVOCATION' });
    expect(await alarm).toMatchObject({ party: 'cn-mnd', code: 'HL_ERR_AUDIT_EQUIVOCATION' });
    expect(alarms).toHaveLength(1);

    // And jp, which remembers the root it cosigned, detects it when shown the other one.
    const jpLied = client(server!.url, d.agreement, d.devices.jpOp, jpState, lyingFetch({ '/v1/audit/checkpoint/latest': { size: real.size, note: forged }, '/v1/audit/checkpoints': { checkpoints: [] } }));
    await expect(jpLied.cosignLatest()).rejects.toMatchObject({ code: 'HL_ERR_AUDIT_EQUIVOCATION' });

    // Nothing was cosigned by cn; the alarms reached the log and the party's consoles.
    const list = (await call(server!.url, 'GET', '/v1/audit/checkpoints', undefined, await login(server!.url, d.devices.cnAud, d.agreement))).body.checkpoints as { note: string }[];
    expect(list.some((c) => c.note.includes('cn-mnd/cn-op-1'))).toBe(false);
    const cnAuditor = client(server!.url, d.agreement, d.devices.cnAud);
    const relayed = next(cnAuditor, 'event', (e) => e.type === 'audit.alarm');
    await cnAuditor.start();
    expect((await relayed).type).toBe('audit.alarm');
  });

  it('a consistency proof from a rewritten history is refused', async () => {
    const jpState = new MemoryStorage();
    const jp = client(server!.url, d.agreement, d.devices.jpOp, jpState);
    await jp.start();
    const real = await signNow(server!.url, d.devices.jpAud, d.agreement);
    expect(await jp.cosignLatest()).toMatchObject({ status: 'cosigned', size: real.size });

    // The rewritten history: the same entries but one, and three more; its own proofs are sound.
    const page = (await call(server!.url, 'GET', `/v1/audit/entries?from=0&to=${real.size}`, undefined, await login(server!.url, d.devices.jpAud, d.agreement))).body;
    const hashes = (page.entries as { leafHash: string }[]).map((e) => fromHex(e.leafHash, 32));
    hashes[1] = randomBytes(32);
    const rewritten = MerkleLog.fromLeafHashes([...hashes, randomBytes(32), randomBytes(32), randomBytes(32)]);
    const size = real.size + 3;
    const note = await forgedCheckpoint(size, rewritten.root());
    const proof = rewritten.consistencyProof(real.size, size).map(toHex);
    const lied = client(server!.url, d.agreement, d.devices.jpOp, jpState, lyingFetch({
      '/v1/audit/checkpoint/latest': { size, note },
      '/v1/audit/checkpoints': { checkpoints: [{ size, note }] },
      '/v1/audit/proof/consistency': (u: URL) => ({ from: Number(u.searchParams.get('from')), to: size, proof }),
    }));
    const alarm = next(lied, 'audit.alarm');
    await expect(lied.cosignLatest()).rejects.toMatchObject({ code: 'HL_ERR_AUDIT_PROOF_INVALID' });
    expect((await alarm).reason).toContain(`from checkpoint ${real.size}`);
    expect(parseCheckpoint(note).size).toBe(size);
  });

  it('hotline listen cosigns for an operator device; hotline audit cosign does it once for an auditor', async () => {
    const work = join(dir, 'cli');
    mkdirSync(work);
    const agreementPath = join(work, 'agreement.json');
    writeFileSync(agreementPath, JSON.stringify(d.agreement));
    const opKey = writeSecret(join(work, 'op.secret.json'), d.devices.jpOp);
    const audKey = writeSecret(join(work, 'aud.secret.json'), d.devices.cnAud);
    const cp = await signNow(server!.url, d.devices.jpAud, d.agreement);

    let stop: () => void = () => {};
    const interrupted = new Promise<void>((resolve) => (stop = resolve));
    let out = '';
    const io: Io = {
      out: (l) => {
        out += l + '\n';
        if (l.includes('"type":"cosigned"')) stop();
      },
      err: () => {},
      env: {},
      interrupted,
      readStdin: async () => '',
    };
    expect(await runCli(['listen', '--device', opKey, '--server', server!.url, '--agreement', agreementPath, '--json'], io)).toBe(0);
    expect(out).toContain(`"type":"cosigned","size":${cp.size}`);

    const once = await cli(['audit', 'cosign', '--device', audKey, '--server', server!.url, '--agreement', agreementPath]);
    expect(once.code).toBe(0);
    expect(once.out).toContain(`cosigned checkpoint ${cp.size}`);
    const note = (await call(server!.url, 'GET', '/v1/audit/checkpoint/latest', undefined, await login(server!.url, d.devices.cnAud, d.agreement))).body.note as string;
    expect(note).toContain('jp-mod/jp-op-1');
    expect(note).toContain('cn-mnd/cn-audit-1');
  });
});

describe('hotline audit decrypt', () => {
  it("reads its own ministry's messages with its archive key; the other ministry's archive key cannot", async () => {
    const now = Date.now() - 60_000;
    const jp = createParty({ id: 'jp-mod', name: 'Japan Ministry of Defense', languages: ['ja', 'en'] });
    const cn = createParty({ id: 'cn-mnd', name: 'China Ministry of National Defense', languages: ['zh', 'en'] });
    const kr = createParty({ id: 'kr-mnd', name: 'Republic of Korea Ministry of National Defense', languages: ['ko', 'en'] });
    const made = createAgreement({ name: 'jp-cn-kr.hotline.test', parties: [jp.party, cn.party, kr.party], now });
    const agreement = await signAgreementByAll(made.agreement, [jp, cn, kr]);
    const logSecret = made.logSecret;
    const dev = {
      jpOp: await enrollDevice(jp, { device: 'op', role: 'operator', now }),
      jpAud: await enrollDevice(jp, { device: 'audit', role: 'auditor', now }),
      jpArc: await enrollDevice(jp, { device: 'archive', role: 'archive', now }),
      cnOp: await enrollDevice(cn, { device: 'op', role: 'operator', now }),
      cnArc: await enrollDevice(cn, { device: 'archive', role: 'archive', now }),
      krOp: await enrollDevice(kr, { device: 'op', role: 'operator', now }),
      krArc: await enrollDevice(kr, { device: 'archive', role: 'archive', now }),
    };
    server = await startAuditServer(agreement, logSecret as LogSecretFile, join(dir, 'server'), Object.values(dev));
    const jpC = client(server.url, agreement, dev.jpOp);
    const cnC = client(server.url, agreement, dev.cnOp);
    const krC = client(server.url, agreement, dev.krOp);
    await Promise.all([jpC.start(), cnC.start(), krC.start()]);

    const work = join(dir, 'work');
    mkdirSync(work);
    const agreementPath = join(work, 'agreement.json');
    writeFileSync(agreementPath, JSON.stringify(agreement));
    const keys = Object.fromEntries(Object.entries(dev).map(([k, v]) => [k, writeSecret(join(work, `${k}.secret.json`), v)])) as Record<keyof typeof dev, string>;
    const exportTo = async (name: string) => {
      const path = join(work, name);
      expect((await cli(['audit', 'export', '--device', keys.jpAud, '--out', path, '--server', server!.url, '--agreement', agreementPath])).code).toBe(0);
      return path;
    };

    await sendAndAck(jpC, krC, '日韓：至急確認されたい');
    const first = await exportTo('first.json');
    const mine = await cli(['audit', 'decrypt', '--device', keys.jpArc, '--agreement', agreementPath, first]);
    expect(mine.code).toBe(0);
    expect(mine.out).toContain('日韓：至急確認されたい');
    const theirs = await cli(['audit', 'decrypt', '--device', keys.krArc, '--agreement', agreementPath, first]);
    expect(theirs.out).toContain('日韓：至急確認されたい');
    const other = await cli(['audit', 'decrypt', '--device', keys.cnArc, '--agreement', agreementPath, first]);
    expect(other.code).toBe(1);
    expect(other.err).toContain('HL_ERR_ENVELOPE_NOT_FOR_ME');
    expect(other.err).toContain('only its own ministry');
    expect(other.out).not.toContain('日韓');

    await sendAndAck(jpC, cnC, '日中：確認されたい');
    const second = await exportTo('second.json');
    const cnReads = await cli(['audit', 'decrypt', '--device', keys.cnArc, '--agreement', agreementPath, second, '--json']);
    expect(cnReads.code).toBe(0);
    expect(cnReads.out).toContain('日中：確認されたい');
    expect(cnReads.out).not.toContain('日韓');
    expect(cnReads.err).toContain('opened 1 of 2 messages; 1 not sealed for cn-mnd/archive');

    // The server form: the export is fetched with an auditor of the same ministry.
    const online = await cli(['audit', 'decrypt', '--device', keys.jpArc, '--agreement', agreementPath, '--auditor', keys.jpAud, server.url]);
    expect(online.code).toBe(0);
    expect(online.out).toContain('日中：確認されたい');
    expect(online.out).toContain('日韓：至急確認されたい');
    const noAuditor = await cli(['audit', 'decrypt', '--device', keys.jpArc, '--agreement', agreementPath, server.url]);
    expect(noAuditor.code).toBe(2);
    const notArchive = await cli(['audit', 'decrypt', '--device', keys.jpOp, '--agreement', agreementPath, second]);
    expect(notArchive.code).toBe(2);
  });
});
