import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AddressInfo } from 'node:net';
import pino, { type DestinationStream, type Logger } from 'pino';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { HotlineError } from '../shared/errors.js';
import { parseAgreement, parseLogSecret } from '../shared/crypto/keys.js';
import { randomBytes } from '../shared/crypto/random.js';
import { fromBase64, toBase64 } from '../shared/encoding/base64.js';
import type { Agreement, LogSecretFile } from '../shared/protocol/schemas.js';
import { buildApp, type AppOptions } from './app.js';
import { useNodeCrypto } from './node-crypto.js';
import type { Clock } from './clock.js';
import { loadConfig, type LogLevel } from './config.js';
import { SqliteStore } from './store/sqlite-store.js';
import type { Store } from './store/store.js';

/** Paths pino blanks out, as a second line of defence: the code never logs these in the first place. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["sec-websocket-protocol"]',
  'headers.authorization',
  'headers["sec-websocket-protocol"]',
  'authorization',
  'token',
  '*.token',
  'jwtSecret',
  'signSecret',
  '*.signSecret',
  'boxSecret',
  '*.boxSecret',
  'rootSecret',
  '*.rootSecret',
  'logSecret',
  '*.logSecret',
  'ciphertext',
  '*.ciphertext',
  'envelope',
  '*.envelope',
  'plaintext',
  '*.plaintext',
  'payload',
  '*.payload',
  'body',
  '*.body',
];

/** The one root logger (pino), with redaction. Tests pass a stream to read what it writes. */
export function createLogger(level: LogLevel, stream?: DestinationStream): Logger {
  const options = { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { service: 'hotline-server' } };
  return stream ? pino(options, stream) : pino(options);
}

export const DATABASE_FILE = 'hotline.sqlite';
export const JWT_SECRET_FILE = 'jwt-secret.key';

/** Read the per-deployment JWT secret from the data directory, making it (mode 0600) on first run. */
export function loadJwtSecret(dataDir: string): Uint8Array {
  const path = join(dataDir, JWT_SECRET_FILE);
  if (!existsSync(path)) {
    writeFileSync(path, toBase64(randomBytes(32)) + '\n', { mode: 0o600, flag: 'wx' });
  }
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new HotlineError('HL_ERR_CONFIG_INVALID', `${path} is readable by others (mode ${mode.toString(8)}); run: chmod 600 ${path}`);
  }
  try {
    return fromBase64(readFileSync(path, 'utf8').trim(), 32);
  } catch (cause) {
    throw new HotlineError('HL_ERR_CONFIG_INVALID', `${path} does not hold a base64 32-byte secret`, { cause });
  }
}

/**
 * Read and check the log (checkpoint) secret: mode 0600, a valid log secret file, and its public
 * key the agreement's `logKey` (else the checkpoints would verify for nobody).
 */
export function loadLogSecret(path: string, agreement: Agreement): Uint8Array {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new HotlineError('HL_ERR_CONFIG_INVALID', `cannot read the log key file ${path} (HOTLINE_LOG_KEY)`, { cause });
  }
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new HotlineError('HL_ERR_CONFIG_INVALID', `${path} is readable by others (mode ${mode.toString(8)}); run: chmod 600 ${path}`);
  }
  let file: LogSecretFile;
  try {
    file = parseLogSecret(JSON.parse(text));
  } catch (cause) {
    throw new HotlineError('HL_ERR_CONFIG_INVALID', `${path} is not a Hotline log secret file`, { cause });
  }
  return checkLogSecret(file, agreement);
}

function checkLogSecret(file: LogSecretFile, agreement: Agreement): Uint8Array {
  const parsed = parseLogSecret(file);
  if (parsed.logKey !== agreement.logKey) {
    throw new HotlineError('HL_ERR_CONFIG_INVALID', `the log key (${parsed.logKey}) is not the agreement's logKey (${agreement.logKey}); give the log secret made with this agreement`);
  }
  return fromBase64(parsed.logSecret, 32);
}

