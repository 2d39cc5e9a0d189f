import { existsSync, mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createAgreement, createLogKey, createParty, enrolRelay, enrollDevice } from '../../shared/crypto/keys.js';
import type { DeviceSecretFile, PartySecretFile, Role } from '../../shared/protocol/schemas.js';
import { confirmForDemo } from './peers.js';
import { listening, loadDevice, writePublicFile, writeSecretFile, type Io } from './common.js';
import { postCertificate, signDemoAgreement } from './setup.js';

const PARTIES = [
  { id: 'jp-mod', name: 'Japan Ministry of Defense', languages: ['ja', 'en'] },
  { id: 'cn-mnd', name: 'China Ministry of National Defense', languages: ['zh', 'en'] },
] as const;
const DEVICES: { id: string; role: Role }[] = [
  { id: 'operator-1', role: 'operator' },
  { id: 'auditor-1', role: 'auditor' },
  { id: 'archive-1', role: 'archive' },
];

/**
 * `hotline demo` (`npm start`): the two ministries, each with its own relay (agreement version 2,
 * README "Two relays"): jp-mod's on PORT, cn-mnd's on PORT+1, each on its own SQLite under DIR,
 * linked to each other. Created on the first run, reused after.
 */
export async function runTwoRelayDemo(options: { dir: string; host: string; port: number; logLevel: string }, io: Io): Promise<number> {
  const { dir, host } = options;
  const ports = options.port === 0 ? [0, 0] : [options.port, options.port + 1];
  const agreementPath = join(dir, 'agreement.json');
  const fresh = !existsSync(agreementPath);
  if (fresh) await create(dir, host, ports);
  await signDemoAgreement(io, dir, PARTIES.map((p) => p.id));
  const { startServer, loadRelaySecret } = await import('../../server/main.js');
  const start = (i: number, peerUrls: Record<string, string[]>) => {
    const p = PARTIES[i]!.id;
    return listening(host, ports[i]!, () => startServer({
      agreementPath,
      dataDir: join(dir, p, 'relay-data'),
      host,
      port: ports[i]!,
      logLevel: options.logLevel as 'warn',
      logStream: process.stderr,
      logKeyPath: join(dir, p, 'log.secret.json'),
      relay: { identity: loadRelaySecret(join(dir, p, 'relay.secret.json')), peerUrls },
    }));
  };
  // With fixed ports both relays dial the agreement's URLs; with port 0 (tests) the second one
  // dials the first, which is enough: the link is opened by whichever relay can.
  const jp = await start(0, options.port === 0 ? { 'cn-mnd': [] } : {});
  const cn = await start(1, options.port === 0 ? { 'jp-mod': [jp.url] } : {});
  const urls: Record<string, string> = { 'jp-mod': jp.url, 'cn-mnd': cn.url };
  const certs = [];
  for (const p of PARTIES) {
    for (const d of DEVICES) {
      const device: DeviceSecretFile = loadDevice(join(dir, p.id, `${d.id}.secret.json`), io);
      await postCertificate(urls[p.id]!, device.certificate);
      certs.push(device.certificate.cert);
    }
  }
  // The demo made every key itself: its operators start with the other party's keys confirmed.
  for (const p of PARTIES) for (const d of DEVICES) if (d.role === 'operator') confirmForDemo(join(dir, p.id, `${d.id}.secret.json`), { party: p.id }, certs);
  // Ready when each relay knows the other party's devices (sent over the relay link), so that
  // the printed commands work at once; bounded, and said so if the link does not come up.
  const knows = async (server: typeof jp, party: string) => (await server.store.listDevices()).some((c) => c.cert.party === party);
  let linked = false;
  for (let i = 0; i < 200 && !linked; i++) {
    linked = (await knows(jp, 'cn-mnd')) && (await knows(cn, 'jp-mod'));
    if (!linked) await new Promise((r) => setTimeout(r, 50));
  }
  if (!linked) io.err('the relays have not linked yet (see their logs); messages wait at their own relay until they do');
  const rel = (path: string) => relative(process.cwd(), path) || path;
  const out = io.out;
  out(`Hotline two-relay demo ${fresh ? 'created in' : 'reused from'} ${rel(dir)}`);
  out(`relay of jp-mod listening on ${jp.url}`);
  out(`relay of cn-mnd listening on ${cn.url}`);
  out('');
  for (const [me, other, text] of [
    ['jp-mod', 'cn-mnd', '至急：明朝の演習について確認されたい'],
    ['cn-mnd', 'jp-mod', '紧急：请确认收到此消息'],
  ] as const) {
    const flags = `--server ${urls[me]} --agreement ${rel(agreementPath)}`;
    const dev = rel(join(dir, me, 'operator-1.secret.json'));
    out(`# ${PARTIES.find((p) => p.id === me)!.name} (${me}), operator-1, at its own relay — in two terminals:`);
    out(`npx hotline listen --device ${dev} ${flags}`);
    out(`npx hotline send --device ${dev} ${flags} --to ${other} --precedence flash --wait acknowledged "${text}"`);
    out(`# acknowledge a message shown by listen (its id):`);
    out(`npx hotline ack --device ${dev} ${flags} MESSAGE_ID`);
    out('');
  }
  // Each relay serves its own party's consoles only: each ministry opens its own.
  for (const p of PARTIES) {
    out(`Consoles of ${p.id} (its own relay; import a key file from ${rel(join(dir, p.id))}): ${urls[p.id]}/console/operator/ and ${urls[p.id]}/console/auditor/`);
  }
  out(`Audit, after an exchange: export from each relay with its auditor, then reconcile the two logs:`);
  out(`npx hotline audit export --device ${rel(join(dir, 'jp-mod', 'auditor-1.secret.json'))} --server ${urls['jp-mod']} --agreement ${rel(agreementPath)} --out jp-export.json`);
  out(`npx hotline audit export --device ${rel(join(dir, 'cn-mnd', 'auditor-1.secret.json'))} --server ${urls['cn-mnd']} --agreement ${rel(agreementPath)} --out cn-export.json`);
  out(`npx hotline audit verify --agreement ${rel(agreementPath)} jp-export.json cn-export.json`);
  out('Stop with Ctrl-C; the next npm start reuses the deployment and its messages (hotline demo --shared: one shared relay instead).');
  await io.interrupted;
  await Promise.all([jp.close(), cn.close()]);
  return 0;
}

