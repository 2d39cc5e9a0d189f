import { describe, expect, it } from 'vitest';
import { createPrekey, prekeyRotationMs } from '../../shared/crypto/prekey.js';
import type { SignedPrekey } from '../../shared/protocol/schemas.js';
import { CN, JP, createDeployment } from '../helpers/deployment.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { startTestServer } from '../helpers/test-server.js';
import { testDatabaseUrl, testSchema } from '../helpers/stores.js';
import { call, seal } from '../helpers/ws-client.js';

/**
 * Prekeys on several nodes of one relay sharing a PostgreSQL database (docs/postgresql.md): a
 * device publishes through the node it is connected to, and senders on any node must see it, or
 * they would wrap to its long-term key (no forward secrecy) for as long as the nodes run. Runs
 * against the test database of the global setup: fails, never skips, when it is unreachable.
 */

const MIN = 60_000;
const APP = { heartbeatIntervalMs: 365 * 24 * 60 * MIN, checkpointIntervalMs: 24 * 60 * MIN };

describe('prekeys on two relay nodes on one PostgreSQL database', () => {
  it('a prekey published through node A is served by node B, which then admits envelopes wrapped to it and refuses one wrapped to the certificate key', async () => {
    const clock = new ManualClock();
    const dep = await createDeployment(clock.now());
    const database = { url: testDatabaseUrl(), schema: testSchema() };
    const a = await startTestServer({ dep, database, clock, app: APP });
    const b = await startTestServer({ dep, database, clock, app: APP, enrolAll: false });

    // Node B has started (its directory read) before the device publishes through node A.
    const cnOp = dep.devices[`${CN}/op1`]!;
    const held = await createPrekey(cnOp, { now: clock.now(), rotationMs: prekeyRotationMs(dep.agreement) });
    expect((await call(a.url, 'POST', '/v1/prekeys', held.signed)).status).toBe(201);

    const served = (await call(b.url, 'GET', '/v1/directory', undefined, await b.token(`${JP}/op1`))).body as { prekeys: SignedPrekey[] };
    expect(served.prekeys).toEqual([held.signed]);

    const jp = await b.connect(`${JP}/op1`);
    const directory = await b.directory();
    const sender = dep.devices[`${JP}/op1`]!;
    const plaintext = { body: 'through node B', lang: 'en' };
    const stale = await seal({ sender, to: CN, seq: 1, directory, plaintext, sentAt: clock.now() });
    jp.send({ t: 'envelope', envelope: stale });
    await jp.waitForError('HL_ERR_ENVELOPE_RECIPIENTS');
    const wrapped = await seal({ sender, to: CN, seq: 2, directory, plaintext, sentAt: clock.now(), wrapKeys: new Map([[`${CN}/op1`, held.signed.prekey.boxKey]]) });
    jp.send({ t: 'envelope', envelope: wrapped });
    await jp.waitForType('accepted', (f) => f.id === wrapped.header.id);
    expect(wrapped.header.recipients.find((r) => r.party === CN && r.device === 'op1')!.keyId).toBe(held.keyId);
  });
});
