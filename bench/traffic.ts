import { expectedRecipients, sealEnvelope } from '../shared/crypto/envelope.js';
import { signReceipt } from '../shared/crypto/receipt.js';
import { ed25519Sign } from '../shared/crypto/ed25519.js';
import { CONTEXT, signingBytes } from '../shared/crypto/keys.js';
import { randomId } from '../shared/crypto/random.js';
import { fromBase64, toBase64 } from '../shared/encoding/base64.js';
import type { Agreement, DeviceSecretFile, Envelope, EnvelopeHeader, Precedence } from '../shared/protocol/schemas.js';
import type { ServerFrame } from '../shared/protocol/frames.js';
import { BenchLink } from './link-driver.js';
import type { Pair } from './deployment.js';

/** About 1 KiB of UTF-8, like the raw ws floor's payload. */
export const BODY = '至急：演習区域を変更する。'.repeat(24);

/** A message sealed in advance, with the addressee's `delivered` receipt signed in advance too. */
export interface Prepared {
  id: string;
  /** The `{t:"envelope"}` frame, serialised. */
  frame: string;
  /** The addressee's `{t:"receipt"}` frame, serialised; '' for a backlog message (never answered). */
  receipt: string;
}

/**
 * Seal `count` messages of `pair` with seq `firstSeq`, `firstSeq + 1`, … and sign their receipts:
 * the server then spends its time on its own work, not waiting for the driver's crypto.
 */
export async function prepareMessages(pair: Pair, directory: readonly DeviceSecretFile[], firstSeq: number, count: number, precedence: Precedence): Promise<Prepared[]> {
  const from = pair.from.certificate.cert;
  const recipients = expectedRecipients(
    directory.map((d) => d.certificate.cert),
    from,
    pair.to.certificate.cert.party,
  );
  const out: Prepared[] = [];
  for (let i = 0; i < count; i++) {
    const envelope = await sealEnvelope({
      sender: pair.from,
      to: pair.to.certificate.cert.party,
      precedence,
      seq: firstSeq + i,
      sentAt: Date.now(),
      recipients,
      plaintext: { body: BODY, lang: 'ja' },
    });
    const receipt = await signReceipt(pair.to, envelope.header, 'delivered', Date.now());
    out.push({ id: envelope.header.id, frame: JSON.stringify({ t: 'envelope', envelope }), receipt: JSON.stringify({ t: 'receipt', receipt }) });
  }
  return out;
}

/**
 * `count` messages of `pair` for an offline device's backlog, seq `firstSeq`, `firstSeq + 1`, …,
 * with no receipts (that device only acknowledges). The first is sealed in full; each other is its
 * copy under an id, seq and sentAt of its own, its header signed again by the sender. Each is thus
 * a valid envelope (its signature verifies and every recipient opens it); they share one content key
 * and its wraps, which changes nothing of the relay's work and makes the 100,000 a matter of
 * seconds instead of minutes of tweetnacl box operations (test/bench-backlog.test.ts).
 */
export async function prepareBacklog(pair: Pair, directory: readonly DeviceSecretFile[], firstSeq: number, count: number): Promise<Prepared[]> {
  const [first] = await prepareMessages(pair, directory, firstSeq, Math.min(count, 1), 'ROUTINE');
  if (first === undefined) return [];
  const template = (JSON.parse(first.frame) as { envelope: Envelope }).envelope;
  const signSecret = fromBase64(pair.from.signSecret, 32);
  const out: Prepared[] = [{ ...first, receipt: '' }];
  for (let i = 1; i < count; i++) {
    const header: EnvelopeHeader = { ...template.header, id: randomId(), seq: firstSeq + i, sentAt: Date.now() };
    const signature = toBase64(await ed25519Sign(signSecret, signingBytes(CONTEXT.envelope, header)));
    out.push({ id: header.id, frame: JSON.stringify({ t: 'envelope', envelope: { header, signature, ciphertext: template.ciphertext } }), receipt: '' });
  }
  return out;
}

/**
 * What every link of one server run hears: deliveries (counted per message, to check exactly-once),
 * the addressee's answer with its prepared receipt, `accepted` and the sender's `delivered` receipt.
 */
export class Traffic {
  /** How often each message reached its addressee. */
  readonly deliveries = new Map<string, number>();
  /** Deliveries in arrival order, by receiving link name (`party/device`), when recorded (`recordOrder`). */
  readonly order = new Map<string, string[]>();
  private readonly answers = new Map<string, string>();
  private readonly awaitingReceipt = new Map<string, (at: bigint | undefined) => void>();
  private readonly awaitingAccepted = new Map<string, () => void>();
  private readonly links: BenchLink[] = [];
  /** Called on every delivery (after counting). */
  onDeliver: ((link: BenchLink, id: string) => void) | undefined;

  /** Open a device's link whose frames this run hears. */
  async open(url: string, device: DeviceSecretFile, agreement: Agreement): Promise<BenchLink> {
    const link = await BenchLink.open(url, device, agreement, (l, f) => this.onFrame(l, f));
    this.links.push(link);
    return link;
  }

  /** Record the order of deliveries to `party/device` from now on. */
  recordOrder(name: string): void {
    this.order.set(name, []);
  }

  closeAll(): Promise<void[]> {
    return Promise.all(this.links.map((l) => l.close()));
  }

  /** Every error frame any link got. */
  errors(): string[] {
    return this.links.flatMap((l) => l.errors.map((e) => `${l.name}: ${e.code}`));
  }

