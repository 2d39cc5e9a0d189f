import type { FastifyBaseLogger } from 'fastify';
import { HotlineError } from '../shared/errors.js';
import { bytesEqual, fromBase64, fromHex, toBase64, toHex } from '../shared/encoding/base64.js';
import { NodeTree, nodesRead } from '../shared/audit/merkle.js';
import { formatCheckpointBody, formatNote, parseNote, signNote, verifyNote, type NoteSignature } from '../shared/audit/checkpoint.js';
import { cosignerName, logKeyName } from '../shared/audit/log-verify.js';
import type { Agreement, DeviceCertBody } from '../shared/protocol/schemas.js';
import type { Clock, TimerHandle } from './clock.js';
import type { ClusterStore, Store, StoredCheckpoint, StoredCosignature } from './store/store.js';

export const DEFAULT_CHECKPOINT_INTERVAL_MS = 60_000;
/** Logs up to this many entries have their stored tree checked in full before start() returns. */
export const DEFAULT_INLINE_CHECK_MAX = 65_536;
/** Nodes checked per slice of the background check, between which the event loop runs. */
const CHECK_SLICE = 4096;

export interface AuditLogOptions {
  agreement: Agreement;
  store: Store;
  clock: Clock;
  log: FastifyBaseLogger;
  /** The log's Ed25519 seed (its public key is `agreement.logKey`); without it no checkpoint is signed. */
  logSecret?: Uint8Array;
  /** How often a checkpoint is signed when the log has grown. Default 60 s. */
  intervalMs?: number;
  /**
   * Up to this log size the full check of the stored tree runs before start() returns; a larger
   * log is checked in the background while the relay already serves (tree reads and signing wait
   * for it). Default {@link DEFAULT_INLINE_CHECK_MAX}.
   */
  inlineCheckMax?: number;
  /**
   * One of several nodes on one database: checkpoints are signed holding the database's lock, and a
   * periodic one only if no node has signed one in this interval yet (intervals counted from the
   * epoch on the clock), so the nodes together sign at most one per interval.
   */
  cluster?: Pick<ClusterStore, 'exclusive'>;
}

/**
 * The tree of the first `size` entries, read from the store's nodes (O(log n) rows per answer).
 * Range errors are HL_ERR_AUDIT_RANGE.
 */
export interface AuditTree {
  readonly size: number;
  root(size?: number): Promise<Uint8Array>;
  leafHash(index: number): Promise<Uint8Array>;
  inclusionProof(index: number, size?: number): Promise<Uint8Array[]>;
  consistencyProof(size1: number, size2?: number): Promise<Uint8Array[]>;
}

/**
 * The server side of the tamper-evident log (docs/design.md "Audit log"): the RFC 9162 tree of every
 * stored entry, checkpoints signed with the log key on an interval (on the injected clock) and on
 * demand, and the parties' cosignatures checked and stored beside them. Entries are appended by the
 * store, in the transaction of the state change they record, together with the tree nodes they
 * complete; this class holds no leaves and reads the O(log n) nodes each root or proof needs.
 *
 * The stored nodes are derived data and are never trusted blindly: at start a quick check (O(log n)
 * rows: the node ranges the log's size implies, and the newest node of each level against its
 * children) and then a full check of every node against its children, in bounded slices. Whatever
 * disagrees is logged and the nodes are rebuilt from the stored leaf hashes; roots, proofs and
 * signing wait until the check is done.
 */
export class AuditLog {
  readonly #o: AuditLogOptions;
  readonly #name: string;
  #timer: TimerHandle | undefined;
  #running = false;
  #stopped = false;
  /** The tree check, catch-up and signing run one at a time. */
  #queue: Promise<unknown> = Promise.resolve();

  /** Called after each new checkpoint is stored (the relay links offer it to the peer relays to cosign). */
  onCheckpoint: (checkpoint: StoredCheckpoint) => void = () => {};

  constructor(options: AuditLogOptions) {
    this.#o = options;
    this.#name = logKeyName(options.agreement);
  }

  /** Whether this server signs checkpoints (a log key is configured). */
  get signing(): boolean {
    return this.#o.logSecret !== undefined;
  }

