import { existsSync, mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createAgreement, createParty, enrollDevice } from '../../shared/crypto/keys.js';
import type { DeviceSecretFile, PartySecretFile, Role } from '../../shared/protocol/schemas.js';
import { listening, loadDevice, parse, printHelp, usage, writePublicFile, writeSecretFile, type Command } from './common.js';
import { postCertificate, signDemoAgreement } from './setup.js';
import { confirmForDemo } from './peers.js';
import { loadConfig, SERVER_FLAGS, SERVER_SWITCHES } from '../../server/config.js';

export const server: Command = {
  name: 'server',
  summary: 'run the relay server',
  help: `Usage: hotline server --agreement FILE --data DIR [--host H] [--port N] [--log-level L]
                     [--tls-cert FILE --tls-key FILE] [--log-key FILE] [--checkpoint-interval-ms N]
                     [--rate-login-per-minute N] [--rate-device-failures-per-minute N]
                     [--rate-directory-per-minute N] [--max-connections-per-address N]
                     [--accept-data-loss] [--relay FILE [--peer-url PARTY=URL,...]] [--webhooks FILE]

Runs the relay (HTTP API and WebSocket link) on SQLite in DIR, for the parties of the agreement.
Prints "listening on URL" on stdout once it accepts connections; logs (JSON, pino) go to stderr.
Stops cleanly on Ctrl-C / SIGTERM, finishing writes in flight. Every flag has an environment
variable, and a flag wins over its variable: HOTLINE_AGREEMENT, HOTLINE_DATA_DIR, HOTLINE_HOST,
HOTLINE_PORT, HOTLINE_LOG_LEVEL, HOTLINE_TLS_CERT, HOTLINE_TLS_KEY, HOTLINE_LOG_KEY,
HOTLINE_CHECKPOINT_INTERVAL_MS, HOTLINE_RATE_LOGIN_PER_MINUTE, HOTLINE_RATE_DEVICE_FAILURES_PER_MINUTE,
HOTLINE_RATE_DIRECTORY_PER_MINUTE, HOTLINE_MAX_CONNECTIONS_PER_ADDRESS, HOTLINE_ACCEPT_DATA_LOSS,
HOTLINE_RELAY, HOTLINE_PEER_URL.

At start the server checks the data directory against what it recorded of itself (the database is
there, sound, and holds at least the audit log it had) and refuses to start if not, saying what it
found; only one server may run on a data directory.

  --agreement FILE   the agreement
  --data DIR         data directory (database, token secret); created if missing (alias --data-dir)
  --host H           default 127.0.0.1
  --port N           default 8080; 0 picks a free port
  --log-level L      fatal, error, warn, info (default), debug, trace, silent
  --tls-cert FILE, --tls-key FILE   serve HTTPS/WSS
  --log-key FILE     the server log secret (from hotline agreement create): the server then signs
                     audit checkpoints; without it the log is kept but never signed
  --checkpoint-interval-ms N   sign a checkpoint this often when the log grew (default 60000)
  --rate-login-per-minute N    challenges, logins and refused link upgrades per address (default 120)
  --rate-device-failures-per-minute N   refused logins per claimed device, any address (default 20)
  --rate-directory-per-minute N   enrolments and revocations per address (default 60)
  --max-connections-per-address N   concurrent connections per address (IPv6: per /64; default 512)
  --accept-data-loss   start even though the checks found data missing or damaged (a damaged
                       database is moved aside); the loss is recorded in the audit log
  --relay FILE         run as the relay of one party (agreement version 2): the relay secret file
                       from hotline relay enroll; the relay links to the other parties' relays
                       (README "Two relays"); --log-key is then this relay's own log secret
  --peer-url PARTY=URL[,PARTY=URL]   dial PARTY's relay here instead of the agreement's URLs
  --webhooks FILE      send this relay's alarms (missed deadlines, link down, audit alarms) to the
                       webhooks (HMAC-signed) and SMTP e-mail hooks the JSON FILE names, retried
                       until answered (HOTLINE_WEBHOOKS; docs/escalation.md)
  --database-url URL   keep the data in PostgreSQL (postgres://user:pass@host:5432/db) instead of
                       the SQLite file in the data directory (README "Running on PostgreSQL")`,
  async run(argv, io) {
    // Exactly the server's own flags (server/config.ts), so none is dropped on this path.
    const flags = ['data', ...Object.keys(SERVER_FLAGS).map((f) => f.slice(2))];
    const switches = Object.keys(SERVER_SWITCHES).map((f) => f.slice(2));
    const { values } = parse('server', argv, {
      ...(Object.fromEntries(flags.map((f) => [f, { type: 'string' }])) as Record<string, { type: 'string' }>),
      ...(Object.fromEntries(switches.map((f) => [f, { type: 'boolean' }])) as Record<string, { type: 'boolean' }>),
    });
    if (values.help) return printHelp(io, this.help);
    if (values.data !== undefined && values['data-dir'] !== undefined) throw usage('give --data or --data-dir, not both');
    const forwarded: string[] = [];
    for (const f of flags) {
      const v = values[f];
      if (typeof v === 'string') forwarded.push(f === 'data' ? '--data-dir' : `--${f}`, v);
    }
    for (const f of switches) if (values[f] === true) forwarded.push(`--${f}`);
    // The server's modules (Fastify, SQLite) load only for the commands that run it.
    const { startOptionsFromConfig, startServer } = await import('../../server/main.js');
    let config;
    try {
      config = loadConfig(io.env, forwarded);
    } catch (err) {
      throw usage(`${(err as Error).message}\nRun: hotline server --help`);
    }
    const options = startOptionsFromConfig(config);
    const running = await listening(options.host ?? '127.0.0.1', options.port ?? 8080, () => startServer({ ...options, logStream: process.stderr }));
    io.out(`listening on ${running.url}`);
    await io.interrupted;
    await running.close();
    io.err('server stopped');
    return 0;
  },
};

