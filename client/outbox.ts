import { HotlineError, isHotlineErrorCode, retryPolicy, type HotlineErrorCode, type RetryPolicy } from '../shared/errors.js';
import { envelopeHash, expectedRecipients, sealEnvelopeWithHash } from '../shared/crypto/envelope.js';
import { signReceipt } from '../shared/crypto/receipt.js';
import { signRefusal } from '../shared/crypto/refusal.js';
import { randomId } from '../shared/crypto/random.js';
import {
  PRECEDENCES,
  RECEIPT_KINDS,
  type DeviceCertBody,
  type Envelope,
  type EnvelopeHeader,
  type Plaintext,
  type Precedence,
  type CannotComplyReason,
  type ReceiptKind,
  type SignedReceipt,
  type SecurityLabel,
} from '../shared/protocol/schemas.js';
import type { ClientFrame, ServerFrame } from '../shared/protocol/frames.js';
import { checkAttachments } from '../shared/protocol/attachments.js';
import { requireCatalogueEntry } from '../shared/protocol/catalogue.js';
import { translationAddressee } from '../shared/protocol/translation.js';
import { outboxKey, type OutboxEnvelope, type OutboxHeld, type OutboxItem, type SendDraft } from './storage/client-storage.js';
import type { VerifiedDirectory } from './directory.js';
import { RANK, type PrecedenceMemory } from './precedences.js';
import { checkLabel } from '../shared/protocol/labels.js';
import { otherParties, toHotlineError, type DeviceScope } from './scope.js';
import type { TimerHandle } from '../shared/clock.js';

/** What a caller sends: the client seals it. */
export interface SendInput {
  to: string;
  /** Case-insensitive: 'flash' and 'FLASH' are the same. */
  precedence: Precedence | Lowercase<Precedence>;
  subject?: string;
  body: string;
  /** BCP 47 language of the body; default the first language of the sender's party. */
  lang?: string;
  exercise?: boolean;
  replyTo?: string;
  /** The security label, from the agreement's `labels`; checked here before sealing. */
  label?: SecurityLabel;
  /** Mark it as a link-test message (what the test agent sends); it opens no deadlines. */
  linkTest?: boolean;
  /** Sealed with the text, e.g. the checkpoint the test agent gossips (`CHECKPOINT_ATTACHMENT`, witness.ts). */
  attachments?: NonNullable<Plaintext['attachments']>;
  /** A catalogue code of the agreement (PROTOCOL.md "Catalogue"); `body` is then free text beside it, possibly empty. */
  code?: string;
  /**
   * Send this as a translation of the message with this id, which this device holds (received or
   * sent): bound to its envelope hash (PROTOCOL.md "Translations"). `to` is ignored: a translation
   * goes to the other party of the original, with the original's precedence and, unless `label`
   * is given, its security label.
   */
  translationOf?: string;
}

/**
 * What a refusal of an envelope means for it, from the error table's `retry` column (codes arrive
 * over the wire: an unknown one is `never`). `later`: it stays in the outbox for the next
 * connection; `reseal`: sealed once more against a fresh directory and seq.
 */
const LATER_FIRST_MS = 1_000;
const LATER_MAX_MS = 30_000;
/** Envelopes sealed and not yet accepted whose hash is remembered (see Outbox #ownHashes). */
const OWN_HASHES_MAX = 1_000;

const retryOf = (code: string): RetryPolicy => (isHotlineErrorCode(code) ? retryPolicy(code) : 'never');

/** The relay's answer to an envelope or receipt this device sent. */
export type AnswerFrame = Extract<ServerFrame, { t: 'accepted' | 'receipt-accepted' | 'refusal-accepted' }>;

export interface OutboxOptions extends Pick<DeviceScope, 'agreement' | 'me' | 'key' | 'device' | 'storage' | 'clock' | 'emit' | 'report'> {
  directory: Pick<VerifiedDirectory, 'ensureLoaded' | 'refresh' | 'list' | 'wrapKeys'>;
  precedences: PrecedenceMemory;
  /** True while the link is up (between the server's hello and the socket closing). */
  connected: () => boolean;
  /** Write a frame to the current connection (dropped when there is none). */
  write: (frame: ClientFrame) => void;
  /** See HotlineClientOptions.approveRecipients. */
  approveRecipients?: ((recipients: readonly DeviceCertBody[], draft: SendDraft) => void | readonly string[]) | undefined;
}

/** What sealing gives: an envelope stored to go, or the message stored as held. */
type Sealed = OutboxEnvelope | OutboxHeld;

