import { HotlineError, retryPolicy } from '../shared/errors.js';
import { envelopeHash, openEnvelope } from '../shared/crypto/envelope.js';
import { checkLabel } from '../shared/protocol/labels.js';
import { signReceipt, verifyReceipt } from '../shared/crypto/receipt.js';
import { acceptSeq, isNewSeq } from '../shared/crypto/replay-window.js';
import type { EnvelopeHeader, Plaintext } from '../shared/protocol/schemas.js';
import { MAX_ACK_CURSORS, type ClientFrame, type DeliverFrame, type HotlineEvent, type ReceiptFrame, type ServerFrame } from '../shared/protocol/frames.js';
import type { HeldPrekey } from '../shared/crypto/prekey.js';
import { RankQueue } from './rank-queue.js';
import type { VerifiedDirectory } from './directory.js';
import type { AnswerFrame, Outbox } from './outbox.js';
import { RANK, type PrecedenceMemory } from './precedences.js';
import { checkTranslation } from '../shared/protocol/translation.js';
import { CHECKPOINT_ATTACHMENT, type AuditWitness } from './witness.js';
import { toHotlineError, type DeviceScope } from './scope.js';

/** The hello and the answers to this device's own frames: cheap, and ahead of every mailbox item. */
const CONTROL_RANK = -1;

/**
 * Bounds of one batch of incoming frames; between batches the client yields to the event loop, so
 * a burst of deliveries neither blocks the page or process nor keeps a FLASH read later waiting
 * behind the rest of the burst.
 */
export const FRAME_BATCH = 16;
const FRAME_BATCH_MS = 10;

/**
 * Let the event loop run (timers, I/O, paint) before going on: setImmediate in Node, a
 * MessageChannel task in a browser (setTimeout(0) is clamped to 4 ms there once nested).
 */
