import type { Rung } from '../../shared/protocol/frames.js';
import { PRECEDENCES, type Precedence } from '../../shared/protocol/schemas.js';
import type { DeadlineRecord } from './records.js';

/** Every deadline rung, in ladder order. */
export const RUNGS: readonly Rung[] = ['delivered', 'acknowledged', 'answered', 'complied'];
const RUNG_INDEX: Readonly<Record<Rung, number>> = { delivered: 0, acknowledged: 1, answered: 2, complied: 3 };
const PRECEDENCE_INDEX: Readonly<Record<Precedence, number>> = { FLASH: 0, IMMEDIATE: 1, PRIORITY: 2, ROUTINE: 3 };
const NONE = -1;

/**
 * The open deadlines, in columns: a slot per open deadline in typed arrays (times, level, parties,
 * precedence, rung), a message's id stored once, and nothing allocated per deadline on the heap.
 * A relay holding 100,000 unanswered messages holds 200,000 or more open deadlines: as one object
 * each, with a key string and three boxed times, they were over a million small objects that every
 * full garbage collection marked, and its pauses grew with them (docs/performance.md, fourteenth
 * session). Here they are a few typed arrays, one id string and one map entry per message.
 *
 * Kept in opening order (a doubly linked list of slots: a deadline opened again goes last, one
 * re-armed keeps its place, as a Map's `set` does), with an indexed min-heap of the slots by firing
 * order (`nextAt`, then message id, then rung), so that every change is O(log n) and a slot left
 * out of the heap (taken as due, not yet re-armed) is still open. Records are built on demand.
 */
export class DeadlineTable {
  // Messages with an open deadline: id -> message index; per index its id and the slot of each rung.
  readonly #messages = new Map<string, number>();
  #messageIds: (string | undefined)[] = [];
  #rungSlots = new Int32Array(0);
  readonly #freeMessages: number[] = [];
  // Parties, interned (an agreement names a handful).
  readonly #partyIndex = new Map<string, number>();
  readonly #parties: string[] = [];
  // Slots: one per open deadline.
  #capacity = 0;
  #message = new Int32Array(0);
  #rung = new Uint8Array(0);
  #precedence = new Uint8Array(0);
  #from = new Int32Array(0);
  #to = new Int32Array(0);
  #acceptedAt = new Float64Array(0);
  #dueAt = new Float64Array(0);
  #nextAt = new Float64Array(0);
  #level = new Float64Array(0);
  #prev = new Int32Array(0);
  #next = new Int32Array(0);
  #heapPos = new Int32Array(0);
  #heap = new Int32Array(0);
  #heapSize = 0;
  #head = NONE;
  #tail = NONE;
  #size = 0;
  readonly #freeSlots: number[] = [];
  #used = 0;

  get size(): number {
    return this.#size;
  }

  /** The open deadline of `messageId` at `rung`, or undefined. */
  get(messageId: string, rung: Rung): DeadlineRecord | undefined {
    const slot = this.#slotOf(messageId, rung);
    return slot === NONE ? undefined : this.#record(slot);
  }

  has(messageId: string, rung: Rung): boolean {
    return this.#slotOf(messageId, rung) !== NONE;
  }

