import { HotlineError } from '../../shared/errors.js';
import { verifyDeviceCertificate } from '../../shared/crypto/keys.js';
import { openEnvelope } from '../../shared/crypto/envelope.js';
import { verifyAuditExport, type AuditExport, type AuditVerification } from '../../shared/audit/log-verify.js';
import { buildAuditReport, type AuditReport, type PrecedenceRow, type RungStats } from '../../shared/audit/report.js';
import { reconcileAuditExports, type ReconcileFinding } from '../../shared/audit/reconcile.js';
import type { Agreement, DeviceCertBody, EnvelopeHeader, Plaintext } from '../../shared/protocol/schemas.js';
import { defaultStatePath, LINK_FLAGS, LINK_HELP, loadAgreement, loadDevice, openClient, parse, prekeyPath, printHelp, readJson, required, usage, writePublicFile, type Command } from './common.js';
import { messageJson, messageText } from './link.js';
import { FilePrekeyStore } from '../storage/prekey-file-store.js';
import { labelCodes } from '../../shared/protocol/labels.js';

/**
 * `hotline audit …`: the auditors' tools (issue 5). Export and cosign talk to the relay; verify,
 * report and decrypt work on an export file with nothing but the agreement, so they can run on a
 * machine that never talked to the server.
 */

function readExport(path: string): unknown {
  return readJson(path, 'export', { code: 'HL_ERR_AUDIT_EXPORT_INVALID', message: `${path} is not valid JSON: not an audit export` });
}

/** One line saying what failed first, by entry index or checkpoint. */
export function describeProblem(v: AuditVerification): string {
  const p = v.problem;
  if (!p) return 'no problem';
  const where = p.index !== undefined ? `entry ${p.index}` : p.checkpoint !== undefined ? `checkpoint ${p.checkpoint}` : 'the export';
  const also = p.index !== undefined && p.checkpoint !== undefined ? ` (found at checkpoint ${p.checkpoint})` : '';
  return `${where}${also}: ${p.message} (${p.code})`;
}

function summary(v: AuditVerification): string {
  const named = v.cosigners.map((n) => (v.witnesses?.includes(n) ? `${n} (the other party's relay)` : n));
  const cos = v.cosigners.length > 0 ? `, cosigned by ${named.join(', ')}` : ', not cosigned';
  return `${v.entries} entries, ${v.checkpoints} checkpoints (largest verified size ${v.verifiedSize}${cos}); ${v.envelopes} envelope headers and ${v.receipts} receipts verified against the agreement`;
}

/** Verify or refuse: the report and the decryption rest on a verified export only. */
async function verifiedOrThrow(agreement: Agreement, value: unknown, what: string): Promise<{ exp: AuditExport; v: AuditVerification }> {
  const v = await verifyAuditExport(agreement, value);
  if (!v.ok) throw new HotlineError(v.problem?.code ?? 'HL_ERR_AUDIT_EXPORT_INVALID', `${what} does not verify, so nothing in it can be relied on: ${describeProblem(v)}`);
  return { exp: value as AuditExport, v };
}

export const auditExport: Command = {
  name: 'audit export',
  summary: 'download the audit log export (auditor device)',
  help: `Usage: hotline audit export --device FILE --out FILE [--server URL] [--agreement FILE]

Logs in with an auditor device and saves the server's audit export to FILE: every log entry, every
checkpoint with the parties' cosignatures, every certificate and revocation, and the ciphertexts by
message id (for hotline audit decrypt). Then verifies it against the agreement, as hotline audit
verify does. Exit 0 when it verifies; 1 otherwise (the file is kept as evidence).

${LINK_HELP}
  --out FILE         where to write the export`,
  async run(argv, io) {
    const { values } = parse('audit export', argv, { ...LINK_FLAGS, out: { type: 'string' } });
    if (values.help) return printHelp(io, this.help);
    required('audit export', values, 'device', 'out');
    const { client } = await openClient('audit export', values, io, false);
    try {
      if (client.me.role !== 'auditor') {
        throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `the audit API is for auditor devices; ${client.me.party}/${client.me.device} is ${client.me.role}`);
      }
      const value = await client.auditExport();
      writePublicFile(values.out!, value);
      io.out(`export written: ${values.out}`);
      const v = await verifyAuditExport(client.agreement, value);
      if (!v.ok) {
        io.err(`the export does NOT verify: ${describeProblem(v)}`);
        return 1;
      }
      io.out(`verified: ${summary(v)}`);
      return 0;
    } finally {
      await client.stop();
    }
  },
};

