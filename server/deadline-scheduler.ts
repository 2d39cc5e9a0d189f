import type { FastifyBaseLogger } from 'fastify';
import type { DeadlineClosedReason, HotlineEvent } from '../shared/protocol/frames.js';
import type { Agreement, DeviceCertBody, EnvelopeHeader } from '../shared/protocol/schemas.js';
import { keyIdOf } from '../shared/crypto/keys.js';
import { fromBase64 } from '../shared/encoding/base64.js';
import type { Clock, TimerHandle } from './clock.js';
import {
  deadlineKey,
  deadlinePolicy,
  RUNGS,
  initialDeadlines,
  nextDue,
  planAccepted,
  stepDeadlines,
  type DeadlineEffect,
  type DeadlineInput,
  type DeadlineState,
} from './relay/deadlines.js';
import {
  initialLinkTests,
  nextLinkDue,
  stepLinkTests,
  type LinkTestEffect,
  type LinkTestInput,
  type LinkTestState,
} from './relay/link-test.js';
import {
  deviceKey,
  type DeadlineRecord,
  type DeviceKey,
  type EnvelopeWrite,
  type EventWrite,
  type LinkPairRecord,
  type MailboxItem,
  type ReceiptWrite,
  type RefusalWrite,
  type SideEffects,
  type StoredRefusal,
  type Write,
  type WriteResult,
} from './relay/records.js';
import type { Store } from './store/store.js';
import { eventRank } from './relay/delivery.js';

export interface DeadlineSchedulerDeps {
  agreement: Agreement;
  store: Pick<Store, 'loadDeadlines' | 'loadLinkTests' | 'getMessage' | 'refusalsOf'>;
  clock: Clock;
  log: FastifyBaseLogger;
  /** The group-commit queue: side effects go through it, in order with envelopes and receipts. */
  enqueue: (write: Write) => Promise<WriteResult>;
  /** The currently valid certificates of these parties, for the mailboxes of events. */
  validBodies: (now: number, parties: readonly string[], roles?: readonly DeviceCertBody['role'][]) => DeviceCertBody[];
  /** Whether an operator device of `party` has a live link right now. */
  operatorOnline: (party: string) => boolean;
  /** Hand new mailbox items to the devices that are connected. */
  push: (delivered: readonly { device: DeviceKey; item: MailboxItem }[]) => void;
}

/** What the status endpoint shows. */
export interface StatusSnapshot {
  deadlines: DeadlineRecord[];
  links: LinkPairRecord[];
}

/**
 * The I/O shell around the deadline and link-test engines (server/relay/deadlines.ts,
 * server/relay/link-test.ts). It owns their state in memory (the deadlines' is changed in place) (the store holds the same rows and is
 * what a restart reads), carries their effects into the write queue so that rows, events, mailbox
 * items and audit entries land in one transaction, and keeps ONE timer on the injected clock for
 * the earliest thing due.
 *
 * Ordering: an envelope's deadlines ride in the envelope's own write and join the in-memory state
 * only once that write is committed as new (a re-sent identical envelope opens nothing again). A
 * receipt's closure is applied in memory when it is admitted, before it is queued, so a timer that
 * fires meanwhile cannot report as missed a rung that has just been reached.
 */
export class DeadlineScheduler {
  private deadlines: DeadlineState = initialDeadlines();
  private links: LinkTestState = initialLinkTests();
  private timer: TimerHandle | undefined;
  private timerAt: number | undefined;
  private stopped = true;
  private readonly policy;
  private readonly linkPolicy;
  private readonly log: FastifyBaseLogger;
  /** Inputs decided when an envelope was prepared, replayed once it is committed. */
  private readonly prepared = new WeakMap<EnvelopeWrite, { d: DeadlineInput; l?: LinkTestInput }>();

  constructor(private readonly deps: DeadlineSchedulerDeps) {
    this.policy = deadlinePolicy(deps.agreement);
    this.linkPolicy = { timeoutMs: deps.agreement.linkTest.timeoutMs, intervalMs: deps.agreement.linkTest.intervalMs };
    this.log = deps.log.child({ module: 'deadlines' });
  }

  /** Load open deadlines and tests in flight; fire at once (once) what fell due while the server was down. */
  async start(): Promise<void> {
    await this.reload();
    this.stopped = false;
    // Devices revoked or expired while the server was down: close what nobody can answer first.
    await this.closeUndeliverable();
    await this.fire();
  }

