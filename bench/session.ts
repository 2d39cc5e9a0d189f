import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchDeployment } from './deployment.js';
import { enrolCertificates } from './deployment.js';
import type { BenchLink } from './link-driver.js';
import { spawnBenchServer, type BenchServer } from './server.js';
import { Traffic } from './traffic.js';

/** A fresh server in its own process with the deployment's operators enrolled, and the run's traffic. */
export interface Session {
  server: BenchServer;
  traffic: Traffic;
  /** Links of the stream pairs' senders and addressees, opened by `openPairs`. */
  senders: BenchLink[];
  addressees: BenchLink[];
  close(): Promise<void>;
}

export async function startSession(dep: BenchDeployment, dir: string, name: string): Promise<Session> {
  const dataDir = join(dir, name);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const server = await spawnBenchServer({ agreementPath: dep.agreementPath, dataDir });
  await enrolCertificates(server.url, dep.operators.map((o) => o.certificate));
  const traffic = new Traffic();
  const s: Session = {
    server,
    traffic,
    senders: [],
    addressees: [],
    async close() {
      await traffic.closeAll();
      await server.stop();
    },
  };
  return s;
}

/** Open the links of every stream pair (addressees first, so that nothing waits in a mailbox). */
export async function openPairs(s: Session, dep: BenchDeployment): Promise<void> {
  for (const p of dep.pairs) s.addressees.push(await s.traffic.open(s.server.url, p.to, dep.agreement));
  for (const p of dep.pairs) s.senders.push(await s.traffic.open(s.server.url, p.from, dep.agreement));
}

/** CPU time the server spent between two usage readings, per message. */
export function cpuMicrosPerMessage(before: { cpuMicros: number }, after: { cpuMicros: number }, messages: number): number {
  return messages > 0 ? (after.cpuMicros - before.cpuMicros) / messages : NaN;
}
