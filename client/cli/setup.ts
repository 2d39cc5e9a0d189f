import { dirname, join } from 'node:path';
import { HotlineError } from '../../shared/errors.js';
import { agreementHash, createAgreement, createLogKey, createParty, enrollDevice, fingerprint, revokeDevice, revokeRelay } from '../../shared/crypto/keys.js';
import { checkAgreementSignatures, signAgreementByAll, type AgreementSignatureStatus } from '../../shared/crypto/agreement-signatures.js';
import { fromBase64 } from '../../shared/encoding/base64.js';
import { assertSchema } from '../../shared/protocol/validate.js';
import { AgreementLabels, DeviceCertificate, PartyPublic, RelayCertificate, type CatalogueEntry, type LogSecretFile, type PartySecretFile, type Role } from '../../shared/protocol/schemas.js';
import { passphraseOf, sealKeyFile } from './key-files.js';
import { fileKind, loadPartyRoot, named, parse, readAgreementFile, serverUrl, printHelp, readJson, required, stem, usage, writePublicFile, writeSecretFile, type Command, type Io } from './common.js';

export const partyCreate: Command = {
  name: 'party create',
  summary: 'create a party (ministry) root key',
  help: `Usage: hotline party create --id ID --name NAME --out FILE [--languages ja,en]
                           (--passphrase-file FILE | --no-passphrase)

Creates a party's Ed25519 root key. FILE (mode 0600) holds the root SECRET: keep it offline; it
signs the party's device certificates and revocations. The public part is written beside it as
STEM.public.json: that is the file to hand over for \`hotline agreement create\`.

FILE is sealed with a passphrase (scrypt, then secretbox): from --passphrase-file FILE (its first
line), HOTLINE_PASSPHRASE_FILE or HOTLINE_PASSPHRASE. Every command that opens it then needs the
same passphrase. --no-passphrase writes it plain instead (then keep it on an encrypted, offline
medium).

  --id ID              party id: lowercase letters, digits, dashes (e.g. jp-mod)
  --name NAME          full name (e.g. "Japan Ministry of Defense")
  --languages LIST     comma-separated language tags, first is the default (default: en)
  --out FILE           where to write the secret (e.g. jp-mod.secret.json)
  --passphrase-file F  seal FILE with the passphrase in F
  --no-passphrase      write FILE plain (opt out of sealing)`,
  async run(argv, io) {
    const { values } = parse('party create', argv, {
      id: { type: 'string' },
      name: { type: 'string' },
      languages: { type: 'string' },
      out: { type: 'string' },
      'no-passphrase': { type: 'boolean' },
    });
    if (values.help) return printHelp(io, this.help);
    required('party create', values, 'id', 'name', 'out');
    const languages = (values.languages ?? 'en').split(',').map((l) => l.trim()).filter(Boolean);
    const party = asUsage(() => createParty({ id: values.id!, name: values.name!, languages }));
    const publicPath = `${stem(values.out!)}.public.json`;
    const passphrase = values['no-passphrase'] ? undefined : passphraseOf(io);
    if (passphrase === undefined && !values['no-passphrase']) {
      throw usage(
        'hotline party create seals the root file with a passphrase: give --passphrase-file FILE (or set HOTLINE_PASSPHRASE_FILE or HOTLINE_PASSPHRASE); to write it plain instead, add --no-passphrase',
      );
    }
    writeSecretFile(values.out!, passphrase === undefined ? party : sealKeyFile(party, passphrase));
    writePublicFile(publicPath, party.party);
    io.out(`party ${party.party.id} created`);
    io.out(`  secret (keep offline, mode 0600): ${values.out}${passphrase === undefined ? ' — NOT sealed (--no-passphrase)' : ' — sealed with the passphrase'}`);
    io.out(`  public part (for hotline agreement create): ${publicPath}`);
    io.out(`  root key fingerprint: ${fingerprint(fromBase64(party.party.rootKey, 32))}`);
    return 0;
  },
};

