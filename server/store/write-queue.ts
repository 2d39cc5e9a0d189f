import type { Write, WriteResult } from '../relay/records.js';
import type { Store } from './store.js';

interface Pending {
  write: Write;
  resolve: (r: WriteResult) => void;
}


/**
 * Group commit (docs/design.md "Storage"): writes that arrive in the same turn of the event
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
 *
 * Acks answer nothing and are never waited for (records.ts AckWrite): an ack alone does not start
 * a commit. It rides with the next envelope, receipt or events write, or commits on its own after
 * ackHoldMs. With one message in flight the addressee's ack of the envelope would otherwise cost
 * an fsync, on the event loop, between the envelope's commit and the receipt's. `flushAcks()`
 * commits the held acks at once: a device that reconnects is told its acknowledged cursor from
 * the store (hello's lastCursor), so its acks must be there first. A crash loses at most the held
 * acks, which means redelivery that clients de-duplicate, as with an ack lost on the wire.
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
  /** A batch is being committed (across turns: PostgreSQL, and SQLite while its fsync runs off the loop). */
  private committing = false;
  /** Pending writes that are not acks (only those start a commit). */
  private writesPending = 0;
  /** Pending acks. */
  private acksPending = 0;
  /** Ends the hold of acks pending alone. */
  private ackTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly store: Pick<Store, 'commit'>,
    private readonly maxBatch = 256,
    /** Longest a batch is held open for writes still coming: bounds the latency this adds. */
    private readonly maxHoldMs = 15,
    /** Longest acks wait, alone, for a write to ride with. */
    private readonly ackHoldMs = 50,
  ) {}

  enqueue(write: Write): Promise<WriteResult> {
    return new Promise((resolve) => {
      if (this.pending.length === 0) this.openedAt = performance.now();
      this.pending.push({ write, resolve });
      if (isUrgent(write)) this.urgent = true;
      if (write.kind === 'ack') {
        this.acksPending++;
        this.ackTimer ??= setTimeout(() => {
          this.ackTimer = undefined;
          this.schedule();
        }, this.ackHoldMs).unref();
        // Past a full batch of acks, no more waiting.
        if (this.pending.length >= this.maxBatch) this.schedule();
      } else {
        this.writesPending++;
        this.schedule();
      }
    });
  }

  /** Commit the acks held so far now (with anything else pending); resolves once they are committed. */
  async flushAcks(): Promise<void> {
    if (this.acksPending > 0) {
      const last = this.pending[this.pending.length - 1]!;
      const done = new Promise<void>((resolve) => {
        const prev = last.resolve;
        last.resolve = (r) => {
          prev(r);
          resolve();
        };
      });
      this.stopAckTimer();
      this.schedule();
      await done;
    }
  }

  private schedule(): void {
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private stopAckTimer(): void {
    if (this.ackTimer !== undefined) clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
  }

  private flush(): void {
    // While a batch is being committed, the next one keeps gathering: it could not commit before
    // that one anyway (batches go in order), so it goes as one transaction when that commit ends,
    // not as many small ones queued behind it. The same for SQLite while its fsync runs
    // off the event loop.
    if (this.committing) {
      this.scheduled = false;
      return;
    }
    // Acks alone wait for a write to ride with, or for their timer (or flushAcks, which stops it).
    if (this.writesPending === 0 && this.ackTimer !== undefined && this.pending.length < this.maxBatch) {
      this.scheduled = false;
      return;
    }
    if (!this.urgent && this.pending.length < this.maxBatch && this.holdWhile() && performance.now() - this.openedAt < this.maxHoldMs) {
      setImmediate(() => this.flush());
      return;
    }
    this.scheduled = false;
    const batch = this.pending.splice(0, this.maxBatch);
    for (const p of batch) {
      if (p.write.kind === 'ack') this.acksPending--;
      else this.writesPending--;
    }
    // Bounded by maxBatch: only a FLASH left over by a full batch keeps the next one urgent.
    this.urgent = this.urgent && this.pending.some((p) => isUrgent(p.write));
    if (this.acksPending === 0) this.stopAckTimer();
    if (this.pending.length > 0) {
      this.openedAt = performance.now();
      if (this.writesPending > 0 || this.ackTimer === undefined) this.schedule();
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
    this.stopAckTimer();
    if (this.pending.length > 0) this.schedule();
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