  stop(): void {
    this.stopped = true;
    this.disarm();
  }

  private async reload(): Promise<void> {
    const [rows, links] = await Promise.all([this.deps.store.loadDeadlines(), this.deps.store.loadLinkTests()]);
    this.deadlines = initialDeadlines(rows);
    this.links = initialLinkTests(links.pairs, links.pending);
  }

  snapshot(): StatusSnapshot {
    return { deadlines: [...this.deadlines.open.values()], links: [...this.links.pairs.values()] };
  }

  // ----- hooks for the link plugin -----

  /**
   * Before an accepted envelope is queued: attach its deadline rows (or, for a link test, the
   * test in flight and any immediate verdict) to the write. Nothing changes in memory yet.
   */
  prepareEnvelope(write: EnvelopeWrite): void {
    const h = write.envelope.header;
    const effects = new SideEffectBuilder(this, write.acceptedAt);
    // Decided once, here: whether the addressee is online must be the same fact in the write and in memory.
    const inputs = { d: this.envelopeInput(write), ...(h.linkTest ? { l: this.linkInput(write) } : {}) };
    this.prepared.set(write, inputs);
    if (inputs.d.type === 'accepted') effects.addDeadlines(planAccepted(this.policy, this.deadlines, inputs.d));
    if (inputs.l) effects.addLinks(stepLinkTests(this.linkPolicy, this.links, inputs.l).effects);
    const side = effects.build();
    if (side) write.effects = side;
  }

  /** After the envelope's write: adopt its deadlines if it was new, then push what the write created. */
  afterEnvelope(write: EnvelopeWrite, result: WriteResult): void {
    const inputs = this.prepared.get(write);
    this.prepared.delete(write);
    if (!inputs || !result.ok || result.status !== 'new') return;
    stepDeadlines(this.policy, this.deadlines, inputs.d);
    if (inputs.l) this.links = stepLinkTests(this.linkPolicy, this.links, inputs.l).state;
    this.rearm();
  }

  /** Before a verified receipt is queued: close what it reaches, in memory now and in its write. */
  prepareReceipt(write: ReceiptWrite): void {
    const r = write.receipt.receipt;
    const effects = new SideEffectBuilder(this, write.acceptedAt);
    const d = stepDeadlines(this.policy, this.deadlines, { type: 'receipt', messageId: r.messageId, kind: r.kind, byParty: r.by.party, at: write.acceptedAt });
    const l = stepLinkTests(this.linkPolicy, this.links, { type: 'receipt', messageId: r.messageId, byParty: r.by.party, at: write.acceptedAt });
    this.links = l.state;
    effects.addDeadlines(d);
    effects.addLinks(l.effects);
    const side = effects.build();
    if (side) write.effects = side;
    this.rearm();
  }

  /** After the receipt's write: if the store refused it, memory is out of step: read it back. */
  afterReceipt(result: WriteResult): void {
    if (result.ok) return;
    void this.reload()
      .then(() => this.rearm())
      .catch((error: unknown) => this.log.error({ err: { message: (error as Error).message } }, 'reloading deadlines failed'));
  }

  /**
   * Before a verified refusal is queued: if, with it, no addressee operator device the message was
   * sealed to can still answer it, close its deadlines (`recipient-refused`), in memory now and in
   * the refusal's write (PROTOCOL.md "Refusals").
   */
  async prepareRefusal(write: RefusalWrite): Promise<void> {
    const r = write.refusal.refusal;
    const open = RUNGS.some((rung) => this.deadlines.open.has(deadlineKey(r.messageId, rung)));
    if (!open || this.stopped) return;
    const message = await this.deps.store.getMessage(r.messageId);
    if (!message) return;
    const refusals = await this.deps.store.refusalsOf(r.messageId);
    if (!refusals.some((x) => x.party === r.by.party && x.device === r.by.device)) {
      refusals.push({ party: r.by.party, device: r.by.device, code: r.code, acceptedAt: write.acceptedAt });
    }
    const why = this.unanswerable(message.header, write.acceptedAt, refusals);
    if (!why) return;
    const effects = new SideEffectBuilder(this, write.acceptedAt);
    effects.addDeadlines(stepDeadlines(this.policy, this.deadlines, { type: 'undeliverable', messageId: r.messageId, reason: why.reason, detail: why.detail, at: write.acceptedAt }));
    const side = effects.build();
    if (side) write.effects = side;
    this.rearm();
  }

