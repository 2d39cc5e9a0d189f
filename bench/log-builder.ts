import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { SqliteStore } from '../server/store/sqlite-store.js';
import { DATABASE_FILE } from '../server/main.js';
import type { HotlineEvent } from '../shared/protocol/frames.js';

/**
 * Make a data directory whose audit log holds `entries` entries, for the restart phase.
 *
 * A stand-in, kept behind this one function so that it can be swapped: another change of issue 9
 * adds bench/big-log.ts, a faster builder; point `buildAuditLog` at it once it lands. This one goes
 * through the store's own `commit` (audit entries chained and hashed exactly as the server writes
 * them, whatever the schema), appending link-test events in large transactions.
 */
export async function buildAuditLog(dataDir: string, entries: number, from: string, to: string): Promise<void> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const store = new SqliteStore(join(dataDir, DATABASE_FILE));
  const at = Date.now();
  const BATCH = 10_000;
  for (let done = 0; done < entries; done += BATCH) {
    const n = Math.min(BATCH, entries - done);
    const events = Array.from({ length: n }, (_, i): { event: HotlineEvent; mailboxes: string[] } => ({
      event: { type: 'link.test', from, to, ok: true, at: at + done + i },
      mailboxes: [],
    }));
    const [result] = await store.commit([{ kind: 'events', acceptedAt: at + done, events }]);
    if (!result?.ok) throw new Error(`building the audit log failed: ${result ? String((result as { error?: unknown }).error) : 'no result'}`);
  }
  await store.close();
}
