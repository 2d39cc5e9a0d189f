import { HotlineError, type HotlineErrorCode } from '../shared/errors.js';
import { fromBase64, fromHex, fromUtf8, toBase64 } from '../shared/encoding/base64.js';
import type { DeviceRef } from '../shared/protocol/schemas.js';
import { cosignCheckpoint, parseCheckpoint, verifyCheckpoint, type NoteVerifier } from '../shared/audit/checkpoint.js';
import { verifyConsistency } from '../shared/audit/merkle.js';
import { cosignerName, logKeyName } from '../shared/audit/log-verify.js';
import { logKeyOf } from '../shared/crypto/keys.js';
import type { AuditAlarm } from './events.js';
import type { RelayApi } from './relay-api.js';
import type { VerifiedDirectory } from './directory.js';
import { toHotlineError, type DeviceScope } from './scope.js';
import type { TimerHandle } from '../shared/clock.js';

/**
 * How a link test carries the newest checkpoint its sender verified (checkpoint gossip): an
 * attachment with this name and type whose data is base64(UTF-8 of the signed note). The server
 * cannot read or alter it, so each party sees the tree head the log showed the other.
 */
export const CHECKPOINT_ATTACHMENT = { name: 'checkpoint', type: 'application/vnd.hotline.checkpoint' } as const;

/** The outcome of one {@link HotlineClient.cosignLatest}. */
export type CosignResult =
  | { status: 'cosigned'; size: number; from?: number }
  | { status: 'unchanged'; size: number }
  /** The server has signed no checkpoint yet (or has no log key). */
  | { status: 'none' };

export interface AuditWitnessOptions extends Pick<DeviceScope, 'agreement' | 'me' | 'key' | 'device' | 'storage' | 'clock' | 'emit' | 'report' | 'running'> {
  /** Cosign on a timer once connected (see HotlineClientOptions.cosign). */
  cosign?: boolean | undefined;
  /** Default 60 s. */
  cosignIntervalMs?: number | undefined;
  api: Pick<RelayApi, 'checkAgreement' | 'ensureToken' | 'http'>;
  directory: Pick<VerifiedDirectory, 'loaded' | 'refresh' | 'list'>;
}

/**
 * This device as a witness of the audit log (docs/design.md "Audit log"): it verifies and cosigns the
 * log's checkpoints, remembers every root it has seen per size, checks the checkpoints peers gossip
 * in their link tests against them, and raises an alarm at any disagreement. Its rounds and gossip
 * checks run one at a time, in one queue.
 */
export class AuditWitness {
  readonly #o: AuditWitnessOptions;
  #cosignTimer: TimerHandle | undefined;
  #cosignerRunning = false;
  #cosignQueue: Promise<unknown> = Promise.resolve();
  #firstCosign: Promise<unknown> = Promise.resolve();

  constructor(options: AuditWitnessOptions) {
    this.#o = options;
  }

  /** This connection's first cosign round (settled at once when this device does not cosign). */
  get firstRound(): Promise<unknown> {
    return this.#firstCosign;
  }

  /** Settles when the rounds and gossip checks queued so far are done. */
  settled(): Promise<unknown> {
    return this.#cosignQueue;
  }

