import { enrolRelay, fingerprint, parseLogSecret } from '../../shared/crypto/keys.js';
import { fromBase64 } from '../../shared/encoding/base64.js';
import { HotlineError } from '../../shared/errors.js';
import { loadPartyRoot, named, parse, printHelp, readJson, required, usage, writeSecretFile, type Command } from './common.js';

export const relayEnroll: Command = {
  name: 'relay enroll',
  summary: 'make a relay’s link key and certificate signed by the party root (two-relay deployments)',
  help: `Usage: hotline relay enroll --root FILE --id ID --log-key FILE|PUB --out FILE [--valid-days N]

Certifies a relay of your party, as \`device enroll\` certifies a device: makes the relay's link key
(with which it proves itself to the other parties' relays) and a certificate signed by the party
root that names it and its log key. The log key must be the one the agreement (version 2) names
for your party's relay: the log secret file from \`hotline agreement create --relay\`, or its
public key. FILE (mode 0600) is what \`hotline server --relay FILE\` runs with; it holds no log
secret (that stays in its own file, for --log-key).

  --root FILE          the party's root secret file
  --id ID              relay id (e.g. jp-relay-1)
  --log-key FILE|PUB   the relay's log secret file, or its base64 public key
  --valid-days N       certificate lifetime (default 365)
  --out FILE           where to write the relay secret file (e.g. jp-relay.secret.json)`,
  async run(argv, io) {
    const { values } = parse('relay enroll', argv, {
      root: { type: 'string' },
      id: { type: 'string' },
      'log-key': { type: 'string' },
      out: { type: 'string' },
      'valid-days': { type: 'string' },
    });
    if (values.help) return printHelp(io, this.help);
    required('relay enroll', values, 'root', 'id', 'log-key', 'out');
    if (!/^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]$/.test(values.id!)) throw usage(`--id must be 2–64 lowercase letters, digits and dashes, got "${values.id}"`);
    const days = values['valid-days'] === undefined ? 365 : Number(values['valid-days']);
    if (!Number.isInteger(days) || days < 1) throw usage('--valid-days must be a whole number of days, at least 1');
    const keyArg = values['log-key']!;
    const logKey = /^[A-Za-z0-9+/]{43}=$/.test(keyArg)
      ? keyArg
      : readLogKey(keyArg);
    try {
      fromBase64(logKey, 32);
    } catch {
      throw usage(`--log-key: "${keyArg}" is neither a log secret file nor a base64 public key`);
    }
    const root = loadPartyRoot(values.root!, io);
    let relay;
    try {
      relay = await enrolRelay(root, { relay: values.id!, logKey, now: Date.now(), validForMs: days * 86_400_000 });
    } catch (err) {
      if (err instanceof HotlineError) throw usage(err.message);
      throw err;
    }
    writeSecretFile(values.out!, relay);
    io.out(`relay ${root.party.id}/${values.id} enrolled: ${values.out}`);
    io.out(`  link key fingerprint: ${fingerprint(fromBase64(relay.certificate.cert.signKey, 32))}`);
    io.out(`  log key: ${logKey}`);
    return 0;
  },
};

function readLogKey(path: string): string {
  const raw = readJson(path, 'log secret file');
  return named(path, 'log secret file', () => parseLogSecret(raw), { value: raw, expect: 'log-secret' }).logKey;
}