export const agreementCreate: Command = {
  name: 'agreement create',
  summary: 'create the agreement from the parties’ public parts',
  help: `Usage: hotline agreement create --party FILE --party FILE [...] --out FILE
                                [--name NAME] [--log-key PUB | --log-key-out FILE]
                                [--relay PARTY=URL ...] [--relay-log-key PARTY=PUB ...]
                                [--labels FILE] [--catalogue FILE] [--prekey-rotation-days N]

Creates the agreement every client and the server load: the parties (from their PUBLIC part files,
written by \`hotline party create\`), the server's log public key and the default deadlines.
Unless --log-key gives an existing log public key, a new server log key is made and its secret
written to --log-key-out (mode 0600; default STEM.log.secret.json beside --out): give it to the
server operator.

  --party FILE         a party's public part (repeat for each party; at least two)
  --name NAME          the hotline's name (default: the party ids joined, e.g. jp-mod/cn-mnd hotline)
  --log-key PUB        base64 log public key of an existing server log key
  --log-key-out FILE   where to write a new log secret
  --out FILE           where to write the agreement (e.g. agreement.json)
  --relay PARTY=URL    PARTY runs its own relay, answering at URL (repeat for each party, and for
                       a second URL of one party): a version-2 agreement (see README "Two relays").
                       Each such relay gets its own log key: --relay-log-key PARTY=PUB names an
                       existing one, else one is made and written to STEM.PARTY.log.secret.json
                       (mode 0600) for that party's relay operator. Parties without --relay share
                       one relay, whose log key is the one above. Without --relay: version 1, one
                       relay shared by every party, as before.
  --labels FILE        the security labels messages may carry: a JSON file
                       {"classifications": [{"code", "names": {"en", "ja", …}}, …], "caveats": [...]}
                       (README "Security labels"); without it the agreement defines none.
  --catalogue FILE     the pre-agreed messages, a JSON array of {"code": "C07", "text": {"ja": "…",
                       "zh": "…", "en": "…"}} (codes of A–Z, 0–9 and -, each once): part of the
                       agreement, so every party holds the same entries (docs/messages.md).
  --prekey-rotation-days N
                       how often each device replaces its prekey (default 7; README "Key rotation
                       and forward secrecy"): a stolen device key opens about 2 × N days of traffic.`,
  async run(argv, io) {
    const { values } = parse('agreement create', argv, {
      party: { type: 'string', multiple: true },
      name: { type: 'string' },
      'log-key': { type: 'string' },
      'log-key-out': { type: 'string' },
      out: { type: 'string' },
      relay: { type: 'string', multiple: true },
      'relay-log-key': { type: 'string', multiple: true },
      labels: { type: 'string' },
      catalogue: { type: 'string' },
      'prekey-rotation-days': { type: 'string' },
    });
    if (values.help) return printHelp(io, this.help);
    required('agreement create', values, 'out');
    const labels = values.labels === undefined ? undefined : assertSchema(AgreementLabels, readJson(values.labels, 'labels file'), 'HL_ERR_AGREEMENT_INVALID');
    const rotationDays = values['prekey-rotation-days'] === undefined ? undefined : Number(values['prekey-rotation-days']);
    if (rotationDays !== undefined && !(Number.isInteger(rotationDays) && rotationDays >= 1 && rotationDays <= 366)) throw usage('--prekey-rotation-days takes a whole number of days from 1 to 366');
    const catalogue = values.catalogue === undefined ? undefined : (readJson(values.catalogue, 'catalogue file') as CatalogueEntry[]);
    const relayUrls = pairs('--relay', values.relay ?? [], (v) => /^https?:\/\/\S+$/.test(v), 'an http(s) URL');
    const relayLogKeys = pairs('--relay-log-key', values['relay-log-key'] ?? [], (v) => /^[A-Za-z0-9+/]{43}=$/.test(v), 'a base64 public key');
    for (const p of relayLogKeys.keys()) if (!relayUrls.has(p)) throw usage(`--relay-log-key ${p}=… needs --relay ${p}=URL`);
    const files = values.party ?? [];
    if (files.length < 2) throw usage('hotline agreement create needs --party at least twice (one public part file per party)');
    if (values['log-key'] !== undefined && values['log-key-out'] !== undefined) throw usage('give --log-key or --log-key-out, not both');
    const parties = files.map((f) => {
      const value = readJson(f, 'party file') as { type?: unknown; party?: unknown };
      if (value?.type === 'hotline-party-secret') {
        throw usage(`${f} is a party SECRET file; pass its public part (${stem(f)}.public.json) instead: the agreement needs no secret`);
      }
      return named(f, 'party public part', () => assertSchema(PartyPublic, value, 'HL_ERR_AGREEMENT_INVALID'), { value, expect: 'party-public' });
    });
    if (values['log-key'] !== undefined) asUsage(() => fromBase64(values['log-key']!, 32));
    for (const p of relayUrls.keys()) if (!parties.some((x) => x.id === p)) throw usage(`--relay ${p}=…: no --party file of ${p}`);
    // Each party with its own relay gets its own log key (made here unless named).
    const relaySecrets = new Map<string, LogSecretFile>();
    const relays = [...relayUrls].map(([party, urls]) => {
      let logKey = relayLogKeys.get(party)?.[0];
      if (logKey === undefined) {
        const made = createLogKey();
        relaySecrets.set(party, made);
        logKey = made.logKey;
      }
      return { party, urls, logKey };
    });
    // When every party runs its own relay there is no shared relay: its log key is the first relay's.
    const everyPartyHasRelay = relays.length === parties.length;
    const sharedLogKey = values['log-key'] ?? (everyPartyHasRelay ? relays[0]!.logKey : undefined);
    const { agreement, logSecret } = asUsage(() =>
      createAgreement({
        name: values.name ?? `${parties.map((p) => p.id).join('.')}.hotline`,
        parties,
        ...(sharedLogKey === undefined ? {} : { logKey: sharedLogKey }),
        ...(relays.length > 0 ? { relays } : {}),
        ...(labels === undefined ? {} : { labels }),
        ...(catalogue === undefined ? {} : { catalogue }),
        ...(rotationDays === undefined ? {} : { prekeyRotationMs: rotationDays * 24 * 3_600_000 }),
        now: Date.now(),
      }),
    );
    const base = join(dirname(values.out!), `${stem(values.out!).split('/').pop()}`);
    const logOut = values['log-key-out'] ?? `${base}.log.secret.json`;
    if (logSecret) writeSecretFile(logOut, logSecret);
    for (const [party, secret] of relaySecrets) writeSecretFile(`${base}.${party}.log.secret.json`, secret);
    writePublicFile(values.out!, agreement);
    io.out(`agreement written: ${values.out} (version ${agreement.v})`);
    io.out(`  parties: ${parties.map((p) => `${p.id} (${p.name})`).join(', ')}`);
    for (const r of relays) io.out(`  relay of ${r.party}: ${r.urls.join(', ')}`);
    if (agreement.catalogue) io.out(`  catalogue: ${agreement.catalogue.length} entries (${agreement.catalogue.map((e) => e.code).join(', ')})`);
    if (agreement.prekeyRotationMs !== undefined) io.out(`  prekey rotation: every ${agreement.prekeyRotationMs / (24 * 3_600_000)} days`);
    io.out(`  agreement hash (compare by voice with every party): ${agreementHash(agreement)}`);
    io.out(`  next, each party's administrator signs it: hotline agreement sign --root ROOT.secret.json --agreement ${values.out}`);
    if (logSecret) io.out(`  server log secret (mode 0600, for the server operator): ${logOut}`);
    for (const party of relaySecrets.keys()) io.out(`  log secret of the relay of ${party} (mode 0600, for its operator): ${base}.${party}.log.secret.json`);
    return 0;
  },
};

