import { describe, expect, it } from 'vitest';
import { KeyedRows } from '../../../client/console/common/keyed-rows.js';

/**
 * Just enough of the DOM for KeyedRows (no DOM in this suite): a parent keeps its children in
 * order and an element knows its parent, with insertBefore, appendChild, remove and replaceWith
 * behaving as the DOM's do (an inserted element leaves its old place first).
 */
class FakeParent {
  readonly children: FakeEl[] = [];
  get childElementCount(): number {
    return this.children.length;
  }
  insertBefore(el: FakeEl, ref: FakeEl | null): FakeEl {
    el.remove();
    const at = ref === null ? this.children.length : this.children.indexOf(ref);
    if (at < 0) throw new Error('insertBefore: the reference is not a child');
    this.children.splice(at, 0, el);
    el.parentNode = this;
    return el;
  }
  appendChild(el: FakeEl): FakeEl {
    return this.insertBefore(el, null);
  }
}

/** The fake document: which element has the focus. */
const doc = { activeElement: null as FakeEl | null };

class FakeEl {
  parentNode: FakeParent | null = null;
  readonly ownerDocument = doc;
  /** `content` stands for what the element shows (its outerHTML). */
  constructor(
    readonly key: string,
    readonly content = '',
  ) {}
  get outerHTML(): string {
    return `<tr data-id="${this.key}">${this.content}</tr>`;
  }
  querySelectorAll(): FakeEl[] {
    return [];
  }
  contains(other: FakeEl): boolean {
    return other === this;
  }
  remove(): void {
    if (!this.parentNode) return;
    this.parentNode.children.splice(this.parentNode.children.indexOf(this), 1);
    this.parentNode = null;
  }
  replaceWith(next: FakeEl): void {
    const parent = this.parentNode!;
    next.remove();
    parent.children.splice(parent.children.indexOf(this), 1, next);
    next.parentNode = parent;
    this.parentNode = null;
  }
}

/** A deterministic pseudo-random sequence (the same run every time). */
function lcg(seed: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 31;
  };
}

describe('KeyedRows with a window', () => {
  it.each([false, true])('keeps exactly the first `limit` rows of the display order and the pinned ones in the document, in order, through puts, replacements, deletes and limit changes (keepUnchanged: %s)', (keepUnchanged) => {
    const parent = new FakeParent();
    const rows = new KeyedRows(parent as unknown as Element, { limit: 5, keepUnchanged });
    // What the rows should be: key → sort key, ordered by sort key descending, then key.
    const model = new Map<string, number>();
    const pinned = new Set<string>();
    const els = new Map<string, FakeEl>();
    const expected = (limit: number) =>
      [...model]
        .sort(([ka, sa], [kb, sb]) => sb - sa || (ka < kb ? -1 : ka > kb ? 1 : 0))
        .map(([k]) => k)
        .filter((k, i) => i < limit || pinned.has(k));
    const rnd = lcg(7);
    let limit = 5;
    for (let step = 0; step < 3000; step++) {
      const r = rnd();
      const key = `m${Math.floor(rnd() * 40)}`;
      if (r < 0.55) {
        // A new message, or one changed: same sort key (replaced in place) or a new one (moved).
        const sort = model.has(key) && rnd() < 0.5 ? model.get(key)! : Math.floor(rnd() * 20);
        const el = new FakeEl(key, String(Math.floor(rnd() * 2)));
        const pin = rnd() < 0.1;
        rows.put(key, sort, el as unknown as Element, pin);
        // With keepUnchanged, a row put equal to the one kept in the same place leaves that one.
        const kept = els.get(key);
        const same = keepUnchanged && kept !== undefined && model.get(key) === sort && kept.content === el.content;
        model.set(key, sort);
        if (pin) pinned.add(key);
        else pinned.delete(key);
        if (!same) els.set(key, el);
      } else if (r < 0.85) {
        rows.delete(key);
        model.delete(key);
        pinned.delete(key);
        els.delete(key);
      } else {
        limit = [1, 3, 5, 12, Infinity][Math.floor(rnd() * 5)]!;
        rows.setLimit(limit);
      }
      const want = expected(limit);
      expect(parent.children.map((c) => c.key), `step ${step}`).toEqual(want);
      // The elements in the document are the latest ones put for their keys (or kept, unchanged).
      for (const c of parent.children) expect(c).toBe(els.get(c.key));
      expect(rows.size).toBe(model.size);
      expect(rows.shown).toBe(want.length);
      // Every row is kept, in the document or not.
      for (const k of model.keys()) expect(rows.get(k)).toBe(els.get(k));
    }
  });

  it('a row put past the window stays out of the document until the window reaches it', () => {
    const parent = new FakeParent();
    const rows = new KeyedRows(parent as unknown as Element, { limit: 2 });
    for (let i = 0; i < 4; i++) rows.put(`m${i}`, i, new FakeEl(`m${i}`) as unknown as Element);
    expect(parent.children.map((c) => c.key)).toEqual(['m3', 'm2']);
    // An older message changing does not bring its row into the page.
    rows.put('m0', 0, new FakeEl('m0') as unknown as Element);
    expect(parent.children.map((c) => c.key)).toEqual(['m3', 'm2']);
    rows.setLimit(3);
    expect(parent.children.map((c) => c.key)).toEqual(['m3', 'm2', 'm1']);
    // The newest arrives on top and the last of the window leaves.
    rows.put('m4', 4, new FakeEl('m4') as unknown as Element);
    expect(parent.children.map((c) => c.key)).toEqual(['m4', 'm3', 'm2']);
    rows.delete('m3');
    expect(parent.children.map((c) => c.key)).toEqual(['m4', 'm2', 'm1']);
    // A pinned row (an unacknowledged FLASH) stays in the page past the window, in its place.
    rows.put('m0', 0, new FakeEl('m0') as unknown as Element, true);
    expect(parent.children.map((c) => c.key)).toEqual(['m4', 'm2', 'm1', 'm0']);
    rows.put('m5', 5, new FakeEl('m5') as unknown as Element);
    expect(parent.children.map((c) => c.key)).toEqual(['m5', 'm4', 'm2', 'm0']);
    // Acknowledged: no longer pinned, it leaves.
    rows.put('m0', 0, new FakeEl('m0') as unknown as Element);
    expect(parent.children.map((c) => c.key)).toEqual(['m5', 'm4', 'm2']);
    rows.clear();
    expect(parent.children).toEqual([]);
    expect(rows.size).toBe(0);
  });

  it('a row the operator is working in (the focus is in it) is not taken out of the page by rows arriving above it', () => {
    const parent = new FakeParent();
    const rows = new KeyedRows(parent as unknown as Element, { limit: 2 });
    const typing = new FakeEl('m0');
    rows.put('m0', 0, typing as unknown as Element);
    rows.put('m1', 1, new FakeEl('m1') as unknown as Element);
    doc.activeElement = typing;
    try {
      rows.put('m2', 2, new FakeEl('m2') as unknown as Element);
      expect(parent.children.map((c) => c.key)).toEqual(['m2', 'm1', 'm0']);
      // Redrawn (a receipt arrived) while still past the window: the new row takes its place.
      const redrawn = new FakeEl('m0');
      rows.put('m0', 0, redrawn as unknown as Element);
      expect(parent.children.map((c) => c.key)).toEqual(['m2', 'm1', 'm0']);
      expect(parent.children[2]).toBe(redrawn);
    } finally {
      doc.activeElement = null;
    }
    // Done with it: the next change of the window takes it out.
    rows.setLimit(1);
    expect(parent.children.map((c) => c.key)).toEqual(['m2']);
  });
});

