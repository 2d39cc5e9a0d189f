import { isFlashWrite, type Write, type WriteResult } from '../relay/records.js';
import type { Store } from './store.js';

interface Pending {
  write: Write;
  resolve: (r: WriteResult) => void;
  /** Told the write's result once its transaction is done (see `enqueue`); cleared once told. */
  visible: ((r: WriteResult) => void) | undefined;
}

const resultOf = (results: readonly WriteResult[], i: number): WriteResult => results[i] ?? { ok: false, error: new Error('missing write result') };

/** Tell each write of a batch that its transaction is done (each once, in batch order). */
function tellVisible(batch: readonly Pending[], results: readonly WriteResult[]): void {
  batch.forEach((p, i) => {
    const visible = p.visible;
    if (visible === undefined) return;
    p.visible = undefined;
    try {
      visible(resultOf(results, i));
    } catch (error) {
      // A bug in the caller's callback: thrown where it shows, not inside the store's commit.
      queueMicrotask(() => {
        throw error;
      });
    }
  });
}

/** Answer each write of a batch: `visible` first where the store has not told it, then the promise. */
function answer(batch: readonly Pending[], results: readonly WriteResult[]): void {
  tellVisible(batch, results);
  batch.forEach((p, i) => p.resolve(resultOf(results, i)));
}


/**
 * Group commit (docs/design.md "Storage"): writes that arrive in the same turn of the event
 * loop go to the store as one transaction, one fsync, and each caller is answered after that
 * commit. Durability is not weakened: nobody hears "accepted" before the batch is on disk.
 *
 * Frames are handled in bounded turns (server/plugins/link.ts), so a burst spreads over several
 * turns; committing at each would cost an fsync per few messages. While `holdWhile` says more
 * frames are waiting, the batch stays open, up to maxBatch writes or maxHoldMs, or until the link
 * says none is waiting any more (`holdChanged`); when nothing waits (one message in flight) it
 * commits at the next turn as before.
 *
 * A FLASH never waits for the hold (issue 9: precedence first, everywhere): an envelope or receipt
 * of rank 0 ends the hold, so its batch commits at the next turn with whatever else is pending.
 * Nor does it wait for the batch being committed, when the store allows commits to overlap
 * (`commitsOverlap`: SQLite, whose transaction is done at the call and whose fsync runs off the
 * event loop): the FLASH writes pending are then taken out of the gathering batch, in arrival
 * order, and committed at once as a batch of their own, beside the one whose fsync is running,
 * instead of waiting for that fsync and then for their own. Each is answered after its own
 * commit, which is after its fsync: durability is as before; and not before an earlier commit
 * that carries a FLASH, so that a device's FLASH messages keep their order (urgentTurn). The ROUTINE writes left behind keep
 * their order and commit as before; a FLASH may so be accepted before them (PROTOCOL.md
 * "Delivery order": a higher rank may overtake a lower one). The same when nothing is being
 * committed but ROUTINE writes are pending with the FLASH: it goes first, in a batch of its own
 * (small, so its transaction is short and its copies go out first), and the rest right after.
 * And a FLASH does not wait for the loop's next check phase to be flushed, only for the work in
 * hand to yield (scheduleUrgent).
 *
 * What a batch stored is forwarded as soon as its transaction is done, before its fsync (`enqueue`'s
 * `visible`): the addressee opens a message and signs its receipt while the relay's disk flushes.
 * Only the answers to the writers wait for durability (PROTOCOL.md "Delivery before durability").
 *
 * Acks answer nothing and are never waited for (records.ts AckWrite): an ack alone does not start
 * a commit. It rides with the next envelope, receipt or events write, or commits on its own after
 * ackHoldMs. With one message in flight the addressee's ack of the envelope would otherwise cost
 * an fsync between the envelope's commit and the receipt's. `flushAcks()` commits the held acks at once: a device that reconnects is told its acknowledged cursor from
 * the store (hello's lastCursor), so its acks must be there first. A crash loses at most the held
 * acks, which means redelivery that clients de-duplicate, as with an ack lost on the wire.
 */
export class WriteQueue {
  private pending: Pending[] = [];
  private scheduled = false;
  private inFlight: Promise<void> = Promise.resolve();
  /** Number of store commits made (for tests and metrics). */
  commits = 0;
  /** Told the duration of each store commit, in seconds (for /metrics). */
  onCommit: ((seconds: number) => void) | undefined;
  /** Told after each store commit that went through, once its writes are durable (escalation reads new events then). */
  onCommitted: (() => void) | undefined;
  /**
   * Whether writes are still coming (frames received and not yet handled). Looked at when a batch
   * could commit, not polled: whoever owns it calls `holdChanged()` when it may have turned false.
   */
  holdWhile: () => boolean = () => false;
  /** The batch is held open for writes still coming (flush returned early; `holdTimer` bounds it). */
  private held = false;
  private holdTimer: ReturnType<typeof setTimeout> | undefined;
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
  /** FLASH batches committed beside the batch in progress, not yet answered. */
  private readonly urgentInFlight = new Set<Promise<void>>();
  /** A microtask flush for a FLASH is queued (scheduleUrgent). */
  private urgentScheduled = false;
  /** Resolves once the last commit carrying a FLASH has answered (see urgentTurn). */
  private urgentAnswered: Promise<void> = Promise.resolve();
  /**
   * Held while a FLASH is on its way through the relay (server/relay/flash-gate.ts): a batch
   * without a FLASH waits for it to open, so that the FLASH's next hop does not find the event
   * loop inside a ROUTINE commit. Bounded by the gate.
   */
  gate: { readonly held: boolean; wait(): { done: Promise<void> } } | undefined;
  /** Waiting for the gate to open (one wait at a time). */
  private gateWaiting = false;

