import type { FastifyBaseLogger } from 'fastify';
import type { DeadlineClosedReason, HotlineEvent } from '../shared/protocol/frames.js';
import type { Agreement, DeviceCertBody, EnvelopeHeader } from '../shared/protocol/schemas.js';
import { keyIdOf } from '../shared/crypto/keys.js';
import { fromBase64 } from '../shared/encoding/base64.js';
import type { Clock, TimerHandle } from './clock.js';
import {
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
import type { ClusterStore, Store } from './store/store.js';
import type { Metrics } from './metrics.js';
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
  /**
   * One of several nodes on one database (docs/postgresql.md): the deadlines and link tests are the
   * database's rows, not this node's memory. Due ones are fired by `fireDue` (one node at a time, the
   * firing and its effects in one transaction); a receipt or refusal closes what the database holds
   * open; the timer is armed for the database's earliest due time, and looks again at least every
   * `pollMs` (what another node opened, or left when it died).
   */
  cluster?: Pick<ClusterStore, 'nextDue' | 'openDeadlinesOf' | 'fireDue'>;
  /** With `cluster`: the longest the timer waits before looking at the database again. Default 1 000 ms. */
  pollMs?: number;
  /** Told each message accepted, each rung reached and each first miss (for /metrics). */
  metrics?: Pick<Metrics, 'message' | 'deadlineMissed'>;
}

