import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { addressKey } from './relay/rate-limit.js';

/** Concurrent TCP connections one peer address (IPv4, or IPv6 /64) may hold by default. */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 512;
/** Time a new connection has to send its request headers (before any authentication). */
export const HEADERS_TIMEOUT_MS = 10_000;

/** What the cap has done since start (for /status and tests). */
export interface ConnectionCapStats {
  refused: number;
  open: number;
}

/**
 * A per-address cap on concurrent connections, so that one peer holding thousands of idle sockets
 * cannot use up the server's file descriptors and lock every device out; and a short deadline for
 * a new connection's request headers, so idle unauthenticated sockets do not live for minutes.
 * A connection over the cap is closed at once, and the first refusal of each burst is logged
 * (address key and count only), so the cap is loud without flooding the log.
 */
export function capConnections(server: Server, log: FastifyBaseLogger, maxPerAddress: number): ConnectionCapStats {
  const stats: ConnectionCapStats = { refused: 0, open: 0 };
  const open = new Map<string, number>();
  const loggedAt = new Map<string, number>();
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.on('connection', (socket: Socket) => {
    const key = addressKey(socket.remoteAddress);
    const count = open.get(key) ?? 0;
    if (count >= maxPerAddress) {
      stats.refused++;
      const now = Date.now();
      // One line per address per minute at most.
      if ((loggedAt.get(key) ?? 0) + 60_000 <= now) {
        loggedAt.set(key, now);
        log.warn({ address: key, open: count, max: maxPerAddress, refusedSinceStart: stats.refused }, 'connection cap reached: connection refused');
      }
      socket.destroy();
      return;
    }
    open.set(key, count + 1);
    stats.open++;
    socket.once('close', () => {
      stats.open--;
      const left = (open.get(key) ?? 1) - 1;
      if (left <= 0) open.delete(key);
      else open.set(key, left);
    });
  });
  return stats;
}