export const agreementSign: Command = {
  name: 'agreement sign',
  summary: 'add a party root’s signature to the agreement',
  help: `Usage: hotline agreement sign --root FILE --agreement FILE [--out FILE]

Adds the signature of a party's root (the root secret file from \`hotline party create\`) to the
agreement, in place (or written to --out). Each party's administrator signs the same agreement file
in turn, after comparing its hash by voice with the other parties; the relay, the CLI and the
consoles refuse an agreement that not every party has signed. The signature covers the agreement
without its signatures, so the hash stays the same as signatures are added (PROTOCOL.md "Agreement
signatures"). Prints which parties have signed and which are still missing.

  --root FILE          the signing party's root secret file (repeat for a demo holding several)
  --agreement FILE     the agreement to sign (default HOTLINE_AGREEMENT)
  --out FILE           write the signed agreement here instead of over --agreement`,
  async run(argv, io) {
    const { values } = parse('agreement sign', argv, {
      root: { type: 'string', multiple: true },
      agreement: { type: 'string' },
      out: { type: 'string' },
    });
    if (values.help) return printHelp(io, this.help);
    if ((values.root ?? []).length === 0) throw usage('hotline agreement sign needs --root FILE (the signing party\'s root secret file)');
    const { agreement, path } = readAgreementFile(values.agreement, io);
    const roots = values.root!.map((f) => loadPartyRoot(f, io));
    const status = await signAgreementFile(io, path, roots, values.out);
    io.out(`agreement ${values.out ?? path} signed by ${roots.map((r) => r.party.id).join(', ')}`);
    io.out(`  agreement hash (unchanged by signing; compare by voice): ${agreementHash(agreement)}`);
    io.out(`  signed by: ${status.signed.join(', ') || 'none'}`);
    io.out(status.missing.length === 0 ? '  every party has signed: the agreement is ready to use' : `  still to sign: ${status.missing.join(', ')}`);
    return 0;
  },
};