  /**
   * After the refusal's write: if the store refused it or had it already (its closures were not
   * written), memory may be out of step: read it back.
   */
  afterRefusal(write: RefusalWrite, result: WriteResult): void {
    if (result.ok && (result.status === 'new' || !write.effects)) return;
    void this.reload()
      .then(() => this.rearm())
      .catch((error: unknown) => this.log.error({ err: { message: (error as Error).message } }, 'reloading deadlines failed'));
  }

  // ----- messages nobody can answer any more -----

  /**
   * Close the open deadlines of every message that can no longer be answered: none of the
   * addressee's operator devices it was sealed to still holds a valid certificate with the box key
   * it was sealed to (revoked, expired, re-enrolled with new keys). Each such deadline is closed
   * with `deadline.closed` saying why, so no alarm is left running on a message nobody can see.
   * Called after a revocation (with the revoked device's party: only messages addressed to it are
   * read) and at start (all of them).
   */
  async closeUndeliverable(party?: string): Promise<number> {
    if (this.stopped) return 0;
    const ids = new Set<string>();
    for (const r of this.deadlines.open.values()) if (party === undefined || r.to === party) ids.add(r.messageId);
    const inputs: DeadlineInput[] = [];
    for (const id of ids) {
      const message = await this.deps.store.getMessage(id);
      const refusals = message ? await this.deps.store.refusalsOf(id) : [];
      const now = this.deps.clock.now();
      const why = message ? this.unanswerable(message.header, now, refusals) : undefined;
      if (why) inputs.push({ type: 'undeliverable', messageId: id, reason: why.reason, detail: why.detail, at: now });
    }
    if (inputs.length === 0 || this.stopped) return 0;
    const now = this.deps.clock.now();
    const effects = new SideEffectBuilder(this, now);
    for (const input of inputs) effects.addDeadlines(stepDeadlines(this.policy, this.deadlines, input));
    const side = effects.build();
    this.rearm();
    if (!side) return 0;
    for (const input of inputs) this.log.warn({ messageId: 'messageId' in input ? input.messageId : undefined }, 'deadlines closed: no recipient can answer the message any more');
    const result = await this.deps.enqueue({ kind: 'events', acceptedAt: now, ...side });
    if (!result.ok) {
      this.log.error({ err: { message: result.error.message } }, 'storing closed deadlines failed');
      await this.reload();
      this.rearm();
      return 0;
    }
    if (result.status === 'new') this.deps.push(result.delivered);
    return inputs.length;
  }

  /**
   * Why no addressee operator can answer `h` now, or undefined when one still can. A device that
   * refused the message (a stored refusal) counts as one that cannot, whatever its certificate.
   */
  private unanswerable(h: EnvelopeHeader, now: number, refusals: readonly StoredRefusal[]): { reason: DeadlineClosedReason; detail: string } | undefined {
    // Archive devices get a copy but never answer: they neither keep a message answerable nor count here.
    const archives = new Set(this.deps.validBodies(now, [h.to], ['archive']).map((c) => c.device));
    const sealedTo = h.recipients.filter((r) => r.party === h.to && !archives.has(r.device));
    const valid = new Map(this.deps.validBodies(now, [h.to], ['operator']).map((c) => [c.device, c]));
    const refusedBy = new Map(refusals.filter((x) => x.party === h.to).map((x) => [x.device, x.code]));
    const revoked: string[] = [];
    const refused: string[] = [];
    for (const r of sealedTo) {
      const code = refusedBy.get(r.device);
      if (code !== undefined) {
        refused.push(`${r.party}/${r.device} (${code})`);
        continue;
      }
      const cert = valid.get(r.device);
      if (cert && keyIdOf(fromBase64(cert.boxKey, 32)) === r.keyId) return undefined;
      revoked.push(`${r.party}/${r.device}`);
    }
    // Sealed to no operator of the addressee (it had none then): nobody there can ever answer it.
    if (sealedTo.length === 0) return { reason: 'recipients-revoked', detail: `it was sealed to no operator device of ${h.to}` };
    if (refused.length === 0) return { reason: 'recipients-revoked', detail: `every operator device it was sealed to is revoked or no longer valid: ${revoked.join(', ')}` };
    const others = revoked.length === 0 ? '' : `; revoked or no longer valid: ${revoked.join(', ')}`;
    // The event's detail is at most 500 characters (shared/protocol/frames.ts).
    return { reason: 'recipient-refused', detail: `refused by the device it was delivered to: ${refused.join(', ')}${others}`.slice(0, 500) };
  }