export const auditVerify: Command = {
  name: 'audit verify',
  summary: 'verify an audit export (or reconcile two relays\' exports) with nothing but the agreement',
  help: `Usage: hotline audit verify --agreement FILE EXPORT [EXPORT2] [--json]

Recomputes every leaf and the Merkle tree, checks every checkpoint's log signature and every
cosignature, every envelope header and receipt signature against its certificate (each certificate
against the agreement's party roots), and that the entries hash to each checkpoint's root. Needs no
server and no network. Exit 0 only if everything holds; otherwise prints the first bad entry by
index (or the checkpoint) and what is wrong, and exits 1.

With two exports (two relays, one per party: e.g. jp-export.json cn-export.json, in any order),
verifies each as above and then reconciles them: every envelope header, receipt and refusal that
crossed the relay-to-relay link must be in both logs with the same hash. Each one missing from a log,
altered, or said to be relayed and absent on the other side is named (message id, kind, whose
log); what one relay accepted and had not yet relayed when exported is listed as pending (not a
failure). Exit 0 only if both exports verify and nothing is missing or altered.

  --agreement FILE   the agreement (or HOTLINE_AGREEMENT)
  --json             print the result as JSON`,
  async run(argv, io) {
    const { values, positionals } = parse('audit verify', argv, { agreement: { type: 'string' }, json: { type: 'boolean' } }, true);
    if (values.help) return printHelp(io, this.help);
    if (positionals.length !== 1 && positionals.length !== 2) {
      throw usage('hotline audit verify needs one EXPORT file, or two (one per party\'s relay) to reconcile\nRun: hotline audit verify --help');
    }
    const { agreement } = await loadAgreement(values.agreement, io);
    if (positionals.length === 2) return verifyTwo(agreement, positionals[0]!, positionals[1]!, values.json === true, io);
    const v = await verifyAuditExport(agreement, readExport(positionals[0]!));
    if (values.json) io.out(JSON.stringify(v));
    if (!v.ok) {
      if (!values.json) io.err(`FAILED at ${describeProblem(v)}`);
      return 1;
    }
    if (!values.json) {
      io.out(`OK: ${summary(v)}`);
      if (v.checkpoints === 0) io.err('warning: the export has no checkpoint: no signature by the log key vouches for these entries');
      else if (v.verifiedSize < v.entries) io.err(`note: entries ${v.verifiedSize}..${v.entries - 1} are newer than the last checkpoint (checked by their links, not yet by a signed root)`);
    }
    return 0;
  },
};

