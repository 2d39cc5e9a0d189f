import { HotlineError, isHotlineError } from '../../shared/errors.js';
import type { Store } from './store.js';

/**
 * Why the store cannot be used now, as readiness reports it: `corrupt` is for good (found by the
 * start-up or background integrity check, or by SQLite at run time: writes stop until an operator
 * restores); `failing` (disk full, I/O error) clears as soon as a write goes through again.
 */
export interface StoreFailure {
  kind: 'corrupt' | 'failing';
  reason: string;
  since: number;
}

/** Methods that change the store: refused while it is known corrupt, so no half-state is written on top. */
const WRITES = new Set<string | symbol>(['putDevice', 'putRevocation', 'commit', 'ack', 'appendAudit', 'setMeta', 'rebuildAuditTree', 'putCheckpoint', 'putCosignature', 'fireDue', 'queueEscalations', 'claimEscalations', 'settleEscalation']);

/**
 * Codes that mean the data itself is damaged: SQLite result codes (better-sqlite3's `err.code`), and
 * PostgreSQL's SQLSTATE XX001/XX002 (data or index corrupted).
 */
const CORRUPT_CODES = /^(SQLITE_(CORRUPT|NOTADB)|XX00[12]$)/;
/**
 * Codes that mean the store cannot write now, not a bad request: SQLite's full disk, I/O, read-only
 * file; PostgreSQL's SQLSTATE classes 08 (connection), 53 (insufficient resources: disk full, out of
 * memory, too many connections), 57P (server shutting down or starting), 58 (system I/O), 40001/40P01
 * (serialisation failure, deadlock: retry), 25006 (read-only transaction: a standby after fail-over);
 * and the socket errors of an unreachable database.
 */
const FAILING_CODES =
  /^(SQLITE_(FULL|IOERR|READONLY|CANTOPEN|PROTOCOL|NOMEM|BUSY|LOCKED)|08[0-9A-Z]{3}$|53[0-9A-Z]{3}$|57P0[1-4]$|58[0-9A-Z]{3}$|40001$|40P01$|25006$|E(CONNREFUSED|CONNRESET|PIPE|TIMEDOUT|HOSTUNREACH|NETUNREACH|AI_AGAIN|NOTFOUND)$)/;
/** node-postgres's own errors for a lost or unobtainable connection, which carry no code. */
const CONNECTION_LOST = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended unexpectedly)/;

/** A store whose failures are known: what /readyz reports and how writes are refused. */
export interface GuardedStore extends Store {
  /** Why the store cannot be used now; undefined while it can. */
  failure(): StoreFailure | undefined;
  /** Mark the store corrupt (a background integrity check found damage). */
  markCorrupt(reason: string): void;
  /** Call `listener` each time the store becomes corrupt (once per finding, not per refused write). */
  onCorrupt(listener: (failure: StoreFailure) => void): void;
}

/**
 * Wrap a Store so that every failure of the database reaches callers as `HL_ERR_STORE_FAILED`
 * (503, retry later) with what went wrong, never as a raw driver error that becomes
 * `HL_ERR_INTERNAL`; and so that its state is known: readiness (`ping`) answers 503 with the
 * reason while the store is failing, and nothing is written on top of a corrupt file.
 *
 * A Proxy rather than a class that repeats every method: the policy is the same for all of them,
 * and a method added to the port is covered without a line here.
 */
export function guardStore(inner: Store, now: () => number = Date.now): GuardedStore {
  let failure: StoreFailure | undefined;
  const listeners: ((failure: StoreFailure) => void)[] = [];
  const becomeCorrupt = (reason: string): StoreFailure => {
    const was = failure?.kind === 'corrupt';
    failure = { kind: 'corrupt', reason, since: now() };
    if (!was) {
      const found = failure;
      // After the refusal in hand has been thrown: a listener's failure must not change it.
      queueMicrotask(() => {
        for (const l of listeners) l(found);
      });
    }
    return failure;
  };
  const fail = (err: unknown): never => {
    if (isHotlineError(err)) throw err;
    const message = (err as Error)?.message ?? String(err);
    const raw = (err as { code?: unknown })?.code;
    const code = typeof raw === 'string' ? raw : CONNECTION_LOST.test(message) ? 'ECONNRESET' : undefined;
    if (typeof code === 'string' && CORRUPT_CODES.test(code)) failure = becomeCorrupt(`the database is corrupt (${code}: ${message})`);
    else if (typeof code === 'string' && FAILING_CODES.test(code)) failure ??= { kind: 'failing', reason: `the database cannot write (${code}: ${message})`, since: now() };
    else throw err;
    throw new HotlineError('HL_ERR_STORE_FAILED', failure.reason, { cause: err });
  };
  const refuseIfCorrupt = () => {
    if (failure?.kind === 'corrupt') throw new HotlineError('HL_ERR_STORE_FAILED', `${failure.reason}; writes are stopped until the data directory is restored`);
  };
  const succeeded = (write: boolean) => {
    if (write && failure?.kind === 'failing') failure = undefined;
  };
  const extra = {
    failure: () => failure,
    markCorrupt: (reason: string) => {
      becomeCorrupt(reason);
    },
    onCorrupt: (listener: (failure: StoreFailure) => void) => {
      listeners.push(listener);
    },
    // Readiness: a plain read succeeds on a full disk, so while failing, probe with a frame-sized write.
    ping: async () => {
      refuseIfCorrupt();
      try {
        await inner.ping();
        if (failure?.kind === 'failing') {
          // As large as the largest frame: a full disk often still takes a few bytes.
          await inner.setMeta('write_probe', 'x'.repeat(64 * 1024));
          await inner.setMeta('write_probe', String(now()));
        }
      } catch (err) {
        fail(err);
      }
      failure = undefined;
    },
  };
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (Object.hasOwn(extra, prop)) return extra[prop as keyof typeof extra];
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      const write = WRITES.has(prop);
      return (...args: unknown[]) => {
        let result: unknown;
        try {
          if (write) refuseIfCorrupt();
          result = (value as (...a: unknown[]) => unknown).apply(target, args);
        } catch (err) {
          // The port is async: a refusal is a rejected promise, never a synchronous throw.
          return Promise.reject(err).catch(fail);
        }
        if (result instanceof Promise) {
          return result.then(
            (v: unknown) => {
              succeeded(write);
              return v;
            },
            fail,
          );
        }
        succeeded(write);
        return result;
      };
    },
  }) as GuardedStore;
}