/**
 * Sign the agreement file at `path` with each root (in turn) and write it to `out` (default: in
 * place); returns who has signed. Used by \`agreement sign\` and by the demos.
 */
export async function signAgreementFile(io: Io, path: string, roots: readonly PartySecretFile[], out = path): Promise<AgreementSignatureStatus> {
  const { agreement } = readAgreementFile(path, io);
  await checkAgreementSignatures(agreement);
  const signed = await signAgreementByAll(agreement, roots);
  writePublicFile(out, signed);
  return checkAgreementSignatures(signed);
}

/**
 * A demo directory's agreement signed by every demo party (their roots are in DIR/PARTY/): made
 * signed, and a demo made before agreements were signed is signed on its next start.
 */
export async function signDemoAgreement(io: Io, dir: string, parties: readonly string[]): Promise<void> {
  const path = join(dir, 'agreement.json');
  const { missing } = await checkAgreementSignatures(readAgreementFile(path, io).agreement);
  if (missing.length === 0 || missing.some((p) => !parties.includes(p))) return;
  await signAgreementFile(io, path, missing.map((p) => loadPartyRoot(join(dir, p, 'root.secret.json'), io)));
}

export const deviceEnroll: Command = {
  name: 'device enroll',
  summary: 'make a device key and certificate signed by the party root',
  help: `Usage: hotline device enroll --root FILE --id ID --role operator|auditor|archive --out FILE
                             [--server URL] [--valid-days N]

Makes a device's signing and encryption keys and its certificate, signed by the party root (the
root secret file from \`hotline party create\`). FILE (mode 0600) is the device key file that
\`hotline send\`, \`listen\` and \`ack\` use. With --server the certificate is also registered with the
relay (it is self-authenticating; a device is also registered on its first login). Enrolled without
--server (or before the relay runs), register it later with \`hotline device register\`.

  --root FILE          the party's root secret file
  --id ID              device id (e.g. operator-1)
  --role ROLE          operator (sends, receives, acknowledges), auditor (reads the log),
                       archive (receives a copy of every message, never answers)
  --valid-days N       certificate lifetime (default 365)
  --server URL         also POST the certificate to this relay
  --out FILE           where to write the device key file (e.g. jp-operator-1.secret.json)
  --device-passphrase-file F   seal the new device key file with the passphrase in F (its first
                       line); its commands then need it (--passphrase-file). Default: plain, mode
                       0600. (--passphrase-file opens a sealed root file.)`,
  async run(argv, io) {
    const { values } = parse('device enroll', argv, {
      root: { type: 'string' },
      id: { type: 'string' },
      role: { type: 'string' },
      out: { type: 'string' },
      server: { type: 'string' },
      'valid-days': { type: 'string' },
      'device-passphrase-file': { type: 'string' },
    });
    if (values.help) return printHelp(io, this.help);
    required('device enroll', values, 'root', 'id', 'role', 'out');
    const role = values.role as Role;
    if (!['operator', 'auditor', 'archive'].includes(role)) throw usage(`--role must be operator, auditor or archive, got "${values.role}"`);
    const days = values['valid-days'] === undefined ? 365 : Number(values['valid-days']);
    if (!Number.isInteger(days) || days < 1) throw usage('--valid-days must be a whole number of days, at least 1');
    const root = loadPartyRoot(values.root!, io);
    const device = await asUsageAsync(() => enrollDevice(root, { device: values.id!, role, now: Date.now(), validForMs: days * 86_400_000 }));
    const devicePassphrase = values['device-passphrase-file'] === undefined ? undefined : passphraseOf({ ...io, passphraseFile: values['device-passphrase-file'] });
    writeSecretFile(values.out!, devicePassphrase === undefined ? device : sealKeyFile(device, devicePassphrase));
    io.out(`device ${root.party.id}/${values.id} (${role}) enrolled: ${values.out}${devicePassphrase === undefined ? '' : ' (sealed with its passphrase)'}`);
    io.out(`  signing key fingerprint: ${fingerprint(fromBase64(device.certificate.cert.signKey, 32))}`);
    if (values.server !== undefined) {
      await postCertificate(
        values.server,
        device.certificate,
        `the key file ${values.out} was written; once the server runs, register it with: hotline device register --device ${values.out} --server ${values.server}`,
      );
      io.out(`  registered with ${values.server}`);
    } else if (role === 'archive') {
      io.out(`  not registered yet: an archive device gets copies only once registered (hotline device register --device ${values.out} --server URL)`);
    }
    return 0;
  },
};

