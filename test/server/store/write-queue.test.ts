import { describe, expect, it } from 'vitest';
import { WriteQueue } from '../../../server/store/write-queue.js';
import { RelayWriteQueue } from '../../../server/federation/setup.js';
import type { Write, WriteResult } from '../../../server/relay/records.js';

function fakeStore() {
  const batches: Write[][] = [];
  return {
    batches,
    commit: async (writes: readonly Write[]): Promise<WriteResult[]> => {
      batches.push([...writes]);
      return writes.map((w, i) => (i === 1 ? { ok: false, error: new Error('refused') } : { ok: true, status: 'new', acceptedAt: w.acceptedAt ?? 0, delivered: [] }));
    },
  };
}

const write = (at: number) => ({ kind: 'receipt', acceptedAt: at, mailboxes: [] }) as unknown as Write;

describe('WriteQueue', () => {
  it('commits writes enqueued in the same turn as one batch, in order, and answers each after the commit', async () => {
    const store = fakeStore();
    const q = new WriteQueue(store);
    const results = await Promise.all([1, 2, 3, 4, 5].map((n) => q.enqueue(write(n))));
    expect(store.batches).toHaveLength(1);
    expect(store.batches[0]!.map((w) => (w as { acceptedAt: number }).acceptedAt)).toEqual([1, 2, 3, 4, 5]);
    expect(results.map((r) => r.ok)).toEqual([true, false, true, true, true]);
    expect(q.commits).toBe(1);

    await q.enqueue(write(6));
    expect(store.batches).toHaveLength(2);
  });

  it('holds the batch open while holdWhile says writes are still coming, up to maxBatch', async () => {
    const store = fakeStore();
    // A hold bound far above the test's run time: the batches depend on holdWhile alone.
    const q = new WriteQueue(store, 4, 600_000);
    let coming = 6;
    q.holdWhile = () => coming > 0;
    const all: Promise<WriteResult>[] = [];
    // One write per turn of the event loop, as frames handled in bounded turns produce them.
    for (let n = 1; n <= 6; n++) {
      all.push(q.enqueue(write(n)));
      coming--;
      // As the link does once no frame is waiting.
      if (coming === 0) q.holdChanged();
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(all);
    expect(store.batches.map((b) => b.length)).toEqual([4, 2]);
  });

  it('holds without polling: holdWhile is asked when a batch could commit, and the hold ends on holdChanged() or at maxHoldMs', async () => {
    const store = fakeStore();
    const q = new WriteQueue(store, 256, 600_000);
    let asked = 0;
    let coming = true;
    q.holdWhile = () => {
      asked++;
      return coming;
    };
    const held = q.enqueue(write(1));
    // Twenty turns of the event loop while held: a queue that polled would ask at every one.
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(asked).toBe(1);
    expect(store.batches).toHaveLength(0);
    // A write enqueued meanwhile joins the held batch and starts no flush of its own.
    const joined = q.enqueue(write(2));
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(asked).toBe(1);
    coming = false;
    q.holdChanged();
    await Promise.all([held, joined]);
    expect(store.batches.map((b) => b.length)).toEqual([2]);

    // Nobody says anything: the hold's bound ends it (a timer, no polling either).
    const bounded = new WriteQueue(fakeStore(), 256, 5);
    let boundedAsked = 0;
    bounded.holdWhile = () => {
      boundedAsked++;
      return true;
    };
    await bounded.enqueue(write(3));
    expect(boundedAsked).toBeLessThanOrEqual(3);
    expect(bounded.commits).toBe(1);
  });

  it('a FLASH envelope or receipt ends the hold: its batch commits at once with what is pending', async () => {
    const store = fakeStore();
    // Writes "still coming" for ever and a hold bound far above the test's run time: without the
    // FLASH rule nothing would commit before maxBatch, and this test would time out.
    const q = new WriteQueue(store, 1000, 600_000);
    q.holdWhile = () => true;
    const routine = [1, 2].map((n) => q.enqueue({ ...write(n), rank: 3 } as Write));
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(store.batches).toHaveLength(0);
    const flash = q.enqueue({ ...write(3), rank: 0 } as Write);
    await Promise.all([...routine, flash]);
    expect(store.batches.map((b) => b.length)).toEqual([3]);

    // The hold applies again to the next batch of ROUTINE writes.
    const later = q.enqueue({ ...write(4), rank: 3 } as Write);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(store.batches).toHaveLength(1);
    q.holdWhile = () => false;
    q.holdChanged();
    await later;
    expect(store.batches).toHaveLength(2);
  });

  it('acks alone start no commit: they ride with the next write, or commit when their hold ends or on flushAcks', async () => {
    const store = fakeStore();
    // An ack hold far above the test's run time: only a write or flushAcks may commit the acks.
    const q = new WriteQueue(store, 256, 15, 600_000);
    const ack = (cursor: number) => ({ kind: 'ack', device: 'jp/op1', cursors: [cursor], acceptedAt: cursor }) as Write;
    const acks = [q.enqueue(ack(1)), q.enqueue(ack(2))];
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(store.batches).toHaveLength(0);
    // The next write takes them along, in arrival order, in one commit.
    await Promise.all([...acks, q.enqueue(write(3))]);
    expect(store.batches.map((b) => b.map((w) => w.acceptedAt))).toEqual([[1, 2, 3]]);

    // flushAcks commits held acks at once and resolves after that commit.
    const more = q.enqueue(ack(4));
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(store.batches).toHaveLength(1);
    await q.flushAcks();
    expect(store.batches.map((b) => b.map((w) => w.acceptedAt))).toEqual([[1, 2, 3], [4]]);
    await more;
    // With nothing held, flushAcks commits nothing.
    await q.flushAcks();
    expect(store.batches).toHaveLength(2);

    // A short hold: the acks commit on their own when it ends.
    const short = new WriteQueue(store, 256, 15, 1);
    await short.enqueue(ack(5));
    expect(store.batches.at(-1)!.map((w) => w.acceptedAt)).toEqual([5]);

    // drain() does not wait for the hold either.
    const last = q.enqueue(ack(6));
    await q.drain();
    expect(store.batches.at(-1)!.map((w) => w.acceptedAt)).toEqual([6]);
    await last;
  });

  it('while the FLASH gate is held, a batch without a FLASH waits for it to open; a FLASH batch does not', async () => {
    // As SQLite: a FLASH commits apart from the ROUTINE writes pending with it (commitsOverlap).
    const store = { ...fakeStore(), commitsOverlap: true };
    const q = new WriteQueue(store);
    let open!: () => void;
    const gate = { held: true, wait: () => ({ done: new Promise<void>((r) => (open = r)) }) };
    q.gate = gate;
    const routine = [1, 2].map((n) => q.enqueue({ ...write(n), rank: 3 } as Write));
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(store.batches).toHaveLength(0);
    // A FLASH goes at once, alone (its ROUTINE companions keep waiting).
    await q.enqueue({ ...write(3), rank: 0 } as Write);
    expect(store.batches.map((b) => b.map((w) => w.acceptedAt))).toEqual([[3]]);
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(store.batches).toHaveLength(1);
    // Open: the ROUTINE writes commit, in their order, once.
    gate.held = false;
    open();
    await Promise.all(routine);
    expect(store.batches.map((b) => b.map((w) => w.acceptedAt))).toEqual([[3], [1, 2]]);
  });

  it('splits at maxBatch and drain waits for every commit', async () => {
    const store = fakeStore();
    const q = new WriteQueue(store, 2);
    const all = [1, 2, 3, 4, 5].map((n) => q.enqueue(write(n)));
    await q.drain();
    expect(store.batches.map((b) => b.length)).toEqual([2, 2, 1]);
    await Promise.all(all);
  });

  it('answers every caller with the error when the commit throws', async () => {
    const q = new WriteQueue({ commit: async () => Promise.reject(new Error('disk full')) });
    const results = await Promise.all([q.enqueue(write(1)), q.enqueue(write(2))]);
    expect(results.every((r) => !r.ok)).toBe(true);
  });

  it('with an asynchronous store (PostgreSQL), writes that arrive while a batch commits go as ONE next batch', async () => {
    const batches: number[][] = [];
    const releases: (() => void)[] = [];
    const store = {
      commit: async (writes: readonly Write[]): Promise<WriteResult[]> => {
        batches.push(writes.map((w) => (w as { acceptedAt: number }).acceptedAt));
        // The commit ends only when the test says so: a round trip to the database.
        await new Promise<void>((r) => releases.push(r));
        return writes.map((w) => ({ ok: true, status: 'new', acceptedAt: w.acceptedAt ?? 0, delivered: [] }));
      },
    };
    const q = new WriteQueue(store);
    const first = q.enqueue(write(1));
    for (let i = 0; i < 100 && releases.length === 0; i++) await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([[1]]);
    // Five writes, one per turn, while the first batch is still committing.
    const more: Promise<WriteResult>[] = [];
    for (let n = 2; n <= 6; n++) {
      more.push(q.enqueue(write(n)));
      await new Promise((r) => setImmediate(r));
    }
    expect(batches).toEqual([[1]]);
    releases.shift()!();
    await first;
    for (let i = 0; i < 100 && releases.length === 0; i++) await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([[1], [2, 3, 4, 5, 6]]);
    releases.shift()!();
    expect((await Promise.all(more)).every((r) => r.ok)).toBe(true);
    await q.drain();
    expect(q.commits).toBe(2);
  });

  /** A store whose commits end when the test says so (an fsync running), optionally allowed to overlap. */
  function slowStore(commitsOverlap: boolean | undefined) {
    const batches: number[][] = [];
    const releases: (() => void)[] = [];
    return {
      batches,
      releases,
      ...(commitsOverlap === undefined ? {} : { commitsOverlap }),
      commit: async (writes: readonly Write[]): Promise<WriteResult[]> => {
        batches.push(writes.map((w) => w.acceptedAt));
        await new Promise<void>((r) => releases.push(r));
        return writes.map((w) => ({ ok: true, status: 'new', acceptedAt: w.acceptedAt, delivered: [] }));
      },
    };
  }
  const turns = async (n: number) => {
    for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
  };

  it('where commits may overlap, a FLASH goes at once in a batch of its own, before the ROUTINE writes queued ahead of it', async () => {
    const store = slowStore(true);
    const q = new WriteQueue(store);
    const answered: number[] = [];
    const track = (p: Promise<WriteResult>, n: number) => p.then((r) => (answered.push(n), r));
    const first = track(q.enqueue({ ...write(1), rank: 3 } as Write), 1);
    await turns(5);
    expect(store.batches).toEqual([[1]]);
    // While batch [1] is being committed (its fsync running): ROUTINE 2 and 3, ACK 4, then FLASH 5 and a FLASH receipt 6.
    const ack = q.enqueue({ kind: 'ack', device: 'jp/op1', cursors: [1], acceptedAt: 4 } as Write);
    const queued = [track(q.enqueue({ ...write(2), rank: 3 } as Write), 2), track(q.enqueue({ ...write(3), rank: 3 } as Write), 3)];
    const flash = [track(q.enqueue({ ...write(5), rank: 0 } as Write), 5), track(q.enqueue({ ...write(6), rank: 0 } as Write), 6)];
    await turns(5);
    // The FLASH writes, in arrival order, committed beside [1], which is not done yet.
    expect(store.batches).toEqual([[1], [5, 6]]);
    store.releases[1]!();
    await Promise.all(flash);
    expect(answered).toEqual([5, 6]);
    // The ROUTINE writes (and the ack) keep their order and go once [1] is done.
    await turns(5);
    expect(store.batches).toHaveLength(2);
    store.releases[0]!();
    await first;
    await turns(5);
    expect(store.batches).toEqual([[1], [5, 6], [4, 2, 3]]);
    store.releases[2]!();
    await Promise.all([...queued, ack]);
    expect(answered).toEqual([5, 6, 1, 2, 3]);
    await q.drain();
    expect(q.commits).toBe(3);
  });

  it('a FLASH batch committed beside a batch holding an earlier FLASH is not answered before it, even when its fsync ends first', async () => {
    const store = slowStore(true);
    const q = new WriteQueue(store);
    const answered: number[] = [];
    const track = (p: Promise<WriteResult>, n: number) => p.then((r) => (answered.push(n), r));
    // FLASH 1 starts a batch; FLASH 2 and 3 of the same device come while it is being committed.
    const first = track(q.enqueue({ ...write(1), rank: 0 } as Write), 1);
    await turns(5);
    const later = [track(q.enqueue({ ...write(2), rank: 0 } as Write), 2), track(q.enqueue({ ...write(3), rank: 0 } as Write), 3)];
    await turns(5);
    expect(store.batches).toEqual([[1], [2, 3]]);
    // The second commit's fsync ends first: its answers wait for the first's.
    store.releases[1]!();
    await turns(5);
    expect(answered).toEqual([]);
    store.releases[0]!();
    await Promise.all([first, ...later]);
    expect(answered).toEqual([1, 2, 3]);
    await q.drain();
  });

  it('drain waits for a FLASH batch committed beside another, and flushAcks for its acks, not for the FLASH', async () => {
    const store = slowStore(true);
    const q = new WriteQueue(store, 256, 15, 600_000);
    void q.enqueue(write(1));
    await turns(5);
    const ack = q.enqueue({ kind: 'ack', device: 'jp/op1', cursors: [1], acceptedAt: 2 } as Write);
    const flash = q.enqueue({ ...write(3), rank: 0 } as Write);
    let flushed = false;
    const flush = q.flushAcks().then(() => (flushed = true));
    await turns(5);
    expect(store.batches).toEqual([[1], [3]]);
    let drained = false;
    const drain = q.drain().then(() => (drained = true));
    // The FLASH batch ends first: flushAcks still waits for the batch with its ack.
    store.releases[1]!();
    await flash;
    await turns(5);
    expect(flushed).toBe(false);
    store.releases[0]!();
    await turns(5);
    expect(store.batches).toEqual([[1], [3], [2]]);
    expect(flushed).toBe(false);
    expect(drained).toBe(false);
    store.releases[2]!();
    await Promise.all([ack, flush, drain]);
    expect(flushed && drained).toBe(true);
  });

  it('where commits may overlap, a FLASH pending with ROUTINE writes, nothing being committed, goes first in a batch of its own', async () => {
    const store = slowStore(true);
    const q = new WriteQueue(store);
    const answered: number[] = [];
    const track = (p: Promise<WriteResult>, n: number) => p.then((r) => (answered.push(n), r));
    // In one turn: ROUTINE 1, an ack, ROUTINE 2, then FLASH 4.
    const ack = q.enqueue({ kind: 'ack', device: 'jp/op1', cursors: [1], acceptedAt: 3 } as Write);
    const all = [track(q.enqueue({ ...write(1), rank: 3 } as Write), 1), track(q.enqueue({ ...write(2), rank: 3 } as Write), 2), track(q.enqueue({ ...write(4), rank: 0 } as Write), 4)];
    await turns(5);
    // The FLASH alone (a small batch: on the event loop in SqliteStore), then the rest in order.
    expect(store.batches).toEqual([[4], [3, 1, 2]]);
    store.releases[0]!();
    await all[2];
    expect(answered).toEqual([4]);
    store.releases[1]!();
    await Promise.all([...all, ack]);
    expect(answered).toEqual([4, 1, 2]);
    // Only FLASH writes and acks pending: one batch, the acks riding with the FLASH.
    const ack2 = q.enqueue({ kind: 'ack', device: 'jp/op1', cursors: [2], acceptedAt: 5 } as Write);
    const flash = q.enqueue({ ...write(6), rank: 0 } as Write);
    await turns(5);
    expect(store.batches.at(-1)).toEqual([5, 6]);
    store.releases[2]!();
    await Promise.all([ack2, flash]);
    await q.drain();
  });

  it('a FLASH committed apart from pending ROUTINE writes is answered before their transaction runs', async () => {
    const log: string[] = [];
    const store = {
      commitsOverlap: true,
      // As SqliteStore's on-loop commit: the transaction runs at the call, the promise is settled.
      commit: async (writes: readonly Write[]): Promise<WriteResult[]> => {
        log.push(`commit ${writes.map((w) => w.acceptedAt).join(',')}`);
        return writes.map((w) => ({ ok: true, status: 'new', acceptedAt: w.acceptedAt, delivered: [] }));
      },
    };
    const q = new WriteQueue(store);
    const routine = [1, 2].map((n) => q.enqueue({ ...write(n), rank: 3 } as Write));
    const flash = q.enqueue({ ...write(3), rank: 0 } as Write).then(() => log.push('answered 3'));
    await Promise.all([...routine, flash]);
    expect(log).toEqual(['commit 3', 'answered 3', 'commit 1,2']);
  });

  it('a FLASH is flushed as soon as the work in hand yields (a microtask), not at the next check phase of the loop', async () => {
    const store = slowStore(true);
    const q = new WriteQueue(store);
    const flash = q.enqueue({ ...write(1), rank: 0 } as Write);
    // No setImmediate in between: only microtasks.
    for (let i = 0; i < 10; i++) await Promise.resolve();
    expect(store.batches).toEqual([[1]]);
    // A ROUTINE write waits for the check phase, as before.
    const routine = q.enqueue({ ...write(2), rank: 3 } as Write);
    for (let i = 0; i < 10; i++) await Promise.resolve();
    expect(store.batches).toEqual([[1]]);
    store.releases[0]!();
    await flash;
    await turns(5);
    expect(store.batches).toEqual([[1], [2]]);
    store.releases[1]!();
    await routine;
  });

  it('where commits may not overlap (PostgreSQL), a FLASH waits for the batch in progress and then commits first', async () => {
    for (const commitsOverlap of [undefined, false]) {
      const store = slowStore(commitsOverlap);
      const q = new WriteQueue(store);
      const first = q.enqueue({ ...write(1), rank: 3 } as Write);
      await turns(5);
      const later = [q.enqueue({ ...write(2), rank: 3 } as Write), q.enqueue({ ...write(3), rank: 0 } as Write)];
      await turns(5);
      expect(store.batches).toEqual([[1]]);
      store.releases[0]!();
      await first;
      await turns(5);
      expect(store.batches).toEqual([[1], [2, 3]]);
      store.releases[1]!();
      await Promise.all(later);
    }
  });
});

describe('RelayWriteQueue (PROTOCOL.md "Prekeys between relays")', () => {
  it('knows the earliest acceptance time of an envelope write not yet committed, until its commit answers', async () => {
    let release = () => {};
    const held = new Promise<void>((r) => (release = r));
    const store = {
      commit: async (writes: readonly Write[]): Promise<WriteResult[]> => {
        await held;
        return writes.map((w) => ({ ok: true, status: 'new', acceptedAt: w.acceptedAt ?? 0, delivered: [] }) as WriteResult);
      },
    };
    const q = new RelayWriteQueue(store, 'jp-mod');
    const envelope = (at: number) => ({ kind: 'envelope', acceptedAt: at, mailboxes: [] }) as unknown as Write;
    expect(q.oldestUncommitted()).toBeUndefined();
    const done = Promise.all([q.enqueue(envelope(20)), q.enqueue(envelope(10)), q.enqueue(write(5))]);
    // A receipt does not count: only envelopes hold the drained watermark.
    expect(q.oldestUncommitted()).toBe(10);
    release();
    await done;
    expect(q.oldestUncommitted()).toBeUndefined();
  });

  it('tells each write its result once its transaction is done, before its answer: from the store where it tells, else at the answer', async () => {
    const seen: string[] = [];
    let durable!: () => void;
    const held = new Promise<void>((resolve) => (durable = resolve));
    // A store that tells at its transaction (SQLite), then waits for its disk.
    const telling = {
      commit: async (writes: readonly Write[], visible?: (r: readonly WriteResult[]) => void): Promise<WriteResult[]> => {
        const results = writes.map((w): WriteResult => ({ ok: true, status: 'new', acceptedAt: w.acceptedAt, delivered: [] }));
        seen.push('transaction');
        visible?.(results);
        await held;
        seen.push('durable');
        return results;
      },
    };
    const q = new WriteQueue(telling);
    const answered = Promise.all([1, 2].map((n) => q.enqueue(write(n), (r) => seen.push(`visible ${n} ${r.ok}`)).then(() => seen.push(`answer ${n}`))));
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual(['transaction', 'visible 1 true', 'visible 2 true']);
    durable();
    await answered;
    expect(seen).toEqual(['transaction', 'visible 1 true', 'visible 2 true', 'durable', 'answer 1', 'answer 2']);

    // A store that does not tell (PostgreSQL): told with the result, just before the answer.
    const store = fakeStore();
    const q2 = new WriteQueue(store);
    const order: string[] = [];
    await Promise.all([1, 2].map((n) => q2.enqueue(write(n), (r) => order.push(`visible ${n} ${r.ok}`)).then(() => order.push(`answer ${n}`))));
    expect(order).toEqual(['visible 1 true', 'visible 2 false', 'answer 1', 'answer 2']);
  });
});
