import { HotlineError } from '../shared/errors.js';
import type { RateLimitSettings } from './rate-limits.js';

/** Log levels pino understands. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The server's validated configuration (README "Settings", docs/design.md "Configuration"). */
export interface ServerConfig {
  /** Path of the agreement JSON file every party loads. */
  agreementPath: string;
  /** Directory holding the SQLite database and the per-deployment JWT secret. */
  dataDir: string;
  host: string;
  port: number;
  logLevel: LogLevel;
  /** Both or neither: PEM certificate and key paths. */
  tls?: { certPath: string; keyPath: string };
  /** Path of the log (checkpoint) secret file; without it no checkpoint is signed. */
  logKeyPath?: string;
  /** How often a checkpoint is signed when the log has grown (default 60 000). */
  checkpointIntervalMs?: number;
  /** Per-minute abuse limits given explicitly; the others keep their defaults (RATE_LIMIT_DEFAULTS). */
  rateLimits?: RateLimitSettings;
  /** Concurrent connections per peer address (default 512). */
  maxConnectionsPerAddress?: number;
  /** Start even though the data directory's checks found data missing (recorded in the audit log). */
  acceptDataLoss?: boolean;
  /**
   * Development only: run with an agreement that not every party's root has signed (PROTOCOL.md
   * "Agreement signatures"); the server logs a loud warning at start.
   */
  allowUnsignedAgreement?: boolean;
  /** Path of this relay's secret file (`hotline relay enrol`): run as the relay of one party (agreement v2). */
  relayPath?: string;
  /** Where to dial peer relays instead of the agreement's URLs, by party. */
  peerUrls?: Record<string, string[]>;
  /**
   * `postgres://…`: keep the relay's data in this PostgreSQL database instead of the SQLite file in
   * the data directory (README "Running on PostgreSQL"). Holds a password: never logged.
   */
  databaseUrl?: string;
  /** Path of a file holding the bearer token that opens /metrics to other hosts (docs/operations-endpoints.md). */
  metricsTokenPath?: string;
  /** Path of the webhooks file: where this relay sends its alarms beyond the console (docs/escalation.md). */
  webhooksPath?: string;
}

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Flag name → environment variable it overrides: every setting has both. `hotline server` takes
 * exactly these flags (plus `--data` as an alias of `--data-dir`), so adding a row here adds it there.
 */
export const SERVER_FLAGS: Readonly<Record<string, string>> = {
  '--agreement': 'HOTLINE_AGREEMENT',
  '--data-dir': 'HOTLINE_DATA_DIR',
  '--host': 'HOTLINE_HOST',
  '--port': 'HOTLINE_PORT',
  '--log-level': 'HOTLINE_LOG_LEVEL',
  '--tls-cert': 'HOTLINE_TLS_CERT',
  '--tls-key': 'HOTLINE_TLS_KEY',
  '--log-key': 'HOTLINE_LOG_KEY',
  '--checkpoint-interval-ms': 'HOTLINE_CHECKPOINT_INTERVAL_MS',
  '--rate-login-per-minute': 'HOTLINE_RATE_LOGIN_PER_MINUTE',
  '--rate-device-failures-per-minute': 'HOTLINE_RATE_DEVICE_FAILURES_PER_MINUTE',
  '--rate-directory-per-minute': 'HOTLINE_RATE_DIRECTORY_PER_MINUTE',
  '--max-connections-per-address': 'HOTLINE_MAX_CONNECTIONS_PER_ADDRESS',
  '--relay': 'HOTLINE_RELAY',
  '--peer-url': 'HOTLINE_PEER_URL',
  '--database-url': 'HOTLINE_DATABASE_URL',
  '--metrics-token-file': 'HOTLINE_METRICS_TOKEN_FILE',
  '--webhooks': 'HOTLINE_WEBHOOKS',
};

/**
 * Switches: flags without a value (`--accept-data-loss`), set by their variable with `1`/`true`.
 * `hotline server` takes these too.
 */
export const SERVER_SWITCHES: Readonly<Record<string, string>> = {
  '--accept-data-loss': 'HOTLINE_ACCEPT_DATA_LOSS',
  '--allow-unsigned-agreement': 'HOTLINE_ALLOW_UNSIGNED_AGREEMENT',
};

