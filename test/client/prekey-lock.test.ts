import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PrekeyManager, type PrekeyStore } from '../../client/prekeys.js';
import { FilePrekeyStore } from '../../client/storage/prekey-file-store.js';
import { createPrekey, DEFAULT_PREKEY_ROTATION_MS, type HeldPrekey } from '../../shared/crypto/prekey.js';
import { makeDeployment, type TestDeployment } from '../helpers/fixtures.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { tempDir } from '../helpers/deployment.js';

/**
 * Two processes of one device sharing one prekey file (`hotline listen` beside `hotline prekeys`),
 * each with its own PrekeyManager and its own FilePrekeyStore on the same path, as two processes
 * have (PROTOCOL.md "When a prekey's secret is deleted"): their runs change the file one at a time.
 */

const R = DEFAULT_PREKEY_ROTATION_MS;
const dirs: { remove(): void }[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) d.remove();
});

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * `inner` as one run sees it: calling `exclusive` or `load` marks this run as begun, and a `load`
 * returns what the file held when it was read but resolves only once the other run has begun too.
 * Two runs that are not locked against each other thus both read the file before either saves; with
 * the lock, the other run has begun by asking for the lock and waits for it.
 */
function gated(inner: FilePrekeyStore, mine: ReturnType<typeof deferred>, other: ReturnType<typeof deferred>): PrekeyStore {
  return {
    async load() {
      mine.resolve();
      const held = await inner.load();
      await other.promise;
      return held;
    },
    save: (held) => inner.save(held),
    ...(inner.exclusive
      ? {
          exclusive: <T>(fn: () => Promise<T>) => {
            mine.resolve();
            return inner.exclusive(fn);
          },
        }
      : {}),
  };
}

/** A PrekeyManager of cn-op-1 on `store`, its relay a stub that records what is published and answers /v1/prekeys/pending with `pending`. */
function manager(d: TestDeployment, clock: ManualClock, store: PrekeyStore, relay: { published: string[]; pending?: () => Promise<void> }): PrekeyManager {
  return new PrekeyManager({
    agreement: d.agreement,
    device: d.devices.cnOp,
    clock,
    emit: () => undefined,
    report: (err) => {
      throw err;
    },
    // Not running: a run arms no timer for the next one.
    running: () => false,
    store,
    api: {
      ensureToken: async () => undefined,
      http: async (method: string, path: string, body: unknown) => {
        if (method === 'POST' && path === '/v1/prekeys') {
          relay.published.push((body as HeldPrekey['signed']).prekey.boxKey);
          return {};
        }
        if (method === 'GET' && path === '/v1/prekeys/pending') {
          await relay.pending?.();
          return { serverTime: clock.now(), pending: [] };
        }
        throw new Error(`unexpected ${method} ${path}`);
      },
    },
  });
}

/** A deployment, a prekey file path for cn-op in a fresh directory (removed after), and a clock at the deployment's now. */
async function prekeyFile() {
  const d = await makeDeployment();
  const dir = tempDir('hotline-prekey-lock-');
  dirs.push(dir);
  return { d, path: join(dir.path, 'cn-op.state.json.prekeys'), clock: new ManualClock(d.now) };
}

describe('two processes of one device sharing a prekey file', () => {
  it('rotating at the very same moment, one waits for the other’s lock: one new prekey, none lost, the lock file gone after', async () => {
    const { d, path, clock } = await prekeyFile();
    const p1 = await createPrekey(d.devices.cnOp, { now: d.now - R, rotationMs: R });
    await new FilePrekeyStore(path).save([p1]);

    const [a, b] = [deferred(), deferred()];
    const relay = { published: [] as string[] };
    const listen = manager(d, clock, gated(new FilePrekeyStore(path), a, b), relay);
    const prekeys = manager(d, clock, gated(new FilePrekeyStore(path), b, a), relay);
    const runs = await Promise.all([listen.maintain(), prekeys.maintain()]);

    const held = await new FilePrekeyStore(path).load();
    // Whatever either run published, its secret is in the file: a message wrapped to it opens.
    for (const boxKey of relay.published) expect(held.map((h) => h.signed.prekey.boxKey)).toContain(boxKey);
    const rotated = runs.map((r) => r.rotated).filter((k) => k !== undefined);
    for (const keyId of rotated) expect(held.map((h) => h.keyId)).toContain(keyId);
    // The second run read the first one's prekey under the lock: nothing was due any more.
    expect(rotated).toHaveLength(1);
    expect(held.map((h) => h.keyId)).toEqual([p1.keyId, rotated[0]]);
    expect(existsSync(`${path}.lock`)).toBe(false);
  });

  it('a run waits for the lock file `<file>.lock` another process holds, and fails with HL_ERR_STORE_FAILED past its time limit, the file untouched', async () => {
    const { d, path, clock } = await prekeyFile();
    const p1 = await createPrekey(d.devices.cnOp, { now: d.now - R, rotationMs: R });
    await new FilePrekeyStore(path).save([p1]);
    writeFileSync(`${path}.lock`, '');
    const relay = { published: [] as string[] };
    await expect(manager(d, clock, new FilePrekeyStore(path, { lockTimeoutMs: 50 }), relay).maintain()).rejects.toMatchObject({ code: 'HL_ERR_STORE_FAILED' });
    expect((await new FilePrekeyStore(path).load()).map((h) => h.keyId)).toEqual([p1.keyId]);
    expect(relay.published).toEqual([]);
  });

  it('a deletion decided before another process rotated and deleted keeps that process’s new prekey (the file read again under the lock)', async () => {
    const { d, path, clock } = await prekeyFile();
    // p0 is out of date now (deletable); p1, made half a period ago, is not yet due for rotation.
    const p0 = await createPrekey(d.devices.cnOp, { now: d.now - 2 * R, rotationMs: R });
    const p1 = await createPrekey(d.devices.cnOp, { now: d.now - R / 2, rotationMs: R });
    await new FilePrekeyStore(path).save([p0, p1]);

    // The listener asks the relay whether p0 may go; the answer comes only after the other process
    // (half a period later) has rotated and saved.
    const asked = deferred();
    const answer = deferred();
    const relay = { published: [] as string[] };
    const listen = manager(d, clock, new FilePrekeyStore(path), {
      published: relay.published,
      pending: async () => {
        asked.resolve();
        await answer.promise;
      },
    });
    const deleting = listen.maintain();
    await asked.promise;
    clock.advance(R / 2);
    const other = await manager(d, clock, new FilePrekeyStore(path), relay).maintain();
    expect(other.rotated).toBeDefined();
    expect(other.deleted).toEqual([p0.keyId]);
    answer.resolve();
    // Already deleted by the other process: not counted again, and its new prekey is not dropped.
    expect((await deleting).deleted).toEqual([]);

    expect((await new FilePrekeyStore(path).load()).map((h) => h.keyId)).toEqual([p1.keyId, other.rotated]);
  });
});
