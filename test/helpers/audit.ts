import WebSocket from 'ws';
import { startServer, type RunningServer } from '../../server/main.js';
import { HotlineClient, type HotlineClientOptions } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import type { ClientStorage } from '../../client/storage/client-storage.js';
import type { Agreement, DeviceSecretFile, Envelope, EnvelopeHeader, LogSecretFile } from '../../shared/protocol/schemas.js';
import { call, enrol, login } from './ws-client.js';
import { next } from './events.js';

export { next };

/** The log secret file of an agreement made by `makeDeployment` (which keeps only the seed). */
export function logSecretFile(agreement: Agreement, seed: string): LogSecretFile {
  return { type: 'hotline-log-secret', v: 1, logKey: agreement.logKey, logSecret: seed };
}

/**
 * A real server with the log key, on `dataDir`, checkpoints only when asked (the interval is a
 * day), every given device enrolled.
 */
export async function startAuditServer(agreement: Agreement, logSecret: LogSecretFile, dataDir: string, devices: readonly DeviceSecretFile[]): Promise<RunningServer> {
  const server = await startServer({ agreement, logSecret, dataDir, host: '127.0.0.1', port: 0, logLevel: 'silent', app: { checkpointIntervalMs: 86_400_000 } });
  for (const d of devices) await enrol(server.url, d.certificate);
  return server;
}

export function makeClient(url: string, agreement: Agreement, device: DeviceSecretFile, storage: ClientStorage = new MemoryStorage(), extra: Partial<HotlineClientOptions> = {}): HotlineClient {
  return new HotlineClient({ serverUrl: url, agreement, device, storage, WebSocket, backoff: { initialMs: 20, maxMs: 200 }, ...extra });
}


/** `from` sends to `to`'s party; waits for the verified delivered receipt, then `to` acknowledges. */
export async function sendAndAck(from: HotlineClient, to: HotlineClient, body: string, precedence: 'FLASH' | 'IMMEDIATE' | 'PRIORITY' | 'ROUTINE' = 'FLASH'): Promise<string> {
  const arrived = next(to, 'message');
  const delivered = next(from, 'receipt', (r) => r.verified && r.receipt.receipt.kind === 'delivered');
  const { id } = await from.send({ to: to.me.party, precedence, body });
  await arrived;
  await delivered;
  const acked = next(from, 'receipt', (r) => r.verified && r.receipt.receipt.kind === 'acknowledged' && r.receipt.receipt.messageId === id);
  await to.acknowledge(id);
  await acked;
  return id;
}

/** Ask the server to sign a checkpoint now (any operator or auditor token). */
export async function signNow(url: string, device: DeviceSecretFile, agreement: Agreement): Promise<{ size: number; note: string }> {
  const r = await call(url, 'POST', '/v1/audit/checkpoints', undefined, await login(url, device, agreement));
  if (r.status !== 200 && r.status !== 201) throw new Error(`checkpoint failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as { size: number; note: string };
}

/** The export, fetched with an auditor device's token. */
export async function fetchExport(url: string, auditor: DeviceSecretFile, agreement: Agreement): Promise<Record<string, unknown> & { entries: string[]; checkpoints: string[] }> {
  const r = await call(url, 'GET', '/v1/audit/export', undefined, await login(url, auditor, agreement));
  if (r.status !== 200) throw new Error(`export failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** The envelopes a relay accepted, with their ciphertexts, by message id, from its audit export (an auditor's view). */
export async function exportedEnvelopes(url: string, auditor: DeviceSecretFile, agreement: Agreement): Promise<Map<string, Envelope>> {
  const exp = (await fetchExport(url, auditor, agreement)) as { entries: string[]; ciphertexts?: Record<string, string> };
  const out = new Map<string, Envelope>();
  for (const text of exp.entries) {
    const e = JSON.parse(text) as { type: string; header?: EnvelopeHeader; signature?: string };
    if (e.type === 'envelope.accepted' && e.header && e.signature !== undefined) {
      out.set(e.header.id, { header: e.header, signature: e.signature, ciphertext: exp.ciphertexts![e.header.id]! });
    }
  }
  return out;
}

export { cli } from './cli.js';
