import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ERROR_TABLE, type HotlineErrorCode } from '../shared/errors.js';
import { PRECEDENCES, type Precedence } from '../shared/protocol/schemas.js';
import type { Rung } from '../shared/protocol/frames.js';
import { FLASH_GATE_DEFAULTS as GATE } from './relay/flash-gate.js';

/**
 * The relay's Prometheus metrics (docs/operations-endpoints.md), on a registry of its own (one per
 * app: tests build several in one process).
 *
 * The cost on the message path is kept tiny: counters are plain numbers in fixed arrays indexed by
 * precedence, rung and error code (no label object, no string built per message); prom-client
 * reads them only when /metrics is scraped (`collect`). The two timing histograms are bound once
 * to their fixed label values and observe a number. Labels only ever take values from fixed sets
 * (precedences, rungs, error codes, the agreement's parties): never an id, device or address.
 */

export const METRIC_RUNGS = ['accepted', 'delivered', 'acknowledged'] as const;
export type MetricRung = (typeof METRIC_RUNGS)[number];
export type VerifyKind = 'envelope' | 'receipt' | 'refusal';
export type RefusalPath = 'http' | 'link' | 'relay-link';

const REFUSAL_PATHS: readonly RefusalPath[] = ['http', 'link', 'relay-link'];
const CODES = Object.keys(ERROR_TABLE) as HotlineErrorCode[];
const CODE_INDEX = new Map(CODES.map((c, i) => [c, i]));
const PRECEDENCE_INDEX = new Map<string, number>(PRECEDENCES.map((p, i) => [p, i]));
const RUNG_INDEX = new Map<string, number>(METRIC_RUNGS.map((r, i) => [r, i]));