const DEMO_PARTIES = [
  { id: 'jp-mod', name: 'Japan Ministry of Defense', languages: ['ja', 'en'] },
  { id: 'cn-mnd', name: 'China Ministry of National Defense', languages: ['zh', 'en'] },
] as const;
const DEMO_DEVICES: { id: string; role: Role }[] = [
  { id: 'operator-1', role: 'operator' },
  { id: 'auditor-1', role: 'auditor' },
  { id: 'archive-1', role: 'archive' },
];

export const demo: Command = {
  name: 'demo',
  summary: 'create (once) and run a two-ministry demo deployment, a relay per ministry (npm start)',
  help: `Usage: hotline demo [--dir DIR] [--port N] [--host H] [--log-level L] [--shared]

On the first run, creates a demo deployment in DIR (default ./data/demo): the parties jp-mod
(Japan Ministry of Defense) and cn-mnd (China Ministry of National Defense), each with an operator,
an auditor and an archive device, and each with its own relay (agreement version 2, README "Two
relays"): jp-mod's on 127.0.0.1:N (8080; --port or HOTLINE_PORT to change), cn-mnd's on N+1 (8081),
each on its own SQLite under DIR/<party>/relay-data, linked to each other. Registers each party's
devices at its own relay and prints both consoles' addresses and the commands with which each
ministry sends, listens and acknowledges. Later runs reuse DIR. The files hold real keys: this is
a demo, keep DIR out of version control (data/ is ignored).

With --shared (default DIR ./data/demo-shared) both ministries use one shared relay on port N
instead (a neutral host's deployment). --two-relays is accepted for compatibility (the default).`,
  async run(argv, io) {
    const { values } = parse('demo', argv, {
      dir: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'log-level': { type: 'string' },
      shared: { type: 'boolean' },
      'two-relays': { type: 'boolean' },
    });
    if (values.help) return printHelp(io, this.help);
    if (values.shared && values['two-relays']) throw usage('--shared and --two-relays are two different demos: give one');
    const portText = values.port ?? io.env.HOTLINE_PORT ?? '8080';
    if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw usage(`--port must be an integer 0–65535, got "${portText}"`);
    if (!values.shared) {
      if (Number(portText) === 65535) throw usage('the two-relay demo needs --port N below 65535 (cn-mnd listens on N+1)');
      const dir = values.dir ?? join('data', 'demo');
      // A shared-relay demo made by an earlier version (npm start ran that one) in the same place.
      if (existsSync(join(dir, 'agreement.json')) && !existsSync(join(dir, 'jp-mod', 'relay.secret.json'))) {
        throw usage(`${dir} holds a shared-relay demo (made by an earlier npm start): run it with hotline demo --shared --dir ${dir}, or move it away to create the two-relay demo there`);
      }
      const { runTwoRelayDemo } = await import('./demo-two-relays.js');
      const host = values.host ?? io.env.HOTLINE_HOST ?? '127.0.0.1';
      return runTwoRelayDemo({ dir, host, port: Number(portText), logLevel: values['log-level'] ?? 'warn' }, io);
    }
    const dir = values.dir ?? join('data', 'demo-shared');
    if (existsSync(join(dir, 'jp-mod', 'relay.secret.json'))) throw usage(`${dir} holds a two-relay demo: run it without --shared, or give another --dir`);
    const agreementPath = join(dir, 'agreement.json');
    const fresh = !existsSync(agreementPath);
    if (fresh) await createDemo(dir);
    await signDemoAgreement(io, dir, DEMO_PARTIES.map((p) => p.id));
    const devices = DEMO_PARTIES.flatMap((p) => DEMO_DEVICES.map((d) => ({ party: p.id, ...d, path: join(dir, p.id, `${d.id}.secret.json`) })));
    const loaded: DeviceSecretFile[] = devices.map((d) => loadDevice(d.path, io));
    // The demo made every key itself: its operators start with the other party's keys confirmed.
    for (const d of devices) if (d.role === 'operator') confirmForDemo(d.path, { party: d.party }, loaded.map((x) => x.certificate.cert));
    const { startServer } = await import('../../server/main.js');
    const host = values.host ?? io.env.HOTLINE_HOST ?? '127.0.0.1';
    const running = await listening(host, Number(portText), () => startServer({
      agreementPath,
      dataDir: join(dir, 'server'),
      host,
      port: Number(portText),
      logLevel: (values['log-level'] ?? 'warn') as 'warn',
      logStream: process.stderr,
      ...(existsSync(join(dir, 'log.secret.json')) ? { logKeyPath: join(dir, 'log.secret.json') } : {}),
    }));
    for (const d of loaded) await postCertificate(running.url, d.certificate);
    const rel = (p: string) => relative(process.cwd(), p) || p;
    const flags = `--server ${running.url} --agreement ${rel(agreementPath)}`;
    const dev = (party: string, id: string) => rel(join(dir, party, `${id}.secret.json`));
    const out = io.out;
    out(`Hotline shared-relay demo ${fresh ? 'created in' : 'reused from'} ${rel(dir)}`);
    out(`listening on ${running.url}`);
    out('');
    for (const [me, other, text] of [
      ['jp-mod', 'cn-mnd', '至急：明朝の演習について確認されたい'],
      ['cn-mnd', 'jp-mod', '紧急：请确认收到此消息'],
    ] as const) {
      const party = DEMO_PARTIES.find((p) => p.id === me)!;
      out(`# ${party.name} (${me}), operator-1 — in two terminals:`);
      out(`npx hotline listen --device ${dev(me, 'operator-1')} ${flags}`);
      out(`npx hotline send --device ${dev(me, 'operator-1')} ${flags} --to ${other} --precedence flash --wait acknowledged "${text}"`);
      out(`# acknowledge a message shown by listen (its id):`);
      out(`npx hotline ack --device ${dev(me, 'operator-1')} ${flags} MESSAGE_ID`);
      out('');
    }
    out(`Browser consoles: ${running.url}/console/operator/ (import a device key file above) and ${running.url}/console/auditor/`);
    out(`Other devices: ${DEMO_PARTIES.map((p) => DEMO_DEVICES.map((d) => dev(p.id, d.id)).join(', ')).join(', ')}`);
    out('Stop with Ctrl-C; the next hotline demo --shared reuses the deployment and its messages.');
    await io.interrupted;
    await running.close();
    return 0;
  },
};

async function createDemo(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const now = Date.now();
  const parties: PartySecretFile[] = [];
  for (const p of DEMO_PARTIES) {
    const root = createParty({ id: p.id, name: p.name, languages: [...p.languages] });
    writeSecretFile(join(dir, p.id, 'root.secret.json'), root);
    writePublicFile(join(dir, p.id, 'root.public.json'), root.party);
    parties.push(root);
    for (const d of DEMO_DEVICES) {
      writeSecretFile(join(dir, p.id, `${d.id}.secret.json`), await enrollDevice(root, { device: d.id, role: d.role, now }));
    }
  }
  const { agreement, logSecret } = createAgreement({ name: 'demo.jp-mod.cn-mnd.hotline', parties: parties.map((p) => p.party), now });
  writeSecretFile(join(dir, 'log.secret.json'), logSecret);
  // The agreement last: its presence marks a complete deployment.
  writePublicFile(join(dir, 'agreement.json'), agreement);
}
