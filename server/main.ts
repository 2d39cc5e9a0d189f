import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AddressInfo } from 'node:net';
import pino, { type DestinationStream, type Logger } from 'pino';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { HotlineError, isHotlineError } from '../shared/errors.js';
import { logKeyOf, parseAgreement, parseLogSecret, parseRelaySecret } from '../shared/crypto/keys.js';
import { requireSignedAgreement } from '../shared/crypto/agreement-signatures.js';
import { randomBytes } from '../shared/crypto/random.js';
import { fromBase64, toBase64, toHex } from '../shared/encoding/base64.js';
import type { Agreement, LogSecretFile, RelaySecretFile } from '../shared/protocol/schemas.js';
import { agreementHash } from '../shared/crypto/keys.js';
import { rootFromLeafHashes } from '../shared/audit/merkle.js';
import { buildApp, type AppDeps, type AppOptions } from './app.js';
import { useNodeCrypto } from './node-crypto.js';
import { AuditLog } from './audit-log.js';
import { systemClock } from './clock.js';
import { acquireLock, checkDatabaseFile, DEPLOYMENT_META_KEY, newDeploymentId, readIdentity, writeIdentity, type DataIdentity } from './data-dir.js';
import type { Clock } from './clock.js';
import { loadConfig, type LogLevel, type ServerConfig } from './config.js';
import { loadEscalationConfig } from './escalation/config.js';
import { guardStore, type GuardedStore } from './store/guarded-store.js';
import { checkIntegrityInWorker, SqliteStore } from './store/sqlite-store.js';
import { PgStore, type PgStoreOptions } from './store/pg-store.js';
import type { ClusterStore, Store } from './store/store.js';

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
export function loadLogSecret(path: string, agreement: Agreement, party?: string): Uint8Array {
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
  return checkLogSecret(file, agreement, party);
}

/** Read a relay's secret file (`hotline relay enrol --out`). */
export function loadRelaySecret(path: string): RelaySecretFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new HotlineError('HL_ERR_CONFIG_INVALID', `cannot read the relay secret file ${path}`, { cause });
  }
  try {
    return parseRelaySecret(JSON.parse(text));
  } catch (cause) {
    throw new HotlineError('HL_ERR_CONFIG_INVALID', `${path} is not a Hotline relay secret file (hotline relay enrol --out)`, { cause });
  }
}

