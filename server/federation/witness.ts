import type { FastifyBaseLogger } from 'fastify';
import { HotlineError, isHotlineError, type HotlineErrorCode } from '../../shared/errors.js';
import { fromBase64, fromHex, toBase64 } from '../../shared/encoding/base64.js';
import { cosignCheckpoint, verifyCheckpoint } from '../../shared/audit/checkpoint.js';
import { verifyConsistency } from '../../shared/audit/merkle.js';
import { cosignerName, logKeyName } from '../../shared/audit/log-verify.js';
import { logKeyOf } from '../../shared/crypto/keys.js';
import type { Agreement, RelaySecretFile } from '../../shared/protocol/schemas.js';
import type { Clock } from '../clock.js';
import type { Store } from '../store/store.js';

/**
 * This relay as a witness of the peer relay's log (PROTOCOL.md "Witnessing the peer relay's log"):
 * it checks each checkpoint the peer sends over the relay-to-relay link (the peer's log key, a
 * consistency proof from the last checkpoint it cosigned, no second root for a size it has seen),
 * and cosigns it (C2SP tlog-cosignature, the same cosignature/v1 line the parties' devices add)
 * with its link signing key. A fork is refused, kept as evidence and raised as an alarm.
 *
 * State (store meta, per peer): the last cosigned size and root, and the roots seen per size (the
 * newest 256), so that "two roots for one size" is caught across restarts.
 */

/** Sizes whose roots are remembered per peer log. */
const SEEN_KEPT = 256;
/** Fork evidence records kept per peer (the newest). */
const EVIDENCE_KEPT = 32;

export interface WitnessState {
  /** Size of the peer checkpoint last cosigned (0: none). */
  size: number;
  /** Its root, base64. */
  root?: string;
  /** Root (base64) by size of every peer checkpoint seen. */
  seen: Record<string, string>;
}

/** What is kept when the peer's log forked: enough for anyone to check the claim offline. */
export interface ForkEvidence {
  at: number;
  peer: string;
  code: HotlineErrorCode;
  reason: string;
  /** The checkpoint refused, as the peer sent it (signed by its log key). */
  note: string;
  from: number;
  proof: string[];
  /** The last checkpoint this relay had cosigned, and the root it had seen for the refused size. */
  cosigned: { size: number; root?: string };
  seenRoot?: string;
}

export type WitnessAnswer = { kind: 'cosigned'; size: number; note: string } | { kind: 'need-proof'; size: number };

export interface PeerLogWitnessOptions {
  agreement: Agreement;
  identity: RelaySecretFile;
  peer: string;
  store: Pick<Store, 'getMeta' | 'setMeta'>;
  clock: Clock;
  log: FastifyBaseLogger;
  /** Raise the alarm to this relay's operators and auditors (an `audit.alarm` event and log entry). */
  alarm(reason: string): Promise<void>;
}

export function witnessStateKey(peer: string): string {
  return `witness/${peer}`;
}

export function witnessEvidenceKey(peer: string): string {
  return `witness/${peer}/forks`;
}

/** The certificates of a peer relay that cosigned this relay's checkpoints (exported with the log). */
export function witnessCertsKey(peer: string): string {
  return `witness/${peer}/certificates`;
}

/** The note key name a relay cosigns with: `party/relay`. */
export function relayCosignerName(cert: { party: string; relay: string }): string {
  return cosignerName({ party: cert.party, device: cert.relay });
}

export class PeerLogWitness {
  readonly #o: PeerLogWitnessOptions;
  /** Checks run one at a time (two connections to one peer must not interleave state updates). */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(o: PeerLogWitnessOptions) {
    this.#o = o;
  }

  async state(): Promise<WitnessState> {
    const text = await this.#o.store.getMeta(witnessStateKey(this.#o.peer));
    if (text === undefined) return { size: 0, seen: {} };
    return JSON.parse(text) as WitnessState;
  }

  async evidence(): Promise<ForkEvidence[]> {
    const text = await this.#o.store.getMeta(witnessEvidenceKey(this.#o.peer));
    return text === undefined ? [] : (JSON.parse(text) as ForkEvidence[]);
  }

