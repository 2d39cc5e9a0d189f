/**
 * `node --import tsx bench/alloc-path.ts`: what one message allocates, and where (issue 9;
 * docs/performance.md). A diagnostic, not a measurement of record: `npm run bench` is the judge.
 *
 * The server and three real HotlineClients (jp-mod's operator sending, cn-mnd's operator answering,
 * jp-mod's colleague getting copies; memory storage) run in this process, as the bench's in-process
 * line. After a warm-up of 50, FLASH messages go one at a time under V8's sampling heap profiler
 * with the objects that minor and major GCs collected counted too, so the figure is everything
 * allocated, not what survived. Allocation is what sets how often the young-generation GC runs
 * (the tail of the 1-in-flight latency); unlike times, it does not move with this machine's load.
 *
 * Prints the bytes allocated per message and the functions that allocated most (self size).
 * Environment: ALLOC_COUNT (messages, default 300), ALLOC_TOP (functions listed, default 40).
 */
import { Session } from 'node:inspector/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { HotlineClient } from '../client/hotline-client.js';
import { MemoryStorage } from '../client/storage/memory-storage.js';
import { startServer } from '../server/main.js';
import { makeDeployment } from '../test/helpers/fixtures.js';
import { enrolCertificates } from './deployment.js';
import { BODY } from './traffic.js';

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

const count = Number(process.env['ALLOC_COUNT'] ?? 300);
const top = Number(process.env['ALLOC_TOP'] ?? 40);
if (!Number.isInteger(count) || count < 10) throw new Error(`ALLOC_COUNT must be an integer of at least 10, got "${process.env['ALLOC_COUNT']}"`);

const d = await makeDeployment(Date.now() - 60_000);
const dir = mkdtempSync(join(tmpdir(), 'hotline-alloc-'));
const server = await startServer({ agreement: d.agreement, dataDir: join(dir, 'data'), host: '127.0.0.1', port: 0, logLevel: 'silent' });
await enrolCertificates(server.url, [d.devices.jpOp, d.devices.cnOp, d.devices.jpOp2].map((x) => x.certificate));
const client = (device: typeof d.devices.jpOp) => new HotlineClient({ serverUrl: server.url, agreement: d.agreement, device, storage: new MemoryStorage(), WebSocket });
const a = client(d.devices.jpOp);
const b = client(d.devices.cnOp);
const c = client(d.devices.jpOp2);
await Promise.all([a.start(), b.start(), c.start()]);

let waitingFor = '';
let verified: (() => void) | undefined;
a.on('receipt', (e) => {
  if (e.verified && e.receipt.receipt.kind === 'delivered' && e.receipt.receipt.messageId === waitingFor) verified?.();
});
const one = async (): Promise<void> => {
  const receipt = new Promise<void>((resolve) => (verified = resolve));
  const { id } = await a.send({ to: 'cn-mnd', precedence: 'FLASH', body: BODY, lang: 'ja' });
  waitingFor = id;
  await receipt;
};

for (let i = 0; i < 50; i++) await one();
const session = new Session();
session.connect();
await session.post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
for (let i = 0; i < count; i++) await one();
const { profile } = (await session.post('HeapProfiler.stopSampling')) as unknown as { profile: { head: ProfileNode } };
session.disconnect();
await Promise.all([a.stop(), b.stop(), c.stop()]);
await server.close();
rmSync(dir, { recursive: true, force: true });

const bySite = new Map<string, number>();
let total = 0;
const walk = (n: ProfileNode): void => {
  total += n.selfSize;
  const site = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*?\/(?=(?:server|client|shared|node_modules)\/)/, '')}:${n.callFrame.lineNumber + 1}`;
  bySite.set(site, (bySite.get(site) ?? 0) + n.selfSize);
  for (const child of n.children) walk(child);
};
walk(profile.head);
console.log(`${count} FLASH messages, one at a time, server and three clients in this process: ${(total / count / 1024).toFixed(0)} KB allocated per message`);
for (const [site, bytes] of [...bySite].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`${(bytes / count / 1024).toFixed(1).padStart(7)} KB  ${site}`);