  private onFrame(link: BenchLink, f: ServerFrame): void {
    if (f.t === 'deliver') {
      const id = f.envelope.header.id;
      this.deliveries.set(id, (this.deliveries.get(id) ?? 0) + 1);
      this.order.get(link.name)?.push(id);
      const answer = this.answers.get(id);
      if (answer !== undefined) {
        this.answers.delete(id);
        link.send(answer);
      }
      this.onDeliver?.(link, id);
    } else if (f.t === 'receipt' && f.receipt.receipt.kind === 'delivered') {
      const done = this.awaitingReceipt.get(f.receipt.receipt.messageId);
      this.awaitingReceipt.delete(f.receipt.receipt.messageId);
      done?.(process.hrtime.bigint());
    } else if (f.t === 'accepted') {
      this.awaitingAccepted.get(f.id)?.();
      this.awaitingAccepted.delete(f.id);
    } else if (f.t === 'error' && f.ref !== undefined) {
      // A refused message ends its wait (the error is reported with the run), never hangs it.
      this.awaitingAccepted.get(f.ref)?.();
      this.awaitingAccepted.delete(f.ref);
      this.awaitingReceipt.get(f.ref)?.(undefined);
      this.awaitingReceipt.delete(f.ref);
    }
  }

  /** Send; resolves with the milliseconds until the addressee's `delivered` receipt reached the sender (NaN if refused). */
  sendForReceipt(sender: BenchLink, m: Prepared): Promise<number> {
    this.answers.set(m.id, m.receipt);
    const t0 = process.hrtime.bigint();
    const p = new Promise<number>((resolve) => this.awaitingReceipt.set(m.id, (at) => resolve(at === undefined ? NaN : Number(at - t0) / 1e6)));
    sender.send(m.frame);
    return p;
  }

  /** Send without a receipt from the addressee (it may be offline); resolves on `accepted`. */
  sendForAccepted(sender: BenchLink, m: Prepared): Promise<void> {
    const p = new Promise<void>((resolve) => this.awaitingAccepted.set(m.id, resolve));
    sender.send(m.frame);
    return p;
  }

  /** Of `ids`: how many were delivered exactly once, more than once, never. */
  tally(ids: readonly string[]): { once: number; duplicated: number; missing: number } {
    let once = 0;
    let duplicated = 0;
    let missing = 0;
    for (const id of ids) {
      const n = this.deliveries.get(id) ?? 0;
      if (n === 1) once++;
      else if (n === 0) missing++;
      else duplicated++;
    }
    return { once, duplicated, missing };
  }
}

export interface StreamSender {
  link: BenchLink;
  messages: readonly Prepared[];
}

export interface StreamResult {
  sent: number;
  completed: number;
  seconds: number;
  latenciesMs: number[];
  sentIds: string[];
}

/**
 * Drive senders, each keeping at most `window` messages in flight (sent, its receipt not yet back),
 * optionally paced to `ratePerSecond` over all senders. Stops sending at `stopAtMs` (Date.now()) or
 * when `stop()` says so, then waits (at most `graceMs`) for what is in flight.
 */
export function runStream(
  traffic: Traffic,
  senders: readonly StreamSender[],
  options: { window: number; ratePerSecond?: number; stopAtMs: number; graceMs?: number; stop?: () => boolean; onComplete?: (ms: number) => void },
): Promise<StreamResult> {
  const t0 = process.hrtime.bigint();
  const state = senders.map(() => ({ next: 0, inFlight: 0 }));
  const latenciesMs: number[] = [];
  const sentIds: string[] = [];
  let sent = 0;
  let lastDone = t0;
  let stopped = false;
  return new Promise((resolve) => {
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    let paceTimer: ReturnType<typeof setInterval> | undefined;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearInterval(paceTimer);
      clearTimeout(graceTimer);
      resolve({ sent, completed: latenciesMs.length, seconds: Number(lastDone - t0) / 1e9, latenciesMs, sentIds });
    };
    const allowance = () =>
      options.ratePerSecond === undefined ? Infinity : Math.floor((options.ratePerSecond * Number(process.hrtime.bigint() - t0)) / 1e9) + 1 - sent;
    const pump = () => {
      if (finished) return;
      if (!stopped && (Date.now() >= options.stopAtMs || options.stop?.())) {
        stopped = true;
        graceTimer = setTimeout(finish, options.graceMs ?? 30_000);
      }
      let budget = stopped ? 0 : allowance();
      let progressed = true;
      while (budget > 0 && progressed) {
        progressed = false;
        senders.forEach((s, i) => {
          const st = state[i]!;
          if (budget <= 0 || st.inFlight >= options.window || st.next >= s.messages.length) return;
          const m = s.messages[st.next++]!;
          st.inFlight++;
          sent++;
          budget--;
          progressed = true;
          sentIds.push(m.id);
          void traffic.sendForReceipt(s.link, m).then((ms) => {
            st.inFlight--;
            latenciesMs.push(ms);
            lastDone = process.hrtime.bigint();
            options.onComplete?.(ms);
            pump();
          });
        });
      }
      const exhausted = state.every((st, i) => st.next >= senders[i]!.messages.length);
      if ((stopped || exhausted) && latenciesMs.length === sent) finish();
    };
    if (options.ratePerSecond !== undefined) paceTimer = setInterval(pump, 5);
    pump();
  });
}

/** Send all of `messages` from one link with `window` awaiting `accepted` (the addressee may be offline). */
export async function sendAllAccepted(traffic: Traffic, sender: BenchLink, messages: readonly Prepared[], window: number, stopAtMs: number): Promise<number> {
  let next = 0;
  let accepted = 0;
  const worker = async () => {
    while (next < messages.length && Date.now() < stopAtMs) {
      await traffic.sendForAccepted(sender, messages[next++]!);
      accepted++;
    }
  };
  await Promise.all(Array.from({ length: window }, worker));
  return accepted;
}
