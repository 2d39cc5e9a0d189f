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
  readonly #byKey = new Map<string, { el: Element; sort: number }>();
  /** Keys in display order: descending sort key, then key. */
  readonly #order: string[] = [];

  constructor(parent: Element) {
    this.#parent = parent;
  }

  get size(): number {
    return this.#byKey.size;
  }

  has(key: string): boolean {
    return this.#byKey.has(key);
  }

  /**
   * Insert or replace the row for `key`. A replaced row hands what the operator was doing in it to
   * the new one (see {@link keepInput}): a receipt arriving must not close a half-typed translation.
   */
  put(key: string, sort: number, el: Element): void {
    const old = this.#byKey.get(key);
    const refocus = old ? keepInput(old.el, el) : undefined;
    if (old && old.sort === sort) {
      old.el.replaceWith(el);
      this.#byKey.set(key, { el, sort });
    } else {
      if (old) this.delete(key);
      const at = this.#position(key, sort);
      this.#order.splice(at, 0, key);
      this.#byKey.set(key, { el, sort });
      const next = this.#order[at + 1];
      this.#parent.insertBefore(el, next === undefined ? null : this.#byKey.get(next)!.el);
    }
    // Only now: an element not yet in the document cannot take the focus.
    refocus?.();
  }

  delete(key: string): void {
    const old = this.#byKey.get(key);
    if (!old) return;
    this.#order.splice(this.#position(key, old.sort), 1);
    this.#byKey.delete(key);
    old.el.remove();
  }

  clear(): void {
    for (const { el } of this.#byKey.values()) el.remove();
    this.#byKey.clear();
    this.#order.length = 0;
  }

  /** The row of `key`, if shown. */
  get(key: string): Element | undefined {
    return this.#byKey.get(key)?.el;
  }

  keys(): IterableIterator<string> {
    return this.#byKey.keys();
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