/**
 * The durable outbox: messages sealed with the next seq and stored before they leave, receipts
 * queued, everything sent again on each connection (highest precedence first) until the relay
 * answers, and resealed once when the relay refuses the recipients or the seq.
 */
export class Outbox {
  readonly #o: OutboxOptions;
  /** Items already written to the current connection (keys), so a flush does not send them twice. */
  #sentOnThisConnection = new Set<string>();
  /**
   * The hash of each envelope sealed by this process, by `id:seq`, until its `accepted` comes: the
   * check of the relay's hash then costs no canonicalisation (after a restart it is computed).
   * Bounded: the oldest are forgotten first.
   */
  readonly #ownHashes = new Map<string, string>();
  #compose: Promise<unknown> = Promise.resolve();
  /** A resend of envelopes refused for `later` (the relay's store away) on a link that stays up. */
  #laterTimer: TimerHandle | undefined;
  #laterDelayMs = LATER_FIRST_MS;

  constructor(options: OutboxOptions) {
    this.#o = options;
  }

  /** A new connection: every item goes again. */
  newConnection(): void {
    this.#sentOnThisConnection = new Set();
  }

  /** Settles when the messages being sealed now are stored. */
  settled(): Promise<unknown> {
    return this.#compose;
  }

  /** Seal and store a message, one at a time (see HotlineClient.send). */
  send(input: SendInput): Promise<{ id: string }> {
    const run = this.#compose.then(() => this.#send(input));
    this.#compose = run.catch(() => undefined);
    return run;
  }

