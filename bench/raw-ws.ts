import { WebSocketServer, WebSocket } from 'ws';
import type { AddressInfo } from 'node:net';

/**
 * The floor the hotline is measured against, in the same run on the same machine: a bare `ws`
 * echo server on loopback with 1 KiB messages, no TLS, no crypto, no disk.
 */
export interface FloorResult {
  serialCount: number;
  pipelinedCount: number;
  /** One message in flight at a time. */
  serialPerSecond: number;
  p50Us: number;
  p99Us: number;
  /** Many messages in flight. */
  pipelinedPerSecond: number;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export async function measureRawWsFloor(options: { serialCount: number; pipelinedCount: number; window: number }): Promise<FloorResult> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  const { port } = wss.address() as AddressInfo;
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const payload = 'x'.repeat(1024);

  // Serial round trips.
  const lat: number[] = [];
  const serialStart = process.hrtime.bigint();
  for (let i = 0; i < options.serialCount; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve) => {
      ws.once('message', () => resolve());
      ws.send(payload);
    });
    lat.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  const serialSec = Number(process.hrtime.bigint() - serialStart) / 1e9;
  lat.sort((a, b) => a - b);

  // Pipelined: keep `window` messages in flight.
  const pipeStart = process.hrtime.bigint();
  await new Promise<void>((resolve) => {
    let sent = 0;
    let received = 0;
    const pump = () => {
      while (sent < options.pipelinedCount && sent - received < options.window) {
        ws.send(payload);
        sent++;
      }
    };
    ws.on('message', () => {
      received++;
      if (received === options.pipelinedCount) resolve();
      else pump();
    });
    pump();
  });
  const pipeSec = Number(process.hrtime.bigint() - pipeStart) / 1e9;
  ws.close();
  await new Promise<void>((resolve) => wss.close(() => resolve()));
  return {
    serialCount: options.serialCount,
    pipelinedCount: options.pipelinedCount,
    serialPerSecond: options.serialCount / serialSec,
    p50Us: percentile(lat, 50),
    p99Us: percentile(lat, 99),
    pipelinedPerSecond: options.pipelinedCount / pipeSec,
  };
}
