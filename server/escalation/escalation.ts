import type { FastifyBaseLogger } from 'fastify';
import type { HotlineEvent } from '../../shared/protocol/frames.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { Metrics } from '../metrics.js';
import { ESCALATION_CURSOR_KEY, type ClaimedEscalation, type EscalationRow, type Store } from '../store/store.js';
import type { EscalationConfig, Hook } from './config.js';
import { Deliverer, type DeliveryResult, type EscalationPayload } from './deliver.js';

/**
 * Escalation beyond the console (docs/escalation.md): the relay's events (a missed deadline, a link
 * down, an audit alarm…) sent to webhooks and by e-mail, durably.
 *
 * The events table is the source: an event is read only once it is committed (durable), and only
 * from the database, so every way an event is made (the deadline scheduler and its link-test
 * watchdog, the audit plugin, the relay links; on any node) reaches the hooks alike. Intake reads
 * the events after the cursor (meta `escalation_cursor`), queues one row per (hook, event) the hook
 * wants, and moves the cursor, in one transaction that fails if another node moved it first. Each
 * row is then claimed with a lease (one node sends it), sent, and settled: done when answered, or
 * tried again with exponential backoff (`retry.minMs` doubling up to `retry.maxMs`) until answered
 * or `retry.giveUpAfterMs` has passed. Every attempt is one log line (hook, event, attempt, status,
 * next try), never a secret. A relay that stops mid-attempt leaves the row leased: it is tried again
 * when the lease ends, so a receiver may see a delivery twice (the delivery id says so), never none.
 *
 * The first start with hooks begins at the newest event: the history is not replayed; nor are
 * events older than `retry.giveUpAfterMs` when the relay ran without its hooks for a while.
 */

export interface EscalationDeps {
  config: EscalationConfig;
  store: Pick<Store, 'getMeta' | 'eventsAfter' | 'lastEventId' | 'queueEscalations' | 'claimEscalations' | 'settleEscalation' | 'nextEscalationAt'>;
  clock: Clock;
  log: FastifyBaseLogger;
  metrics?: Pick<Metrics, 'escalationAttempt'>;
  /** Longest the timer waits before reading the events table again (events another node committed). Default 5 000 ms. */
  pollMs?: number;
}

export const DEFAULT_ESCALATION_POLL_MS = 5_000;
/** Events read per intake transaction. */
const INTAKE_PAGE = 500;
/** Notifications claimed (and sent concurrently) at once. */
const CLAIM_BATCH = 16;
/** A claimed notification's lease beyond the hook's timeout: no other node sends it meanwhile. */
const LEASE_MARGIN_MS = 30_000;

/** Whether `hook` wants `event` (its event types, party and precedences). */
export function hookWants(hook: Hook, event: HotlineEvent): boolean {
  if (!(hook.events as readonly string[]).includes(event.type)) return false;
  if (hook.party !== undefined && ('party' in event ? event.party !== hook.party : event.from !== hook.party && event.to !== hook.party)) return false;
  if (hook.precedences !== undefined && 'precedence' in event && !hook.precedences.includes(event.precedence)) return false;
  return true;
}

/** The wait before try `attempt + 1` after `attempt` tries failed: minMs, doubling, at most maxMs. */
export function retryDelay(retry: EscalationConfig['retry'], attempt: number): number {
  return Math.min(retry.maxMs, retry.minMs * 2 ** Math.min(attempt - 1, 30));
}

export class Escalation {
  private readonly log: FastifyBaseLogger;
  private readonly hooks: ReadonlyMap<string, Hook>;
  private readonly deliverer: Deliverer;
  private stopped = true;
  private running: Promise<void> | undefined;
  private again = false;
  private kicked = false;
  private timer: TimerHandle | undefined;
  private timerAt: number | undefined;

  constructor(private readonly deps: EscalationDeps) {
    this.log = deps.log.child({ module: 'escalation' });
    this.hooks = new Map(deps.config.hooks.map((h) => [h.name, h]));
    this.deliverer = new Deliverer(() => deps.clock.now());
  }

  /**
   * Read what was committed meanwhile and send what is due, beside the start: the relay does not
   * wait for a receiver to answer before it serves.
   */
  start(): void {
    this.stopped = false;
    this.log.info({ hooks: this.deps.config.hooks.map((h) => ({ name: h.name, kind: h.kind, events: h.events })) }, 'escalation hooks configured');
    void this.run();
  }

  /** Events were committed: read them soon (at the next turn, several commits in one read). */
  kick(): void {
    if (this.stopped || this.kicked) return;
    this.kicked = true;
    setImmediate(() => {
      this.kicked = false;
      void this.run();
    });
  }