export interface StartServerOptions {
  /** The agreement, or the path of its file. */
  agreement?: Agreement;
  agreementPath?: string;
  dataDir: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
  logLevel?: LogLevel;
  /** Where log lines go (default stdout). */
  logStream?: DestinationStream;
  /** A ready logger instead of logLevel/logStream. */
  logger?: Logger;
  clock?: Clock;
  tls?: { certPath: string; keyPath: string };
  app?: AppOptions;
  /** The log secret (or the path of its file): the server then signs checkpoints. */
  logSecret?: LogSecretFile;
  logKeyPath?: string;
}

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8080 (ws:// is the same with the scheme changed). */
  url: string;
  app: FastifyInstance;
  store: Store;
  /** Finish in-flight writes, close the sockets and the store. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Open the store in `dataDir`, build the app and listen: what `hotline server`, `npm start` and the
 * tests run.
 *
 * @example
 * const server = await startServer({ agreementPath: 'agreement.json', dataDir: 'data', port: 0 });
 * console.log(server.url); await server.close();
 */
export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  useNodeCrypto();
  let agreement = options.agreement;
  if (!agreement) {
    if (!options.agreementPath) throw new HotlineError('HL_ERR_CONFIG_INVALID', 'give the agreement or the path of its file');
    let text: string;
    try {
      text = readFileSync(options.agreementPath, 'utf8');
    } catch (cause) {
      throw new HotlineError('HL_ERR_CONFIG_INVALID', `cannot read the agreement file ${options.agreementPath}`, { cause });
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (cause) {
      throw new HotlineError('HL_ERR_CONFIG_INVALID', `the agreement file ${options.agreementPath} is not JSON`, { cause });
    }
    agreement = parseAgreement(value);
  } else {
    agreement = parseAgreement(agreement);
  }
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const logger = options.logger ?? createLogger(options.logLevel ?? 'info', options.logStream);
  const logSecret = options.logSecret ? checkLogSecret(options.logSecret, agreement) : options.logKeyPath ? loadLogSecret(options.logKeyPath, agreement) : undefined;
  const jwtSecret = loadJwtSecret(dataDir);
  const store = new SqliteStore(join(dataDir, DATABASE_FILE));
  const dbPath = join(dataDir, DATABASE_FILE);
  if (existsSync(dbPath)) chmodSync(dbPath, 0o600);
  const https = options.tls ? { cert: readFileSync(options.tls.certPath), key: readFileSync(options.tls.keyPath) } : undefined;
  let app: FastifyInstance;
  try {
    app = await buildApp(
      {
        store,
        agreement,
        jwtSecret,
        logger: logger as FastifyBaseLogger,
        ...(options.clock ? { clock: options.clock } : {}),
        ...(https ? { https } : {}),
        ...(logSecret ? { logSecret } : {}),
      },
      options.app,
    );
    await app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 8080 });
  } catch (error) {
    await store.close();
    throw error;
  }
  const address = app.server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `${https ? 'https' : 'http'}://${host}:${address.port}`;
  let closing: Promise<void> | undefined;
  return {
    url,
    app,
    store,
    close: () => (closing ??= app.close().then(() => undefined)),
  };
}

/** The `node server/main.ts` entry: configuration from env and flags, graceful stop on SIGINT/SIGTERM. */
export async function main(argv: readonly string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): Promise<RunningServer> {
  const config = loadConfig(env, argv);
  const server = await startServer({
    agreementPath: config.agreementPath,
    dataDir: config.dataDir,
    host: config.host,
    port: config.port,
    logLevel: config.logLevel,
    ...(config.tls ? { tls: config.tls } : {}),
    ...(config.logKeyPath ? { logKeyPath: config.logKeyPath } : {}),
    app: {
      ...(config.checkpointIntervalMs ? { checkpointIntervalMs: config.checkpointIntervalMs } : {}),
      ...(config.rateLimits ? { rateLimits: config.rateLimits } : {}),
    },
  });
  const stop = (signal: string) => {
    server.app.log.info({ signal }, 'shutting down');
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        server.app.log.error({ err: { message: (err as Error).message } }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return server;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((error: unknown) => {
    console.error(error instanceof HotlineError ? `${error.code}: ${error.message}` : error);
    process.exit(2);
  });
}
