import { createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAgreement, createLogKey, createParty, enrolRelay, enrollDevice } from '../../shared/crypto/keys.js';
import { signAgreementByAll } from '../../shared/crypto/agreement-signatures.js';
import type { Agreement, DeviceSecretFile, LogSecretFile, PartySecretFile, RelaySecretFile, Role } from '../../shared/protocol/schemas.js';
import { startServer, type RunningServer } from '../../server/main.js';
import type { AppDeps, AppOptions } from '../../server/app.js';
import type { Clock } from '../../server/clock.js';
import { fetchDirectory, login } from './ws-client.js';
import type { LogSink } from './log-sink.js';

/**
 * A TCP proxy on 127.0.0.1:0 standing for the network between two relays. `cut()` stops
 * forwarding: bytes on open connections are dropped (as by a broken line, so only the heartbeat
 * notices) and new connections are closed at once; `restore()` forwards again.
 */
export class LoopbackProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #cut = false;
  port = 0;

  private constructor(target: () => number) {
    this.#server = createServer((client) => {
      this.#sockets.add(client);
      client.on('close', () => this.#sockets.delete(client));
      client.on('error', () => client.destroy());
      if (this.#cut) return void client.destroy();
      const upstream = new (client.constructor as typeof Socket)();
      this.#sockets.add(upstream);
      upstream.on('close', () => {
        this.#sockets.delete(upstream);
        client.destroy();
      });
      upstream.on('error', () => upstream.destroy());
      client.on('close', () => upstream.destroy());
      // No Nagle on the proxy either (ws sets TCP_NODELAY on its own sockets): a loopback hop
      // must not add the 40 ms of Nagle against delayed ACKs to every small frame.
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      upstream.connect(target(), '127.0.0.1');
      client.on('data', (b) => {
        if (!this.#cut) upstream.write(b);
      });
      upstream.on('data', (b) => {
        if (!this.#cut) client.write(b);
      });
    });
  }

  static async start(target: () => number): Promise<LoopbackProxy> {
    const p = new LoopbackProxy(target);
    await new Promise<void>((resolve) => p.#server.listen(0, '127.0.0.1', resolve));
    p.port = (p.#server.address() as { port: number }).port;
    return p;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  cut(): void {
    this.#cut = true;
  }

  restore(): void {
    // What was open while cut is dead (its bytes were dropped): end it, so that both sides redial.
    for (const s of this.#sockets) s.destroy();
    this.#cut = false;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

export interface TwoRelayDeployment {
  now: number;
  agreement: Agreement;
  jp: PartySecretFile;
  cn: PartySecretFile;
  logs: { jp: LogSecretFile; cn: LogSecretFile };
  relays: { jp: RelaySecretFile; cn: RelaySecretFile };
  devices: Record<'jpOp' | 'jpOp2' | 'jpAud' | 'jpArc' | 'cnOp' | 'cnAud' | 'cnArc', DeviceSecretFile>;
}

/** Two ministries, each with its own relay (agreement v2), and devices of every role. */
export async function makeTwoRelayDeployment(now = Date.now() - 60_000, deadlines?: Partial<Agreement['deadlines']>): Promise<TwoRelayDeployment> {
  const jp = createParty({ id: 'jp-mod', name: 'Japan Ministry of Defense', languages: ['ja', 'en'] });
  const cn = createParty({ id: 'cn-mnd', name: 'China Ministry of National Defense', languages: ['zh', 'en'] });
  const logs = { jp: createLogKey(), cn: createLogKey() };
  const { agreement: unsigned } = createAgreement({
    name: 'jp-cn.hotline.example',
    parties: [jp.party, cn.party],
    logKey: logs.jp.logKey,
    // The agreement's addresses; the tests dial through their proxies instead (peerUrls).
    relays: [
      { party: 'jp-mod', urls: ['https://hotline.mod.go.jp.example'], logKey: logs.jp.logKey },
      { party: 'cn-mnd', urls: ['https://hotline.mod.gov.cn.example'], logKey: logs.cn.logKey },
    ],
    now,
    ...(deadlines ? { deadlines } : {}),
  });
  const agreement = await signAgreementByAll(unsigned, [jp, cn]);
  const relays = {
    jp: await enrolRelay(jp, { relay: 'jp-relay', logKey: logs.jp.logKey, now }),
    cn: await enrolRelay(cn, { relay: 'cn-relay', logKey: logs.cn.logKey, now }),
  };
  const enrol = (p: PartySecretFile, device: string, role: Role) => enrollDevice(p, { device, role, now });
  const devices = {
    jpOp: await enrol(jp, 'jp-op-1', 'operator'),
    jpOp2: await enrol(jp, 'jp-op-2', 'operator'),
    jpAud: await enrol(jp, 'jp-audit-1', 'auditor'),
    jpArc: await enrol(jp, 'jp-archive', 'archive'),
    cnOp: await enrol(cn, 'cn-op-1', 'operator'),
    cnAud: await enrol(cn, 'cn-audit-1', 'auditor'),
    cnArc: await enrol(cn, 'cn-archive', 'archive'),
  };
  return { now, agreement, jp, cn, logs, relays, devices };
}

export interface RelayPair {
  dep: TwoRelayDeployment;
  jp: RunningServer;
  cn: RunningServer;
  /** What jp's relay dials to reach cn's, and the other way. */
  toCn: LoopbackProxy;
  toJp: LoopbackProxy;
  /** Stop one relay cleanly and start it again on the same data directory and port. */
  restart(party: 'jp' | 'cn'): Promise<void>;
  close(): Promise<void>;
}

/**
 * Both relays on 127.0.0.1:0, each on its own SQLite, each dialling the other through its own
 * loopback proxy; each party's devices registered at its own relay only.
 */
export async function startRelayPair(
  options: {
    dep?: TwoRelayDeployment;
    relay?: Partial<NonNullable<AppDeps['relay']>>;
    withLogKeys?: boolean;
    /** One clock for both relays (a ManualClock in tests that jump days). */
    clock?: Clock;
    app?: AppOptions;
  } = {},
): Promise<RelayPair> {
  const dep = options.dep ?? (await makeTwoRelayDeployment());
  const dir = mkdtempSync(join(tmpdir(), 'hotline-relays-'));
  let jpPort = 0;
  let cnPort = 0;
  const toCn = await LoopbackProxy.start(() => cnPort);
  const toJp = await LoopbackProxy.start(() => jpPort);
  const link = { heartbeatIntervalMs: 200, backoff: { minMs: 20, maxMs: 200 }, ...options.relay };
  const start = (party: 'jp' | 'cn', port = 0) =>
    startServer({
      agreement: dep.agreement,
      dataDir: join(dir, party),
      host: '127.0.0.1',
      port,
      logLevel: 'silent',
      ...(options.clock ? { clock: options.clock } : {}),
      ...(options.app ? { app: options.app } : {}),
      ...(options.withLogKeys ? { logSecret: dep.logs[party] } : {}),
      relay: {
        identity: dep.relays[party],
        peerUrls: party === 'jp' ? { 'cn-mnd': [toCn.url] } : { 'jp-mod': [toJp.url] },
        ...link,
      },
    });
  const jp = await start('jp');
  jpPort = Number(new URL(jp.url).port);
  const cn = await start('cn');
  cnPort = Number(new URL(cn.url).port);
  for (const [server, party] of [
    [jp, 'jp-mod'],
    [cn, 'cn-mnd'],
  ] as const) {
    for (const d of Object.values(dep.devices).filter((x) => x.certificate.cert.party === party)) {
      const res = await fetch(`${server.url}/v1/directory/devices`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(d.certificate) });
      if (res.status !== 201) throw new Error(`enrolment at the relay of ${party} failed: ${res.status}`);
    }
  }
  const pair: RelayPair = {
    dep,
    jp,
    cn,
    toCn,
    toJp,
    async restart(party) {
      const old = pair[party];
      await old.close();
      pair[party] = await start(party, Number(new URL(old.url).port));
    },
    async close() {
      await Promise.all([pair.jp.close(), pair.cn.close()]);
      await Promise.all([toCn.close(), toJp.close()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return pair;
}

/** Poll a condition, bounded in count and time (the directory exchange has no client-visible event). */
export async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (let i = 0; i < 1000 && Date.now() < end; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`not within ${timeoutMs} ms: ${what}`);
}

/** Each relay has the other party's operators in its directory (sent over the relay link). */
export async function directoriesExchanged(p: RelayPair): Promise<void> {
  const { dep } = p;
  const jpToken = await login(p.jp.url, dep.devices.jpAud, dep.agreement);
  const cnToken = await login(p.cn.url, dep.devices.cnAud, dep.agreement);
  await eventually(async () => (await fetchDirectory(p.jp.url, jpToken)).some((c) => c.device === 'cn-op-1'), 'cn-op-1 at the relay of jp-mod');
  await eventually(async () => (await fetchDirectory(p.cn.url, cnToken)).some((c) => c.device === 'jp-op-1'), 'jp-op-1 at the relay of cn-mnd');
}

/**
 * cn-mnd's relay alone, its peer URL a closed port (a test plays the jp relay itself, e.g. with
 * `fakeRelay`), logging at info into `logs`; `close` stops it and removes its data directory.
 */
export async function startCnRelayAlone(dep: TwoRelayDeployment, logs: LogSink, prefix: string): Promise<{ server: RunningServer; close: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const server = await startServer({
    agreement: dep.agreement,
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    logLevel: 'info',
    logStream: logs,
    relay: { identity: dep.relays.cn, peerUrls: { 'jp-mod': ['http://127.0.0.1:9'] }, heartbeatIntervalMs: 5_000, backoff: { minMs: 1_000, maxMs: 5_000 } },
  });
  return {
    server,
    close: async () => {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