/** Both exports verified on their own, then reconciled (even when one fails: what is missing is still named). */
async function verifyTwo(agreement: Agreement, pathA: string, pathB: string, json: boolean, io: Parameters<Command['run']>[1]): Promise<number> {
  const a = readExport(pathA);
  const b = readExport(pathB);
  const va = await verifyAuditExport(agreement, a);
  const vb = await verifyAuditExport(agreement, b);
  const parties = va.logParty && vb.logParty ? ([va.logParty, vb.logParty] as [string, string]) : undefined;
  const r = reconcileAuditExports(agreement, a, b, parties ? { parties } : {});
  const ok = va.ok && vb.ok && r.ok;
  if (json) {
    io.out(JSON.stringify({ ok, exports: [{ file: pathA, ...va }, { file: pathB, ...vb }], reconciliation: r }));
    return ok ? 0 : 1;
  }
  for (const [path, v] of [
    [pathA, va],
    [pathB, vb],
  ] as const) {
    const whose = v.logParty ? ` (log of ${v.logParty}'s relay)` : '';
    if (v.ok) io.out(`OK ${path}${whose}: ${summary(v)}`);
    else io.err(`FAILED ${path}${whose} at ${describeProblem(v)}`);
  }
  if (r.problem) {
    io.err(`NOT RECONCILED: ${r.problem.message} (${r.problem.code})`);
    return 1;
  }
  const signer = (f: ReconcileFinding) => (f.receipt ? ` ${f.receipt.kind} by ${f.receipt.by}` : f.refusal ? ` by ${f.refusal.by}` : '');
  for (const f of r.findings) io.err(`${f.problem.toUpperCase()} (${f.side}): ${f.kind} ${f.messageId}${signer(f)}: ${f.message}`);
  for (const f of r.pending) io.err(`pending (${f.from} → ${f.to}): ${f.kind} ${f.messageId}${signer(f)}: ${f.message}`);
  const [pa, pb] = r.parties;
  // Refusals are named only when there are any (most exchanges have none).
  const counts = `${r.envelopes} envelope headers and ${r.receipts} receipts${r.refusals > 0 ? ` and ${r.refusals} refusals` : ''}`;
  if (r.ok) io.out(`RECONCILED ${pa} ⇄ ${pb}: ${counts} in both logs with the same hash${r.pending.length > 0 ? `; ${r.pending.length} not yet relayed when exported` : ''}`);
  else io.err(`NOT RECONCILED ${pa} ⇄ ${pb}: ${r.findings.length} missing or altered (${counts} agree)`);
  return ok ? 0 : 1;
}

export const auditReport: Command = {
  name: 'audit report',
  summary: 'messages and deadlines per precedence, link tests, from a verified export',
  help: `Usage: hotline audit report (--device FILE [--server URL] | EXPORT) [--agreement FILE] [--json]

Verifies the export (fetched with an auditor device, or read from the file EXPORT), then prints per
precedence: messages sent, delivered, acknowledged, answered (will-comply / cannot-comply) and
complied, the time from acceptance to each rung (median, 95th percentile, worst), and the deadlines
missed; and the link tests passed and failed. Each rung counts the ones below it: a will-comply is
also an acknowledgement. Exercise messages are not counted as traffic: they get a table of their
own; link tests count only as link tests. Refuses an export that does not verify.

  --device FILE      an auditor device: fetch the export from the server
  --server URL       the relay (or HOTLINE_SERVER)
  --agreement FILE   the agreement (or HOTLINE_AGREEMENT; default agreement.json beside the file)
  --json             the report as JSON`,
  async run(argv, io) {
    const { values, positionals } = parse('audit report', argv, { ...LINK_FLAGS, json: { type: 'boolean' } }, true);
    if (values.help) return printHelp(io, this.help);
    if ((values.device === undefined) === (positionals.length === 0) || positionals.length > 1) {
      throw usage('give either --device FILE (fetch from the server) or one EXPORT file\nRun: hotline audit report --help');
    }
    let agreement: Agreement;
    let value: unknown;
    if (values.device !== undefined) {
      const { client } = await openClient('audit report', values, io, false);
      try {
        agreement = client.agreement;
        value = await client.auditExport();
      } finally {
        await client.stop();
      }
    } else {
      agreement = (await loadAgreement(values.agreement, io, positionals[0])).agreement;
      value = readExport(positionals[0]!);
    }
    const { exp } = await verifiedOrThrow(agreement, value, 'the export');
    const report = buildAuditReport(exp.entries);
    if (values.json) io.out(JSON.stringify(report));
    else for (const line of formatReport(report)) io.out(line);
    return 0;
  },
};

