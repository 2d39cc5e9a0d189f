import { PRECEDENCES, type Precedence } from '../../../../shared/protocol/schemas.js';
import { h, replace } from '../../common/dom.js';
import { t, type MessageKey } from '../../common/i18n.js';
import { EMPTY_QUERY, FIND_SORTS, isFiltering, unreadCounts, type FindQuery, type FindSort } from '../find.js';

/** The find bar above the message lists: what waits for acknowledgement, search, filters, order. */
export interface FindPanel {
  readonly el: HTMLElement;
  readonly query: FindQuery;
  /** Labels again (a language change); the controls and what is typed are kept. */
  draw(): void;
  /** The unacknowledged messages to this party, by precedence. */
  setUnread(open: Iterable<Precedence>): void;
  /** How many rows the filter shows, of how many. */
  setShown(n: number, total: number): void;
}

/** `changed` is called on every change of the query; `reordered` tells whether the order changed. */
export function findPanel(changed: (reordered: boolean) => void): FindPanel {
  const el = h('section', { class: 'card find', id: 'find', role: 'search' });
  const query: FindQuery = { ...EMPTY_QUERY };
  const text = h('input', { type: 'search', id: 'find-text', autocomplete: 'off' });
  const prec = h('select', { id: 'find-precedence' }, h('option', { value: '' }), ...PRECEDENCES.map((p) => h('option', { value: p })));
  const state = h('select', { id: 'find-state' }, h('option', { value: '' }), h('option', { value: 'open' }), h('option', { value: 'overdue' }));
  const sort = h('select', { id: 'find-sort' }, ...FIND_SORTS.map((s) => h('option', { value: s })));
  const unreadEl = h('p', { id: 'unread', class: 'unread' });
  const shownEl = h('p', { id: 'find-shown', class: 'small muted', 'aria-live': 'polite' });
  let open: Precedence[] = [];
  let shown = { n: 0, total: 0 };

  const read = () => {
    const before = query.sort;
    query.text = text.value;
    query.precedence = prec.value as FindQuery['precedence'];
    query.state = state.value as FindQuery['state'];
    query.sort = sort.value as FindSort;
    changed(query.sort !== before);
  };
  text.addEventListener('input', read);
  for (const s of [prec, state, sort]) s.addEventListener('change', read);
  // Enter in the search field finds; it never submits anything.
  text.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') ev.preventDefault();
  });

  const drawUnread = () => {
    const counts = unreadCounts(open);
    replace(
      unreadEl,
      counts.length === 0
        ? t('unread_none')
        : h(
            'span',
            {},
            `${t('unread')}: `,
            ...counts.flatMap(({ precedence, n }, i) => [
              i > 0 ? ' · ' : null,
              // One click shows just those.
              h('button', {
                type: 'button',
                class: `link unread-count prec-text-${precedence.toLowerCase()}`,
                'data-precedence': precedence,
                'data-n': n,
                onclick: () => {
                  prec.value = precedence;
                  state.value = 'open';
                  read();
                },
              }, t('unread_count', { prec: t(`prec_${precedence}` as MessageKey), n })),
            ]),
          ),
    );
    unreadEl.dataset.total = String(open.length);
  };
  const drawShown = () => {
    shownEl.dataset.n = String(shown.n);
    shownEl.dataset.total = String(shown.total);
    shownEl.textContent = isFiltering(query) ? t('find_shown', shown) : '';
  };

  const draw = () => {
    text.placeholder = t('find_text_hint');
    prec.options[0]!.textContent = t('find_all');
    for (const o of Array.from(prec.options).slice(1)) o.textContent = t(`prec_${o.value as Precedence}` as MessageKey);
    state.options[0]!.textContent = t('find_all');
    state.options[1]!.textContent = t('state_open');
    state.options[2]!.textContent = t('state_overdue');
    for (const o of Array.from(sort.options)) o.textContent = t(`sort_${o.value as FindSort}` as MessageKey);
    replace(
      el,
      h('h2', { class: 'visually-hidden' }, t('find')),
      unreadEl,
      h(
        'div',
        { class: 'find-row' },
        h('label', { class: 'grow' }, t('find_text'), text),
        h('label', {}, t('precedence'), prec),
        h('label', {}, t('find_state'), state),
        h('label', {}, t('find_sort'), sort),
      ),
      shownEl,
    );
    drawUnread();
    drawShown();
  };

  return {
    el,
    query,
    draw,
    setUnread(next) {
      const list = [...next];
      if (list.length === open.length && list.every((p, i) => p === open[i])) return;
      open = list;
      drawUnread();
    },
    setShown(n, total) {
      if (n === shown.n && total === shown.total) return;
      shown = { n, total };
      drawShown();
    },
  };
}
