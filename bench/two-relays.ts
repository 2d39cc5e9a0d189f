import { join } from 'node:path';
import { startServer, type RunningServer } from '../server/main.js';
import { makeTwoRelayDeployment } from '../test/helpers/two-relays.js';
import { measureClients, type LatencyRun } from './clients.js';

export interface TwoRelayResult {
  /** Milliseconds from starting the second relay until each relay knew the other party's devices. */
  linkedMs: number;
  serial: LatencyRun;
  pipelined: LatencyRun;
}

/**
 * Two relays, one per party (README "Two relays"), both in this process like the single-relay
 * "in-process" line, each on its own SQLite in `dir`: jp-mod's relay, then cn-mnd's, which dials
 * it over the relay-to-relay link (no proxy in between). The same HotlineClients as
 * `measureClients` (jp-mod's two operators at jp-mod's relay, cn-mnd's at its own): send → the
 * sender has verified the `delivered` receipt, which crossed both relays and the link twice.
 */
export async function measureTwoRelays(
  dir: string,
  options: { serial: number; pipelined: number; window: number; maxSeconds: number; setupSeconds: number },
): Promise<TwoRelayResult> {
  const dep = await makeTwoRelayDeployment(Date.now() - 60_000);
  const relays: RunningServer[] = [];
  try {
    const start = (party: 'jp' | 'cn', peerUrls: Record<string, string[]>) =>
      startServer({ agreement: dep.agreement, dataDir: join(dir, `two-relays-${party}`), host: '127.0.0.1', port: 0, logLevel: 'silent', relay: { identity: dep.relays[party], peerUrls } });
    // With port 0 the second relay dials the first: the link is opened by whichever side can.
    const jp = await start('jp', { 'cn-mnd': [] });
    relays.push(jp);
    const t0 = performance.now();
    const cn = await start('cn', { 'jp-mod': [jp.url] });
    relays.push(cn);
    for (const [server, party] of [
      [jp, 'jp-mod'],
      [cn, 'cn-mnd'],
    ] as const) {
      for (const d of Object.values(dep.devices).filter((x) => x.certificate.cert.party === party)) {
        const res = await fetch(`${server.url}/v1/directory/devices`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(d.certificate) });
        if (res.status !== 201) throw new Error(`enrolment at the relay of ${party} failed: ${res.status}`);
      }
    }
    // Linked when each relay knows the other party's devices (sent over the relay-to-relay link):
    // before that a message would wait at its own relay, which is not what is measured.
    const knows = async (server: RunningServer, party: string) => (await server.store.listDevices()).some((c) => c.cert.party === party);
    const stopAt = Date.now() + options.setupSeconds * 1000;
    while (!((await knows(jp, 'cn-mnd')) && (await knows(cn, 'jp-mod')))) {
      if (Date.now() > stopAt) throw new Error(`the two relays did not link within ${options.setupSeconds} s`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const linkedMs = performance.now() - t0;
    const run = await measureClients(jp.url, dep, options, { cnServerUrl: cn.url });
    return { linkedMs, ...run };
  } finally {
    await Promise.all(relays.map((r) => r.close()));
  }
}