/** Rate-limit setting → its variable and flag. */
const RATE_SETTINGS: readonly [keyof RateLimitSettings, string, string][] = [
  ['loginPerMinute', 'HOTLINE_RATE_LOGIN_PER_MINUTE', '--rate-login-per-minute'],
  ['deviceFailuresPerMinute', 'HOTLINE_RATE_DEVICE_FAILURES_PER_MINUTE', '--rate-device-failures-per-minute'],
  ['directoryPerMinute', 'HOTLINE_RATE_DIRECTORY_PER_MINUTE', '--rate-directory-per-minute'],
];

function invalid(message: string): HotlineError {
  return new HotlineError('HL_ERR_CONFIG_INVALID', message);
}

/** Merge `--flag value` / `--flag=value` over the environment; unknown flags are an error. */
function mergeFlags(env: Env, argv: readonly string[]): Record<string, string | undefined> {
  const merged: Record<string, string | undefined> = { ...env };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg : arg.slice(0, eq);
    const switchKey = SERVER_SWITCHES[name];
    if (switchKey !== undefined) {
      if (eq !== -1) throw invalid(`${name} takes no value`);
      merged[switchKey] = '1';
      continue;
    }
    const key = SERVER_FLAGS[name];
    if (key === undefined) throw invalid(`unknown option ${name}; known options: ${[...Object.keys(SERVER_FLAGS), ...Object.keys(SERVER_SWITCHES)].join(', ')}`);
    let value: string | undefined;
    if (eq !== -1) value = arg.slice(eq + 1);
    else {
      value = argv[i + 1];
      i++;
    }
    if (value === undefined || value === '') throw invalid(`${name} needs a value`);
    merged[key] = value;
  }
  return merged;
}

/**
 * Read the server configuration from the environment and (optionally) command-line flags, which
 * win over the environment. Pure: no file is opened here; every problem is reported at once.
 *
 * @example
 * const config = loadConfig(process.env, process.argv.slice(2));
 */