  async #send(input: SendInput): Promise<{ id: string }> {
    if (this.#o.me.role !== 'operator') {
      throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `${this.#o.key} is an ${this.#o.me.role} device; only operator devices send`);
    }
    const original = input.translationOf === undefined ? undefined : await this.#original(input.translationOf);
    // A translation says what its original says: it goes with the original's label unless given one
    // (PROTOCOL.md "Security labels").
    const inherited = original?.header.label !== undefined && input.label === undefined ? { label: original.header.label } : {};
    if (original) input = { ...input, to: original.to, precedence: original.header.precedence, ...inherited };
    const party = this.#o.agreement.parties.find((p) => p.id === input.to);
    if (!party || input.to === this.#o.me.party) {
      throw new HotlineError('HL_ERR_ENVELOPE_UNKNOWN_PARTY', `${input.to} is not another party of the agreement (${otherParties(this.#o).join(', ')})`);
    }
    // Refused before sealing: the recipient could not read a code its catalogue lacks.
    if (input.code !== undefined) requireCatalogueEntry(this.#o.agreement, input.code);
    if (input.attachments !== undefined) checkAttachments(input.attachments);
    const precedence = input.precedence.toUpperCase() as Precedence;
    if (!PRECEDENCES.includes(precedence)) {
      throw new HotlineError('HL_ERR_INPUT_SCHEMA', `precedence must be one of ${PRECEDENCES.join(', ')}`);
    }
    const mine = this.#o.agreement.parties.find((p) => p.id === this.#o.me.party);
    const plaintext: Plaintext = {
      body: input.body,
      lang: input.lang ?? mine?.languages[0] ?? 'en',
      ...(input.subject === undefined ? {} : { subject: input.subject }),
      ...(input.attachments === undefined ? {} : { attachments: input.attachments }),
      ...(input.code === undefined ? {} : { code: input.code }),
    };
    const draft: SendDraft = {
      to: input.to,
      precedence,
      plaintext,
      ...(input.exercise ? { exercise: true } : {}),
      ...(input.replyTo === undefined ? {} : { replyTo: input.replyTo }),
      ...(input.label === undefined ? {} : { label: input.label }),
      ...(input.linkTest ? { linkTest: true } : {}),
      ...(original ? { translationOf: { id: original.header.id, envelopeHash: original.envelopeHash } } : {}),
    };
    checkLabel(this.#o.agreement, draft.label);
    await this.#o.directory.ensureLoaded();
    const id = randomId();
    const item = await this.#sealAndStore({ id, draft, composedAt: this.#o.clock.now(), resealed: 0 });
    this.#o.precedences.remember(id, precedence);
    this.transmit(item);
    return { id };
  }

  /**
   * Seal again every held message whose recipients are approved now (e.g. once the operator
   * confirmed the new keys) and send it; the others stay held (with the devices named afresh).
   * Returns the ids sealed. Run in turn with sends, so that seqs stay in order.
   */
  releaseHeld(): Promise<string[]> {
    const run = this.#compose.then(async () => {
      const held = Object.values((await this.#o.storage.read(this.#o.key)).outbox).filter((i): i is OutboxHeld => i.kind === 'held');
      if (held.length === 0) return [];
      await this.#o.directory.ensureLoaded();
      const released: string[] = [];
      for (const h of held) {
        // A release is the operator's decision: one automatic reseal is allowed again after it.
        const next = await this.#sealAndStore({ id: h.id, draft: h.draft, composedAt: h.composedAt, resealed: 0 });
        if (next.kind === 'envelope') {
          released.push(h.id);
          this.transmit(next);
        }
      }
      return released;
    });
    this.#compose = run.catch(() => undefined);
    return run;
  }

  /**
   * Remove held message `id` from the outbox without sending it (the operator's explicit choice).
   * False when it is not held (unknown, or already sealed: a sealed envelope may be on its way and
   * is not withdrawn).
   */
  async discardHeld(id: string): Promise<boolean> {
    await this.#compose;
    return this.#o.storage.update(this.#o.key, (s) => {
      if (s.outbox[`e:${id}`]?.kind !== 'held') return false;
      delete s.outbox[`e:${id}`];
      return true;
    });
  }

  /**
   * Sign and queue this device's refusal of a delivered message it could not accept (PROTOCOL.md
   * "Refusals"), so that the relay closes the message's deadlines once nobody who can answer it is
   * left. Stored before it leaves, sent again on each connection until the relay answers.
   */
  async refuse(header: { id: string; precedence: Precedence }, envelopeHash: string, code: string): Promise<void> {
    const refusal = await signRefusal(this.#o.device, header.id, envelopeHash, code, this.#o.clock.now());
    const item: OutboxItem = { kind: 'refusal', messageId: header.id, precedence: header.precedence, refusal };
    await this.#o.storage.update(this.#o.key, (s) => {
      s.outbox[outboxKey(item)] = item;
    });
    this.transmit(item);
  }

  /** Sign a receipt for a message in the inbox and queue it (see HotlineClient.acknowledge). */
  async acknowledge(messageId: string, kind: Exclude<ReceiptKind, 'delivered'> = 'acknowledged', reason?: CannotComplyReason): Promise<SignedReceipt> {
    const state = await this.#o.storage.read(this.#o.key);
    const rec = state.inbox[messageId];
    if (!rec) {
      throw new HotlineError('HL_ERR_RECEIPT_UNKNOWN_MESSAGE', `message ${messageId} is not in the inbox of ${this.#o.key}; is the id right, and did this device receive it?`);
    }
    if (this.#o.me.role !== 'operator' || rec.header.to !== this.#o.me.party) {
      throw new HotlineError('HL_ERR_AUTH_FORBIDDEN', `${this.#o.key} cannot answer ${messageId}: only operator devices of ${rec.header.to} can`);
    }
    const receipt = await signReceipt(this.#o.device, rec.header, kind, this.#o.clock.now(), rec.envelopeHash, reason);
    const item: OutboxItem = { kind: 'receipt', messageId, receiptKind: kind, receipt };
    await this.#o.storage.update(this.#o.key, (s) => {
      s.outbox[outboxKey(item)] = item;
      const r = s.inbox[messageId];
      if (!r) return;
      // Every rung above delivered is given by a person who read it: it acknowledges too.
      r.acknowledgedAt ??= receipt.receipt.at;
      if (kind !== 'acknowledged') r.answers = { ...r.answers, [kind]: { at: receipt.receipt.at, ...(reason === undefined ? {} : { reason }) } };
    });
    this.transmit(item);
    return receipt;
  }

  /**
   * Seal `item.draft` with the next seq and store the seq and the outbox item in one update (a new
   * item, or a reseal replacing the one under the same key). The envelope leaves this device only
   * after that update, so a crash never reuses a seq that was sent; a seq sealed but not stored was
   * never sent and may be used again. Another process on the same device may take the seq meanwhile:
   * then it is sealed again with the next one (the lock makes the check and the store one step).
   */
  async #sealAndStore(item: Omit<OutboxEnvelope, 'kind' | 'envelope'>): Promise<Sealed> {
    for (let attempt = 0; ; attempt++) {
      const seq = (await this.#o.storage.read(this.#o.key)).lastSeq + 1;
      const sealed = await this.#seal(item.id, item.draft, seq);
      if ('held' in sealed) {
        // Not sealed: stored as held, under the same key (a reseal's old envelope is replaced), no seq used.
        const held: OutboxHeld = { kind: 'held', ...item, devices: [...sealed.held], heldAt: this.#o.clock.now() };
        await this.#o.storage.update(this.#o.key, (s) => {
          s.outbox[outboxKey(held)] = held;
        });
        this.#o.emit('held', { id: item.id, devices: held.devices });
        return held;
      }
      const next: OutboxEnvelope = { kind: 'envelope', ...item, envelope: sealed };
      const stored = await this.#o.storage.update(this.#o.key, (s) => {
        if (s.lastSeq >= seq) return false;
        s.lastSeq = seq;
        s.outbox[outboxKey(next)] = next;
        return true;
      });
      if (stored) return next;
      if (attempt >= 10) throw new HotlineError('HL_ERR_STORE_FAILED', `another process keeps taking the seqs of ${this.#o.key}`);
    }
  }

  async #seal(id: string, draft: SendDraft, seq: number): Promise<Envelope | { held: readonly string[] }> {
    const recipients = expectedRecipients(this.#o.directory.list(), this.#o.me, draft.to);
    if (recipients.length === 0) {
      throw new HotlineError('HL_ERR_ENVELOPE_RECIPIENTS', `no device to encrypt for: connect once to fetch the directory, or enrol ${draft.to}'s devices`);
    }
    const held = this.#o.approveRecipients?.(recipients, draft);
    if (held && held.length > 0) return { held };
    const { envelope, hash } = await sealEnvelopeWithHash({
      sender: this.#o.device,
      id,
      to: draft.to,
      precedence: draft.precedence,
      seq,
      sentAt: this.#o.clock.now(),
      recipients,
      wrapKeys: this.#o.directory.wrapKeys(recipients),
      plaintext: draft.plaintext,
      ...(draft.exercise ? { exercise: true } : {}),
      ...(draft.replyTo === undefined ? {} : { replyTo: draft.replyTo }),
      ...(draft.label === undefined ? {} : { label: draft.label }),
      ...(draft.linkTest ? { linkTest: true } : {}),
      ...(draft.translationOf === undefined ? {} : { translationOf: draft.translationOf }),
    });
    this.#ownHashes.set(`${id}:${seq}`, hash);
    if (this.#ownHashes.size > OWN_HASHES_MAX) this.#ownHashes.delete(this.#ownHashes.keys().next().value!);
    return envelope;
  }

  /**
   * The message a translation is of, held by this device (received, or sent by it), and the party
   * the translation goes to: the other party of the two the original was between.
   */
  async #original(id: string): Promise<{ header: EnvelopeHeader; envelopeHash: string; to: string }> {
    const state = await this.#o.storage.read(this.#o.key);
    const held = state.inbox[id] ?? state.sent[id];
    if (!held) throw new HotlineError('HL_ERR_TRANSLATION_UNKNOWN_ORIGINAL', `no message ${id} on this device to translate (hotline listen shows the ids received)`);
    if (held.header.translationOf) throw new HotlineError('HL_ERR_TRANSLATION_MISMATCH', `message ${id} is itself a translation: translate its original, ${held.header.translationOf.id}`);
    return { header: held.header, envelopeHash: held.envelopeHash, to: translationAddressee(held.header, this.#o.me.party) };
  }

  transmit(item: OutboxItem): void {
    // A held message has no envelope yet: releaseHeld() seals it.
    if (item.kind === 'held' || !this.#o.connected()) return;
    // A resealed envelope (same key, new seq) goes again.
    const k = item.kind === 'envelope' ? `${outboxKey(item)}:${item.envelope.header.seq}` : outboxKey(item);
    if (this.#sentOnThisConnection.has(k)) return;
    this.#sentOnThisConnection.add(k);
    this.#o.write(
      item.kind === 'envelope' ? { t: 'envelope', envelope: item.envelope } : item.kind === 'receipt' ? { t: 'receipt', receipt: item.receipt } : { t: 'refusal', refusal: item.refusal },
    );
  }

  /**
   * A refusal for `later` (issue 12: the relay's database away, HL_ERR_STORE_FAILED) on a link that
   * stays up: no new connection will send the item again, so it goes again on this one after 1 s,
   * doubling to 30 s while the refusals go on (one timer for every such item; an answer resets it).
   */
  #retryLater(sentKey: string): void {
    this.#sentOnThisConnection.delete(sentKey);
    if (this.#laterTimer !== undefined) return;
    const delay = this.#laterDelayMs;
    this.#laterDelayMs = Math.min(LATER_MAX_MS, delay * 2);
    this.#laterTimer = this.#o.clock.setTimeout(() => {
      this.#laterTimer = undefined;
      void this.flush().catch((err: unknown) => this.#o.report(toHotlineError(err)));
    }, delay);
  }

  /** Transmit what waits in the outbox: highest precedence first, then in the order queued. */
  async flush(): Promise<void> {
    const state = await this.#o.storage.read(this.#o.key);
    const rank = (item: OutboxItem) =>
      RANK[
        item.kind === 'refusal'
          ? item.precedence
          : item.kind !== 'receipt'
            ? item.draft.precedence
            : (state.inbox[item.messageId]?.header.precedence ?? this.#o.precedences.get(item.messageId) ?? 'ROUTINE')
      ];
    // Array sort is stable: within one rank the outbox's order (queued order) stays.
    for (const item of Object.values(state.outbox).sort((a, b) => rank(a) - rank(b))) this.transmit(item);
  }

  /**
   * The relay's `accepted` and `receipt-accepted` for several outbox items, stored in one update:
   * with many items in flight these answers come in runs, and each would otherwise cost an fsync.
   */
  async onAnswers(frames: readonly AnswerFrame[]): Promise<void> {
    this.#laterDelayMs = LATER_FIRST_MS;
    // An `accepted` whose hash is not the hash of what this device sealed is not an acceptance of
    // it (a relay that stored something else, or a bug): the item stays in the outbox and the
    // mismatch is reported, never taken as proof of sending.
    const mismatched = new Set<string>();
    await this.#o.storage.update(this.#o.key, (s) => {
      for (const f of frames) {
        if (f.t === 'receipt-accepted') {
          delete s.outbox[`r:${f.messageId}:${f.kind}`];
          continue;
        }
        if (f.t === 'refusal-accepted') {
          delete s.outbox[`x:${f.messageId}`];
          continue;
        }
        const key = `e:${f.id}`;
        const item = s.outbox[key];
        if (item?.kind !== 'envelope') continue;
        const sealedKey = `${f.id}:${item.envelope.header.seq}`;
        const own = this.#ownHashes.get(sealedKey) ?? envelopeHash(item.envelope.header);
        this.#ownHashes.delete(sealedKey);
        if (own !== f.envelopeHash) {
          mismatched.add(f.id);
          continue;
        }
        delete s.outbox[key];
        s.sent[f.id] ??= { header: item.envelope.header, envelopeHash: own, receipts: [] };
        s.sent[f.id]!.acceptedAt = f.at;
      }
    });
    for (const f of frames) {
      if (f.t === 'accepted' && mismatched.has(f.id)) {
        this.#o.report(new HotlineError('HL_ERR_RELAY_HASH_MISMATCH', `the relay accepted message ${f.id} under another hash than the one sealed here; it stays in the outbox`));
        continue;
      }
      if (f.t === 'accepted') this.#o.emit('accepted', { id: f.id, envelopeHash: f.envelopeHash, at: f.at });
      else if (f.t === 'refusal-accepted') this.#o.emit('refusal-accepted', { messageId: f.messageId, at: f.at });
      else this.#o.emit('receipt-accepted', { messageId: f.messageId, kind: f.kind, at: f.at });
    }
  }

  async onRefused(code: string, message: string, ref: string | undefined): Promise<void> {
    const state = await this.#o.storage.read(this.#o.key);
    const found = ref === undefined ? undefined : state.outbox[`e:${ref}`];
    const item = found?.kind === 'envelope' ? found : undefined;
    if (item && retryOf(code) === 'later') {
      this.#o.report(new HotlineError(code as HotlineErrorCode, `${message} (message ${ref} stays in the outbox)`));
      this.#retryLater(`${outboxKey(item)}:${item.envelope.header.seq}`);
      return;
    }
    // Recipients changed (a device enrolled or revoked), or another process on this device used
    // the seq: fetch the directory again and reseal once with a fresh seq. If the new recipients
    // are not approved (a new peer key not confirmed yet), the message is held, not dropped.
    if (item && item.resealed === 0 && retryOf(code) === 'reseal') {
      try {
        if (code === 'HL_ERR_ENVELOPE_RECIPIENTS') await this.#o.directory.refresh();
        const { kind: _kind, envelope: _old, ...rest } = item;
        const next = await this.#compose.then(() => this.#sealAndStore({ ...rest, resealed: item.resealed + 1 }));
        this.transmit(next);
        return;
      } catch (err) {
        this.#o.report(toHotlineError(err));
      }
    }
    if (ref !== undefined) {
      await this.#o.storage.update(this.#o.key, (s) => {
        delete s.outbox[`e:${ref}`];
        if (code.startsWith('HL_ERR_RECEIPT_')) for (const kind of RECEIPT_KINDS) delete s.outbox[`r:${ref}:${kind}`];
        // A refusal the relay will not take (retry `never`) is not sent again.
        if (code.startsWith('HL_ERR_REFUSAL_')) delete s.outbox[`x:${ref}`];
      });
    }
    this.#o.emit('refused', ref === undefined ? { code, message } : { code, message, ref });
  }
}
