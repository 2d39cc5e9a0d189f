import { vi } from 'vitest';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import type { WriteResult } from '../../server/relay/records.js';

/**
 * The relay's disk made slow at will: each commit's transaction is done (and what it stored made
 * visible) as usual, but its promise, which says the writes are durable, waits for the next
 * `release()` after the commit began. Undone by `vi.restoreAllMocks()`.
 */
export function slowDisk(): { release: () => void } {
  const commit = SqliteStore.prototype.commit;
  let release!: () => void;
  let held = new Promise<void>((resolve) => (release = resolve));
  vi.spyOn(SqliteStore.prototype, 'commit').mockImplementation(function (this: SqliteStore, writes, visible) {
    const durable = held;
    return commit.call(this, writes, visible).then(async (results: WriteResult[]) => {
      await durable;
      return results;
    });
  });
  return {
    release: () => {
      const now = release;
      held = new Promise<void>((resolve) => (release = resolve));
      now();
    },
  };
}