/** POST /v1/directory/devices: register a certificate with the relay. */
export async function postCertificate(server: string, certificate: DeviceCertificate, hint = 'nothing was registered; try again'): Promise<void> {
  await postDirectory(server, '/v1/directory/devices', certificate, 'certificate', hint);
}

export const deviceRegister: Command = {
  name: 'device register',
  summary: 'register an existing device’s certificate with the relay',
  help: `Usage: hotline device register --device FILE --server URL

Registers the certificate of an existing device with the relay: for a device enrolled while the
relay was not running or not reachable (\`hotline device enroll\` without --server, or whose
--server failed). Until its certificate is registered, the other devices do not seal messages for
it: an archive device misses every message. An operator or auditor device is also registered when
it first connects; an archive device never connects on its own, so register it. Registering again
is harmless. The certificate is self-authenticating (signed by the party root): the relay checks it
against the agreement; no secret leaves this machine.

  --device FILE        the device key file (from hotline device enroll), or its certificate
  --server URL         the relay, e.g. http://127.0.0.1:8080 (or HOTLINE_SERVER)`,
  async run(argv, io) {
    const { values } = parse('device register', argv, { device: { type: 'string' }, server: { type: 'string' } });
    if (values.help) return printHelp(io, this.help);
    required('device register', values, 'device');
    const url = serverUrl(values.server, io);
    const raw = readJson(values.device!, 'device key file') as { certificate?: unknown };
    const certificate = named(values.device!, 'device key file', () => assertSchema(DeviceCertificate, raw.certificate ?? raw, 'HL_ERR_CERT_MALFORMED'), {
      value: raw,
      expect: fileKind(raw) === 'device-certificate' ? 'device-certificate' : 'device',
    });
    const c = certificate.cert;
    await postCertificate(url, certificate);
    io.out(`registered ${c.party}/${c.device} (${c.role}) with ${url}; valid until ${new Date(c.notAfter).toISOString()}`);
    return 0;
  },
};