  /**
   * Check the stored tree (rebuilding it if it disagrees with the entries), compare it with the
   * newest stored checkpoint, sign one and start the timer. A large log is checked in full in the
   * background: start() returns after the quick check, and the rest follows.
   */
  async start(): Promise<void> {
    this.#stopped = false;
    await this.#exclusive(() => this.#quickCheck());
    const size = await this.#o.store.auditSize();
    const rest = this.#exclusive(() => this.#fullCheck(size)).then(() => this.#afterCheck());
    if (size <= (this.#o.inlineCheckMax ?? DEFAULT_INLINE_CHECK_MAX)) return rest;
    void rest.catch((err: unknown) => this.#o.log.error({ err: { message: (err as Error).message } }, 'audit tree check failed'));
  }

  async #afterCheck(): Promise<void> {
    const tree = await this.tree();
    const latest = await this.#o.store.getCheckpoint();
    if (latest && (latest.size > tree.size || !bytesEqual(await tree.root(latest.size), fromHex(latest.rootHash)))) {
      // The stored log no longer matches what the log key signed: say so loudly. The server keeps
      // relaying (availability), and the cosigners refuse any checkpoint that rewrites history.
      this.#o.log.error({ checkpointSize: latest.size, logSize: tree.size }, 'the stored audit log does not match the latest signed checkpoint');
    }
    if (!this.signing) {
      this.#o.log.warn('no log key configured (HOTLINE_LOG_KEY): the audit log is kept but no checkpoint is signed');
      return;
    }
    if (this.#stopped) return;
    this.#running = true;
    await this.signCheckpoint().catch((err: unknown) => this.#o.log.error({ err: { message: (err as Error).message } }, 'checkpoint signing failed'));
    this.#schedule();
  }

  async #quickCheck(): Promise<void> {
    const problem = await this.#o.store.checkAuditTree();
    if (problem) await this.#rebuild(problem);
  }

  /** Every node of the tree of `size` entries against its children, a slice at a time. */
  async #fullCheck(size: number): Promise<void> {
    for (let level = 1; 2 ** level <= size; level++) {
      const count = Math.floor(size / 2 ** level);
      for (let from = 0; from < count; from += CHECK_SLICE) {
        if (this.#stopped) return;
        const problem = await this.#o.store.checkAuditNodes(level, from, Math.min(count, from + CHECK_SLICE));
        if (problem) return this.#rebuild(problem);
        // Let the relay run between slices: a million-entry log takes seconds to check.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
  }

  async #rebuild(problem: string): Promise<void> {
    this.#o.log.warn({ problem }, 'the stored audit tree does not match the stored entries: rebuilding it from the entries');
    try {
      const size = await this.#o.store.rebuildAuditTree();
      this.#o.log.warn({ size }, 'audit tree rebuilt');
    } catch (err) {
      this.#o.log.error({ err: { message: (err as Error).message } }, 'the audit tree cannot be rebuilt: its stored nodes are kept');
    }
  }

  stop(): void {
    this.#stopped = true;
    this.#running = false;
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    if (!this.#running) return;
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = undefined;
      void this.signCheckpoint({ periodic: true })
        .then(({ created }) => this.#o.log.debug({ created }, 'periodic checkpoint'))
        .catch((err: unknown) => this.#o.log.error({ err: { message: (err as Error).message } }, 'checkpoint signing failed'))
        .finally(() => this.#schedule());
    }, this.#o.intervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS);
  }

  /** The tree of every entry stored now (after the start-up check). */
  async tree(): Promise<AuditTree> {
    return this.#exclusive(async () => this.#view(await this.#o.store.auditSize()));
  }

  #view(size: number): AuditTree {
    const read = async <T>(op: (tree: NodeTree) => T): Promise<T> => {
      const refs = nodesRead((get) => op(new NodeTree(size, get)));
      const hashes = await this.#o.store.auditNodes(refs);
      const byRef = new Map(refs.map((r, i) => [`${r.level}/${r.index}`, hashes[i]!]));
      return op(new NodeTree(size, (level, index) => byRef.get(`${level}/${index}`)!));
    };
    return {
      size,
      root: (s) => read((t) => t.root(s)),
      leafHash: (index) => read((t) => t.leafHash(index)),
      inclusionProof: (index, s) => read((t) => t.inclusionProof(index, s)),
      consistencyProof: (s1, s2) => read((t) => t.consistencyProof(s1, s2)),
    };
  }

  /**
   * Sign a checkpoint of the current tree unless the newest one already has this size. Returns the
   * newest checkpoint and whether it was made now.
   */
  async signCheckpoint(options: { periodic?: boolean } = {}): Promise<{ checkpoint: StoredCheckpoint | undefined; created: boolean }> {
    const secret = this.#o.logSecret;
    if (!secret) throw new HotlineError('HL_ERR_NOT_FOUND', 'this server has no log key configured: it signs no checkpoints');
    const cluster = this.#o.cluster;
    return this.#exclusive(() => (cluster ? cluster.exclusive('checkpoint', () => this.#sign(secret, options.periodic === true)) : this.#sign(secret, false)));
  }

  async #sign(secret: Uint8Array, oncePerInterval: boolean): Promise<{ checkpoint: StoredCheckpoint | undefined; created: boolean }> {
    const tree = this.#view(await this.#o.store.auditSize());
    const latest = await this.#o.store.getCheckpoint();
    const size = tree.size;
    if (size === 0 || (latest && latest.size >= size)) return { checkpoint: latest, created: false };
    if (oncePerInterval && latest) {
      // Another node signed this interval's checkpoint already (its timer ran first).
      const interval = this.#o.intervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
      if (Math.floor(latest.createdAt / interval) === Math.floor(this.#o.clock.now() / interval)) return { checkpoint: latest, created: false };
    }
    const rootHash = await tree.root(size);
    const note = await signNote(formatCheckpointBody({ origin: this.#name, size, rootHash }), { name: this.#name, secretKey: secret });
    const checkpoint: StoredCheckpoint = { size, rootHash: toHex(rootHash), note, createdAt: this.#o.clock.now() };
    await this.#o.store.putCheckpoint(checkpoint);
    this.#o.log.info({ size }, 'checkpoint signed');
    this.onCheckpoint(checkpoint);
    return { checkpoint, created: true };
  }

  /** The checkpoint's note with every stored cosignature added as a signature line. */
  async withCosignatures(checkpoint: StoredCheckpoint, cosignatures?: readonly StoredCosignature[]): Promise<string> {
    const list = cosignatures ?? (await this.#o.store.listCosignatures(checkpoint.size));
    if (list.length === 0) return checkpoint.note;
    let note;
    try {
      note = parseNote(checkpoint.note);
    } catch {
      // A damaged row is served as it is: the auditor's verification names it.
      return checkpoint.note;
    }
    const extra: NoteSignature[] = list.map((c) => {
      const raw = fromBase64(c.signature);
      return { name: c.cosigner, keyId: new DataView(raw.buffer, raw.byteOffset, 4).getUint32(0), signature: raw.slice(4) };
    });
    return formatNote({ text: note.text, signatures: [...note.signatures, ...extra] });
  }

  /**
   * Every checkpoint, in size order, with its cosignatures; with `after`, only those larger than
   * that size (a cosigner asks for what is new since the checkpoint it last cosigned, so a round
   * costs what was added since, not the whole history).
   */
  async checkpointNotes(after?: number): Promise<{ size: number; note: string }[]> {
    const checkpoints = await this.#o.store.listCheckpoints(after);
    const out: { size: number; note: string }[] = [];
    if (after !== undefined) {
      for (const cp of checkpoints) out.push({ size: cp.size, note: await this.withCosignatures(cp, await this.#o.store.listCosignatures(cp.size)) });
      return out;
    }
    const bySize = new Map<number, StoredCosignature[]>();
    for (const c of await this.#o.store.listCosignatures()) bySize.set(c.size, [...(bySize.get(c.size) ?? []), c]);
    for (const cp of checkpoints) out.push({ size: cp.size, note: await this.withCosignatures(cp, bySize.get(cp.size) ?? []) });
    return out;
  }

  /**
   * Check and store a device's cosignature: `noteText` must be the stored checkpoint of `size` with
   * a cosignature/v1 line by `cert` (name `party/device`, its signKey) that verifies.
   */
  async addCosignature(cert: Pick<DeviceCertBody, 'party' | 'device' | 'signKey'>, size: number, noteText: string): Promise<StoredCosignature> {
    const checkpoint = await this.#o.store.getCheckpoint(size);
    if (!checkpoint) throw new HotlineError('HL_ERR_AUDIT_RANGE', `there is no checkpoint of size ${size}`);
    const name = cosignerName(cert);
    // Attacker-controlled: parse and verify before anything is stored.
    const posted = parseNote(noteText);
    if (posted.text !== parseNote(checkpoint.note).text) {
      throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_MALFORMED', `the cosigned note is not the checkpoint of size ${size} this log signed`);
    }
    const verified = await verifyNote(noteText, [{ name, publicKey: fromBase64(cert.signKey, 32), type: 'cosignature/v1' }]).catch((err: unknown) => {
      throw err instanceof HotlineError && err.code === 'HL_ERR_AUDIT_CHECKPOINT_SIGNATURE' && err.detail?.['reason'] === 'no-known-signature'
        ? new HotlineError('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE', `the note carries no cosignature by ${name}`)
        : err;
    });
    const sig = verified.verified[0]!;
    const line = posted.signatures.find((s) => s.name === name && s.keyId === sig.keyId)!;
    const raw = new Uint8Array(4 + line.signature.length);
    new DataView(raw.buffer).setUint32(0, line.keyId >>> 0);
    raw.set(line.signature, 4);
    const stored: StoredCosignature = { size, cosigner: name, signature: toBase64(raw), at: this.#o.clock.now() };
    await this.#o.store.putCosignature(stored);
    return stored;
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}