function ms(v: number | null): string {
  if (v === null) return '—';
  return v < 1000 ? `${v} ms` : v < 120_000 ? `${(v / 1000).toFixed(1)} s` : `${(v / 60_000).toFixed(1)} min`;
}

function rung(s: RungStats): string {
  return `${ms(s.medianMs)} / ${ms(s.p95Ms)} / ${ms(s.worstMs)}`;
}

function table(rows: readonly PrecedenceRow[]): string[] {
  const head = [
    'precedence', 'sent', 'delivered', 'acknowledged', 'answered (will / cannot)', 'complied',
    'to delivered (median / p95 / worst)', 'to acknowledged (median / p95 / worst)', 'to answered (median / p95 / worst)', 'to complied (median / p95 / worst)', 'deadlines missed',
  ];
  const cells = rows.map((x) => [
    x.precedence, String(x.sent), String(x.delivered), String(x.acknowledged), `${x.answered} (${x.willComply} / ${x.cannotComply})`, String(x.complied),
    rung(x.toDelivered), rung(x.toAcknowledged), rung(x.toAnswered), rung(x.toComplied), String(x.deadlinesMissed),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((row) => row[i]!.length)));
  const line = (c: string[]) => c.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(head), ...cells.map(line)];
}

export function formatReport(r: AuditReport): string[] {
  return [
    ...table(r.rows),
    '',
    `link tests: ${r.linkTests.passed} passed, ${r.linkTests.failed} failed`,
    `exercise messages: ${r.exercises}${r.exercises === 0 ? '' : ' (not counted above):'}`,
    ...(r.exercises === 0 ? [] : table(r.exerciseRows.filter((x) => x.sent > 0))),
    // Security labels (PROTOCOL.md "Security labels"): shown once any message carries one.
    ...(r.labels.length === 0 ? [] : ['', 'by security label:', ...r.labels.map((l) => `  ${(l.label === undefined ? '(no label)' : labelCodes(l.label)).padEnd(40)} ${l.sent} sent${l.exercises === 0 ? '' : `, ${l.exercises} exercise`}`)]),
    ...translationLines(r.translations),
  ];
}

/** Translations listed under their original (the original is authoritative; each translation is its own message). */
function translationLines(translations: AuditReport['translations']): string[] {
  const originals = Object.entries(translations);
  if (originals.length === 0) return [];
  return [
    `translations: ${originals.reduce((n, [, list]) => n + list.length, 0)} (counted above as messages)`,
    ...originals.flatMap(([original, list]) => [
      `  ${original} (original, authoritative)`,
      ...list.map((t) => `    translation ${t.id} by ${t.by} at ${new Date(t.at).toISOString()}`),
    ]),
  ];
}