function yieldToEventLoop(): Promise<void> {
  if (typeof setImmediate === 'function') return new Promise((resolve) => setImmediate(resolve));
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

function isAnswer(frame: ServerFrame | undefined): frame is AnswerFrame {
  return frame?.t === 'accepted' || frame?.t === 'receipt-accepted' || frame?.t === 'refusal-accepted';
}

export interface InboxOptions extends Pick<DeviceScope, 'agreement' | 'me' | 'key' | 'device' | 'storage' | 'clock' | 'emit' | 'report'> {
  /** Process the mailbox (deliveries, cursor acks): see HotlineClientOptions.consumeMailbox. */
  consume: boolean;
  directory: Pick<VerifiedDirectory, 'certAt' | 'refresh'>;
  precedences: PrecedenceMemory;
  outbox: Pick<Outbox, 'transmit' | 'onAnswers' | 'onRefused' | 'refuse'>;
  witness: Pick<AuditWitness, 'queueGossip'>;
  /** Write a frame to the current connection (dropped when there is none). */
  write: (frame: ClientFrame) => void;
  /**
   * The prekey secrets this device holds now, to open an entry wrapped to `keyId` (PROTOCOL.md
   * "Prekeys and forward secrecy"); absent: it has none.
   */
  prekeys?: (keyId: string) => Promise<readonly HeldPrekey[]>;
  /** The server's hello on a new connection. */
  onHello: (frame: Extract<ServerFrame, { t: 'hello' }>) => Promise<void>;
}

/** How many receipt keys an Inbox remembers to drop a receipt handed again (about 1 MB at most). */
const SEEN_RECEIPTS_MAX = 10_000;

/**
 * Every frame the relay sends, handled one at a time, highest rank first, in bounded batches:
 * deliveries opened and verified, de-duplicated against the stored inbox and the replay window,
 * and answered with the automatic `delivered` receipt; receipts verified; events emitted; each
 * mailbox item acknowledged by its cursor. The relay's answers to this device's own frames go to
 * the outbox.
 */
export class Inbox {
  readonly #o: InboxOptions;
  /** Incoming frames not handled yet, by rank then arrival. */
  #incoming = new RankQueue<ServerFrame>();
  /**
   * Verified receipts already emitted by this client (`messageId/kind/party/device`): a receipt
   * handed again (its ack lost with a link, a node failed over, or a device that does not consume
   * its mailbox reconnecting) is not news. Per client, not from storage: another process of the
   * same device (`listen` beside `send --wait`) may have stored it, and this one must still see it.
   */
  readonly #seenReceipts = new Set<string>();
  /** The running drain of {@link #incoming}, if any. */
  #draining: Promise<void> | undefined;
  /** Cursors handled in the current batch, acknowledged together when it ends ({@link #flushAcks}). */
  #acks: number[] = [];

  constructor(options: InboxOptions) {
    this.#o = options;
  }

  /** Queue a frame just read from the socket; a drain starts if none runs. */
  push(frame: ServerFrame): void {
    this.#incoming.push(this.#rankOf(frame), frame);
    this.#draining ??= this.#drain();
  }

  /**
   * Drop the frames not handled yet (at stop: nothing of them was acknowledged, so the relay sends
   * them again) and settle when the frame being handled is done.
   */
  async clear(): Promise<void> {
    this.#incoming.remove(() => true);
    await this.#draining;
  }

  #rankOf(frame: ServerFrame): number {
    switch (frame.t) {
      case 'deliver':
        return RANK[frame.envelope.header.precedence];
      case 'receipt':
        // A receipt goes with its message; one for a message unknown here goes last.
        return RANK[this.#o.precedences.get(frame.receipt.receipt.messageId) ?? 'ROUTINE'];
      case 'event':
        return 'precedence' in frame.event ? RANK[frame.event.precedence] : 0;
      default:
        return CONTROL_RANK;
    }
  }

  /**
   * Handle queued frames until none is left. It starts after a yield, so that every frame of the
   * socket reads at hand is queued (and ranked) first: ws and browsers hand over all messages of
   * one read synchronously. Each frame is taken from the queue only when the one before is done,
   * so a FLASH that arrives meanwhile is next.
   */
  async #drain(): Promise<void> {
    for (;;) {
      await yieldToEventLoop();
      const started = Date.now();
      for (let n = 0; n < FRAME_BATCH && Date.now() - started < FRAME_BATCH_MS; n++) {
        const frame = this.#incoming.shift();
        if (frame === undefined) {
          this.#flushAcks();
          // Checked and cleared in one step: a frame queued after this starts a new drain.
          this.#draining = undefined;
          return;
        }
        try {
          if (isAnswer(frame)) {
            // A run of answers (ranked together, ahead of the mailbox) is stored in one update.
            const run = [frame];
            while (n + run.length < FRAME_BATCH && isAnswer(this.#incoming.peek())) run.push(this.#incoming.shift() as AnswerFrame);
            n += run.length - 1;
            await this.#o.outbox.onAnswers(run);
          } else {
            await this.#onFrame(frame);
          }
        } catch (err) {
          this.#o.report(toHotlineError(err));
        }
      }
      this.#flushAcks();
    }
  }

  async #onFrame(frame: ServerFrame): Promise<void> {
    switch (frame.t) {
      case 'hello':
        await this.#o.onHello(frame);
        return;
      case 'accepted':
      case 'receipt-accepted':
      case 'refusal-accepted':
        await this.#o.outbox.onAnswers([frame]);
        return;
      case 'error':
        await this.#o.outbox.onRefused(frame.code, frame.message, frame.ref);
        return;
      case 'deliver':
        if (!this.#o.consume) return;
        // Not acknowledged when it could not be judged now (the directory unreachable): it comes again.
        if (await this.#onDeliver(frame)) this.#ack(frame.cursor);
        return;
      case 'receipt':
        await this.#onReceipt(frame);
        this.#ack(frame.cursor);
        return;
      case 'event':
        this.#o.emit('event', frame.event);
        this.#emitTyped(frame.event);
        this.#ack(frame.cursor);
        return;
      case 'notice':
        // Not a mailbox item: nothing to acknowledge.
        this.#o.emit('notice', frame.notice);
        return;
      case 'directory-changed':
        // A certificate was revoked: fetch and verify the directory now (it emits 'directory', and
        // 'revoked-since' for what is stored here from that sender), not at the next refresh. The
        // frame itself is not trusted: only the signed revocation in the directory counts.
        await this.#o.directory.refresh();
        return;
    }
  }

  /**
   * Acknowledge exactly the item with this cursor (PROTOCOL.md "Ack"): items are handled by rank,
   * not in cursor order, so one ack must not cover the items below it. Sent when the batch ends,
   * with the other cursors handled in it ({@link #flushAcks}).
   */
  #ack(cursor: number): void {
    if (this.#o.consume) this.#acks.push(cursor);
  }

  /**
   * The batch's acks as one frame, `cursors` in the order the items were handled (a FLASH's
   * first): a burst of deliveries costs the relay a frame per batch, not one per item. Each item
   * was handled (stored, its receipt queued) before its cursor was taken; a link lost before the
   * flush drops the frame, and the relay sends those items again, as with an ack lost on the wire.
   */
  #flushAcks(): void {
    for (let i = 0; i < this.#acks.length; i += MAX_ACK_CURSORS) {
      const cursors = this.#acks.slice(i, i + MAX_ACK_CURSORS);
      this.#o.write(cursors.length === 1 ? { t: 'ack', cursor: cursors[0]! } : { t: 'ack', cursors });
    }
    this.#acks = [];
  }

  /** Handle a delivery; false when it must come again (it could not be judged now). */
  async #onDeliver(frame: DeliverFrame): Promise<boolean> {
    const h = frame.envelope.header;
    const state = await this.#o.storage.read(this.#o.key);
    const senderKey = `${h.from.party}/${h.from.device}`;
    const known = state.inbox[h.id];
    if (known) {
      // The same message again (a redelivery after a lost ack) is dropped quietly; another
      // envelope under a known id is an attempt to replace it.
      if (known.envelopeHash !== envelopeHash(h)) this.#o.report(new HotlineError('HL_ERR_ENVELOPE_DUPLICATE_ID', `refused a second, different envelope with id ${h.id} from ${senderKey}`));
      return true;
    }
    let opened: { header: EnvelopeHeader; plaintext: Plaintext; envelopeHash: string };
    let senderRevokedAt: number | undefined;
    try {
      // Verified as of the relay's acceptance, not now: a revocation since then does not take back
      // what was accepted while the certificate was valid (PROTOCOL.md "Revocation is about the
      // time of acceptance").
      const sender = await this.#o.directory.certAt(h.from, frame.acceptedAt);
      senderRevokedAt = sender.revokedAt;
      const keyId = h.recipients.find((r) => r.party === this.#o.me.party && r.device === this.#o.me.device)?.keyId ?? '';
      opened = await openEnvelope(frame.envelope, { device: this.#o.device, senderCert: sender.cert, ...(this.#o.prekeys ? { prekeys: await this.#o.prekeys(keyId) } : {}) });
      checkLabel(this.#o.agreement, h.label);
      if (!isNewSeq(state.peerSeq[senderKey], h.seq)) {
        throw new HotlineError('HL_ERR_ENVELOPE_REPLAY', `seq ${h.seq} of ${senderKey} was already seen or is older than the replay window`);
      }
      // A translation is shown beside its original only: bound to the very envelope held here.
      if (h.translationOf) checkTranslation(h, state.inbox[h.translationOf.id] ?? state.sent[h.translationOf.id]);
    } catch (err) {
      // Not remembered by id: a forgery carrying a genuine message's id must not suppress it.
      const e = toHotlineError(err);
      if (retryPolicy(e.code) === 'later') {
        // Not a judgement on the message (the directory could not be fetched, the storage is busy).
        this.#o.report(new HotlineError(e.code, `could not check message ${h.id} from ${senderKey} now: ${e.message}; it is delivered again on the next connection`, { cause: e }));
        return false;
      }
      this.#o.report(new HotlineError(e.code, `refused message ${h.id} from ${senderKey}: ${e.message}`, { cause: e }));
      // Told to the relay, signed, so that no deadline stays open on a message this device cannot
      // show (PROTOCOL.md "Refusals"); the relay closes them once no addressee operator can answer.
      await this.#o.outbox.refuse(h, envelopeHash(h), e.code);
      return true;
    }
    // From the one canonicalisation that verified the signature.
    const hash = opened.envelopeHash;
    // Only the addressee's operators answer; archives and the sender's own colleagues never do.
    const answer = h.to === this.#o.me.party && this.#o.me.role === 'operator';
    const receipt = answer ? await signReceipt(this.#o.device, h, 'delivered', this.#o.clock.now(), hash) : undefined;
    const isNew = await this.#o.storage.update(this.#o.key, (s) => {
      // Checked again against the latest state: another process on this device may have taken it.
      if (s.inbox[h.id] || !isNewSeq(s.peerSeq[senderKey], h.seq)) return false;
      s.inbox[h.id] = { header: h, envelopeHash: hash, receivedAt: this.#o.clock.now(), acceptedAt: frame.acceptedAt, ...(senderRevokedAt === undefined ? {} : { senderRevokedAt }) };
      s.peerSeq[senderKey] = acceptSeq(s.peerSeq[senderKey], h.seq, senderKey);
      if (receipt) s.outbox[`r:${h.id}:delivered`] = { kind: 'receipt', messageId: h.id, receiptKind: 'delivered', receipt };
      return true;
    });
    if (!isNew) return true;
    this.#o.precedences.remember(h.id, h.precedence);
    // The receipt leaves before the application hears of the message: a console's listener may
    // render for milliseconds, and the sender is waiting for `delivered`, not for the page.
    if (receipt) this.#o.outbox.transmit({ kind: 'receipt', messageId: h.id, receiptKind: 'delivered', receipt });
    this.#o.emit('message', {
      header: opened.header,
      plaintext: opened.plaintext,
      envelopeHash: hash,
      acceptedAt: frame.acceptedAt,
      ...(senderRevokedAt === undefined ? {} : { senderRevokedAt }),
    });
    const gossip = opened.plaintext.attachments?.find((a) => a.name === CHECKPOINT_ATTACHMENT.name && a.type === CHECKPOINT_ATTACHMENT.type);
    if (h.linkTest && gossip && this.#o.me.role === 'operator') {
      // Queued with the cosigning rounds, not awaited, so that frames keep flowing.
      this.#o.witness.queueGossip({ party: h.from.party, device: h.from.device }, gossip.data);
    }
    return true;
  }

  async #onReceipt(frame: ReceiptFrame): Promise<void> {
    const body = frame.receipt.receipt;
    const state = await this.#o.storage.read(this.#o.key);
    // With the hash this device stored for it (its own, or from its verification): no canonicalisation.
    // A receipt may come before its message's `accepted` (the relay forwards it once committed and
    // answers the sender once durable: PROTOCOL.md "Delivery before durability"): then the message
    // is still in the outbox, sealed here, and is checked against that.
    const pending = state.sent[body.messageId] || state.inbox[body.messageId] ? undefined : state.outbox[`e:${body.messageId}`];
    const unanswered = pending?.kind === 'envelope' ? { header: pending.envelope.header, envelopeHash: envelopeHash(pending.envelope.header), receipts: [] } : undefined;
    const held = state.sent[body.messageId] ?? state.inbox[body.messageId] ?? unanswered;
    const message = held && { header: held.header, envelopeHash: held.envelopeHash };
    let verified = false;
    let error: HotlineError | undefined;
    let signerRevokedAt: number | undefined;
    try {
      // As for a message: the signer's certificate as of the relay's acceptance of the receipt.
      const signer = await this.#o.directory.certAt(body.by, frame.acceptedAt);
      signerRevokedAt = signer.revokedAt;
      await verifyReceipt(frame.receipt, signer.cert, message);
      verified = true;
    } catch (err) {
      error = toHotlineError(err);
    }
    const seenKey = `${body.messageId}/${body.kind}/${body.by.party}/${body.by.device}`;
    if (verified && this.#seenReceipts.has(seenKey)) return;
    if (verified) {
      this.#seenReceipts.add(seenKey);
      // Bounded: the oldest are forgotten first (a Set keeps insertion order).
      if (this.#seenReceipts.size > SEEN_RECEIPTS_MAX) this.#seenReceipts.delete(this.#seenReceipts.values().next().value!);
    }
    if (verified && (state.sent[body.messageId] || unanswered)) {
      await this.#o.storage.update(this.#o.key, (s) => {
        // Not yet answered `accepted`: its sent record begins with this receipt (`accepted` adds its time).
        if (unanswered && !s.sent[body.messageId] && s.outbox[`e:${body.messageId}`]) s.sent[body.messageId] = unanswered;
        const rec = s.sent[body.messageId];
        if (rec && !rec.receipts.some((r) => r.kind === body.kind && r.by.party === body.by.party && r.by.device === body.by.device)) {
          rec.receipts.push(body);
        }
        if (rec && signerRevokedAt !== undefined) (rec.signersRevokedAt ??= {})[`${body.by.party}/${body.by.device}`] ??= signerRevokedAt;
      });
    }
    this.#o.emit('receipt', {
      receipt: frame.receipt,
      verified,
      headerChecked: message !== undefined,
      ...(signerRevokedAt === undefined ? {} : { signerRevokedAt }),
      ...(error ? { error } : {}),
    });
  }

  #emitTyped(event: HotlineEvent): void {
    switch (event.type) {
      case 'deadline.missed':
        this.#o.emit('deadline.missed', event);
        return;
      case 'deadline.met':
        this.#o.emit('deadline.met', event);
        return;
      case 'deadline.closed':
        this.#o.emit('deadline.closed', event);
        return;
      case 'link.test':
      case 'link.up':
      case 'link.down':
        this.#o.emit('link', event);
        return;
      case 'message.relayed':
        this.#o.emit('relayed', event);
        return;
      default:
        return;
    }
  }
}