  constructor(
    private readonly store: Pick<Store, 'commit' | 'commitsOverlap'>,
    private readonly maxBatch = 256,
    /** Longest a batch is held open for writes still coming: bounds the latency this adds. */
    private readonly maxHoldMs = 15,
    /** Longest acks wait, alone, for a write to ride with. */
    private readonly ackHoldMs = 50,
  ) {}

  /** Writes waiting for a commit (not those of the batch being committed). */
  get depth(): number {
    return this.pending.length;
  }

  /**
   * Queue a write for the next group commit. The promise resolves once the write is durable (or
   * refused). `visible`, if given, is told the result earlier, as soon as the batch's transaction
   * is done (Store `commit`), and always before the promise resolves: what the relay may forward
   * then, it may not yet answer ("accepted" waits for the promise).
   */
  enqueue(write: Write, visible?: (result: WriteResult) => void): Promise<WriteResult> {
    return new Promise((resolve) => {
      if (this.pending.length === 0) this.openedAt = performance.now();
      this.pending.push({ write, resolve, visible });
      if (isFlashWrite(write)) this.urgent = true;
      if (write.kind === 'ack') {
        this.acksPending++;
        this.ackTimer ??= setTimeout(() => {
          this.ackTimer = undefined;
          this.schedule();
        }, this.ackHoldMs).unref();
        // Past a full batch of acks, no more waiting.
        if (this.pending.length >= this.maxBatch) {
          this.schedule();
          this.release();
        }
      } else {
        this.writesPending++;
        if (isFlashWrite(write)) this.scheduleUrgent();
        else this.schedule();
        // A full batch is held no longer.
        if (this.pending.length >= this.maxBatch) this.release();
      }
    });
  }

  /**
   * A FLASH is flushed once the work in hand yields (a microtask), not at the loop's next check
   * phase: under a ROUTINE stream that phase comes only after every socket's turn of the poll phase
   * (up to TURN_MS each, server/plugins/link.ts), which cost a FLASH ~2 ms at the median before its
   * commit, twice per message (docs/performance.md, ninth session). FLASH frames of one turn thus
   * commit one by one, each a small batch of its own, answered in order (urgentTurn); a flood of
   * them is bounded by the frame turns themselves.
   */
  private scheduleUrgent(): void {
    if (this.urgentScheduled) return;
    this.urgentScheduled = true;
    queueMicrotask(() => {
      this.urgentScheduled = false;
      this.flush();
    });
  }