export function loadConfig(env: Env, argv: readonly string[] = []): ServerConfig {
  const e = mergeFlags(env, argv);
  const problems: string[] = [];
  const text = (key: string): string | undefined => {
    const v = e[key]?.trim();
    return v === undefined || v === '' ? undefined : v;
  };

  const agreementPath = text('HOTLINE_AGREEMENT');
  if (agreementPath === undefined) problems.push('HOTLINE_AGREEMENT (--agreement) is required: the path of the agreement JSON file');
  const dataDir = text('HOTLINE_DATA_DIR');
  if (dataDir === undefined) problems.push('HOTLINE_DATA_DIR (--data-dir) is required: the directory for the database and secrets');

  const host = text('HOTLINE_HOST') ?? '127.0.0.1';
  const portText = text('HOTLINE_PORT') ?? '8080';
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 0 && port <= 65535)) problems.push(`HOTLINE_PORT (--port) must be an integer 0–65535, got "${portText}"`);

  const levelText = text('HOTLINE_LOG_LEVEL') ?? 'info';
  const logLevel = (LOG_LEVELS as readonly string[]).includes(levelText) ? (levelText as LogLevel) : undefined;
  if (logLevel === undefined) problems.push(`HOTLINE_LOG_LEVEL (--log-level) must be one of ${LOG_LEVELS.join(', ')}, got "${levelText}"`);

  const certPath = text('HOTLINE_TLS_CERT');
  const keyPath = text('HOTLINE_TLS_KEY');
  if ((certPath === undefined) !== (keyPath === undefined)) {
    problems.push('HOTLINE_TLS_CERT and HOTLINE_TLS_KEY (--tls-cert, --tls-key) go together: give both or neither');
  }
  const logKeyPath = text('HOTLINE_LOG_KEY');
  const intervalText = text('HOTLINE_CHECKPOINT_INTERVAL_MS');
  const checkpointIntervalMs = intervalText === undefined ? undefined : /^\d{1,10}$/.test(intervalText) ? Number(intervalText) : NaN;
  if (checkpointIntervalMs !== undefined && !(checkpointIntervalMs >= 1000 && checkpointIntervalMs <= 86_400_000)) {
    problems.push(`HOTLINE_CHECKPOINT_INTERVAL_MS (--checkpoint-interval-ms) must be an integer from 1000 to 86400000, got "${intervalText}"`);
  }

  const rateLimits: RateLimitSettings = {};
  for (const [name, key, flag] of RATE_SETTINGS) {
    const t = text(key);
    if (t === undefined) continue;
    const n = /^\d{1,7}$/.test(t) ? Number(t) : NaN;
    if (n >= 1 && n <= 1_000_000) rateLimits[name] = n;
    else problems.push(`${key} (${flag}) must be an integer from 1 to 1000000, got "${t}"`);
  }

  const capText = text('HOTLINE_MAX_CONNECTIONS_PER_ADDRESS');
  const maxConnectionsPerAddress = capText === undefined ? undefined : /^\d{1,6}$/.test(capText) ? Number(capText) : NaN;
  if (maxConnectionsPerAddress !== undefined && !(maxConnectionsPerAddress >= 1 && maxConnectionsPerAddress <= 100_000)) {
    problems.push(`HOTLINE_MAX_CONNECTIONS_PER_ADDRESS (--max-connections-per-address) must be an integer from 1 to 100000, got "${capText}"`);
  }
  const switchOn = (key: string, flag: string): boolean => {
    const t = text(key);
    const on = t === undefined ? false : ['1', 'true', 'yes'].includes(t.toLowerCase()) ? true : ['0', 'false', 'no'].includes(t.toLowerCase()) ? false : undefined;
    if (on === undefined) problems.push(`${key} (${flag}) must be 1/true/yes or 0/false/no, got "${t}"`);
    return on === true;
  };
  const acceptDataLoss = switchOn('HOTLINE_ACCEPT_DATA_LOSS', '--accept-data-loss');
  const allowUnsignedAgreement = switchOn('HOTLINE_ALLOW_UNSIGNED_AGREEMENT', '--allow-unsigned-agreement');

  const relayPath = text('HOTLINE_RELAY');
  const peerText = text('HOTLINE_PEER_URL');
  const peerUrls: Record<string, string[]> = {};
  for (const part of (peerText ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '')) {
    const m = /^([a-z0-9][a-z0-9-]{0,62}[a-z0-9])=(https?:\/\/\S+)$/.exec(part);
    if (!m) problems.push(`HOTLINE_PEER_URL (--peer-url) is PARTY=URL[,PARTY=URL…] with http(s) URLs, got "${part}"`);
    else (peerUrls[m[1]!] ??= []).push(m[2]!);
  }
  if (peerText !== undefined && relayPath === undefined) problems.push('HOTLINE_PEER_URL (--peer-url) needs HOTLINE_RELAY (--relay)');

  const databaseUrl = text('HOTLINE_DATABASE_URL');
  if (databaseUrl !== undefined && !isPostgresUrl(databaseUrl)) {
    // Not echoed: the URL may hold a password.
    problems.push('HOTLINE_DATABASE_URL (--database-url) must be a postgres:// or postgresql:// URL (postgres://user:password@host:5432/database)');
  }

  const metricsTokenPath = text('HOTLINE_METRICS_TOKEN_FILE');
  const webhooksPath = text('HOTLINE_WEBHOOKS');

  if (problems.length > 0) throw invalid(`invalid server configuration:\n  - ${problems.join('\n  - ')}`);
  return {
    agreementPath: agreementPath!,
    dataDir: dataDir!,
    host,
    port,
    logLevel: logLevel!,
    ...(certPath !== undefined && keyPath !== undefined ? { tls: { certPath, keyPath } } : {}),
    ...(logKeyPath !== undefined ? { logKeyPath } : {}),
    ...(checkpointIntervalMs !== undefined ? { checkpointIntervalMs } : {}),
    ...(Object.keys(rateLimits).length > 0 ? { rateLimits } : {}),
    ...(maxConnectionsPerAddress !== undefined ? { maxConnectionsPerAddress } : {}),
    ...(acceptDataLoss ? { acceptDataLoss: true } : {}),
    ...(allowUnsignedAgreement ? { allowUnsignedAgreement: true } : {}),
    ...(relayPath !== undefined ? { relayPath } : {}),
    ...(Object.keys(peerUrls).length > 0 ? { peerUrls } : {}),
    ...(databaseUrl !== undefined ? { databaseUrl } : {}),
    ...(metricsTokenPath !== undefined ? { metricsTokenPath } : {}),
    ...(webhooksPath !== undefined ? { webhooksPath } : {}),
  };
}

function isPostgresUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === 'postgres:' || url.protocol === 'postgresql:') && url.pathname.length > 1;
  } catch {
    return false;
  }
}