  /**
   * Check and cosign the peer's checkpoint `note` of `size`, given a consistency proof from
   * `from`. Answers `need-proof` (not an error) when `from` is not the size last cosigned here;
   * throws an `HL_ERR_AUDIT_*` error when the checkpoint is refused (a fork raises the alarm).
   */
  check(frame: { size: number; note: string; from: number; proof: readonly string[] }): Promise<WitnessAnswer> {
    const run = this.#queue.then(() => this.#check(frame));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #check(frame: { size: number; note: string; from: number; proof: readonly string[] }): Promise<WitnessAnswer> {
    const o = this.#o;
    const name = logKeyName(o.agreement);
    let cp: { size: number; rootHash: Uint8Array };
    try {
      const v = await verifyCheckpoint(frame.note, [{ name, publicKey: fromBase64(logKeyOf(o.agreement, o.peer), 32) }]);
      if (v.checkpoint.origin !== name) throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_MALFORMED', `it is for another log (${v.checkpoint.origin})`);
      cp = v.checkpoint;
    } catch (err) {
      const e = isHotlineError(err) ? err : new HotlineError('HL_ERR_AUDIT_CHECKPOINT_MALFORMED', 'unreadable checkpoint');
      const code = e.code.startsWith('HL_ERR_AUDIT_') ? e.code : 'HL_ERR_AUDIT_CHECKPOINT_SIGNATURE';
      o.log.error({ peer: o.peer, code }, 'the peer relay sent a checkpoint that does not verify against its log key');
      throw new HotlineError(code, `the checkpoint does not verify against the log key of ${o.peer}: ${e.message}`);
    }
    if (cp.size !== frame.size) throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_MALFORMED', `the frame says size ${frame.size}, the signed checkpoint ${cp.size}`);
    const root = toBase64(cp.rootHash);
    const state = await this.state();
    const seenRoot = state.seen[String(cp.size)];
    const fork = async (code: HotlineErrorCode, reason: string): Promise<HotlineError> => {
      const ev: ForkEvidence = {
        at: o.clock.now(),
        peer: o.peer,
        code,
        reason,
        note: frame.note,
        from: frame.from,
        proof: [...frame.proof],
        cosigned: { size: state.size, ...(state.root === undefined ? {} : { root: state.root }) },
        ...(seenRoot === undefined ? {} : { seenRoot }),
      };
      const kept = [...(await this.evidence()), ev].slice(-EVIDENCE_KEPT);
      await o.store.setMeta(witnessEvidenceKey(o.peer), JSON.stringify(kept));
      o.log.error({ peer: o.peer, code, size: cp.size, cosignedSize: state.size }, 'the peer relay’s audit log forked: checkpoint refused, evidence kept');
      await o.alarm(reason);
      return new HotlineError(code, reason);
    };
    if (seenRoot !== undefined && seenRoot !== root) {
      throw await fork('HL_ERR_AUDIT_EQUIVOCATION', `the relay of ${o.peer} signed two different checkpoints of size ${cp.size} (roots ${seenRoot.slice(0, 12)}… and ${root.slice(0, 12)}…): its log forked`);
    }
    if (state.size > 0 && cp.size < state.size && seenRoot === undefined) {
      throw await fork('HL_ERR_AUDIT_PROOF_INVALID', `the relay of ${o.peer} sent checkpoint ${cp.size}, older than checkpoint ${state.size} cosigned here: its log was rolled back`);
    }
    if (state.size > 0 && cp.size > state.size) {
      if (frame.from !== state.size) return { kind: 'need-proof', size: state.size };
      try {
        verifyConsistency(state.size, cp.size, frame.proof.map((p) => fromHex(p, 32)), fromBase64(state.root!, 32), cp.rootHash);
      } catch (err) {
        throw await fork(
          'HL_ERR_AUDIT_PROOF_INVALID',
          `the relay of ${o.peer} sent checkpoint ${cp.size} that is not an extension of checkpoint ${state.size} cosigned here (${(err as Error).message}): its log forked`,
        );
      }
    }
    const now = o.clock.now();
    const me = o.identity.certificate.cert;
    const cosigned = await cosignCheckpoint(frame.note, { name: relayCosignerName(me), secretKey: fromBase64(o.identity.signSecret, 32) }, Math.floor(now / 1000));
    const seen = { ...state.seen, [String(cp.size)]: root };
    const kept = Object.entries(seen)
      .sort((a, b) => Number(a[0]) - Number(b[0]))
      .slice(-SEEN_KEPT);
    const next: WitnessState = cp.size >= state.size ? { size: cp.size, root, seen: Object.fromEntries(kept) } : { ...state, seen: Object.fromEntries(kept) };
    await o.store.setMeta(witnessStateKey(o.peer), JSON.stringify(next));
    return { kind: 'cosigned', size: cp.size, note: cosigned };
  }
}
