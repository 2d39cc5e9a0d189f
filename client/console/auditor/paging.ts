import { h } from '../common/dom.js';
import { t } from '../common/i18n.js';

/**
 * Paging over the whole (filtered) log: a log of a year holds hundreds of thousands of entries,
 * and drawing them all at once would freeze the page, but no entry may be out of reach (issue 10,
 * problem 13: the log stopped at 500 rows).
 */

export const PAGE_SIZES = [50, 100, 250, 500] as const;
export const DEFAULT_PAGE_SIZE = 100;

export interface LogPage<T> {
  rows: T[];
  /** 1-based, clamped to the pages there are. */
  page: number;
  pages: number;
  /** 1-based positions of the first and last row shown (0 and 0 when there are none). */
  first: number;
  last: number;
  total: number;
}

/** The rows of page `page` (1-based; clamped) at `size` rows a page. */
export function pageOf<T>(rows: readonly T[], page: number, size: number): LogPage<T> {
  const pages = Math.max(1, Math.ceil(rows.length / size));
  const p = Math.min(pages, Math.max(1, Math.floor(page) || 1));
  const start = (p - 1) * size;
  const slice = rows.slice(start, start + size);
  return { rows: slice, page: p, pages, first: slice.length ? start + 1 : 0, last: start + slice.length, total: rows.length };
}

/** First, previous, a page number to type, next, last, and rows per page. */
export function pagerView(p: LogPage<unknown>, size: number, go: (page: number) => void, resize: (size: number) => void): HTMLElement {
  const number = h('input', { type: 'number', id: 'page-number', min: 1, max: p.pages, value: p.page, 'aria-label': t('page_number'), inputmode: 'numeric' });
  number.addEventListener('change', () => go(Number(number.value)));
  const sizes = h('select', { id: 'page-size' }, ...PAGE_SIZES.map((n) => h('option', { value: n, selected: n === size }, n)));
  sizes.addEventListener('change', () => resize(Number(sizes.value)));
  const button = (id: string, label: string, text: string, to: number, disabled: boolean) =>
    h('button', { type: 'button', id, class: 'secondary', 'aria-label': label, disabled, onclick: () => go(to) }, text);
  return h(
    'nav',
    { class: 'pager', id: 'pager', 'aria-label': t('pages'), 'data-page': p.page, 'data-pages': p.pages },
    button('page-first', t('page_first'), '«', 1, p.page === 1),
    button('page-prev', t('page_prev'), '‹', p.page - 1, p.page === 1),
    h('span', { class: 'page-of' }, number, ' ', t('page_of', { pages: p.pages })),
    button('page-next', t('page_next'), '›', p.page + 1, p.page === p.pages),
    button('page-last', t('page_last'), '»', p.pages, p.page === p.pages),
    h('label', { class: 'inline' }, t('page_size'), ' ', sizes),
  );
}