  /** Commit the acks held so far now (with anything else pending); resolves once they are committed. */
  async flushAcks(): Promise<void> {
    if (this.acksPending > 0) {
      // The last ack, not the last write: a FLASH behind it may commit in a batch of its own.
      const last = this.pending.findLast((p) => p.write.kind === 'ack')!;
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

  /**
   * Tell the queue that `holdWhile` may have turned false (the link: no frame is waiting any more).
   * A batch held open is then committed at the loop's next check phase, unless it is held again.
   */
  holdChanged(): void {
    this.release();
  }

  /** End the hold, if the batch is held: flush at the next check phase, which looks at it afresh. */
  private release(): void {
    if (!this.held) return;
    this.held = false;
    this.stopHoldTimer();
    setImmediate(() => this.flush());
  }

  private stopHoldTimer(): void {
    if (this.holdTimer !== undefined) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
  }

  private stopAckTimer(): void {
    if (this.ackTimer !== undefined) clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
  }

  private flush(): void {
    // Looked at afresh: held again below if it still should be.
    this.held = false;
    // While a batch is being committed, the next one keeps gathering: it could not commit before
    // that one anyway (batches go in order), so it goes as one transaction when that commit ends,
    // not as many small ones queued behind it. The same for SQLite while its fsync runs
    // off the event loop.
    if (this.committing) {
      this.scheduled = false;
      // Except a FLASH: it goes at once, beside that batch, where the store allows it.
      if (this.urgent && this.store.commitsOverlap === true) this.commitUrgent();
      return;
    }
    // A FLASH on its way through the relay: what has no FLASH in it waits for the gate.
    if (!this.urgent && this.gate?.held === true) {
      this.scheduled = false;
      if (!this.gateWaiting) {
        this.gateWaiting = true;
        void this.gate.wait().done.then(() => {
          this.gateWaiting = false;
          if (this.pending.length > 0) this.schedule();
        });
      }
      return;
    }
    // Acks alone wait for a write to ride with, or for their timer (or flushAcks, which stops it).
    if (this.writesPending === 0 && this.ackTimer !== undefined && this.pending.length < this.maxBatch) {
      this.scheduled = false;
      return;
    }
    if (!this.urgent && this.pending.length < this.maxBatch && this.holdWhile()) {
      const left = this.maxHoldMs - (performance.now() - this.openedAt);
      if (left > 0) {
        // Held without polling: `holdChanged()`, a full batch, a FLASH or this timer ends the hold.
        // It used to look again at every turn of the event loop (a setImmediate each): 435,134
        // flushes in one `--only=capacity` run, 2,077 now, and the loop never slept while frames
        // waited (docs/performance.md, nineteenth session). `scheduled` stays set, so that writes
        // enqueued meanwhile do not start another flush.
        this.held = true;
        this.holdTimer ??= setTimeout(() => {
          this.holdTimer = undefined;
          this.release();
        }, Math.max(1, Math.ceil(left)));
        return;
      }
    }
    this.stopHoldTimer();
    this.scheduled = false;
    // A FLASH among ROUTINE writes goes first in a batch of its own, where the store allows it: a
    // small transaction, after which its copies go out at once (`visible`), where a large mixed
    // one would keep them behind every ROUTINE write's statements. Only FLASH writes and acks
    // pending: one batch, as before (the acks ride with the FLASH).
    if (this.urgent && this.store.commitsOverlap === true && this.pending.some((p) => p.write.kind !== 'ack' && !isFlashWrite(p.write))) {
      this.commitUrgent();
      // The rest at the next turn, not now: committed here, its transaction would run before the
      // FLASH's answer (a microtask queued behind it), ~1 ms at the median under load.
      if (this.pending.length > 0) this.schedule();
      return;
    }
    const batch = this.pending.splice(0, this.maxBatch);
    for (const p of batch) {
      if (p.write.kind === 'ack') this.acksPending--;
      else this.writesPending--;
    }
    // Bounded by maxBatch: only a FLASH left over by a full batch keeps the next one urgent.
    this.urgent = this.urgent && this.pending.some((p) => isFlashWrite(p.write));
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
      const started = performance.now();
      const turn = this.urgentTurn(batch);
      try {
        results = await this.store.commit(
          batch.map((p) => p.write),
          (r) => tellVisible(batch, r),
        );
      } catch (error) {
        results = batch.map(() => ({ ok: false, error: error as Error }));
      }
      this.onCommit?.((performance.now() - started) / 1000);
      this.onCommitted?.();
      this.committing = false;
      if (this.pending.length > 0 && !this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
      await turn.before;
      answer(batch, results);
      turn.done();
    });
  }

  /** The FLASH writes pending (at most maxBatch), out of the gathering batch, committed now. */
  private commitUrgent(): void {
    const batch: Pending[] = [];
    const rest: Pending[] = [];
    for (const p of this.pending) (batch.length < this.maxBatch && isFlashWrite(p.write) ? batch : rest).push(p);
    this.pending = rest;
    this.writesPending -= batch.length;
    this.urgent = rest.some((p) => isFlashWrite(p.write));
    if (this.urgent) this.schedule();
    this.commits++;
    const turn = this.urgentTurn(batch);
    const done = this.store
      .commit(
        batch.map((p) => p.write),
        (r) => tellVisible(batch, r),
      )
      .then(
        async (results) => {
          this.onCommitted?.();
          await turn.before;
          answer(batch, results);
        },
        async (error: unknown) => {
          await turn.before;
          answer(
            batch,
            batch.map(() => ({ ok: false, error: error as Error })),
          );
        },
      )
      .finally(turn.done);
    this.urgentInFlight.add(done);
    void done.finally(() => this.urgentInFlight.delete(done));
  }

  /**
   * Commits that carry a FLASH are answered in the order they began (their transactions' order),
   * even when a later one's fsync ends first: a FLASH batch committed beside a batch holding an
   * earlier FLASH of the same device must not overtake it, or that device's FLASH messages would
   * be accepted and delivered out of seq order (PROTOCOL.md "Delivery order": within a rank,
   * acceptance order is arrival order). CI saw it once the frame turns were shortened. Batches
   * without a FLASH are not held, nor hold anything: a FLASH may overtake ROUTINE writes. Call
   * it just before the store's commit; `before` resolves when the earlier ones have answered,
   * `done` lets the next one answer.
   */
  private urgentTurn(batch: readonly Pending[]): { before: Promise<void>; done: () => void } {
    if (!batch.some((p) => isFlashWrite(p.write))) return { before: Promise.resolve(), done: () => {} };
    const before = this.urgentAnswered;
    let done: () => void = () => {};
    this.urgentAnswered = new Promise<void>((resolve) => (done = resolve));
    return { before, done };
  }

  /** Resolves once everything enqueued so far is committed (graceful shutdown). */
  async drain(): Promise<void> {
    this.stopAckTimer();
    if (this.pending.length > 0) this.schedule();
    while (this.pending.length > 0 || this.scheduled) {
      await new Promise<void>((r) => setImmediate(r));
    }
    await this.inFlight;
    await Promise.all([...this.urgentInFlight]);
  }
}
