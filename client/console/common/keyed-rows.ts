/**
 * Table rows kept by key and ordered by a sort key, newest first: a changed message replaces its
 * own row in place and a new one is inserted where it belongs, so an update costs one row however
 * many are shown (the console used to rebuild every row on every event).
 *
 * @example
 * const rows = new KeyedRows(tbody);
 * rows.put(id, acceptedAt, h('tr', {}, ...));
 */
export class KeyedRows {
  readonly #parent: Element;
  /** `shows`: with keepUnchanged, the row's outerHTML as it was put. */
  readonly #byKey = new Map<string, { el: Element; sort: number; pinned: boolean; shows?: string }>();
  /** Keys in display order: descending sort key, then key. */
  readonly #order: string[] = [];
  /** How many rows, from the top of the order, are in the document; the rest are kept detached. */
  #limit: number;
  /** Rows left in the page past the window because the focus was in them (#inUse). */
  readonly #held = new Set<string>();
  readonly #keepUnchanged: boolean;

  /**
   * `limit`: at most this many rows in the document, the first in display order, and besides them
   * the rows put as pinned (an unacknowledged FLASH stays in the page however many came after
   * it). A page lays out every row in it whenever one is inserted above the others, so that cost
   * grew with the history (measured in Chromium: 4 ms per insert with no rows, 20–42 ms with
   * 1,000, 86 ms with 3,000); with a limit it stays that of `limit` rows however many messages
   * there are. Rows past it are kept, built, and attached when the limit is raised
   * ({@link setLimit}).
   *
   * `keepUnchanged`: a row put that shows what the one kept showed when it was put (the same
   * outerHTML: tags, attributes, text) leaves that one in place. For alert banners: a screen reader
   * announces a `role="alert"` element each time one is inserted, so replacing a FLASH banner with
   * its like announced the FLASH again on every receipt or reply that changed its message's row.
   * Compared with the row as built, not as it is now in the page, where others may have marked it
   * (an extension, a test). Only for rows whose handlers read nothing but what the row shows: the
   * kept row's handlers are the old ones.
   */
  constructor(parent: Element, options: { limit?: number; keepUnchanged?: boolean } = {}) {
    this.#parent = parent;
    this.#limit = options.limit ?? Infinity;
    this.#keepUnchanged = options.keepUnchanged ?? false;
  }

  get size(): number {
    return this.#byKey.size;
  }

  /** How many rows are in the document. */
  get shown(): number {
    return this.#parent.childElementCount;
  }

  has(key: string): boolean {
    return this.#byKey.has(key);
  }