async function create(dir: string, host: string, ports: number[]): Promise<void> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const now = Date.now();
  const roots: PartySecretFile[] = [];
  const logs = PARTIES.map(() => createLogKey());
  for (const [i, p] of PARTIES.entries()) {
    const root = createParty({ id: p.id, name: p.name, languages: [...p.languages] });
    roots.push(root);
    writeSecretFile(join(dir, p.id, 'root.secret.json'), root);
    writePublicFile(join(dir, p.id, 'root.public.json'), root.party);
    writeSecretFile(join(dir, p.id, 'log.secret.json'), logs[i]);
    writeSecretFile(join(dir, p.id, 'relay.secret.json'), await enrolRelay(root, { relay: `${p.id}-relay`, logKey: logs[i]!.logKey, now }));
    for (const d of DEVICES) writeSecretFile(join(dir, p.id, `${d.id}.secret.json`), await enrollDevice(root, { device: d.id, role: d.role, now }));
  }
  const { agreement } = createAgreement({
    name: 'demo.jp-mod.cn-mnd.hotline',
    parties: roots.map((r) => r.party),
    logKey: logs[0]!.logKey,
    relays: PARTIES.map((p, i) => ({ party: p.id, urls: [`http://${host}:${ports[i]}`], logKey: logs[i]!.logKey })),
    now,
  });
  // The agreement last: its presence marks a complete deployment.
  writePublicFile(join(dir, 'agreement.json'), agreement);
}
