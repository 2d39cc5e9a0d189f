import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteStore } from '../../server/store/sqlite-store.js';
import { DATABASE_FILE } from '../../server/main.js';
import { CN, JP } from '../helpers/deployment.js';
import { startTestServer } from '../helpers/test-server.js';
import { seal } from '../helpers/ws-client.js';

describe('graceful shutdown', () => {
  it('finishes the writes in flight, tells clients to reconnect (4504), and records server.stop last', async () => {
    const s = await startTestServer();
    const dir = await s.directory();
    const jp = await s.connect(`${JP}/op1`);
    const envs = await Promise.all(
      Array.from({ length: 20 }, (_, i) => seal({ sender: s.dep.devices[`${JP}/op1`]!, to: CN, seq: i + 1, directory: dir, plaintext: { body: `m${i}`, lang: 'en' } })),
    );
    for (const envelope of envs) jp.send({ t: 'envelope', envelope });
    await jp.waitForType('accepted');
    await s.close();
    expect((await jp.closed).code).toBe(4504);

    // Every envelope the server answered `accepted` is on disk; each one was either accepted or refused.
    const accepted = jp.ofType('accepted').map((a) => a.id);
    const refused = jp.ofType('error').filter((e) => e.code === 'HL_ERR_SERVER_SHUTTING_DOWN' && e.ref !== undefined).map((e) => e.ref);
    expect(new Set([...accepted, ...refused])).toEqual(new Set(envs.map((e) => e.header.id)));
    const store = new SqliteStore(join(s.dataDir, DATABASE_FILE));
    try {
      for (const id of accepted) expect(await store.getEnvelope(id)).toBeDefined();
      const size = await store.auditSize();
      const last = JSON.parse((await store.auditEntries(size - 1, size))[0]!.entry) as { type: string };
      expect(last.type).toBe('server.stop');
    } finally {
      await store.close();
    }
  });
});