  /**
   * Insert or replace the row for `key`; `pinned` keeps it in the document even past the limit. A
   * replaced row hands what the operator was doing in it to the new one (see {@link keepInput}): a
   * receipt arriving must not close a half-typed translation.
   */
  put(key: string, sort: number, row: Element, pinned = false): void {
    this.#release();
    const old = this.#byKey.get(key);
    const shows = this.#keepUnchanged ? row.outerHTML : undefined;
    // Unchanged (with keepUnchanged): the row in place stays, and with it the focus.
    const el = old && old.sort === sort && shows !== undefined && old.shows === shows ? old.el : row;
    const refocus = old && el !== old.el ? keepInput(old.el, el) : undefined;
    if (old && old.sort === sort) {
      this.#byKey.set(key, { el, sort, pinned, ...(shows === undefined ? {} : { shows }) });
      const at = this.#position(key, sort);
      if (at < this.#limit || pinned || this.#inUse(old.el)) {
        if (!this.#attached(old.el)) this.#parent.insertBefore(el, this.#nextAttached(at + 1));
        else if (el !== old.el) old.el.replaceWith(el);
      } else old.el.remove();
    } else {
      if (old) this.delete(key);
      const at = this.#position(key, sort);
      this.#order.splice(at, 0, key);
      this.#byKey.set(key, { el, sort, pinned, ...(shows === undefined ? {} : { shows }) });
      if (at < this.#limit || pinned) this.#parent.insertBefore(el, this.#nextAttached(at + 1));
      // The row pushed past the limit leaves the document, unless pinned.
      if (at < this.#limit) this.#detachUnpinned(this.#limit);
    }
    // Only now: an element not yet in the document cannot take the focus.
    if (this.#attached(el)) refocus?.();
  }

  delete(key: string): void {
    this.#release();
    const old = this.#byKey.get(key);
    if (!old) return;
    const at = this.#position(key, old.sort);
    this.#order.splice(at, 1);
    this.#byKey.delete(key);
    old.el.remove();
    // The first row past the limit moves up into the window.
    if (at < this.#limit) this.#attachAt(this.#limit - 1);
  }

  /** Show the first `limit` rows (Infinity: all), and the pinned ones. */
  setLimit(limit: number): void {
    this.#release();
    const was = this.#limit;
    this.#limit = limit;
    const n = this.#order.length;
    for (let i = Math.min(limit, n) - 1; i >= was; i--) this.#attachAt(i);
    for (let i = limit; i < Math.min(was, n); i++) this.#detachUnpinned(i);
  }

  clear(): void {
    this.#held.clear();
    for (const { el } of this.#byKey.values()) el.remove();
    this.#byKey.clear();
    this.#order.length = 0;
  }

  /** The row of `key`, if kept (in the document or past the limit). */
  get(key: string): Element | undefined {
    return this.#byKey.get(key)?.el;
  }

  keys(): IterableIterator<string> {
    return this.#byKey.keys();
  }

  #attached(el: Element): boolean {
    return el.parentNode === this.#parent;
  }

  /** The first row in the document at or after display index `from` (null: none, append). */
  #nextAttached(from: number): Element | null {
    // Within the window the next row is in the document; past it, only pinned rows are (few).
    for (let i = from; i < this.#order.length; i++) {
      const { el } = this.#byKey.get(this.#order[i]!)!;
      if (this.#attached(el)) return el;
    }
    return null;
  }

  #attachAt(i: number): void {
    const key = this.#order[i];
    if (key === undefined) return;
    const { el } = this.#byKey.get(key)!;
    if (!this.#attached(el)) this.#parent.insertBefore(el, this.#nextAttached(i + 1));
  }

  #detachUnpinned(i: number): void {
    const key = this.#order[i];
    if (key === undefined) return;
    const row = this.#byKey.get(key)!;
    if (row.pinned) return;
    if (this.#inUse(row.el)) this.#held.add(key);
    else row.el.remove();
  }

  /** Rows held past the window whose focus has gone leave the page. */
  #release(): void {
    for (const key of this.#held) {
      const row = this.#byKey.get(key);
      if (row && this.#inUse(row.el)) continue;
      this.#held.delete(key);
      if (row && !row.pinned && this.#position(key, row.sort) >= this.#limit) row.el.remove();
    }
  }

  /**
   * The focus is in this row (an operator typing a translation or a reason in it): it is not taken
   * out of the page under their hands by rows arriving above it; it leaves at the next change
   * once they are done (#release).
   */
  #inUse(el: Element): boolean {
    const active = el.ownerDocument.activeElement;
    return active !== null && el.contains(active);
  }

  /** Binary search: the index of `key` if present, else where it goes. */
  #position(key: string, sort: number): number {
    let lo = 0;
    let hi = this.#order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const k = this.#order[mid]!;
      const s = this.#byKey.get(k)!.sort;
      if (s > sort || (s === sort && k < key)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/**
 * Carry the operator's state from a row being replaced to its replacement: for every element marked
 * `data-keep="name"` in both, a `<details>`'s open state and a field's value. Rows are rebuilt whole
 * when their message changes; without this, a half-typed reply or a picked reason would vanish
 * under the operator's hands.
 *
 * Returns what gives the focus (with the caret) back, to be called once `to` is in the document:
 * `focus()` on a detached element does nothing, and the keys typed next went nowhere (a receipt
 * arriving while an operator typed a translation took the rest of it; a flaky browser test showed it).
 */
export function keepInput(from: Element, to: Element): (() => void) | undefined {
  const focused = from.ownerDocument.activeElement;
  let refocus: (() => void) | undefined;
  for (const old of Array.from(from.querySelectorAll<HTMLElement>('[data-keep]'))) {
    const next = to.querySelector<HTMLElement>(`[data-keep="${old.dataset.keep}"]`);
    if (!next) continue;
    if (old instanceof HTMLDetailsElement && next instanceof HTMLDetailsElement) next.open = old.open;
    if ((old instanceof HTMLTextAreaElement || old instanceof HTMLInputElement || old instanceof HTMLSelectElement) && old.constructor === next.constructor) {
      (next as HTMLTextAreaElement).value = old.value;
    }
    if (old === focused) refocus = () => restoreFocus(old, next);
  }
  return refocus;
}

function restoreFocus(old: HTMLElement, next: HTMLElement): void {
  next.focus();
  if ((old instanceof HTMLTextAreaElement || old instanceof HTMLInputElement) && 'setSelectionRange' in next) {
    try {
      (next as HTMLTextAreaElement).setSelectionRange(old.selectionStart, old.selectionEnd, old.selectionDirection ?? undefined);
    } catch {
      // Inputs without a caret (checkbox, select) have no selection to restore.
    }
  }
}