  /** Open deadlines in opening order. */
  *values(): IterableIterator<DeadlineRecord> {
    for (let s = this.#head; s !== NONE; s = this.#next[s]!) yield this.#record(s);
  }

  /**
   * Open `record`'s deadline, or re-arm it if open (its place in the order kept) and put it back
   * among the due times if it was taken off them. `heap: false` leaves it out of the heap, for a
   * bulk load followed by {@link rebuildHeap}.
   */
  put(record: DeadlineRecord, heap = true): void {
    let slot = this.#slotOf(record.messageId, record.rung);
    if (slot === NONE) {
      slot = this.#allocSlot();
      this.#message[slot] = this.#messageIndex(record.messageId);
      this.#rung[slot] = RUNG_INDEX[record.rung];
      this.#rungSlots[this.#message[slot]! * 4 + this.#rung[slot]!] = slot;
      this.#prev[slot] = this.#tail;
      this.#next[slot] = NONE;
      if (this.#tail === NONE) this.#head = slot;
      else this.#next[this.#tail] = slot;
      this.#tail = slot;
      this.#heapPos[slot] = NONE;
      this.#size++;
    }
    this.#precedence[slot] = PRECEDENCE_INDEX[record.precedence];
    this.#from[slot] = this.#party(record.from);
    this.#to[slot] = this.#party(record.to);
    this.#acceptedAt[slot] = record.acceptedAt;
    this.#dueAt[slot] = record.dueAt;
    this.#nextAt[slot] = record.nextAt;
    this.#level[slot] = record.level;
    if (!heap) return;
    const pos = this.#heapPos[slot]!;
    if (pos === NONE) {
      this.#heap[this.#heapSize] = slot;
      this.#heapPos[slot] = this.#heapSize++;
      this.#up(this.#heapSize - 1);
    } else {
      this.#up(pos);
      this.#down(this.#heapPos[slot]!);
    }
  }

  /** Close the deadline of `messageId` at `rung` (no-op if it is not open). */
  remove(messageId: string, rung: Rung): void {
    const slot = this.#slotOf(messageId, rung);
    if (slot === NONE) return;
    this.#takeFromHeap(slot);
    const prev = this.#prev[slot]!;
    const next = this.#next[slot]!;
    if (prev === NONE) this.#head = next;
    else this.#next[prev] = next;
    if (next === NONE) this.#tail = prev;
    else this.#prev[next] = prev;
    const m = this.#message[slot]!;
    this.#rungSlots[m * 4 + this.#rung[slot]!] = NONE;
    let open = false;
    for (let r = 0; r < 4; r++) open ||= this.#rungSlots[m * 4 + r] !== NONE;
    if (!open) {
      this.#messages.delete(this.#messageIds[m]!);
      this.#messageIds[m] = undefined;
      this.#freeMessages.push(m);
    }
    this.#freeSlots.push(slot);
    this.#size--;
  }

  /** Earliest `nextAt` among the deadlines in the heap, or undefined. */
  peekNextAt(): number | undefined {
    return this.#heapSize === 0 ? undefined : this.#nextAt[this.#heap[0]!];
  }

  /** Take the first deadline in firing order off the heap (it stays open until removed or re-armed). */
  popDue(): DeadlineRecord | undefined {
    if (this.#heapSize === 0) return undefined;
    const slot = this.#heap[0]!;
    this.#takeFromHeap(slot);
    return this.#record(slot);
  }

  /** Put every open deadline in the heap, in O(n) (after a bulk load). */
  rebuildHeap(): void {
    this.#heapSize = 0;
    for (let s = this.#head; s !== NONE; s = this.#next[s]!) {
      this.#heap[this.#heapSize] = s;
      this.#heapPos[s] = this.#heapSize++;
    }
    for (let i = (this.#heapSize >> 1) - 1; i >= 0; i--) this.#down(i);
  }

  #slotOf(messageId: string, rung: Rung): number {
    const m = this.#messages.get(messageId);
    return m === undefined ? NONE : this.#rungSlots[m * 4 + RUNG_INDEX[rung]]!;
  }

  #record(slot: number): DeadlineRecord {
    return {
      messageId: this.#messageIds[this.#message[slot]!]!,
      from: this.#parties[this.#from[slot]!]!,
      to: this.#parties[this.#to[slot]!]!,
      precedence: PRECEDENCES[this.#precedence[slot]!]!,
      rung: RUNGS[this.#rung[slot]!]!,
      acceptedAt: this.#acceptedAt[slot]!,
      dueAt: this.#dueAt[slot]!,
      level: this.#level[slot]!,
      nextAt: this.#nextAt[slot]!,
    };
  }

  #party(name: string): number {
    let i = this.#partyIndex.get(name);
    if (i === undefined) {
      i = this.#parties.push(name) - 1;
      this.#partyIndex.set(name, i);
    }
    return i;
  }

  #messageIndex(messageId: string): number {
    let m = this.#messages.get(messageId);
    if (m !== undefined) return m;
    m = this.#freeMessages.pop() ?? this.#messageIds.length;
    if (m === this.#messageIds.length) this.#messageIds.push(messageId);
    else this.#messageIds[m] = messageId;
    if (this.#rungSlots.length < (m + 1) * 4) {
      const grown = new Int32Array(Math.max(64, this.#rungSlots.length * 2));
      grown.set(this.#rungSlots);
      this.#rungSlots = grown;
    }
    this.#rungSlots.fill(NONE, m * 4, m * 4 + 4);
    this.#messages.set(messageId, m);
    return m;
  }

  #allocSlot(): number {
    const free = this.#freeSlots.pop();
    if (free !== undefined) return free;
    if (this.#used === this.#capacity) this.#grow(Math.max(64, this.#capacity * 2));
    return this.#used++;
  }

  #grow(capacity: number): void {
    const grown = <A extends Int32Array | Uint8Array | Float64Array>(a: A): A => {
      const b = new (a.constructor as new (n: number) => A)(capacity);
      b.set(a);
      return b;
    };
    this.#message = grown(this.#message);
    this.#rung = grown(this.#rung);
    this.#precedence = grown(this.#precedence);
    this.#from = grown(this.#from);
    this.#to = grown(this.#to);
    this.#acceptedAt = grown(this.#acceptedAt);
    this.#dueAt = grown(this.#dueAt);
    this.#nextAt = grown(this.#nextAt);
    this.#level = grown(this.#level);
    this.#prev = grown(this.#prev);
    this.#next = grown(this.#next);
    this.#heapPos = grown(this.#heapPos);
    this.#heap = grown(this.#heap);
    this.#capacity = capacity;
  }

  /** Firing order: by `nextAt`, then message id, then the rungs in ladder order. */
  #before(a: number, b: number): boolean {
    const na = this.#nextAt[a]!;
    const nb = this.#nextAt[b]!;
    if (na !== nb) return na < nb;
    const ia = this.#messageIds[this.#message[a]!]!;
    const ib = this.#messageIds[this.#message[b]!]!;
    if (ia !== ib) return ia < ib;
    return this.#rung[a]! < this.#rung[b]!;
  }

  #takeFromHeap(slot: number): void {
    const pos = this.#heapPos[slot]!;
    if (pos === NONE) return;
    this.#heapPos[slot] = NONE;
    const last = this.#heap[--this.#heapSize]!;
    if (last === slot) return;
    this.#heap[pos] = last;
    this.#heapPos[last] = pos;
    this.#up(pos);
    this.#down(this.#heapPos[last]!);
  }

  #swap(i: number, j: number): void {
    const a = this.#heap[i]!;
    const b = this.#heap[j]!;
    this.#heap[i] = b;
    this.#heap[j] = a;
    this.#heapPos[b] = i;
    this.#heapPos[a] = j;
  }

  #up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#before(this.#heap[i]!, this.#heap[parent]!)) return;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #down(i: number): void {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.#heapSize && this.#before(this.#heap[l]!, this.#heap[m]!)) m = l;
      if (r < this.#heapSize && this.#before(this.#heap[r]!, this.#heap[m]!)) m = r;
      if (m === i) return;
      this.#swap(i, m);
      i = m;
    }
  }
}