function checkLogSecret(file: LogSecretFile, agreement: Agreement, party?: string): Uint8Array {
  const parsed = parseLogSecret(file);
  // A party's own relay signs with the log key the agreement names for it (agreement v2).
  const expected = logKeyOf(agreement, party);
  if (parsed.logKey !== expected) {
    throw new HotlineError('HL_ERR_CONFIG_INVALID', `the log key (${parsed.logKey}) is not the agreement's log key for this relay (${expected}); give the log secret made with this agreement`);
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
  /**
   * Start even though the checks of the data directory found data missing or damaged: the
   * problems are logged and recorded in the audit log (`store.data-loss.accepted`).
   */
  acceptDataLoss?: boolean;
  /**
   * Development only: start with an agreement that not every party's root has signed, after a loud
   * warning in the log (PROTOCOL.md "Agreement signatures"). Without it such an agreement is refused.
   */
  allowUnsignedAgreement?: boolean;
  /** SQLite settings: `maxPageCount` caps the database size (a quota; tests fill the "disk" with it). */
  sqlite?: { maxPageCount?: number };
  /** Run as the relay of one party (agreement v2): its identity and link settings (AppDeps.relay). */
  relay?: NonNullable<AppDeps['relay']>;
  /**
   * `postgres://…`: the store is this PostgreSQL database (server/store/pg-store.ts) instead of the
   * SQLite file in `dataDir`. `pg` sets PostgreSQL options (tests put each server in a schema of its own).
   */
  databaseUrl?: string;
  pg?: PgStoreOptions;
}

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8080 (ws:// is the same with the scheme changed). */
  url: string;
  app: FastifyInstance;
  store: Store;
  /** Finish in-flight writes, close the sockets and the store. Safe to call twice. */
  close(): Promise<void>;
}

/** Databases up to this size are checked (PRAGMA quick_check) before the server starts. */
const INLINE_INTEGRITY_MAX_BYTES = 64 * 1024 * 1024;

interface OpenedData {
  store: GuardedStore;
  /** PostgreSQL: the same store, as one of several nodes (its failures guarded alike). */
  cluster?: ClusterStore;
  jwtSecret: Uint8Array;
  deploymentId: string;
}

/**
 * Open the data directory's database and check it against what the directory recorded of itself
 * (`data-identity.json`): a database that is missing, empty, unreadable, corrupt (`PRAGMA
 * quick_check`), from another directory, or holding a shorter or different audit log than recorded
 * is refused with everything found and what to do, unless `acceptDataLoss`, which moves an
 * unreadable file aside, starts, and records the problems as an audit entry.
 */
async function openData(dataDir: string, agreement: Agreement, logger: Logger, acceptDataLoss: boolean, sqlite: { maxPageCount?: number }): Promise<OpenedData> {
  const dbPath = join(dataDir, DATABASE_FILE);
  const problems: string[] = [];
  let identity: DataIdentity | undefined;
  try {
    identity = readIdentity(dataDir);
  } catch (err) {
    if (!acceptDataLoss) throw err;
    problems.push((err as Error).message);
  }
  const missing = checkDatabaseFile(dataDir, dbPath, identity, JWT_SECRET_FILE);
  if (missing) problems.push(missing.what);
  if (problems.length > 0 && !acceptDataLoss) throw dataLost(problems);
  const jwtSecret = loadJwtSecret(dataDir);
  const options = {
    ...sqlite,
    onCheckpointWorkerFailure: (error: Error) =>
      logger.warn({ err: { message: error.message } }, 'the WAL checkpoint worker failed: the relay checkpoints on its event loop again (slower; nothing is lost)'),
  };
  let store: SqliteStore;
  try {
    store = new SqliteStore(dbPath, options);
  } catch (cause) {
    const what = `the database ${dbPath} cannot be opened (${(cause as Error).message})`;
    if (!acceptDataLoss) throw dataLost([...problems, what], cause);
    const aside = `${dbPath}.damaged-${Date.now()}`;
    renameSync(dbPath, aside);
    for (const suffix of ['-wal', '-shm']) if (existsSync(dbPath + suffix)) renameSync(dbPath + suffix, aside + suffix);
    problems.push(`${what}; moved aside to ${aside}`);
    store = new SqliteStore(dbPath, options);
  }
  // The database holds the directory and the log: readable by the server's user only.
  if (existsSync(dbPath)) chmodSync(dbPath, 0o600);
  const guarded = guardStore(store);
  try {
    // quick_check reads the whole file (about 1.5 s per 250 MiB here): a large database is checked
    // beside the running relay instead, and damage found there stops its writes (readiness 503).
    const large = statSync(dbPath).size > INLINE_INTEGRITY_MAX_BYTES;
    const damage = large ? undefined : await store.checkIntegrity();
    if (large) {
      void checkIntegrityInWorker(dbPath).then((found) => {
        if (found === undefined) return;
        // Logged, and told to every open link, by the app (buildApp's storeHealth).
        guarded.markCorrupt(`the database is corrupt (quick_check: ${found})`);
      });
    }
    if (damage) problems.push(`the database ${dbPath} is corrupt (quick_check: ${damage})`);
    const size = await store.auditSize();
    const stored = await store.getMeta(DEPLOYMENT_META_KEY);
    if (identity) {
      if (stored !== undefined && stored !== identity.deploymentId) problems.push(`the database ${dbPath} belongs to another data directory (deployment ${stored}, this directory is ${identity.deploymentId})`);
      await checkRecordedLog(store, agreement, logger, identity, size, damage, problems);
    }
    await refuseOrAcceptLoss(store, logger, problems, identity, acceptDataLoss, 'this directory');
    const deploymentId = identity && (stored === undefined || stored === identity.deploymentId) ? identity.deploymentId : (stored ?? newDeploymentId());
    if (stored !== deploymentId) await store.setMeta(DEPLOYMENT_META_KEY, deploymentId);
    const now = await store.auditSize();
    writeIdentity(dataDir, { deploymentId, agreementHash: agreementHash(agreement), auditSize: now, auditRoot: await auditRootAt(store, agreement, logger, now), writtenAt: Date.now(), reason: 'start' });
    return { store: guarded, jwtSecret, deploymentId };
  } catch (err) {
    await store.close();
    throw err;
  }
}

/** The audit log against what the data directory recorded of it: not shorter, and the same root at that size. */
async function checkRecordedLog(store: Store, agreement: Agreement, logger: Logger, identity: DataIdentity, size: number, damage: string | undefined, problems: string[]): Promise<void> {
  if (size < identity.auditSize) {
    problems.push(`the audit log has ${size} entries, but ${identity.auditSize} were recorded at ${new Date(identity.writtenAt).toISOString()} (${identity.reason}): entries were lost`);
  } else if (!damage && (await auditRootAt(store, agreement, logger, identity.auditSize, identity.auditRoot)) !== identity.auditRoot) {
    problems.push(`the audit log's first ${identity.auditSize} entries do not match the root recorded at ${new Date(identity.writtenAt).toISOString()}: the log was changed`);
  }
}

/** Refuse to start on lost or damaged data, unless --accept-data-loss, which is itself an audit entry. */
async function refuseOrAcceptLoss(store: Store, logger: Logger, problems: readonly string[], identity: DataIdentity | undefined, acceptDataLoss: boolean, whose: string): Promise<void> {
  if (problems.length === 0) return;
  if (!acceptDataLoss) throw dataLost(problems);
  logger.error({ problems }, `starting with --accept-data-loss: data of ${whose} was found missing or damaged`);
  await store.appendAudit({ type: 'store.data-loss.accepted', at: Date.now(), problems, ...(identity ? { recorded: { auditSize: identity.auditSize, auditRoot: identity.auditRoot, at: identity.writtenAt } } : {}) });
}

/** What an error says of a PostgreSQL URL: host, port and database, never the user or password. */
function describeDatabase(url: string): string {
  try {
    const u = new URL(url);
    return `PostgreSQL database ${u.pathname.slice(1)} on ${u.hostname}:${u.port || '5432'}`;
  } catch {
    return 'the PostgreSQL database';
  }
}

const JWT_SECRET_META_KEY = 'jwt_secret';

/**
 * Open the PostgreSQL store (migrations applied) and check it, as openData does for SQLite: the
 * audit log must not be shorter than, or differ from, what this node's data directory recorded of
 * it (`data-identity.json`). Every node of a relay keeps its own data directory (its lock, its
 * record of the log); they share the database, and with it the token secret (meta `jwt_secret`,
 * made by the first node to start), so that a token issued by one node is good on every other.
 */
async function openPgData(url: string, options: PgStoreOptions, dataDir: string, agreement: Agreement, logger: Logger, acceptDataLoss: boolean): Promise<OpenedData> {
  const problems: string[] = [];
  let identity: DataIdentity | undefined;
  try {
    identity = readIdentity(dataDir);
  } catch (err) {
    if (!acceptDataLoss) throw err;
    problems.push((err as Error).message);
  }
  let store: PgStore;
  try {
    store = await PgStore.open(url, options);
  } catch (cause) {
    if (isHotlineError(cause)) throw cause;
    throw new HotlineError('HL_ERR_STORE_FAILED', `cannot open the ${describeDatabase(url)}: ${(cause as Error).message}`, { cause });
  }
  const guarded = guardStore(store);
  try {
    const damage = await store.checkIntegrity();
    if (damage) problems.push(`the ${describeDatabase(url)} is not usable: ${damage}`);
    const size = await store.auditSize();
    const stored = await store.getMeta(DEPLOYMENT_META_KEY);
    if (identity) {
      if (stored !== undefined && stored !== identity.deploymentId) problems.push(`the ${describeDatabase(url)} belongs to another deployment (${stored}, this data directory is ${identity.deploymentId})`);
      await checkRecordedLog(store, agreement, logger, identity, size, damage, problems);
    }
    await refuseOrAcceptLoss(store, logger, problems, identity, acceptDataLoss, 'this relay');
    // The first node to start names the deployment and makes the token secret; the others adopt them.
    await store.setMetaIfAbsent(DEPLOYMENT_META_KEY, identity?.deploymentId ?? newDeploymentId());
    const deploymentId = (await store.getMeta(DEPLOYMENT_META_KEY))!;
    await store.setMetaIfAbsent(JWT_SECRET_META_KEY, toBase64(randomBytes(32)));
    const jwtSecret = fromBase64((await store.getMeta(JWT_SECRET_META_KEY))!, 32);
    const now = await store.auditSize();
    writeIdentity(dataDir, { deploymentId, agreementHash: agreementHash(agreement), auditSize: now, auditRoot: await auditRootAt(store, agreement, logger, now), writtenAt: Date.now(), reason: 'start' });
    // The guarded proxy forwards the cluster methods too, so their failures count for readiness.
    return { store: guarded, cluster: guarded as unknown as ClusterStore, jwtSecret, deploymentId };
  } catch (err) {
    await store.close();
    throw err;
  }
}

function dataLost(problems: readonly string[], cause?: unknown): HotlineError {
  return new HotlineError(
    'HL_ERR_STORE_DATA_LOST',
    `refusing to start: the data directory's data is missing or damaged:\n  - ${problems.join('\n  - ')}\n` +
      'Restore the data directory from a backup (see README "Operations"), or, to start anyway and record the loss in the audit log, give --accept-data-loss (HOTLINE_ACCEPT_DATA_LOSS=1).',
    cause === undefined ? undefined : { cause },
  );
}

/**
 * The root (hex) of the log's first `size` entries: from the stored tree nodes (O(log n) reads);
 * when that is not `expected`, or the nodes cannot be read, from the leaf hashes, because the nodes
 * are derived data and a damaged node must never pass for a changed log.
 */
async function auditRootAt(store: Store, agreement: Agreement, logger: Logger, size: number, expected?: string): Promise<string> {
  const tree = await new AuditLog({ agreement, store, clock: systemClock, log: logger as FastifyBaseLogger }).tree();
  const fromNodes = await tree.root(size).then(toHex, () => undefined);
  if (fromNodes !== undefined && (expected === undefined || fromNodes === expected)) return fromNodes;
  return toHex(rootFromLeafHashes((await store.auditEntries(0, size)).map((e) => e.leafHash)));
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
  await requireSignedAgreement(agreement, { allowUnsigned: options.allowUnsignedAgreement === true, warn: (text) => logger.warn(text) });
  const relayParty = options.relay?.identity.certificate.cert.party;
  const logSecret = options.logSecret
    ? checkLogSecret(options.logSecret, agreement, relayParty)
    : options.logKeyPath
      ? loadLogSecret(options.logKeyPath, agreement, relayParty)
      : undefined;
  const release = acquireLock(dataDir);
  let opened: OpenedData;
  try {
    opened = options.databaseUrl
      ? await openPgData(options.databaseUrl, options.pg ?? {}, dataDir, agreement, logger, options.acceptDataLoss === true)
      : await openData(dataDir, agreement, logger, options.acceptDataLoss === true, options.sqlite ?? {});
  } catch (error) {
    release();
    throw error;
  }
  const { store, jwtSecret } = opened;
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
        storeHealth: store,
        ...(opened.cluster ? { cluster: opened.cluster } : {}),
        ...(options.relay ? { relay: options.relay } : {}),
        recordLog: (reason, size, root) => {
          writeIdentity(dataDir, { deploymentId: opened.deploymentId, agreementHash: agreementHash(agreement), auditSize: size, auditRoot: toHex(root), writtenAt: Date.now(), reason });
        },
      },
      options.app,
    );
    await app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 8080 });
  } catch (error) {
    await store.close();
    release();
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
    close: () => (closing ??= app.close().finally(release).then(() => undefined)),
  };
}

