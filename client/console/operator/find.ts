import type { Precedence } from '../../../shared/protocol/schemas.js';

/**
 * Find in the message lists (issue 10): filter by precedence, by state and by text, and choose the
 * order. Pure: the messages panel keeps one {@link FindRow} per row and hides the rows that do not
 * match, so that a change of filter redraws nothing.
 */
export interface FindQuery {
  /** Words to find in the sender or addressee, subject and text (case-insensitive, every word). */
  text: string;
  precedence: Precedence | '';
  /** 'open': not acknowledged yet; 'overdue': its next deadline has passed. */
  state: '' | 'open' | 'overdue';
  sort: FindSort;
}
export type FindSort = 'newest' | 'oldest' | 'precedence';
export const FIND_SORTS: readonly FindSort[] = ['newest', 'oldest', 'precedence'];

export const EMPTY_QUERY: FindQuery = { text: '', precedence: '', state: '', sort: 'newest' };

/** What a row is found by. */
export interface FindRow {
  precedence: Precedence;
  /** Not acknowledged yet (an inbox message to this party, or a sent one without its acknowledgement). */
  open: boolean;
  /** The next deadline (server time), absent when nothing more is due. */
  dueAt?: number;
  /** Who sent it or to whom, subject and text: what a text search looks in. */
  text: string;
}

const RANK: Record<Precedence, number> = { FLASH: 3, IMMEDIATE: 2, PRIORITY: 1, ROUTINE: 0 };

/**
 * The sort key of a row (rows are shown by descending key): its time, negated for oldest first,
 * behind its precedence for most urgent first. Messages the relay accepted in one group commit
 * share their time: the sender's sequence number orders them, so that oldest first is the exact
 * reverse of newest first. (Time × 256 stays below 1e15 until 2093, and every key below 2^53.)
 */
export function sortKey(sort: FindSort, precedence: Precedence, at: number, seq: number): number {
  const time = at * 256 + (seq % 256);
  if (sort === 'oldest') return -time;
  if (sort === 'precedence') return RANK[precedence] * 1e15 + time;
  return time;
}

/** Whether `row` is shown under `q` at server time `now`. */
export function matches(q: FindQuery, row: FindRow, now: number): boolean {
  if (q.precedence !== '' && row.precedence !== q.precedence) return false;
  if (q.state === 'open' && !row.open) return false;
  if (q.state === 'overdue' && !(row.dueAt !== undefined && row.dueAt < now)) return false;
  const words = q.text.toLocaleLowerCase().split(/\s+/).filter((w) => w !== '');
  if (words.length === 0) return true;
  const hay = row.text.toLocaleLowerCase();
  return words.every((w) => hay.includes(w));
}

/** Whether the query filters anything out (a plain change of order does not). */
export function isFiltering(q: FindQuery): boolean {
  return q.text.trim() !== '' || q.precedence !== '' || q.state !== '';
}

/** Unacknowledged messages by precedence, most urgent first, those with none left out. */
export function unreadCounts(open: Iterable<Precedence>): { precedence: Precedence; n: number }[] {
  const counts = new Map<Precedence, number>();
  for (const p of open) counts.set(p, (counts.get(p) ?? 0) + 1);
  return (['FLASH', 'IMMEDIATE', 'PRIORITY', 'ROUTINE'] as const).filter((p) => counts.has(p)).map((p) => ({ precedence: p, n: counts.get(p)! }));
}
