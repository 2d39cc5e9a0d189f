/**
 * A queue that hands out the item of the lowest rank first and, within one rank, the one pushed
 * first (a binary min-heap on `(rank, arrival)`). The client ranks incoming frames by precedence
 * (FLASH 0 … ROUTINE 3, PROTOCOL.md "Delivery order"), so a FLASH pushed behind 200 ROUTINE comes
 * out first, while one sender's items of one rank keep their order. Push and shift cost O(log n).
 *
 * @example
 * const q = new RankQueue<string>();
 * q.push(3, 'routine'); q.push(0, 'flash');
 * q.shift(); // 'flash'
 */
export class RankQueue<T> {
  readonly #heap: { rank: number; order: number; item: T }[] = [];
  #pushed = 0;

  get size(): number {
    return this.#heap.length;
  }

  push(rank: number, item: T): void {
    const h = this.#heap;
    h.push({ rank, order: this.#pushed++, item });
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#before(i, parent)) break;
      this.#swap(i, parent);
      i = parent;
    }
  }

  /** The first item, left in place; undefined when empty. */
  peek(): T | undefined {
    return this.#heap[0]?.item;
  }

  /** The first item (lowest rank, then earliest pushed), removed; undefined when empty. */
  shift(): T | undefined {
    const h = this.#heap;
    const top = h[0];
    if (top === undefined) return undefined;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let min = i;
        if (l < h.length && this.#before(l, min)) min = l;
        if (r < h.length && this.#before(r, min)) min = r;
        if (min === i) break;
        this.#swap(i, min);
        i = min;
      }
    }
    return top.item;
  }

  /** Remove every item for which `drop` is true (O(n)). */
  remove(drop: (item: T) => boolean): void {
    const kept = this.#heap.filter((e) => !drop(e.item));
    this.#heap.length = 0;
    for (const e of kept.sort((a, b) => a.rank - b.rank || a.order - b.order)) this.#heap.push(e);
  }

  #before(a: number, b: number): boolean {
    const x = this.#heap[a]!;
    const y = this.#heap[b]!;
    return x.rank < y.rank || (x.rank === y.rank && x.order < y.order);
  }

  #swap(a: number, b: number): void {
    const h = this.#heap;
    [h[a], h[b]] = [h[b]!, h[a]!];
  }
}
