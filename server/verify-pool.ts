import { Worker } from 'node:worker_threads';
import type { Ed25519Verifier } from '../shared/crypto/ed25519.js';
import { nodeCrypto } from './node-crypto.js';

interface Request {
  publicKey: Uint8Array;
  message: Uint8Array;
  signature: Uint8Array;
  resolve: (ok: boolean) => void;
}

/**
 * The relay's Ed25519 signature checks, in a worker thread when several wait (issue 9: "verification
 * in a worker_threads pool where it pays").
 *
 * Each envelope and each receipt costs the relay one verification on its event loop, a sixth of
 * its time at capacity (docs/performance.md). Checks asked for in one turn of the event loop are
 * gathered and, from `minBatch` of them on, handed to the worker in one message (key, signature
 * and message packed in one transferred buffer) while the loop goes on with the rest: committing,
 * delivering, reading. One check alone (one message in flight, a FLASH on an idle relay) is made
 * on the loop, at the next turn: the round trip to the thread (a post, a wake-up, a post back)
 * costs more than it saves, and it would lengthen the path of the one message. A caller that
 * knows no other check will gather (the link, when no other connection has frames waiting) uses
 * `verifyNow`, which does not wait for that turn. The answers are node:crypto's, the same as on
 * the loop (test/server/verify-pool.test.ts compares them).
 *
 * The worker starts at the first batch. It holds the process only while a batch is out. Should it
 * fail, checks go on on the event loop (slower, nothing refused that should pass) and `onFailure`
 * is told once, for the log.
 */
export class VerifyPool {
  /** Checks in one turn from which a batch goes to the worker. */
  static readonly MIN_BATCH = 2;
  /**
   * The worker thread's nice value (Linux). Its checks are throughput work; the event loop's are
   * latency work (a FLASH's hops). When the cores are contended, the loop, the fsync threads and
   * the checkpoint worker go first. `npm run bench -- --only=capacity`, four alternating pairs:
   * FLASH p50 under a ROUTINE stream at half of capacity 1.37, 1.32, 1.30, 0.99× its idle p50
   * against 1.57, 1.27, 1.43, 1.18× at nice 0, capacity 2,138-2,214 against 2,012-2,151 msgs/s
   * (docs/performance.md, seventeenth session).
   */
  static readonly NICE = 10;
  /** Keys imported into OpenSSL that the worker keeps (a relay sees few signing keys). */
  static readonly WORKER_KEYS = 4096;
  private worker: Worker | undefined;
  private queue: Request[] = [];
  private scheduled = false;
  private nextId = 1;
  private readonly out = new Map<number, Request[]>();
  private failed = false;
  private closed = false;
  /** Checks made on the event loop, and in the worker (for tests and metrics). */
  readonly counts = { inline: 0, worker: 0 };

  private readonly minBatch: number;
  private readonly spawn: () => Worker;

  /**
   * @param onFailure told once if the worker fails (checks go on on the event loop), for the log.
   * @param options.minBatch checks in one turn from which they go to the worker (MIN_BATCH).
   * @param options.spawn starts the worker (tests: one that fails).
   */
  constructor(
    private readonly onFailure: (error: Error) => void = () => {},
    options: { minBatch?: number; spawn?: () => Worker } = {},
  ) {
    this.minBatch = options.minBatch ?? VerifyPool.MIN_BATCH;
    this.spawn = options.spawn ?? spawnVerifier;
  }

  /** The verifier to hand to the checks (shared/crypto: verifyCheckedEnvelope, …). */
  readonly verify: Ed25519Verifier = (publicKey, message, signature) => {
    if (publicKey.length !== 32 || signature.length !== 64) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      this.queue.push({ publicKey, message, signature, resolve });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  };

  /** A check made on the event loop at once, counted with the others (a caller that knows none will gather). */
  readonly verifyNow: Ed25519Verifier = (publicKey, message, signature) => {
    if (publicKey.length !== 32 || signature.length !== 64) return Promise.resolve(false);
    this.counts.inline++;
    return Promise.resolve(nodeCrypto.ed25519Verify(publicKey, message, signature));
  };