/** Seconds: signature checks take tens of microseconds to a few milliseconds. */
const VERIFY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1];
/** Seconds: a group commit (one transaction, one fsync) takes from under a millisecond to a slow disk's 100 ms. */
const COMMIT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** What the metrics read at scrape time (set once the app's parts exist). */
export interface MetricSources {
  /** TCP connections open and refused by the per-address cap. */
  connections?: () => { open: number; refused: number };
  /** Device links (WebSockets) open now, and the queues the link plugin holds. */
  links?: () => { open: number; sendQueue: number; inboundWaiting: number };
  /** Writes waiting for the group commit. */
  writeQueue?: () => number;
  /** Each relay-to-relay link: its peer, whether it is up, and frames sent and not yet confirmed. */
  relayLinks?: () => readonly { peer: string; up: boolean; inFlight: number }[];
  /** Signatures the link checked on the event loop and in the worker thread (server/verify-pool.ts). */
  signatureChecks?: () => { inline: number; worker: number };
  /** The FLASH gate (server/relay/flash-gate.ts): how its holds ended, its forced breaks, seconds held. */
  flashGate?: () => { released: number; expired: number; breaks: number; heldSeconds: number };
}

export class Metrics {
  readonly registry = new Registry();
  readonly sources: MetricSources = {};
  /** [precedence][rung] */
  private readonly messages = PRECEDENCES.map(() => METRIC_RUNGS.map(() => 0));
  /** [precedence][rung index in ('delivered','acknowledged')] */
  private readonly misses = PRECEDENCES.map(() => [0, 0]);
  /** [path][code] */
  private readonly refusals = REFUSAL_PATHS.map(() => CODES.map(() => 0));
  private readonly verifyObserve: Record<VerifyKind, (seconds: number) => void>;
  private readonly commitHistogram: Histogram;
  private readonly escalations: Counter;

  constructor() {
    const r = this.registry;
    // prom-client calls `collect` with `this` bound to the metric: the arrays are captured here.
    const { messages, misses, refusals, sources } = this;
    new Counter({
      name: 'hotline_messages_total',
      help: 'Messages by precedence and rung: accepted by this relay, then delivered and acknowledged as the addressee party signed the receipts (link tests not counted).',
      labelNames: ['precedence', 'rung'],
      registers: [r],
      collect() {
        this.reset();
        PRECEDENCES.forEach((p, i) => METRIC_RUNGS.forEach((rung, j) => this.inc({ precedence: p, rung }, messages[i]![j]!)));
      },
    });
    new Counter({
      name: 'hotline_deadline_misses_total',
      help: 'Deadlines missed (the first deadline.missed of each, not its reminders), by precedence and rung.',
      labelNames: ['precedence', 'rung'],
      registers: [r],
      collect() {
        this.reset();
        PRECEDENCES.forEach((p, i) => (['delivered', 'acknowledged'] as const).forEach((rung, j) => this.inc({ precedence: p, rung }, misses[i]![j]!)));
      },
    });
    new Counter({
      name: 'hotline_refusals_total',
      help: 'Requests and frames refused, by error code and path (http, link, relay-link). Codes never seen are left out.',
      labelNames: ['code', 'path'],
      registers: [r],
      collect() {
        this.reset();
        REFUSAL_PATHS.forEach((path, i) => CODES.forEach((code, j) => {
          const n = refusals[i]![j]!;
          if (n > 0) this.inc({ code, path }, n);
        }));
      },
    });
    const verify = new Histogram({
      name: 'hotline_signature_verify_seconds',
      help: 'Time to verify the signature (and hash) of an envelope, receipt or refusal a device sent, waiting for the signature-check thread included.',
      labelNames: ['kind'],
      buckets: VERIFY_BUCKETS,
      registers: [r],
    });
    this.verifyObserve = {
      envelope: verify.labels('envelope').observe,
      receipt: verify.labels('receipt').observe,
      refusal: verify.labels('refusal').observe,
    };
    new Counter({
      name: 'hotline_signature_checks_total',
      help: 'Signatures of frames from devices checked, by thread: event_loop (one alone in a turn of the event loop) or worker (several at once, in the signature-check thread).',
      labelNames: ['thread'],
      registers: [r],
      collect() {
        const c = sources.signatureChecks?.();
        this.reset();
        this.inc({ thread: 'event_loop' }, c?.inline ?? 0);
        this.inc({ thread: 'worker' }, c?.worker ?? 0);
      },
    });
    this.commitHistogram = new Histogram({
      name: 'hotline_store_commit_seconds',
      help: 'Time of one group commit of the store (one transaction and its fsync, for a batch of writes).',
      buckets: COMMIT_BUCKETS,
      registers: [r],
    });
    const gauge = (name: string, help: string, read: (g: Gauge) => void, labelNames: string[] = []) =>
      new Gauge({ name, help, labelNames, registers: [r], collect() { read(this); } });
    gauge('hotline_connections_open', 'TCP connections open now.', (g) => g.set(this.sources.connections?.().open ?? 0));
    // A counter kept by the connection cap; exposed as prom-client counter for its type line.
    new Counter({
      name: 'hotline_connections_refused_total',
      help: 'Connections closed at once because their address had reached the per-address cap.',
      registers: [r],
      collect() {
        this.reset();
        this.inc(sources.connections?.().refused ?? 0);
      },
    });
    gauge('hotline_links_open', 'Device links (authenticated WebSockets) open now.', (g) => g.set(this.sources.links?.().open ?? 0));
    gauge('hotline_queue_depth', 'Items waiting, by queue: mailbox (items queued for the connected devices), inbound (frames received, not yet handled), commit (writes waiting for the group commit), relay-link (frames sent to peer relays, not yet confirmed).', (g) => {
      const links = this.sources.links?.();
      g.set({ queue: 'mailbox' }, links?.sendQueue ?? 0);
      g.set({ queue: 'inbound' }, links?.inboundWaiting ?? 0);
      g.set({ queue: 'commit' }, this.sources.writeQueue?.() ?? 0);
      g.set({ queue: 'relay-link' }, (this.sources.relayLinks?.() ?? []).reduce((n, l) => n + l.inFlight, 0));
    }, ['queue']);
    this.escalations = new Counter({
      name: 'hotline_escalation_attempts_total',
      help: 'Attempts to deliver a notification to a webhook or by e-mail (docs/escalation.md), by outcome: delivered (answered 2xx or accepted by the mail server), failed (tried again later), given-up (past its give-up time).',
      labelNames: ['outcome'],
      registers: [r],
    });
    new Counter({
      name: 'hotline_flash_gate_holds_total',
      help: `FLASH messages that held the relay’s lower-rank work on their way through it, by how the hold ended: receipt (a receipt for it accepted, or the FLASH refused), expired (none within the hold, ${GATE.holdMs} ms by default: an addressee offline or slow).`,
      labelNames: ['end'],
      registers: [r],
      collect() {
        const g = sources.flashGate?.();
        this.reset();
        this.inc({ end: 'receipt' }, g?.released ?? 0);
        this.inc({ end: 'expired' }, g?.expired ?? 0);
      },
    });
    new Counter({
      name: 'hotline_flash_gate_breaks_total',
      help: `Times the FLASH gate, held without a break for ${GATE.maxHeldMs} ms (by default), opened for ${GATE.openMs} ms of lower-rank work whatever was held (a stream of FLASH messages).`,
      registers: [r],
      collect() {
        this.reset();
        this.inc(sources.flashGate?.().breaks ?? 0);
      },
    });
    new Counter({
      name: 'hotline_flash_gate_held_seconds_total',
      help: 'Seconds the relay’s lower-rank work (frames and commits without a FLASH) waited for FLASH messages on their way through it.',
      registers: [r],
      collect() {
        this.reset();
        this.inc(sources.flashGate?.().heldSeconds ?? 0);
      },
    });
    gauge('hotline_relay_link_up', 'A party’s own relay: 1 while the link to the peer relay is up, 0 while it is not.', (g) => {
      g.reset();
      for (const l of this.sources.relayLinks?.() ?? []) g.set({ peer: l.peer }, l.up ? 1 : 0);
    }, ['peer']);
  }

  /** A message reached a rung (or was accepted). */
  message(precedence: Precedence, rung: MetricRung | Rung): void {
    const i = PRECEDENCE_INDEX.get(precedence);
    const j = RUNG_INDEX.get(rung);
    if (i !== undefined && j !== undefined) this.messages[i]![j]!++;
  }

  /** A deadline was missed (its first deadline.missed). */
  deadlineMissed(precedence: Precedence, rung: Rung): void {
    const i = PRECEDENCE_INDEX.get(precedence);
    if (i !== undefined) this.misses[i]![rung === 'delivered' ? 0 : 1]!++;
  }

  refused(code: HotlineErrorCode, path: RefusalPath): void {
    const j = CODE_INDEX.get(code);
    if (j !== undefined) this.refusals[REFUSAL_PATHS.indexOf(path)]![j]!++;
  }

  /** Time a signature check: `run` is awaited and its duration observed, whether it passes or throws. */
  async timeVerify<T>(kind: VerifyKind, run: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await run();
    } finally {
      this.verifyObserve[kind]((performance.now() - started) / 1000);
    }
  }

  /** One attempt to deliver a notification (server/escalation/). */
  escalationAttempt(outcome: 'delivered' | 'failed' | 'given-up'): void {
    this.escalations.inc({ outcome });
  }

  commitTook(seconds: number): void {
    this.commitHistogram.observe(seconds);
  }

  /** The Prometheus text exposition. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