export const auditDecrypt: Command = {
  name: 'audit decrypt',
  summary: "read your ministry's messages in an export with its archive key",
  help: `Usage: hotline audit decrypt --device ARCHIVE_KEY_FILE (EXPORT | --auditor FILE SERVER_URL)
                            [--agreement FILE] [--json]

Verifies the export against the agreement, then opens every message in it that was sealed for this
archive device (its header lists the archive key as a recipient), checking each sender's signature
against a certificate that chains to the agreement. Messages not sealed for this key are counted,
not opened: an archive key reads its own ministry's messages only, and a key that opens none of
them is refused (HL_ERR_ENVELOPE_NOT_FOR_ME).

With a server URL instead of a file, the export is fetched with an auditor device of the same
ministry (--auditor): archive devices cannot read the audit API.

  --device FILE      the archive device's key file
  --auditor FILE     an auditor device, to fetch the export from SERVER_URL
  --prekeys FILE     the archive's prekey secrets (default DEVICE.state.json.prekeys, beside the key file,
                     kept by hotline prekeys --keep-days);
                     a message wrapped to a prekey whose secret was deleted (past the retention) fails
                     with HL_ERR_PREKEY_SECRET_GONE
  --agreement FILE   the agreement (or HOTLINE_AGREEMENT; default agreement.json beside the key file)
  --json             one JSON object per message`,
  async run(argv, io) {
    const { values, positionals } = parse(
      'audit decrypt',
      argv,
      { device: { type: 'string' }, auditor: { type: 'string' }, agreement: { type: 'string' }, state: { type: 'string' }, prekeys: { type: 'string' }, json: { type: 'boolean' } },
      true,
    );
    if (values.help) return printHelp(io, this.help);
    required('audit decrypt', values, 'device');
    if (positionals.length !== 1) throw usage('hotline audit decrypt needs one EXPORT file or SERVER_URL\nRun: hotline audit decrypt --help');
    const source = positionals[0]!;
    const archive = loadDevice(values.device!, io);
    const me = archive.certificate.cert;
    if (me.role !== 'archive') throw usage(`--device must be an archive key; ${me.party}/${me.device} is ${me.role}`);
    // The archive's prekey secrets kept for its retention (`hotline prekeys --keep-days`), if it has
    // any: a message wrapped to a prekey whose secret is not here fails with HL_ERR_PREKEY_SECRET_GONE.
    const prekeyFile = values.prekeys ?? prekeyPath(defaultStatePath(values.device!));
    const held = await new FilePrekeyStore(prekeyFile).load();
    const { agreement } = await loadAgreement(values.agreement, io, values.device);
    let value: unknown;
    if (/^https?:\/\//.test(source)) {
      if (values.auditor === undefined) throw usage('with a server URL, give --auditor FILE: archive devices cannot read the audit API');
      const { client } = await openClient('audit decrypt', { device: values.auditor, server: source, agreement: values.agreement, state: values.state }, io, false);
      try {
        if (client.me.party !== me.party) throw usage(`--auditor is of ${client.me.party}, the archive key of ${me.party}: use an auditor of the same ministry`);
        value = await client.auditExport();
      } finally {
        await client.stop();
      }
    } else {
      value = readExport(source);
    }
    const { exp } = await verifiedOrThrow(agreement, value, 'the export');

    const certs: DeviceCertBody[] = [];
    for (const c of exp.certificates) certs.push(await verifyDeviceCertificate(agreement, c, { now: c.cert.notBefore }));
    const certAt = (ref: { party: string; device: string }, at: number) =>
      certs.find((c) => c.party === ref.party && c.device === ref.device && c.notBefore <= at && at < c.notAfter);

    let envelopes = 0;
    let opened = 0;
    let notForMe = 0;
    let failed = 0;
    for (const text of exp.entries) {
      const e = JSON.parse(text) as { type: string; at: number; header?: EnvelopeHeader; signature?: string };
      if (e.type !== 'envelope.accepted' || !e.header || e.signature === undefined) continue;
      const h = e.header;
      if (h.linkTest) continue;
      envelopes++;
      if (!h.recipients.some((r) => r.party === me.party && r.device === me.device)) {
        notForMe++;
        continue;
      }
      const ciphertext = exp.ciphertexts?.[h.id];
      const sender = certAt(h.from, h.sentAt);
      try {
        if (ciphertext === undefined) throw new HotlineError('HL_ERR_AUDIT_EXPORT_INVALID', `the export holds no ciphertext for ${h.id}`);
        if (!sender) throw new HotlineError('HL_ERR_CERT_UNKNOWN_DEVICE', `no certificate of ${h.from.party}/${h.from.device} in the export`);
        const m: { header: EnvelopeHeader; plaintext: Plaintext } = await openEnvelope({ header: h, signature: e.signature, ciphertext }, { device: archive, senderCert: sender, prekeys: held });
        opened++;
        // Codes read from this agreement, in this party's languages, as a recipient reads them.
        const content = { view: { agreement, party: me.party } };
        if (values.json) io.out(JSON.stringify(messageJson({ ...m, envelopeHash: '', acceptedAt: e.at }, content)));
        else io.out(messageText(m, undefined, undefined, content));
      } catch (err) {
        failed++;
        const code = err instanceof HotlineError ? err.code : 'HL_ERR_INTERNAL';
        io.err(`cannot open ${h.id}: ${(err as Error).message} (${code})`);
        if (code === 'HL_ERR_PREKEY_SECRET_GONE') io.err(`  (prekey secrets read from ${prekeyFile}: past the retention given to hotline prekeys --keep-days, or another file: --prekeys FILE)`);
      }
    }
    if (envelopes > 0 && opened === 0 && failed === 0) {
      throw new HotlineError(
        'HL_ERR_ENVELOPE_NOT_FOR_ME',
        `none of the ${envelopes} messages in the export was sealed for the archive key ${me.party}/${me.device}: an archive key reads only its own ministry's messages. Use your ministry's archive key.`,
      );
    }
    io.err(`opened ${opened} of ${envelopes} messages; ${notForMe} not sealed for ${me.party}/${me.device}${failed > 0 ? `; ${failed} could not be opened` : ''}`);
    return failed > 0 ? 1 : 0;
  },
};