  /** End the worker; checks asked for afterwards are made on the event loop. */
  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = undefined;
    if (!worker) return;
    // Batches still out are answered on the loop: the worker is ending.
    for (const batch of this.out.values()) this.inline(batch);
    this.out.clear();
    // Ref'd while its end is awaited: with nothing else left, an unref'd worker lets the loop
    // empty inside this await, and the process ends there with status 0 (the bench stopped silently).
    worker.ref();
    await worker.terminate();
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length < this.minBatch || this.failed || this.closed) return this.inline(batch);
    const worker = this.start();
    const id = this.nextId++;
    this.out.set(id, batch);
    let size = 0;
    for (const r of batch) size += 32 + 64 + 4 + r.message.length;
    const packed = new Uint8Array(size);
    const view = new DataView(packed.buffer);
    let at = 0;
    for (const r of batch) {
      packed.set(r.publicKey, at);
      packed.set(r.signature, at + 32);
      view.setUint32(at + 96, r.message.length);
      packed.set(r.message, at + 100);
      at += 100 + r.message.length;
    }
    // Ref'd while a batch is out, so that the answers are awaited (as WalCheckpointer).
    worker.ref();
    worker.postMessage({ id, n: batch.length, packed }, [packed.buffer]);
  }

  private inline(batch: readonly Request[]): void {
    for (const r of batch) {
      this.counts.inline++;
      r.resolve(nodeCrypto.ed25519Verify(r.publicKey, r.message, r.signature));
    }
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = this.spawn();
    worker.unref();
    worker.on('message', (m: { id: number; ok: Uint8Array }) => {
      const batch = this.out.get(m.id);
      this.out.delete(m.id);
      // Not once close() has taken the worker: it stays ref'd until it has ended (as WalCheckpointer).
      if (this.out.size === 0 && this.worker === worker) worker.unref();
      if (!batch) return;
      batch.forEach((r, i) => {
        this.counts.worker++;
        r.resolve(m.ok[i] === 1);
      });
    });
    worker.once('error', (error) => this.fail(worker, error));
    worker.once('exit', () => this.fail(worker, new Error('the verification worker exited')));
    this.worker = worker;
    return worker;
  }

  private fail(worker: Worker, error: Error): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    this.failed = true;
    for (const batch of this.out.values()) this.inline(batch);
    this.out.clear();
    this.onFailure(error);
  }
}

/** The worker: a batch in, one answer per check out. */
function spawnVerifier(): Worker {
  // Plain CommonJS: the worker runs without the TypeScript loader. The same checks as
  // nodeCrypto.ed25519Verify (server/node-crypto.ts): a JWK import, false for an invalid point.
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { createPublicKey, verify } = require('node:crypto');
    // Linux only: there a thread's nice value is its own (setpriority of "this process" from a
    // thread sets that thread's). Elsewhere it would lower the whole relay's priority.
    if (workerData.nice !== undefined) {
      try {
        require('node:os').setPriority(0, workerData.nice);
      } catch {
        // Only slower under contention: the checks are the same.
      }
    }
    const SPKI = Buffer.from('302a300506032b6570032100', 'hex');
    const keys = new Map();
    // As publicKey() in server/node-crypto.ts: a JWK, or DER should a Node refuse the JWK; a key
    // neither imports (an invalid point) is a failed check.
    const importKey = (raw, x) => {
      try {
        return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
      } catch {
        return createPublicKey({ key: Buffer.concat([SPKI, raw]), format: 'der', type: 'spki' });
      }
    };
    const keyOf = (raw) => {
      const x = Buffer.from(raw).toString('base64url');
      let key = keys.get(x);
      if (key === undefined) {
        key = importKey(raw, x);
        if (keys.size >= workerData.maxKeys) keys.delete(keys.keys().next().value);
        keys.set(x, key);
      }
      return key;
    };
    parentPort.on('message', ({ id, n, packed }) => {
      const ok = new Uint8Array(n);
      const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
      let at = 0;
      for (let i = 0; i < n; i++) {
        const len = view.getUint32(at + 96);
        try {
          ok[i] = verify(null, packed.subarray(at + 100, at + 100 + len), keyOf(packed.subarray(at, at + 32)), packed.subarray(at + 32, at + 96)) ? 1 : 0;
        } catch {
          ok[i] = 0;
        }
        at += 100 + len;
      }
      parentPort.postMessage({ id, ok }, [ok.buffer]);
    });`;
  return new Worker(code, { eval: true, workerData: { maxKeys: VerifyPool.WORKER_KEYS, nice: process.platform === 'linux' ? VerifyPool.NICE : undefined } });
}