  /**
   * Check a checkpoint that `from` gossiped in its link test. Queued with the cosigning rounds, so
   * that it and a round never interleave their reads and writes of the remembered roots; an alarm
   * is raised inside, other failures are reported.
   */
  queueGossip(from: DeviceRef, data: string): void {
    const run = this.#cosignQueue.then(() => this.#checkGossip(from, data));
    this.#cosignQueue = run.catch((err: unknown) => {
      const e = toHotlineError(err);
      if (!e.code.startsWith('HL_ERR_AUDIT_')) this.#o.report(e);
    });
  }

  /** Once per connection: a round now, then one every interval while running (cosigning devices only). */
  start(): void {
    if (!this.#o.cosign || this.#cosignerRunning || (this.#o.me.role !== 'operator' && this.#o.me.role !== 'auditor')) return;
    this.#cosignerRunning = true;
    let first = true;
    const round = () => {
      if (!this.#o.running() || !this.#cosignerRunning) return;
      const done = this.cosignLatest();
      if (first) {
        first = false;
        this.#firstCosign = done;
      }
      done.then(
        () => {
          if (this.#o.running() && this.#cosignerRunning) this.#cosignTimer = this.#o.clock.setTimeout(round, this.#o.cosignIntervalMs ?? 60_000);
        },
        (err: unknown) => {
          const e = toHotlineError(err);
          // An alarm stops the automatic rounds: it is raised and reported, never retried
          // silently. Anything else (the link is down) is tried again next round.
          if (e.code.startsWith('HL_ERR_AUDIT_')) {
            this.#cosignerRunning = false;
            return;
          }
          this.#o.report(e);
          if (this.#o.running()) this.#cosignTimer = this.#o.clock.setTimeout(round, this.#o.cosignIntervalMs ?? 60_000);
        },
      );
    };
    round();
  }

  /** One cosigning round, after any round or gossip check still running: see HotlineClient.cosignLatest. */
  cosignLatest(): Promise<CosignResult> {
    const run = this.#cosignQueue.then(() => this.#cosignLatest());
    this.#cosignQueue = run.catch(() => undefined);
    return run;
  }

  async #cosignLatest(): Promise<CosignResult> {
    if (this.#o.me.role !== 'operator' && this.#o.me.role !== 'auditor') {
      throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `${this.#o.key} is an ${this.#o.me.role} device; only operator and auditor devices cosign`);
    }
    await this.#o.api.checkAgreement();
    await this.#o.api.ensureToken();
    if (!this.#o.directory.loaded) await this.#o.directory.refresh();
    let latest: { size?: unknown; note?: unknown };
    try {
      latest = (await this.#o.api.http('GET', '/v1/audit/checkpoint/latest', undefined, true)) as typeof latest;
    } catch (err) {
      if (err instanceof HotlineError && err.code === 'HL_ERR_NOT_FOUND') return { status: 'none' };
      throw err;
    }
    // Only what is new since the checkpoint this device last cosigned: the older ones were checked
    // (and their roots remembered) in earlier rounds, and the consistency proof below covers them.
    const lastCosigned = (await this.#o.storage.read(this.#o.key)).audit?.cosigned;
    const listed = (await this.#o.api.http('GET', `/v1/audit/checkpoints${lastCosigned ? `?after=${lastCosigned.size}` : ''}`, undefined, true)) as { checkpoints?: unknown };
    if (typeof latest.note !== 'string' || !Array.isArray(listed.checkpoints)) {
      throw new HotlineError('HL_ERR_INPUT_SCHEMA', 'the server sent a malformed checkpoint answer');
    }
    const check = async (note: string, what: string) => {
      try {
        return await this.#verifyLogCheckpoint(note);
      } catch (err) {
        const e = toHotlineError(err);
        throw await this.#alarm(e.code, `${what} does not verify: ${e.message}`);
      }
    };
    const cp = await check(latest.note, 'the latest checkpoint');
    const root = toBase64(cp.rootHash);
    const seen = new Map<number, string>(Object.entries((await this.#o.storage.read(this.#o.key)).audit?.seen ?? {}).map(([k, v]) => [Number(k), v]));
    const observe = async (size: number, r: string, what: string) => {
      const before = seen.get(size);
      if (before !== undefined && before !== r) {
        throw await this.#alarm('HL_ERR_AUDIT_EQUIVOCATION', `the server showed two different checkpoints of size ${size} (roots ${before.slice(0, 12)}… and ${r.slice(0, 12)}…; ${what}): it is presenting different histories`);
      }
      seen.set(size, r);
    };
    await observe(cp.size, root, 'the latest checkpoint');
    for (const item of listed.checkpoints as { note?: unknown }[]) {
      if (typeof item?.note !== 'string') continue;
      const c = await check(item.note, 'a listed checkpoint');
      await observe(c.size, toBase64(c.rootHash), 'in the list of checkpoints, cosigned by others');
    }

    const last = (await this.#o.storage.read(this.#o.key)).audit?.cosigned;
    const remember = (verified: { size: number; note: string }, cosigned?: { size: number; root: string; at: number }) => this.#rememberSeen(seen, verified, cosigned);
    if (last && cp.size < last.size) {
      throw await this.#alarm('HL_ERR_AUDIT_PROOF_INVALID', `the latest checkpoint (size ${cp.size}) is older than the one this device cosigned (size ${last.size}): the log was rolled back`);
    }
    if (last && cp.size === last.size) {
      await remember({ size: cp.size, note: latest.note });
      return { status: 'unchanged', size: cp.size };
    }
    if (last) {
      const res = (await this.#o.api.http('GET', `/v1/audit/proof/consistency?from=${last.size}&to=${cp.size}`, undefined, true)) as { proof?: unknown };
      try {
        if (!Array.isArray(res.proof) || !res.proof.every((p) => typeof p === 'string')) throw new HotlineError('HL_ERR_AUDIT_PROOF_INVALID', 'malformed proof');
        verifyConsistency(last.size, cp.size, (res.proof as string[]).map((p) => fromHex(p, 32)), fromBase64(last.root, 32), cp.rootHash);
      } catch (err) {
        throw await this.#alarm(
          'HL_ERR_AUDIT_PROOF_INVALID',
          `the consistency proof from checkpoint ${last.size} (cosigned here) to ${cp.size} does not verify: the log was rewritten (${toHotlineError(err).message})`,
        );
      }
    }
    const now = this.#o.clock.now();
    const cosigned = await cosignCheckpoint(latest.note, { name: cosignerName(this.#o.me), secretKey: fromBase64(this.#o.device.signSecret, 32) }, Math.floor(now / 1000));
    await this.#o.api.http('POST', '/v1/audit/cosignatures', { size: cp.size, note: cosigned }, true);
    await remember({ size: cp.size, note: cosigned }, { size: cp.size, root, at: now });
    this.#o.emit('cosigned', { size: cp.size, ...(last ? { from: last.size } : {}), at: now });
    return last ? { status: 'cosigned', size: cp.size, from: last.size } : { status: 'cosigned', size: cp.size };
  }

  /**
   * Verify a checkpoint note here: the log key's signature, the origin, and every cosignature by a
   * known operator or auditor device. Throws an `HL_ERR_AUDIT_*` error (no alarm: callers raise it).
   */
  async #verifyLogCheckpoint(note: string): Promise<{ size: number; rootHash: Uint8Array }> {
    try {
      const v = await verifyCheckpoint(note, this.#checkpointVerifiers());
      if (!v.verified.some((x) => x.name === logKeyName(this.#o.agreement) && x.type === 'ed25519')) {
        throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE', 'it is not signed by the agreement’s log key');
      }
      if (v.checkpoint.origin !== logKeyName(this.#o.agreement)) throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_MALFORMED', `it is for another log (${v.checkpoint.origin})`);
      return v.checkpoint;
    } catch (err) {
      const e = toHotlineError(err);
      throw e.code.startsWith('HL_ERR_AUDIT_') ? e : new HotlineError('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE', e.message, { cause: e });
    }
  }

  /**
   * Merge size → root pairs into this device's audit memory (the newest 256 sizes are kept), and
   * remember `verified` as the note to gossip if it is the newest verified so far.
   */
  async #rememberSeen(seen: ReadonlyMap<number, string>, verified?: { size: number; note: string }, cosigned?: { size: number; root: string; at: number }): Promise<void> {
    await this.#o.storage.update(this.#o.key, (s) => {
      const all = new Map<number, string>(Object.entries(s.audit?.seen ?? {}).map(([k, v]) => [Number(k), v]));
      for (const [k, v] of seen) all.set(k, v);
      const kept = [...all.entries()].sort((a, b) => a[0] - b[0]).slice(-256);
      s.audit = { ...(s.audit ?? { seen: {} }), seen: Object.fromEntries(kept.map(([k, v]) => [String(k), v])) };
      if (cosigned) s.audit.cosigned = cosigned;
      if (verified && (s.audit.note === undefined || parseCheckpointSize(s.audit.note) <= verified.size)) s.audit.note = verified.note;
    });
  }

  /**
   * Checkpoint gossip: a peer's link test carried the newest checkpoint its device verified. The
   * server cannot alter it, so a second root for a size this device knows means the log showed the
   * two parties different histories (a split view no cosigner can see from its own side alone).
   * A note that does not verify is an alarm too (the peer or the server lies about checkpoints).
   * A note that agrees is remembered, so that the server's later answers are held to it.
   */
  async #checkGossip(from: DeviceRef, data: string): Promise<void> {
    // With two relays the peer gossips its own relay's log, not ours: nothing here to compare it
    // with (the relays witness each other's logs instead, README "Two relays").
    if (logKeyOf(this.#o.agreement, from.party) !== logKeyOf(this.#o.agreement, this.#o.me.party)) return;
    const peer = `${from.party}/${from.device}`;
    let note: string;
    let cp: { size: number; rootHash: Uint8Array };
    try {
      try {
        // Attacker-controlled (the peer's device): decoded and parsed strictly.
        note = fromUtf8(fromBase64(data));
      } catch (cause) {
        throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_MALFORMED', 'the attachment is not base64 of UTF-8 text', { cause });
      }
      cp = await this.#verifyLogCheckpoint(note);
    } catch (err) {
      // Our own view may still be sound: cosigning goes on (else any peer could stop it).
      const e = toHotlineError(err);
      throw await this.#alarm(e.code, `the checkpoint ${peer} gossiped in its link test does not verify (${e.message}): ${from.party} or the log server is lying about checkpoints`);
    }
    const root = toBase64(cp.rootHash);
    const before = (await this.#o.storage.read(this.#o.key)).audit?.seen[String(cp.size)];
    if (before !== undefined && before !== root) {
      this.stop();
      throw await this.#alarm(
        'HL_ERR_AUDIT_EQUIVOCATION',
        `the log server showed ${from.party} a different tree head for size ${cp.size} than it showed us: equivocation (root ${root.slice(0, 12)}… gossiped by ${peer}, ${before.slice(0, 12)}… seen here)`,
      );
    }
    await this.#rememberSeen(new Map([[cp.size, root]]));
    this.#o.emit('checkpoint-gossip', { from, size: cp.size, root, known: before !== undefined, at: this.#o.clock.now() });
  }

  /**
   * No automatic cosigning until the next connection: at stop, and after an equivocation alarm (as
   * after a failed round).
   */
  stop(): void {
    if (this.#cosignTimer !== undefined) this.#o.clock.clearTimeout(this.#cosignTimer);
    this.#cosignerRunning = false;
  }

  /** The log key, and the cosignature keys of every operator and auditor device in the directory. */
  #checkpointVerifiers(): NoteVerifier[] {
    // The log of the relay serving this device's party (its own relay's, with two relays).
    const out: NoteVerifier[] = [{ name: logKeyName(this.#o.agreement), publicKey: fromBase64(logKeyOf(this.#o.agreement, this.#o.me.party), 32) }];
    for (const c of this.#o.directory.list()) {
      if (c.role === 'operator' || c.role === 'auditor') out.push({ name: cosignerName(c), publicKey: fromBase64(c.signKey, 32), type: 'cosignature/v1' });
    }
    return out;
  }

  /** Raise an audit alarm here, report it to the server (best effort), and return it as an error. */
  async #alarm(code: HotlineErrorCode, reason: string): Promise<HotlineError> {
    const event: AuditAlarm = { type: 'audit.alarm', party: this.#o.me.party, reason: reason.slice(0, 500), at: this.#o.clock.now(), code };
    const { code: _code, ...frameEvent } = event;
    this.#o.emit('event', frameEvent);
    this.#o.emit('audit.alarm', event);
    try {
      await this.#o.api.http('POST', '/v1/audit/alarms', { code, reason: reason.slice(0, 400) }, true);
    } catch (err) {
      this.#o.report(toHotlineError(err));
    }
    return new HotlineError(code, reason);
  }
}

/** The size of a checkpoint note this device stored after verifying it (0 if it cannot be read). */
function parseCheckpointSize(note: string): number {
  try {
    return parseCheckpoint(note).size;
  } catch {
    return 0;
  }
}
