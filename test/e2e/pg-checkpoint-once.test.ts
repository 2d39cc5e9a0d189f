import { describe, expect, it } from 'vitest';
import { CN, JP, createDeployment } from '../helpers/deployment.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { startTestServer, type TestServer } from '../helpers/test-server.js';
import { testDatabaseUrl, testSchema } from '../helpers/stores.js';
import { seal } from '../helpers/ws-client.js';

/**
 * Issue 12, checkpoints on several nodes (docs/postgresql.md "Audit log and checkpoints"): when
 * both nodes' checkpoint timers fire for one log that has grown, exactly one node signs a
 * checkpoint of that size, and the other finds it signed. Telling this from "the log did not grow"
 * (where neither signs) is the point: the log grows before every round, and the test counts what
 * each node signed (its "checkpoint signed" log line), not the rows of the table, which keeps one
 * row per size whoever inserts it.
 */

const MIN = 60_000;
const APP = { heartbeatIntervalMs: 365 * 24 * 60 * MIN, checkpointIntervalMs: MIN, clusterPollMs: 10 * MIN };

describe('checkpoints on two PostgreSQL nodes', () => {
  it('both timers fire for one grown log: one node signs that size, the other signs nothing', async () => {
    const clock = new ManualClock();
    const dep = await createDeployment(clock.now());
    const database = { url: testDatabaseUrl(), schema: testSchema() };
    const a = await startTestServer({ dep, database, clock, app: APP, withLogKey: true });
    const b = await startTestServer({ dep, database, clock, app: APP, withLogKey: true, enrolAll: false });
    const jp = await a.connect(`${JP}/op1`);
    const directory = await a.directory();
    const signed = (s: TestServer) => s.logs.records().filter((r) => r['msg'] === 'checkpoint signed').map((r) => r['size'] as number);
    const periodic = (s: TestServer) => s.logs.records().filter((r) => r['msg'] === 'periodic checkpoint').map((r) => r['created'] as boolean);

    // ROUTINE: its delivery deadline (an hour) stays far off. A FLASH's (30 s) would fire in the same
    // clock step as the checkpoint timers and append its own audit entry, racing the signature.
    for (let round = 1; round <= 4; round++) {
      const env = await seal({ sender: dep.devices[`${JP}/op1`]!, to: CN, seq: round, directory, plaintext: { body: `round ${round}`, lang: 'en' }, sentAt: clock.now(), precedence: 'ROUTINE' });
      jp.send({ t: 'envelope', envelope: env });
      await jp.waitForType('accepted', (f) => f.id === env.header.id);
      // The log has grown past the newest checkpoint: there is something to sign.
      const size = await a.store.auditSize();
      const newest = await a.store.getCheckpoint();
      expect(size).toBeGreaterThan(newest?.size ?? 0);
      const before = { a: signed(a).length, b: signed(b).length, pa: periodic(a).length, pb: periodic(b).length };
      clock.advance(MIN);
      // Both timers ran (each logs its outcome) ...
      await Promise.all([a.logs.waitFor((r) => r['msg'] === 'periodic checkpoint', before.pa + 1), b.logs.waitFor((r) => r['msg'] === 'periodic checkpoint', before.pb + 1)]);
      // ... and between them signed this size exactly once: one created it, the other did not.
      const now = [...signed(a).slice(before.a), ...signed(b).slice(before.b)];
      expect(now).toEqual([size]);
      expect([...periodic(a).slice(before.pa), ...periodic(b).slice(before.pb)].sort()).toEqual([false, true]);
      expect((await a.store.getCheckpoint())?.size).toBe(size);
    }
  });
});
