import type { FastifyBaseLogger } from 'fastify';
import type { Agreement } from '../shared/protocol/schemas.js';
import type { Clock } from './clock.js';
import type { Directory } from './directory.js';
import type { DeadlineScheduler } from './deadline-scheduler.js';
import type { AuditLog } from './audit-log.js';
import type { DeviceKey, MailboxItem } from './relay/records.js';
import type { Store } from './store/store.js';
import type { WriteQueue } from './store/write-queue.js';
import type { TokenService } from './tokens.js';
import type { RateLimits, RateLimitSettings } from './rate-limits.js';

/** Limits and knobs of the app; every one has a safe default. */
export interface AppOptions {
  /** Interval of WebSocket pings; a connection that has not answered the previous ping is ended. Default 30 s. */
  heartbeatIntervalMs?: number;
  /** Bytes queued on a socket beyond which the device counts as a slow consumer. Default 1 MiB. */
  slowConsumerBytes?: number;
  /** Browser origins allowed on the WebSocket besides the server's own. */
  allowedOrigins?: readonly string[];
  /** Whether the server is reached over TLS (for the same-origin check). */
  secure?: boolean;
  /** How often a checkpoint of the audit log is signed, when it has grown. Default 60 s. */
  checkpointIntervalMs?: number;
  /** Per-minute limits of what unauthenticated peers may ask for (see RATE_LIMIT_DEFAULTS). */
  rateLimits?: RateLimitSettings;
  /** Login challenges outstanding at once; past it new ones are refused (HL_ERR_INPUT_RATE_LIMITED). Default 10 000. */
  maxChallenges?: number;
}

/** What the plugins share: built once in buildApp. */
export interface AppContext {
  agreement: Agreement;
  agreementHash: string;
  store: Store;
  clock: Clock;
  log: FastifyBaseLogger;
  directory: Directory;
  tokens: TokenService;
  writes: WriteQueue;
  options: Required<Omit<AppOptions, 'allowedOrigins' | 'checkpointIntervalMs' | 'rateLimits'>> & { allowedOrigins: readonly string[] };
  /** Abuse limits of unauthenticated requests. */
  limits: RateLimits;
  /** The audit log's tree, checkpoints and cosignatures. */
  audit: AuditLog;
  /** Set at shutdown: new work is refused with HL_ERR_SERVER_SHUTTING_DOWN. */
  shuttingDown: boolean;
  /** Work started and not finished (frame handling, writes): shutdown waits for it. */
  inFlight: Set<Promise<unknown>>;
  /** Ends the live connections of a revoked device certificate (set by the link plugin). */
  disconnectRevoked: (party: string, device: string, signKey: string) => void;
  /** Open deadlines and link tests: their timer, and the hooks the link plugin calls. */
  deadlines: DeadlineScheduler;
  /** Hands new mailbox items to the devices connected now (set by the link plugin). */
  pushLive: (delivered: readonly { device: DeviceKey; item: MailboxItem }[]) => void;
  /** Whether an operator device of `party` has a live link (set by the link plugin). */
  operatorOnline: (party: string) => boolean;
}

/** Track a promise in ctx.inFlight until it settles. */
export function track<T>(ctx: AppContext, p: Promise<T>): Promise<T> {
  ctx.inFlight.add(p);
  const done = () => ctx.inFlight.delete(p);
  p.then(done, done);
  return p;
}
