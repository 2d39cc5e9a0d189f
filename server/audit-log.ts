import type { FastifyBaseLogger } from 'fastify';
import { HotlineError } from '../shared/errors.js';
import { bytesEqual, fromBase64, fromHex, toBase64, toHex } from '../shared/encoding/base64.js';
import { MerkleLog } from '../shared/audit/merkle.js';
import { formatCheckpointBody, formatNote, parseNote, signNote, verifyNote, type NoteSignature } from '../shared/audit/checkpoint.js';
import { cosignerName, logKeyName } from '../shared/audit/log-verify.js';
import type { Agreement, DeviceCertBody } from '../shared/protocol/schemas.js';
import type { Clock, TimerHandle } from './clock.js';
import type { Store, StoredCheckpoint, StoredCosignature } from './store/store.js';

export const DEFAULT_CHECKPOINT_INTERVAL_MS = 60_000;

export interface AuditLogOptions {
  agreement: Agreement;
  store: Store;
  clock: Clock;
  log: FastifyBaseLogger;
  /** The log's Ed25519 seed (its public key is `agreement.logKey`); without it no checkpoint is signed. */
  logSecret?: Uint8Array;
  /** How often a checkpoint is signed when the log has grown. Default 60 s. */
  intervalMs?: number;
}

/**
 * The server side of the tamper-evident log (DESIGN.md "Audit log"): the RFC 9162 tree of every
 * stored entry, kept in memory and rebuilt from the stored leaf hashes at start; checkpoints signed
 * with the log key on an interval (on the injected clock) and on demand; the parties' cosignatures
 * checked and stored beside them. Entries themselves are appended by the store, in the transaction
 * of the state change they record; the tree catches up with the store before each use.
 */
export class AuditLog {
  readonly #o: AuditLogOptions;
  readonly #name: string;
  readonly #tree = new MerkleLog();
  #timer: TimerHandle | undefined;
  #running = false;
  /** Catch-up and signing run one at a time. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: AuditLogOptions) {
    this.#o = options;
    this.#name = logKeyName(options.agreement);
  }

  /** Whether this server signs checkpoints (a log key is configured). */
  get signing(): boolean {
    return this.#o.logSecret !== undefined;
  }

  /** Rebuild the tree, check it against the newest stored checkpoint, sign one and start the timer. */
  async start(): Promise<void> {
    await this.#exclusive(() => this.#catchUp());
    const latest = await this.#o.store.getCheckpoint();
    if (latest && (latest.size > this.#tree.size || !bytesEqual(this.#tree.root(latest.size), fromHex(latest.rootHash)))) {
      // The stored log no longer matches what the log key signed: say so loudly. The server keeps
      // relaying (availability), and the cosigners refuse any checkpoint that rewrites history.
      this.#o.log.error({ checkpointSize: latest.size, logSize: this.#tree.size }, 'the stored audit log does not match the latest signed checkpoint');
    }
    if (!this.signing) {
      this.#o.log.warn('no log key configured (HOTLINE_LOG_KEY): the audit log is kept but no checkpoint is signed');
      return;
    }
    this.#running = true;
    await this.signCheckpoint().catch((err: unknown) => this.#o.log.error({ err: { message: (err as Error).message } }, 'checkpoint signing failed'));
    this.#schedule();
  }

  stop(): void {
    this.#running = false;
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    if (!this.#running) return;
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = undefined;
      void this.signCheckpoint()
        .catch((err: unknown) => this.#o.log.error({ err: { message: (err as Error).message } }, 'checkpoint signing failed'))
        .finally(() => this.#schedule());
    }, this.#o.intervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS);
  }

  /** The tree, caught up with every stored entry. */
  async tree(): Promise<MerkleLog> {
    await this.#exclusive(() => this.#catchUp());
    return this.#tree;
  }

  /**
   * Sign a checkpoint of the current tree unless the newest one already has this size. Returns the
   * newest checkpoint and whether it was made now.
   */
  async signCheckpoint(): Promise<{ checkpoint: StoredCheckpoint | undefined; created: boolean }> {
    const secret = this.#o.logSecret;
    if (!secret) throw new HotlineError('HL_ERR_NOT_FOUND', 'this server has no log key configured: it signs no checkpoints');
    return this.#exclusive(async () => {
      await this.#catchUp();
      const latest = await this.#o.store.getCheckpoint();
      const size = this.#tree.size;
      if (size === 0 || (latest && latest.size >= size)) return { checkpoint: latest, created: false };
      const rootHash = this.#tree.root(size);
      const note = await signNote(formatCheckpointBody({ origin: this.#name, size, rootHash }), { name: this.#name, secretKey: secret });
      const checkpoint: StoredCheckpoint = { size, rootHash: toHex(rootHash), note, createdAt: this.#o.clock.now() };
      await this.#o.store.putCheckpoint(checkpoint);
      this.#o.log.info({ size }, 'checkpoint signed');
      return { checkpoint, created: true };
    });
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

  /** Every checkpoint, in size order, with its cosignatures. */
  async checkpointNotes(): Promise<{ size: number; note: string }[]> {
    const [checkpoints, cosignatures] = [await this.#o.store.listCheckpoints(), await this.#o.store.listCosignatures()];
    const bySize = new Map<number, StoredCosignature[]>();
    for (const c of cosignatures) bySize.set(c.size, [...(bySize.get(c.size) ?? []), c]);
    const out: { size: number; note: string }[] = [];
    for (const cp of checkpoints) out.push({ size: cp.size, note: await this.withCosignatures(cp, bySize.get(cp.size) ?? []) });
    return out;
  }

  /**
   * Check and store a device's cosignature: `noteText` must be the stored checkpoint of `size` with
   * a cosignature/v1 line by `cert` (name `party/device`, its signKey) that verifies.
   */
  async addCosignature(cert: DeviceCertBody, size: number, noteText: string): Promise<StoredCosignature> {
    const checkpoint = await this.#o.store.getCheckpoint(size);
    if (!checkpoint) throw new HotlineError('HL_ERR_AUDIT_RANGE', `there is no checkpoint of size ${size}`);
    const name = cosignerName(cert);
    // Attacker-controlled: parse and verify before anything is stored.
    const posted = parseNote(noteText);
    if (posted.text !== parseNote(checkpoint.note).text) {
      throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_MALFORMED', `the cosigned note is not the checkpoint of size ${size} this log signed`);
    }
    const verified = await verifyNote(noteText, [{ name, publicKey: fromBase64(cert.signKey, 32), type: 'cosignature/v1' }]).catch((err: unknown) => {
      throw err instanceof HotlineError && err.code === 'HL_ERR_AUDIT_CHECKPOINT_SIGNATURE' && err.message.includes('no signature by a known key')
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

  async #catchUp(): Promise<void> {
    for (const h of await this.#o.store.auditLeafHashes(this.#tree.size)) this.#tree.append(h);
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}