export const auditCosign: Command = {
  name: 'audit cosign',
  summary: "cosign the log's latest checkpoint after checking it (operator or auditor device)",
  help: `Usage: hotline audit cosign --device FILE [--server URL] [--agreement FILE] [--state FILE]

Fetches the latest checkpoint, verifies the log's signature, checks that no checkpoint this device
has seen has another root for the same size, verifies a consistency proof from the last checkpoint
this device cosigned (remembered in its state file), then posts this device's cosignature. Any
failed check is an audit alarm: printed, reported to the party's consoles, nothing cosigned, exit 1.
(\`hotline listen\` does this automatically for operator devices.)

${LINK_HELP}`,
  async run(argv, io) {
    const { values } = parse('audit cosign', argv, LINK_FLAGS);
    if (values.help) return printHelp(io, this.help);
    const { client } = await openClient('audit cosign', values, io, false);
    client.on('audit.alarm', (a) => io.err(`! audit alarm (${a.party}): ${a.reason} (${a.code})`));
    try {
      const r = await client.cosignLatest();
      if (r.status === 'none') io.out('no checkpoint to cosign yet');
      else if (r.status === 'unchanged') io.out(`checkpoint ${r.size} is the one this device cosigned last; nothing new`);
      else io.out(`cosigned checkpoint ${r.size}${r.from === undefined ? ' (first cosignature of this device)' : ` (consistent with ${r.from})`}`);
      return 0;
    } finally {
      await client.stop();
    }
  },
};

export const AUDIT_COMMANDS: readonly Command[] = [auditExport, auditVerify, auditReport, auditDecrypt, auditCosign];

/** `hotline audit` alone or with --help: the group's overview. */
export const auditGroup: Command = {
  name: 'audit',
  summary: 'auditors: export, verify, report, decrypt; cosign checkpoints',
  help: [
    'Usage: hotline audit COMMAND [options]   (hotline audit COMMAND --help for each)',
    '',
    'The tamper-evident audit log: every message header, receipt, deadline, link test, enrolment,',
    'login and server start/stop, in a Merkle tree whose checkpoints the server signs and the parties',
    'cosign. verify, report and decrypt need only the export file and the agreement.',
    '',
    ...AUDIT_COMMANDS.map((c) => `  ${c.name.padEnd(13)}  ${c.summary}`),
  ].join('\n'),
  async run(argv, io) {
    if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
      io.out(this.help);
      return argv.length === 0 ? 2 : 0;
    }
    throw usage(`"${argv[0]}" is not an audit command; run hotline audit --help`);
  },
};