/** POST a self-authenticating directory object (certificate or revocation) to the relay. */
async function postDirectory(server: string, path: string, body: unknown, what: string, unreachableHint: string): Promise<void> {
  let res: Response;
  try {
    res = await fetch(`${server.replace(/\/+$/, '')}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  } catch (cause) {
    throw new HotlineError('HL_ERR_CLIENT_UNREACHABLE', `cannot reach ${server}: is the server running? (${unreachableHint})`, { cause });
  }
  if (!res.ok) {
    const err = (await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
    throw new HotlineError('HL_ERR_CLIENT_REFUSED', `the server refused the ${what}: ${err.error?.code ?? res.status} ${err.error?.message ?? ''}`.trim());
  }
}

export const deviceRevoke: Command = {
  name: 'device revoke',
  summary: 'revoke a device certificate (signed by the party root)',
  help: `Usage: hotline device revoke --root FILE --device FILE [--reason TEXT] [--server URL] [--out FILE]

Revokes a device of your party: signs a revocation with the party root and, with --server, hands it
to the relay, which closes the device's open links at once and refuses it from then on. Clients
refuse the revoked certificate too (they fetch revocations with the directory and check them
against the root themselves). The revocation names the certificate's signing key, so the same
device id can later be enrolled again with new keys.

  --root FILE          the party's root secret file
  --device FILE        the device's key file, or its certificate (a JSON file holding {cert, signature},
                       e.g. saved from \`hotline directory\`); or a relay's secret file or certificate
                       (two-relay deployments: post the revocation to both relays)
  --reason TEXT        why (kept in the revocation and the audit log; no secrets)
  --server URL         POST the revocation to this relay
  --out FILE           also write the signed revocation to FILE (to hand over out of band)`,
  async run(argv, io) {
    const { values } = parse('device revoke', argv, {
      root: { type: 'string' },
      device: { type: 'string' },
      reason: { type: 'string' },
      server: { type: 'string' },
      out: { type: 'string' },
    });
    if (values.help) return printHelp(io, this.help);
    required('device revoke', values, 'root', 'device');
    if (values.server === undefined && values.out === undefined) throw usage('give --server URL (to revoke at the relay) and/or --out FILE (to keep the signed revocation)');
    const root = loadPartyRoot(values.root!, io);
    const raw = readJson(values.device!, 'device key or certificate file') as { certificate?: unknown };
    // A relay (its secret file or its certificate) is revoked the same way, by its id and link key.
    const maybeRelay = (raw.certificate ?? raw) as { cert?: { type?: unknown } };
    if (maybeRelay?.cert?.type === 'relay') {
      const relayCert = named(values.device!, 'relay certificate', () => assertSchema(RelayCertificate, maybeRelay, 'HL_ERR_CERT_MALFORMED'));
      const revocation = await asUsageAsync(() =>
        revokeRelay(root, relayCert.cert, { at: Date.now(), ...(values.reason === undefined ? {} : { reason: values.reason }) }),
      );
      const who = `relay ${relayCert.cert.party}/${relayCert.cert.relay}`;
      if (values.out !== undefined) {
        writePublicFile(values.out, revocation);
        io.out(`revocation of ${who} written: ${values.out}`);
      }
      if (values.server !== undefined) {
        await postDirectory(values.server, '/v1/directory/revocations', revocation, 'revocation', 'nothing was revoked at the relay; try again');
        io.out(`${who} revoked at ${values.server}`);
      }
      return 0;
    }
    const certificate = named(values.device!, 'device certificate', () =>
      assertSchema(DeviceCertificate, raw.certificate ?? raw, 'HL_ERR_CERT_MALFORMED'), { value: raw, expect: fileKind(raw) === 'device' ? 'device' : 'device-certificate' },
    );
    const revocation = await asUsageAsync(() =>
      revokeDevice(root, certificate.cert, { at: Date.now(), ...(values.reason === undefined ? {} : { reason: values.reason }) }),
    );
    const who = `${certificate.cert.party}/${certificate.cert.device}`;
    if (values.out !== undefined) {
      writePublicFile(values.out, revocation);
      io.out(`revocation of ${who} written: ${values.out}`);
    }
    if (values.server !== undefined) {
      await postDirectory(values.server, '/v1/directory/revocations', revocation, 'revocation', 'nothing was revoked at the relay; try again');
      io.out(`${who} revoked at ${values.server}`);
    }
    return 0;
  },
};

/** Input the user typed that a shared function refused: report it as a usage error. */
function asUsage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof HotlineError && err.code !== 'HL_ERR_USAGE') throw usage(`${err.message} (${err.code})`);
    throw err;
  }
}

async function asUsageAsync<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof HotlineError && err.code !== 'HL_ERR_USAGE') throw usage(`${err.message} (${err.code})`);
    throw err;
  }
}

/** `PARTY=VALUE` flags by party (repeatable), each value checked; a usage error names the bad one. */
function pairs(flag: string, items: readonly string[], ok: (v: string) => boolean, what: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const item of items) {
    const m = /^([a-z0-9][a-z0-9-]{0,62}[a-z0-9])=(.+)$/.exec(item);
    if (!m || !ok(m[2]!)) throw usage(`${flag} takes PARTY=VALUE with ${what}, got "${item}"`);
    out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}