  // ----- the timer -----

  private envelopeInput(write: EnvelopeWrite): DeadlineInput {
    const h = write.envelope.header;
    return { type: 'accepted', messageId: h.id, from: h.from.party, to: h.to, precedence: h.precedence, acceptedAt: write.acceptedAt, ...(h.linkTest ? { linkTest: true } : {}) };
  }

  private linkInput(write: EnvelopeWrite): LinkTestInput {
    const h = write.envelope.header;
    return { type: 'test-accepted', messageId: h.id, from: h.from.party, to: h.to, at: write.acceptedAt, addresseeOnline: this.deps.operatorOnline(h.to) };
  }

  private earliest(): number | undefined {
    const a = nextDue(this.deadlines);
    const b = nextLinkDue(this.links, this.linkPolicy);
    if (a === undefined) return b;
    if (b === undefined) return a;
    return Math.min(a, b);
  }

  private disarm(): void {
    if (this.timer !== undefined) this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = undefined;
  }

  private rearm(): void {
    if (this.stopped) return;
    const at = this.earliest();
    if (at === this.timerAt && this.timer !== undefined) return;
    this.disarm();
    if (at === undefined) return;
    this.timerAt = at;
    this.timer = this.deps.clock.setTimeout(() => {
      this.timer = undefined;
      this.timerAt = undefined;
      void this.fire().catch((error: unknown) => this.log.error({ err: { message: (error as Error).message } }, 'deadline tick failed'));
    }, Math.max(0, at - this.deps.clock.now()));
  }

  /** Fire everything due now, in one write. */
  private async fire(): Promise<void> {
    if (this.stopped) return;
    const now = this.deps.clock.now();
    const d = stepDeadlines(this.policy, this.deadlines, { type: 'tick', now });
    const l = stepLinkTests(this.linkPolicy, this.links, { type: 'tick', now });
    this.links = l.state;
    const effects = new SideEffectBuilder(this, now);
    effects.addDeadlines(d);
    effects.addLinks(l.effects);
    const side = effects.build();
    this.rearm();
    if (!side) return;
    for (const e of side.events ?? []) this.log.info({ event: e.event.type, messageId: 'messageId' in e.event ? e.event.messageId : undefined }, 'deadline event');
    const result = await this.deps.enqueue({ kind: 'events', acceptedAt: now, ...side });
    if (!result.ok) {
      this.log.error({ err: { message: result.error.message } }, 'storing deadline events failed');
      await this.reload();
      this.rearm();
      return;
    }
    if (result.status === 'new') this.deps.push(result.delivered);
  }

  /**
   * The write of an event: its delivery rank, and as mailboxes the operator and auditor devices of
   * the parties it concerns (everyone who watches or reviews the link).
   */
  eventWrite(event: HotlineEvent, now: number): EventWrite {
    const parties = 'party' in event ? [event.party] : [event.from, event.to];
    const mailboxes = this.deps
      .validBodies(now, parties, ['operator', 'auditor'])
      .filter((c) => parties.includes(c.party))
      .map((c) => deviceKey(c))
      .sort();
    return { event, rank: eventRank(event), mailboxes };
  }
}

/** Turns engine effects into the rows and events of one write. */
class SideEffectBuilder {
  private readonly side: Required<SideEffects> = { deadlines: [], linkPairs: [], linkTests: [], events: [], audit: [] };

  constructor(
    private readonly scheduler: DeadlineScheduler,
    private readonly now: number,
  ) {}

  addDeadlines(effects: readonly DeadlineEffect[]): void {
    for (const e of effects) {
      if (e.type === 'persist') this.side.deadlines.push(e.record);
      else if (e.type === 'emit') this.event(e.event);
    }
  }

  addLinks(effects: readonly LinkTestEffect[]): void {
    for (const e of effects) {
      if (e.type === 'persist-pair') this.side.linkPairs.push(e.record);
      else if (e.type === 'persist-pending') this.side.linkTests.push({ test: e.test, done: e.done });
      else if (e.type === 'emit') this.event(e.event);
    }
  }

  private event(event: HotlineEvent): void {
    this.side.events.push(this.scheduler.eventWrite(event, this.now));
  }

  build(): SideEffects | undefined {
    const s = this.side;
    if (s.deadlines.length + s.linkPairs.length + s.linkTests.length + s.events.length === 0) return undefined;
    return s;
  }
}
