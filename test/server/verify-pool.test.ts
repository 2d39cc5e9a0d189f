import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { ed25519Sign, signingPublicKeyFromSeed } from '../../shared/crypto/ed25519.js';
import { fromBase64, toBase64, utf8 } from '../../shared/encoding/base64.js';
import type { Envelope } from '../../shared/protocol/schemas.js';
import { nodeCrypto } from '../../server/node-crypto.js';
import { VerifyPool } from '../../server/verify-pool.js';
import { CN, JP, tempDir } from '../helpers/deployment.js';
import { startTestServer } from '../helpers/test-server.js';
import { seal } from '../helpers/ws-client.js';

type Check = [publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array];

/** Checks that pass and checks that fail each way: another message, another key, a bad signature, wrong lengths, a key that is no point. */
async function vectors(): Promise<Check[]> {
  const seed = nacl.randomBytes(32);
  const other = signingPublicKeyFromSeed(nacl.randomBytes(32));
  const key = signingPublicKeyFromSeed(seed);
  const checks: Check[] = [];
  for (let i = 0; i < 6; i++) {
    // Messages of several sizes, so that a batch's packing is crossed at odd offsets.
    const message = utf8(`至急 ${i} ${'x'.repeat(i * 37)}`);
    const signature = await ed25519Sign(seed, message);
    const flipped = signature.slice();
    flipped[i] = flipped[i]! ^ 1;
    checks.push([key, message, signature], [key, utf8(`other ${i}`), signature], [other, message, signature], [key, message, flipped]);
  }
  const message = utf8('lengths');
  const signature = await ed25519Sign(seed, message);
  const notAPoint = new Uint8Array(32).fill(0xff);
  checks.push([key.subarray(0, 31), message, signature], [key, message, signature.subarray(0, 63)], [notAPoint, message, signature], [key, message, signature]);
  return checks;
}

/** node:crypto's answers on the event loop, as the relay gave them before. */
const expected = (checks: readonly Check[]) => checks.map(([k, m, s]) => nodeCrypto.ed25519Verify(k, m, s));

describe('VerifyPool: the relay\'s signature checks in a worker thread', () => {
  it('gives node:crypto\'s answers, in the worker for checks asked together and on the event loop for one alone', async () => {
    const checks = await vectors();
    const want = expected(checks);
    expect(want.filter(Boolean).length).toBe(7);
    const pool = new VerifyPool();
    try {
      // Asked in one turn: one batch, answered in the worker, each answer to its own check.
      expect(await Promise.all(checks.map((c) => pool.verify(...c)))).toEqual(want);
      // Two malformed ones are answered false without a check.
      expect(pool.counts).toEqual({ inline: 0, worker: checks.length - 2 });
      // One at a time: each on the event loop.
      for (const [i, c] of checks.entries()) expect(await pool.verify(...c)).toBe(want[i]);
      expect(pool.counts).toEqual({ inline: checks.length - 2, worker: checks.length - 2 });
      // verifyNow: on the event loop at once, even asked together.
      expect(await Promise.all(checks.map((c) => pool.verifyNow(...c)))).toEqual(want);
      expect(pool.counts).toEqual({ inline: 2 * (checks.length - 2), worker: checks.length - 2 });
    } finally {
      await pool.close();
    }
  });

  it('a worker that fails: the checks out are answered on the event loop, its owner is told once, and later checks stay on the loop', async () => {
    const checks = await vectors();
    const failures: Error[] = [];
    let spawned = 0;
    const pool = new VerifyPool((e) => failures.push(e), {
      spawn: () => {
        spawned++;
        return new Worker('process.exit(3)', { eval: true });
      },
    });
    expect(await Promise.all(checks.map((c) => pool.verify(...c)))).toEqual(expected(checks));
    expect(failures).toHaveLength(1);
    expect(await Promise.all(checks.map((c) => pool.verify(...c)))).toEqual(expected(checks));
    expect(failures).toHaveLength(1);
    expect(spawned).toBe(1);
    expect(pool.counts.worker).toBe(0);
    await pool.close();
  });

  it('on Linux the worker thread runs at nice VerifyPool.NICE, and only it: the thread that made the pool keeps its priority', async () => {
    // Per-thread nice values are Linux's (the relay's platform: Debian, the container). Each
    // thread's is field 19 of /proc/self/task/<tid>/stat; the fields before it may hold spaces
    // only inside the command name, which ends at the last ')'.
    expect(process.platform).toBe('linux');
    const niceOf = () =>
      readdirSync('/proc/self/task').flatMap((tid) => {
        let stat: string;
        try {
          stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
        } catch {
          return []; // a thread that ended meanwhile
        }
        return [Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])];
      });
    const before = niceOf().filter((n) => n === VerifyPool.NICE).length;
    const pool = new VerifyPool(undefined, { minBatch: 1 });
    try {
      const checks = await vectors();
      expect(await Promise.all(checks.map((c) => pool.verify(...c)))).toEqual(expected(checks));
      expect(pool.counts.worker).toBe(checks.length - 2); // two have wrong lengths: refused before any thread
      expect(niceOf().filter((n) => n === VerifyPool.NICE).length).toBe(before + 1);
      expect(getPriority()).toBe(0);
    } finally {
      await pool.close();
    }
  });

  it('after close, checks are made on the event loop', async () => {
    const checks = await vectors();
    const pool = new VerifyPool();
    await Promise.all(checks.map((c) => pool.verify(...c)));
    await pool.close();
    const before = pool.counts.worker;
    expect(await Promise.all(checks.map((c) => pool.verify(...c)))).toEqual(expected(checks));
    expect(pool.counts.worker).toBe(before);
  });

  it('a program that awaits checks gets its answers and ends, whether it closes the pool (awaited to the end) or never does (not held by the worker)', async () => {
    const dir = tempDir();
    // Were the worker left ref'd once its batch is answered, this process would never end
    // (execFile's timeout fails the test: measured with the unref taken out).
    const script = join(dir.path, 'await-batch.mts');
    const module = fileURLToPath(new URL('../../server/verify-pool.ts', import.meta.url));
    const crypto = fileURLToPath(new URL('../../server/node-crypto.ts', import.meta.url));
    const ed25519 = fileURLToPath(new URL('../../shared/crypto/ed25519.ts', import.meta.url));
    writeFileSync(
      script,
      [
        `import { VerifyPool } from ${JSON.stringify(module)};`,
        `import { nodeCrypto } from ${JSON.stringify(crypto)};`,
        `import { signingPublicKeyFromSeed } from ${JSON.stringify(ed25519)};`,
        `const seed = new Uint8Array(32).fill(7);`,
        `const pub = signingPublicKeyFromSeed(seed);`,
        `const message = new TextEncoder().encode('hold');`,
        `const signature = nodeCrypto.ed25519Sign(seed, message);`,
        `const pool = new VerifyPool();`,
        `const answers = await Promise.all([pool.verify(pub, message, signature), pool.verify(pub, message, signature), pool.verify(pub, new TextEncoder().encode('no'), signature)]);`,
        `console.log('answered', answers.join(','), pool.counts.worker);`,
        // Closed or not, as the second argument says; closed with a batch still out in the worker.
        `if (process.argv[2] === 'close') {`,
        `  const out = Promise.all([pool.verify(pub, message, signature), pool.verify(pub, message, signature)]);`,
        `  await new Promise((resolve) => setImmediate(resolve));`,
        `  await pool.close();`,
        `  console.log('closed', (await out).join(','));`,
        `}`,
      ].join('\n'),
    );
    try {
      const run = (...args: string[]) => promisify(execFile)(process.execPath, ['--import', 'tsx', script, ...args], { cwd: fileURLToPath(new URL('../..', import.meta.url)), timeout: 60_000 });
      expect((await run()).stdout.trim()).toBe('answered true,true,false 3');
      // And closed with a batch out: its answer, coming while close() waits for the worker to end,
      // unref'd the worker, and the process ended inside close() (status 13 at this top-level await;
      // the bench's smoke run stopped so, status 0, after its in-process server closed).
      for (let i = 0; i < 3; i++) expect((await run('close')).stdout.trim().split('\n')).toEqual(['answered true,true,false 3', 'closed true,true']);
    } finally {
      dir.remove();
    }
  }, 90_000);
});

