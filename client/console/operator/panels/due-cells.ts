import { formatDuration, h } from '../../common/dom.js';
import { t } from '../../common/i18n.js';

/**
 * The countdown cells of the message tables, by slot (`in:`/`out:` + message id). The clock tick
 * updates only those in view, so that a long table costs nothing a second.
 */
export class DueCells {
  readonly #cells = new Map<string, HTMLElement>();
  readonly #visible = new Set<Element>();
  readonly #observer: IntersectionObserver;
  /** The server's clock minus this one's. */
  readonly #serverOffset: () => number;

  constructor(serverOffset: () => number) {
    this.#serverOffset = serverOffset;
    this.#observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (e.isIntersecting) {
          this.#visible.add(e.target);
          this.#text(e.target as HTMLElement);
        } else {
          this.#visible.delete(e.target);
        }
      }
    });
  }

  /** A new cell for `slot` counting down to `dueAt` (server time), or a dash when nothing is due. */
  cell(slot: string, dueAt: number | undefined): HTMLElement {
    this.forget(slot);
    if (dueAt === undefined) return h('td', { class: 'due' }, '—');
    const cell = h('td', { class: 'due', 'data-due': dueAt });
    this.#text(cell);
    this.#cells.set(slot, cell);
    this.#observer.observe(cell);
    return cell;
  }

  forget(slot: string): void {
    const cell = this.#cells.get(slot);
    if (!cell) return;
    this.#observer.unobserve(cell);
    this.#visible.delete(cell);
    this.#cells.delete(slot);
  }

  clear(): void {
    for (const slot of [...this.#cells.keys()]) this.forget(slot);
  }

  /** The clock's second: the cells in view count down. */
  tick(): void {
    for (const cell of this.#visible) this.#text(cell as HTMLElement);
  }

  #text(cell: HTMLElement): void {
    const left = Number(cell.dataset.due) - (Date.now() + this.#serverOffset());
    cell.textContent = left >= 0 ? t('due_in', { t: formatDuration(left) }) : t('overdue', { t: formatDuration(-left) });
    cell.classList.toggle('overdue', left < 0);
  }
}
