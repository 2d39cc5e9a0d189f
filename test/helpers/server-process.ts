// A server in its own process, for tests that kill it (SIGKILL) and start it again on the same
// data directory. Reads HOTLINE_AGREEMENT, HOTLINE_DATA_DIR and HOTLINE_CHECKPOINT_INTERVAL_MS; prints "HOTLINE_URL <url>" once listening.
import { startServer } from '../../server/main.js';

const server = await startServer({
  agreementPath: process.env['HOTLINE_AGREEMENT']!,
  dataDir: process.env['HOTLINE_DATA_DIR']!,
  host: '127.0.0.1',
  port: 0,
  logLevel: 'silent',
  ...(process.env['HOTLINE_CHECKPOINT_INTERVAL_MS'] ? { app: { checkpointIntervalMs: Number(process.env['HOTLINE_CHECKPOINT_INTERVAL_MS']) } } : {}),
});
process.stdout.write(`HOTLINE_URL ${server.url}\n`);
process.once('SIGTERM', () => {
  void server.close().then(() => process.exit(0));
});