  /**
   * Stop the timer, end the attempts in flight (each is settled as a failed attempt, to be tried
   * again after its backoff by the next start or another node) and wait for the run to finish.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.disarm();
    this.deliverer.close();
    await this.running;
  }

  private run(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.intake();
          await this.deliverDue();
        } while (this.again && !this.stopped);
        await this.rearm();
      } catch (error) {
        // The store is failing (it says so on /readyz): try again at the next poll.
        this.log.error({ err: { message: (error as Error).message } }, 'escalation: reading or updating the queue failed');
        this.wakeAt(this.deps.clock.now() + this.pollMs);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private get pollMs(): number {
    return this.deps.pollMs ?? DEFAULT_ESCALATION_POLL_MS;
  }

  /** Queue a notification for each (hook, committed event after the cursor) the hook wants. */
  private async intake(): Promise<void> {
    const store = this.deps.store;
    for (let pages = 0; pages < 1000 && !this.stopped; pages++) {
      const text = await store.getMeta(ESCALATION_CURSOR_KEY);
      if (text === undefined) {
        const last = await store.lastEventId();
        if (await store.queueEscalations(undefined, last, [])) this.log.info({ afterEvent: last }, 'escalation starts with the events after the newest one stored');
        continue;
      }
      const cursor = Number(text);
      const events = await store.eventsAfter(cursor, INTAKE_PAGE);
      if (events.length === 0) return;
      const now = this.deps.clock.now();
      const rows: EscalationRow[] = [];
      for (const e of events) {
        // Older than the give-up time (a relay that ran without its webhooks file for a while): past
        // what any notification of it would still be tried for, so not queued at all.
        if (e.at < now - this.deps.config.retry.giveUpAfterMs) continue;
        const event = JSON.parse(e.event) as HotlineEvent;
        for (const hook of this.hooks.values()) if (hookWants(hook, event)) rows.push({ hook: hook.name, eventId: e.id, event: e.event, createdAt: now, nextAt: now });
      }
      // False: another node took these events first; read on from where it left the cursor.
      await store.queueEscalations(cursor, events.at(-1)!.id, rows);
      if (events.length < INTAKE_PAGE) return;
    }
  }

  /** Claim what is due, send it, settle each attempt; until nothing more is due now. */
  private async deliverDue(): Promise<void> {
    const longest = Math.max(...this.deps.config.hooks.map((h) => h.timeoutMs));
    for (;;) {
      if (this.stopped) return;
      const now = this.deps.clock.now();
      const claimed = await this.deps.store.claimEscalations(now, now + longest + LEASE_MARGIN_MS, CLAIM_BATCH);
      await Promise.all(claimed.map((c) => this.attempt(c)));
      if (claimed.length < CLAIM_BATCH) return;
    }
  }

  private async attempt(c: ClaimedEscalation): Promise<void> {
    const hook = this.hooks.get(c.hook);
    const event = JSON.parse(c.event) as HotlineEvent;
    const line = { hook: c.hook, kind: hook?.kind, event: event.type, eventId: c.eventId, delivery: `${c.hook}:${c.eventId}`, attempt: c.attempts };
    if (!hook) {
      // Queued under a hook since removed from the webhooks file: nobody to send it to.
      await this.deps.store.settleEscalation(c.hook, c.eventId, { doneAt: this.deps.clock.now(), outcome: 'dropped: hook no longer configured' });
      this.log.warn(line, 'escalation dropped: its hook is no longer in the webhooks file');
      return;
    }
    const payload: EscalationPayload = { id: `${c.hook}:${c.eventId}`, hook: c.hook, eventId: c.eventId, event };
    const result: DeliveryResult = await this.deliverer.send(hook, payload, c.attempts);
    const now = this.deps.clock.now();
    if (result.ok) {
      await this.deps.store.settleEscalation(c.hook, c.eventId, { doneAt: now, outcome: result.status });
      this.deps.metrics?.escalationAttempt('delivered');
      this.log.info({ ...line, status: result.status }, 'escalation delivered');
      return;
    }
    const retry = this.deps.config.retry;
    if (now - c.createdAt >= retry.giveUpAfterMs) {
      await this.deps.store.settleEscalation(c.hook, c.eventId, { doneAt: now, outcome: `given up: ${result.status}` });
      this.deps.metrics?.escalationAttempt('given-up');
      this.log.error({ ...line, status: result.status }, `escalation given up: no answer within ${retry.giveUpAfterMs} ms of the event`);
      return;
    }
    const nextAt = now + retryDelay(retry, c.attempts);
    await this.deps.store.settleEscalation(c.hook, c.eventId, { nextAt, outcome: result.status });
    this.deps.metrics?.escalationAttempt('failed');
    // Armed before the line is written: whoever reads the line finds the retry already scheduled.
    this.wakeAt(nextAt);
    this.log.warn({ ...line, status: result.status, nextTryAt: new Date(nextAt).toISOString() }, 'escalation attempt failed; will try again');
  }

  private async rearm(): Promise<void> {
    const next = await this.deps.store.nextEscalationAt();
    const poll = this.deps.clock.now() + this.pollMs;
    this.wakeAt(next === undefined ? poll : Math.min(next, poll));
    this.log.debug({ nextTryAt: next === undefined ? undefined : new Date(next).toISOString() }, 'escalation queue read');
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
      void this.run();
    }, Math.max(0, at - this.deps.clock.now()));
  }
}