/**
 * What to start from a loaded configuration: the one mapping from settings to start options, shared
 * by `node server/main.ts` and `hotline server` so that no setting is honoured by one and dropped by
 * the other.
 */
export function startOptionsFromConfig(config: ServerConfig): StartServerOptions {
  return {
    agreementPath: config.agreementPath,
    dataDir: config.dataDir,
    host: config.host,
    port: config.port,
    logLevel: config.logLevel,
    ...(config.tls ? { tls: config.tls } : {}),
    ...(config.logKeyPath ? { logKeyPath: config.logKeyPath } : {}),
    ...(config.databaseUrl ? { databaseUrl: config.databaseUrl } : {}),
    ...(config.allowUnsignedAgreement ? { allowUnsignedAgreement: true } : {}),
    ...(config.relayPath ? { relay: { identity: loadRelaySecret(config.relayPath), ...(config.peerUrls ? { peerUrls: config.peerUrls } : {}) } } : {}),
    app: {
      ...(config.checkpointIntervalMs ? { checkpointIntervalMs: config.checkpointIntervalMs } : {}),
      ...(config.rateLimits ? { rateLimits: config.rateLimits } : {}),
      ...(config.maxConnectionsPerAddress ? { maxConnectionsPerAddress: config.maxConnectionsPerAddress } : {}),
      ...(config.metricsTokenPath ? { metricsToken: readMetricsToken(config.metricsTokenPath) } : {}),
      ...(config.webhooksPath ? { escalation: loadEscalationConfig(config.webhooksPath) } : {}),
    },
  };
}

/** The /metrics bearer token from its file (a Docker secret, say): at least 32 characters, no spaces. */
export function readMetricsToken(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch {
    throw new HotlineError('HL_ERR_CONFIG_INVALID', `HOTLINE_METRICS_TOKEN_FILE (--metrics-token-file): cannot read ${path}`);
  }
  if (!/^\S{32,}$/.test(text)) throw new HotlineError('HL_ERR_CONFIG_INVALID', `HOTLINE_METRICS_TOKEN_FILE (--metrics-token-file): ${path} must hold one token of at least 32 characters without spaces (e.g. openssl rand -hex 32)`);
  return text;
}

/** The `node server/main.ts` entry: configuration from env and flags, graceful stop on SIGINT/SIGTERM. */
export async function main(argv: readonly string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): Promise<RunningServer> {
  const server = await startServer(startOptionsFromConfig(loadConfig(env, argv)));
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
