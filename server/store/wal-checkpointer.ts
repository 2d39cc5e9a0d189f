import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** What `PRAGMA wal_checkpoint(PASSIVE)` answered: frames in the WAL, and frames copied into the database. */
export interface CheckpointResult {
  busy: number;
  log: number;
  checkpointed: number;
}

/**
 * WAL checkpoints of a SQLite database on a connection of their own, in a worker thread (issue 9).
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that crosses `wal_autocheckpoint` (1,000
 * pages): on the relay's event loop, it copies up to 4 MB of pages into the database file and
 * fsyncs the WAL and the database, some milliseconds (up to ~25 ms measured here) during which no
 * frame is read and no FLASH handled; a message's two commits write about 25 pages, so that was
 * every forty messages or so. Off the loop, the relay's capacity rose by ~12 % in the bench
 * (docs/performance.md, thirteenth session). Here the store's own connection checkpoints
 * only as a last resort (`FALLBACK_PAGES`, should this worker fall behind or fail), and this
 * worker runs a PASSIVE checkpoint after every `everyCommits` group commits: it never blocks the
 * writer, and copies only frames committed before it began. Durability is SQLite's: the worker's
 * connection has `synchronous=FULL`, so the WAL is synced before frames are copied and the
 * database after; a crash at any point leaves the WAL to be replayed at the next open.
 *
 * A PASSIVE checkpoint copies only the frames committed before it began, and SQLite starts the WAL
 * over only when a write transaction begins with every frame copied. Under a sustained stream a
 * group commit lands while each checkpoint runs, so that never held: the WAL grew to
 * `FALLBACK_PAGES` and stayed there, and the writer's own checkpoint ran inside a COMMIT every few
 * seconds, 53–209 ms on the event loop each (docs/performance.md, fourteenth session). So once the
 * WAL holds `settlePages` frames, the writer asks for `settle()` before its next group commit: it
 * waits (asynchronously: the loop stays free, writes keep gathering into that batch) for one
 * checkpoint during which nothing is committed, after which that commit starts the WAL over.
 *
 * The worker starts at the first checkpoint, so a store that is opened and closed (tests, backup,
 * restore) costs no thread.
 */
export class WalCheckpointer {
  /** Pages past which the writer's own connection checkpoints anyway (about 64 MB of WAL). */
  static readonly FALLBACK_PAGES = 16_384;
  /** Frames in the WAL (about 16 MB) past which the next group commit waits for `settle()`. */
  static readonly SETTLE_PAGES = 4_096;
  private worker: Worker | undefined;
  private commits = 0;
  /** The checkpoint running, if any. */
  private current: Promise<unknown> | undefined;
  /** Frames in the WAL at the last checkpoint. */
  private walFrames = 0;
  /** Frames past which a settle is due: raised when one did not start the WAL over (a reader held it). */
  private settleAt: number;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (r: CheckpointResult) => void; reject: (e: Error) => void }>();
  private failed = false;
  /** Checkpoints completed (for tests). */
  completed = 0;

  constructor(
    private readonly path: string,
    /** Told once if the worker fails: the writer's connection should checkpoint by itself again. */
    private readonly onFailure: (error: Error) => void,
    private readonly everyCommits = 32,
    private readonly settlePages = WalCheckpointer.SETTLE_PAGES,
  ) {
    this.settleAt = settlePages;
  }

  /** The WAL has grown past `settlePages`: the next group commit should wait for `settle()`. */
  get settleDue(): boolean {
    return !this.failed && this.walFrames >= this.settleAt;
  }

  /**
   * Resolves once a checkpoint has run with nothing committed meanwhile (the caller commits nothing
   * until then), so that the next write transaction starts the WAL over. Never rejects: if the
   * worker fails, the writer's fallback checkpoint is still there.
   */
  async settle(): Promise<void> {
    try {
      await this.current;
      const r = await this.checkpoint();
      if (r.checkpointed === r.log) {
        // Every frame copied: the next write starts the WAL over (seen at the next checkpoint).
        this.settleAt = this.settlePages;
        this.walFrames = 0;
      } else {
        // A reader was still on the WAL: the next settle waits for as many frames again, or for a
        // start-over seen at a checkpoint (the frame count kept, so that a smaller one shows it).
        this.settleAt = r.log + this.settlePages;
      }
    } catch {
      // The worker failed (fail() has told the store): nothing to wait for.
    }
  }

  /** A group commit is durable: every `everyCommits` of them, a checkpoint (one at a time). */
  committed(): void {
    if (this.failed) return;
    if (++this.commits < this.everyCommits || this.current) return;
    this.commits = 0;
    // One at a time (the test above), so the one that ends is the current one.
    this.current = this.checkpoint()
      .then(
        () => {},
        () => {},
      )
      .finally(() => {
        this.current = undefined;
      });
  }

  /** Run a PASSIVE checkpoint now in the worker; resolves with what it did. */
  checkpoint(): Promise<CheckpointResult> {
    if (this.failed) return Promise.reject(new Error('the checkpoint worker failed'));
    const worker = this.start();
    const id = this.nextId++;
    // Ref'd while anything is awaited of it: an unref'd worker does not hold the event loop, and a
    // loop left with nothing else would end with this promise pending (the bench then stopped silently).
    worker.ref();
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.postMessage({ type: 'checkpoint', id });
    });
  }

  /** Close the worker's connection and end it (before the writer's connection closes). */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.ref();
    worker.postMessage({ type: 'close' });
    await exited;
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    // Plain CommonJS for the worker: it runs without the TypeScript loader (as checkIntegrityInWorker).
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const db = new (require(workerData.driver))(workerData.path);
      db.pragma('busy_timeout = 5000');
      db.pragma('synchronous = FULL');
      db.pragma('wal_autocheckpoint = 0');
      parentPort.on('message', (m) => {
        if (m.type === 'close') {
          db.close();
          parentPort.close();
          return;
        }
        try {
          const [r] = db.pragma('wal_checkpoint(PASSIVE)');
          parentPort.postMessage({ id: m.id, result: r });
        } catch (err) {
          parentPort.postMessage({ id: m.id, error: err.message });
        }
      });`;
    const worker = new Worker(code, { eval: true, workerData: { path: this.path, driver: createRequire(import.meta.url).resolve('better-sqlite3') } });
    worker.unref();
    worker.on('message', (m: { id: number; result?: CheckpointResult; error?: string }) => {
      const w = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      // Not once close() has taken the worker: it is ref'd until it exits (an answer to a
      // checkpoint still out when close() began would otherwise let the process end inside it).
      if (this.waiting.size === 0 && this.worker === worker) worker.unref();
      if (m.result) {
        this.completed++;
        // A smaller WAL than last time: it started over; settles are due at settlePages again.
        if (m.result.log < this.walFrames) this.settleAt = this.settlePages;
        this.walFrames = m.result.log;
        w?.resolve(m.result);
      } else w?.reject(new Error(m.error ?? 'checkpoint failed'));
    });
    worker.once('error', (error) => this.fail(error));
    worker.once('exit', () => {
      if (this.worker === worker) this.fail(new Error('the checkpoint worker exited'));
    });
    this.worker = worker;
    return worker;
  }

  private fail(error: Error): void {
    if (this.failed) return;
    this.failed = true;
    this.worker = undefined;
    for (const w of this.waiting.values()) w.reject(error);
    this.waiting.clear();
    this.onFailure(error);
  }
}
