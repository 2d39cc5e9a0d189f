import { afterEach } from 'vitest';
import { startServer, createLogger, type RunningServer } from '../../server/main.js';
import type { AppOptions } from '../../server/app.js';
import type { Clock } from '../../server/clock.js';
import type { LogLevel } from '../../server/config.js';
import { createDeployment, tempDir, type Deployment } from './deployment.js';
import { LogSink } from './log-sink.js';
import { enrol, login, LinkClient, fetchDirectory } from './ws-client.js';
import type { DeviceCertBody } from '../../shared/protocol/schemas.js';

export interface TestServer extends RunningServer {
  dep: Deployment;
  dataDir: string;
  logs: LogSink;
  /** Log in as a device (by `party/device`) and open its link; waits for `hello`. */
  connect(key: string): Promise<LinkClient>;
  token(key: string): Promise<string>;
  directory(): Promise<DeviceCertBody[]>;
  /** The server's clock now (the manual clock given, else the real one): what a test device seals with. */
  now(): number;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

/**
 * A real server on 127.0.0.1:0 with its own data directory and an in-memory log, the deployment's
 * devices enrolled; closed (with its clients) after the test.
 */
export async function startTestServer(
  options: {
    dep?: Deployment;
    clock?: Clock;
    app?: AppOptions;
    logLevel?: LogLevel;
    enrolAll?: boolean;
    dataDir?: string;
    withLogKey?: boolean;
    /** Run on PostgreSQL: this database, in this schema (test/helpers/stores.ts testSchema). */
    database?: { url: string; schema: string };
  } = {},
): Promise<TestServer> {
  const dep = options.dep ?? (await createDeployment(options.clock?.now()));
  // A given data directory (a copy of another server's) is the caller's to remove.
  const dir = options.dataDir !== undefined ? { path: options.dataDir, remove: () => {} } : tempDir();
  const logs = new LogSink();
  const server = await startServer({
    agreement: dep.agreement,
    dataDir: dir.path,
    host: '127.0.0.1',
    port: 0,
    logger: createLogger(options.logLevel ?? 'trace', logs),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.app ? { app: options.app } : {}),
    ...(options.withLogKey ? { logSecret: dep.logSecret } : {}),
    ...(options.database ? { databaseUrl: options.database.url, pg: { schema: options.database.schema, maxConnections: 4 } } : {}),
  });
  const clients: LinkClient[] = [];
  cleanups.push(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.close();
    dir.remove();
  });
  if (options.enrolAll !== false) for (const d of Object.values(dep.devices)) await enrol(server.url, d.certificate);
  const dev = (key: string) => {
    const d = dep.devices[key];
    if (!d) throw new Error(`no device ${key}`);
    return d;
  };
  const t: TestServer = {
    ...server,
    dep,
    dataDir: dir.path,
    logs,
    token: (key) => login(server.url, dev(key), dep.agreement),
    async connect(key) {
      const c = await LinkClient.open(server.url, await login(server.url, dev(key), dep.agreement));
      clients.push(c);
      await c.waitForType('hello');
      return c;
    },
    now: () => options.clock?.now() ?? Date.now(),
    async directory() {
      return fetchDirectory(server.url, await login(server.url, dev('jp-mod/audit1'), dep.agreement));
    },
  };
  return t;
}

/** Register a cleanup to run after the current test. */
export function onCleanup(fn: () => Promise<void> | void): void {
  cleanups.push(async () => {
    await fn();
  });
}