describe('KeyedRows with keepUnchanged', () => {
  it('leaves a row put equal to the one kept in place (a banner is not inserted again) and replaces one that changed', () => {
    const parent = new FakeParent();
    const rows = new KeyedRows(parent as unknown as Element, { keepUnchanged: true });
    const shown = new FakeEl('m0', 'FLASH from jp-mod/op1 — convoy');
    rows.put('m0', 0, shown as unknown as Element);
    rows.put('m1', 1, new FakeEl('m1', 'FLASH from jp-mod/op2') as unknown as Element);
    // Its message's row changed (a receipt, a reply), the banner did not: the one in the page stays.
    rows.put('m0', 0, new FakeEl('m0', 'FLASH from jp-mod/op1 — convoy') as unknown as Element);
    expect(parent.children.map((c) => c.key)).toEqual(['m1', 'm0']);
    expect(parent.children[1]).toBe(shown);
    expect(rows.get('m0')).toBe(shown);
    // What it shows changed: replaced, in its place.
    const changed = new FakeEl('m0', 'FLASH from jp-mod/op1 — convoy moved');
    rows.put('m0', 0, changed as unknown as Element);
    expect(parent.children.map((c) => c.key)).toEqual(['m1', 'm0']);
    expect(parent.children[1]).toBe(changed);
    // The same content under a new sort key moves: put anew where it goes.
    const moved = new FakeEl('m0', 'FLASH from jp-mod/op1 — convoy moved');
    rows.put('m0', 2, moved as unknown as Element);
    expect(parent.children.map((c) => c.key)).toEqual(['m0', 'm1']);
    expect(parent.children[0]).toBe(moved);

    // Without it every put replaces (inbox rows, whose handlers read the whole message).
    const plain = new FakeParent();
    const replaced = new KeyedRows(plain as unknown as Element);
    replaced.put('m0', 0, new FakeEl('m0', 'same') as unknown as Element);
    const next = new FakeEl('m0', 'same');
    replaced.put('m0', 0, next as unknown as Element);
    expect(plain.children).toEqual([next]);
  });

  it('an unchanged row still follows its pin and the window: out of the page unpinned past the limit, back in when pinned', () => {
    const parent = new FakeParent();
    const rows = new KeyedRows(parent as unknown as Element, { limit: 1, keepUnchanged: true });
    const m0 = new FakeEl('m0', 'a');
    rows.put('m0', 0, m0 as unknown as Element, true);
    rows.put('m1', 1, new FakeEl('m1', 'b') as unknown as Element);
    expect(parent.children.map((c) => c.key)).toEqual(['m1', 'm0']);
    // Acknowledged elsewhere, nothing shown changed: unpinned, it leaves the page.
    rows.put('m0', 0, new FakeEl('m0', 'a') as unknown as Element);
    expect(parent.children.map((c) => c.key)).toEqual(['m1']);
    // Pinned again: the kept element comes back, in its place.
    rows.put('m0', 0, new FakeEl('m0', 'a') as unknown as Element, true);
    expect(parent.children.map((c) => c.key)).toEqual(['m1', 'm0']);
    expect(parent.children[1]).toBe(m0);
  });
});
