// A server in its own process, for tests that kill it (SIGKILL) and start it again on the same
// data directory. Reads HOTLINE_AGREEMENT, HOTLINE_DATA_DIR and HOTLINE_CHECKPOINT_INTERVAL_MS; prints "HOTLINE_URL <url>" once listening.
// With HOTLINE_RELAY (and HOTLINE_PEER_URL=party=url) it runs as the relay of one party, with a
// short heartbeat and backoff for tests.
// With HOTLINE_DATABASE_URL (and HOTLINE_PG_SCHEMA) it is a node on that PostgreSQL database;
// with HOTLINE_LOG_KEY (a log secret file) it signs checkpoints.
import { loadRelaySecret, startServer } from '../../server/main.js';

const relayPath = process.env['HOTLINE_RELAY'];
const databaseUrl = process.env['HOTLINE_DATABASE_URL'];
const logKeyPath = process.env['HOTLINE_LOG_KEY'];
const peer = /^([a-z0-9-]+)=(\S+)$/.exec(process.env['HOTLINE_PEER_URL'] ?? '');

const server = await startServer({
  agreementPath: process.env['HOTLINE_AGREEMENT']!,
  dataDir: process.env['HOTLINE_DATA_DIR']!,
  host: '127.0.0.1',
  port: 0,
  logLevel: 'silent',
  ...(process.env['HOTLINE_CHECKPOINT_INTERVAL_MS'] ? { app: { checkpointIntervalMs: Number(process.env['HOTLINE_CHECKPOINT_INTERVAL_MS']) } } : {}),
  ...(databaseUrl ? { databaseUrl, pg: { maxConnections: 4, ...(process.env['HOTLINE_PG_SCHEMA'] ? { schema: process.env['HOTLINE_PG_SCHEMA'] } : {}) } } : {}),
  ...(logKeyPath ? { logKeyPath } : {}),
  ...(relayPath
    ? {
        relay: {
          identity: loadRelaySecret(relayPath),
          ...(peer ? { peerUrls: { [peer[1]!]: [peer[2]!] } } : {}),
          heartbeatIntervalMs: 200,
          backoff: { minMs: 20, maxMs: 200 },
        },
      }
    : {}),
});
process.stdout.write(`HOTLINE_URL ${server.url}\n`);
process.once('SIGTERM', () => {
  void server.close().then(() => process.exit(0));
});