describe('the relay with its signature-check thread', () => {
  it('accepts every envelope checked in the worker and refuses the one forged among them with its own code', async () => {
    const s = await startTestServer({ app: { verifyMinBatch: 1 } });
    const dir = await s.directory();
    const senders = [`${JP}/op1`, `${JP}/op2`];
    const links = await Promise.all(senders.map((k) => s.connect(k)));
    const N = 8;
    const batches = await Promise.all(
      senders.map((k) => Promise.all(Array.from({ length: N }, (_, i) => seal({ sender: s.dep.devices[k]!, to: CN, seq: i + 1, precedence: 'ROUTINE', directory: dir, plaintext: { body: `${k} #${i + 1}`, lang: 'en' } })))),
    );
    // One of op2's, its signature's first byte changed: the rest of its batch must still pass.
    const forged: Envelope = { ...batches[1]![4]!, signature: toBase64(((b) => (b[0]! ^= 1, b))(fromBase64(batches[1]![4]!.signature, 64))) };
    batches[1]![4] = forged;
    batches.forEach((envs, i) => envs.forEach((envelope) => links[i]!.send({ t: 'envelope', envelope })));

    for (const [i, envs] of batches.entries()) {
      for (const env of envs) {
        if (env === forged) continue;
        await links[i]!.waitForType('accepted', (f) => f.id === env.header.id);
        expect(await s.store.getEnvelope(env.header.id)).toBeDefined();
      }
    }
    const error = await links[1]!.waitForType('error', (f) => f.ref === forged.header.id);
    expect(error.code).toBe('HL_ERR_ENVELOPE_BAD_SIGNATURE');
    expect(links[0]!.ofType('error')).toEqual([]);
    expect(links[1]!.ofType('error')).toHaveLength(1);
    expect(await s.store.getEnvelope(forged.header.id)).toBeUndefined();
    // Every check went through the worker (minBatch 1), and /metrics says so.
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toContain(`hotline_signature_checks_total{thread="worker"} ${2 * N}`);
    expect(metrics).toContain('hotline_signature_checks_total{thread="event_loop"} 0');
  });
});
