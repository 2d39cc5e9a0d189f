import type { FastifyBaseLogger } from 'fastify';
import type { Directory } from './directory.js';
import type { ClusterStore, DirectoryRowKey } from './store/store.js';

/** The first wait before a failed read of the directory is tried again; it doubles up to the max. */
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 30_000;

/**
 * Keeps this node's directory in step with what the other nodes on the same database store
 * (docs/postgresql.md "The device directory"): each stored certificate or revocation is notified in
 * its own transaction, and the node reads the row it names and learns it; after the listening
 * connection came back, and at start once listening, the node reads the whole directory (a
 * notification sent while it did not listen is lost; the row is not).
 *
 * No periodic re-read beside that: while the listening connection is up, PostgreSQL delivers every
 * notification committed (a NOTIFY that cannot be queued fails its transaction, so nothing is stored
 * unnotified), a loss of the connection is caught up on its return, and a read that fails is tried
 * again here until it succeeds. A poll would re-read every certificate on every node (thousands of
 * rows) to find nothing.
 */
export class DirectoryFollower {
  private retry: ReturnType<typeof setTimeout> | undefined;
  private retryMs = RETRY_MIN_MS;
  private stopped = false;

  constructor(
    private readonly directory: Directory,
    private readonly cluster: Pick<ClusterStore, 'directoryRow'>,
    private readonly log: FastifyBaseLogger,
  ) {}

  /** A notification named a directory row (undefined: one that could not be read, so read them all). */
  changed(key: DirectoryRowKey | undefined): void {
    if (key === undefined) {
      void this.catchUp();
      return;
    }
    void this.run(async () => {
      const row = await this.cluster.directoryRow(key);
      // This node's own changes come back too: known already, so nothing to say.
      if (row && this.directory.learn(row)) this.log.info({ device: `${key.party}/${key.device}`, kind: key.kind }, 'directory change stored by another node learned');
    });
  }

  /** Read the whole directory: notifications may have been lost (the listener was away). */
  catchUp(): Promise<void> {
    return this.run(async () => {
      const learned = await this.directory.sync();
      if (learned > 0) this.log.info({ learned }, 'directory read again: changes stored by other nodes learned');
    });
  }

  stop(): void {
    this.stopped = true;
    if (this.retry !== undefined) clearTimeout(this.retry);
    this.retry = undefined;
  }

  private async run(read: () => Promise<void>): Promise<void> {
    if (this.stopped) return;
    try {
      await read();
      this.retryMs = RETRY_MIN_MS;
    } catch (err) {
      if (this.stopped) return;
      this.log.warn({ err: { message: (err as Error).message }, retryMs: this.retryMs }, 'could not read a directory change another node stored; reading the whole directory again');
      this.scheduleRetry();
    }
  }

  /** Real time, not the relay's clock: a retry of I/O, not a protocol deadline (a test's manual clock must not hold it). */
  private scheduleRetry(): void {
    if (this.retry !== undefined) return;
    const wait = this.retryMs;
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      void this.catchUp();
    }, wait);
    this.retry.unref?.();
  }
}