export const DEFAULT_CLUSTER_POLL_MS = 1_000;

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
    if (!this.deps.cluster) await this.reload();
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

  async snapshot(): Promise<StatusSnapshot> {
    if (this.deps.cluster) {
      // Several nodes: the database's view, which every node shares.
      const [rows, links] = await Promise.all([this.deps.store.loadDeadlines(), this.deps.store.loadLinkTests()]);
      return { deadlines: rows, links: links.pairs };
    }
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
    // Several nodes: nothing is kept in memory; a re-sent envelope is a duplicate in the store, which
    // then writes none of its effects, so planning against an empty state opens nothing twice.
    const cluster = this.deps.cluster !== undefined;
    if (inputs.d.type === 'accepted') effects.addDeadlines(planAccepted(this.policy, cluster ? initialDeadlines() : this.deadlines, inputs.d));
    if (inputs.l) effects.addLinks(stepLinkTests(this.linkPolicy, cluster ? initialLinkTests() : this.links, inputs.l).effects);
    const side = effects.build();
    if (side) write.effects = side;
  }

  /** After the envelope's write: adopt its deadlines if it was new, then push what the write created. */
  afterEnvelope(write: EnvelopeWrite, result: WriteResult): void {
    const inputs = this.prepared.get(write);
    this.prepared.delete(write);
    if (!inputs || !result.ok || result.status !== 'new') return;
    if (inputs.d.type === 'accepted' && !inputs.d.linkTest) this.deps.metrics?.message(inputs.d.precedence, 'accepted');
    if (this.deps.cluster) {
      // Wake when the new deadlines or test fall due (another node may fire them first: then nothing is due).
      const dues = [...(write.effects?.deadlines ?? []).map((r) => r.nextAt), ...(write.effects?.linkTests ?? []).map((t) => t.test.dueAt)];
      if (dues.length > 0) this.wakeAt(Math.min(...dues));
      return;
    }
    stepDeadlines(this.policy, this.deadlines, inputs.d);
    if (inputs.l) this.links = stepLinkTests(this.linkPolicy, this.links, inputs.l).state;
    this.rearm();
  }

  /** Before a verified receipt is queued: close what it reaches, in memory now and in its write. */
  async prepareReceipt(write: ReceiptWrite): Promise<void> {
    const r = write.receipt.receipt;
    const effects = new SideEffectBuilder(this, write.acceptedAt);
    if (this.deps.cluster) {
      // Several nodes: close what the database holds open (opened on any node), not this node's memory.
      const [rows, links] = await Promise.all([this.deps.cluster.openDeadlinesOf(r.messageId), this.deps.store.loadLinkTests()]);
      effects.addDeadlines(stepDeadlines(this.policy, initialDeadlines(rows), { type: 'receipt', messageId: r.messageId, kind: r.kind, byParty: r.by.party, at: write.acceptedAt }));
      effects.addLinks(
        stepLinkTests(this.linkPolicy, initialLinkTests(links.pairs, links.pending.filter((t) => t.messageId === r.messageId)), {
          type: 'receipt',
          messageId: r.messageId,
          byParty: r.by.party,
          at: write.acceptedAt,
        }).effects,
      );
      const side = effects.build();
      if (side) write.effects = side;
      return;
    }
    const d = stepDeadlines(this.policy, this.deadlines, { type: 'receipt', messageId: r.messageId, kind: r.kind, byParty: r.by.party, at: write.acceptedAt });
    // A closed row here is a rung the receipt reached (a receipt closes nothing else).
    for (const e of d) if (e.type === 'persist' && e.record.closedAt !== undefined) this.deps.metrics?.message(e.record.precedence, e.record.rung);
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
    if (result.ok || this.deps.cluster) return;
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
    // Several nodes: what the database holds open for this message, in a state of its own.
    const state = this.deps.cluster ? initialDeadlines(await this.deps.cluster.openDeadlinesOf(r.messageId)) : this.deadlines;
    const open = RUNGS.some((rung) => state.has(r.messageId, rung));
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
    effects.addDeadlines(stepDeadlines(this.policy, state, { type: 'undeliverable', messageId: r.messageId, reason: why.reason, detail: why.detail, at: write.acceptedAt }));
    const side = effects.build();
    if (side) write.effects = side;
    this.rearm();
  }

  /**
   * After the refusal's write: if the store refused it or had it already (its closures were not
   * written), memory may be out of step: read it back.
   */
  afterRefusal(write: RefusalWrite, result: WriteResult): void {
    if ((result.ok && (result.status === 'new' || !write.effects)) || this.deps.cluster) return;
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
    // Several nodes: the database's open deadlines (this node's memory is only a scratch state here).
    if (this.deps.cluster) this.deadlines = initialDeadlines(await this.deps.store.loadDeadlines());
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
      if (!this.deps.cluster) await this.reload();
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
    // Several nodes: an addressee operator may hold its link on another node, which this one cannot
    // see; the test then waits for its answer and fails by timeout if none comes (docs/postgresql.md).
    const addresseeOnline = this.deps.cluster !== undefined || this.deps.operatorOnline(h.to);
    return { type: 'test-accepted', messageId: h.id, from: h.from.party, to: h.to, at: write.acceptedAt, addresseeOnline };
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

  /** Arm the timer for `at`, unless it is already armed for earlier. */
  private wakeAt(at: number): void {
    if (this.stopped || (this.timer !== undefined && this.timerAt !== undefined && this.timerAt <= at)) return;
    this.disarm();
    this.timerAt = at;
    this.timer = this.deps.clock.setTimeout(() => {
      this.timer = undefined;
      this.timerAt = undefined;
      void this.fire().catch((error: unknown) => this.log.error({ err: { message: (error as Error).message } }, 'deadline tick failed'));
    }, Math.max(0, at - this.deps.clock.now()));
  }

  /** Several nodes: arm for the database's earliest due time, or the next poll, whichever is first. */
  private async rearmFromStore(): Promise<void> {
    let due: number | undefined;
    try {
      due = await this.deps.cluster!.nextDue();
    } catch (error) {
      this.log.error({ err: { message: (error as Error).message } }, 'reading the next deadline failed');
    }
    const poll = this.deps.clock.now() + (this.deps.pollMs ?? DEFAULT_CLUSTER_POLL_MS);
    this.disarm();
    this.wakeAt(due === undefined ? poll : Math.min(due, poll));
  }

  private rearm(): void {
    if (this.stopped) return;
    if (this.deps.cluster) {
      void this.rearmFromStore();
      return;
    }
    const at = this.earliest();
    if (at === this.timerAt && this.timer !== undefined) return;
    this.disarm();
    if (at !== undefined) this.wakeAt(at);
  }

  /** Fire everything due now, in one write. */
  private async fire(): Promise<void> {
    if (this.stopped) return;
    if (this.deps.cluster) return this.fireFromStore();
    const now = this.deps.clock.now();
    const d = stepDeadlines(this.policy, this.deadlines, { type: 'tick', now });
    for (const e of d) if (e.type === 'emit' && e.event.type === 'deadline.missed' && e.event.level === 1) this.deps.metrics?.deadlineMissed(e.event.precedence, e.event.rung);
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
   * Several nodes: fire what the database holds due, once across the nodes (ClusterStore.fireDue:
   * the rows read, the engines stepped on them, the effects written, in one transaction).
   */
  private async fireFromStore(): Promise<void> {
    const now = this.deps.clock.now();
    let fired = 0;
    try {
      const delivered = await this.deps.cluster!.fireDue(now, (due) => {
        const effects = new SideEffectBuilder(this, now);
        effects.addDeadlines(stepDeadlines(this.policy, initialDeadlines(due.deadlines), { type: 'tick', now }));
        effects.addLinks(stepLinkTests(this.linkPolicy, initialLinkTests(due.pairs, due.tests), { type: 'tick', now }).effects);
        const side = effects.build();
        for (const e of side?.events ?? []) this.log.info({ event: e.event.type, messageId: 'messageId' in e.event ? e.event.messageId : undefined }, 'deadline event');
        fired = side?.events?.length ?? 0;
        return side;
      });
      this.deps.push(delivered);
    } catch (error) {
      this.log.error({ err: { message: (error as Error).message } }, 'firing deadlines failed');
    }
    await this.rearmFromStore();
    this.log.debug({ at: now, events: fired, next: this.timerAt }, 'due deadlines and link tests fired from the database');
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
