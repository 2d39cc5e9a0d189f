import type { Write, WriteResult } from '../relay/records.js';
import type { Store } from './store.js';

interface Pending {
  write: Write;
  resolve: (r: WriteResult) => void;
}


/**
 * Group commit (DESIGN.md "Storage and scale"): writes that arrive in the same turn of the event
 * loop go to the store as one transaction, one fsync, and each caller is answered after that
 * commit. Durability is not weakened: nobody hears "accepted" before the batch is on disk.
 *
 * Frames are handled in bounded turns (server/plugins/link.ts), so a burst spreads over several
 * turns; committing at each would cost an fsync, on the event loop, per few messages. While
 * `holdWhile` says more frames are waiting, the batch stays open, up to maxBatch writes or
 * maxHoldMs; when nothing waits (one message in flight) it commits at the next turn as before.
 *
 * A FLASH never waits for the hold (issue 9: precedence first, everywhere): an envelope or receipt
 * of rank 0 ends the hold, so its batch commits at the next turn with whatever else is pending.
 * It still commits after the batch already on disk's way (batches stay in arrival order).
 */
export class WriteQueue {
  private pending: Pending[] = [];
  private scheduled = false;
  private inFlight: Promise<void> = Promise.resolve();
  /** Number of store commits made (for tests and metrics). */
  commits = 0;
  /** Whether writes are still coming (frames received and not yet handled). */
  holdWhile: () => boolean = () => false;
  private openedAt = 0;
  /** A FLASH envelope or receipt is among the pending writes: commit at the next turn. */
  private urgent = false;
  /** A batch is being committed (only ever true across turns with an asynchronous store: PostgreSQL). */
  private committing = false;

  constructor(
    private readonly store: Pick<Store, 'commit'>,
    private readonly maxBatch = 256,
    /** Longest a batch is held open for writes still coming: bounds the latency this adds. */
    private readonly maxHoldMs = 15,
  ) {}

  enqueue(write: Write): Promise<WriteResult> {
    return new Promise((resolve) => {
      if (this.pending.length === 0) this.openedAt = performance.now();
      this.pending.push({ write, resolve });
      if (isUrgent(write)) this.urgent = true;
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    // While a batch is being committed, the next one keeps gathering: it could not commit before
    // that one anyway (batches go in order), so it goes as one transaction when that commit ends,
    // not as many small ones queued behind it. With SQLite a commit ends within its turn, so this
    // never waits there.
    if (this.committing) {
      this.scheduled = false;
      return;
    }
    if (!this.urgent && this.pending.length < this.maxBatch && this.holdWhile() && performance.now() - this.openedAt < this.maxHoldMs) {
      setImmediate(() => this.flush());
      return;
    }
    this.scheduled = false;
    const batch = this.pending.splice(0, this.maxBatch);
    // Bounded by maxBatch: only a FLASH left over by a full batch keeps the next one urgent.
    this.urgent = this.urgent && this.pending.some((p) => isUrgent(p.write));
    if (this.pending.length > 0) {
      this.openedAt = performance.now();
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
    if (batch.length === 0) return;
    // Batches commit one after another, in arrival order: a device's seq order is kept.
    this.committing = true;
    this.inFlight = this.inFlight.then(async () => {
      this.commits++;
      let results: WriteResult[];
      try {
        results = await this.store.commit(batch.map((p) => p.write));
      } catch (error) {
        results = batch.map(() => ({ ok: false, error: error as Error }));
      }
      this.committing = false;
      if (this.pending.length > 0 && !this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
      batch.forEach((p, i) => p.resolve(results[i] ?? { ok: false, error: new Error('missing write result') }));
    });
  }

  /** Resolves once everything enqueued so far is committed (graceful shutdown). */
  async drain(): Promise<void> {
    while (this.pending.length > 0 || this.scheduled) {
      await new Promise<void>((r) => setImmediate(r));
    }
    await this.inFlight;
  }
}

/** Rank 0 is FLASH (server/relay/delivery.ts PRECEDENCE_RANK). */
function isUrgent(write: Write): boolean {
  return (write.kind === 'envelope' || write.kind === 'receipt') && write.rank === 0;
}
