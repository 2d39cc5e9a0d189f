import { createHmac } from 'node:crypto';
import nodemailer, { type Transporter } from 'nodemailer';
import type { HotlineEvent } from '../../shared/protocol/frames.js';
import type { Hook, SmtpHook, WebhookHook } from './config.js';

/**
 * Sending one notification once (server/escalation/escalation.ts retries). A webhook is an HTTP POST
 * of a JSON body, signed with the hook's HMAC secret; an `smtp` hook is an e-mail (nodemailer).
 * What is sent is the relay's event (types, parties, message id, precedence, times, the relay's
 * own reason text): a message's text never reaches the relay in the clear, and nothing here reads
 * it. The signature scheme is docs/escalation.md "Verifying a webhook".
 */

/** What a receiver gets: the same body on every attempt (the signature header changes). */
export interface EscalationPayload {
  /** The delivery id, `<hook>:<event id>`: the same on every attempt, so a receiver can drop repeats. */
  id: string;
  hook: string;
  eventId: number;
  event: HotlineEvent;
}

/** An attempt's result: answered (2xx, or the mail server took it), or why not. */
export type DeliveryResult = { ok: true; status: string } | { ok: false; status: string };

export const SIGNATURE_HEADER = 'x-hotline-signature';

/**
 * The signature header's value: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`.
 * The time is signed with the body so that a captured request cannot be replayed much later.
 */
export function signWebhook(secret: Uint8Array, t: number, body: string): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

/** One line that says what happened, for an e-mail subject (no message text: the event has none). */
export function summarize(event: HotlineEvent): string {
  switch (event.type) {
    case 'deadline.missed':
      return `${event.precedence} message ${event.messageId} ${event.from}→${event.to}: ${event.rung} deadline missed (due ${new Date(event.dueAt).toISOString()}, reminder ${event.level})`;
    case 'deadline.met':
      return `${event.precedence} message ${event.messageId} ${event.from}→${event.to}: ${event.rung}${event.late ? ' late' : ''}`;
    case 'deadline.closed':
      return `${event.precedence} message ${event.messageId} ${event.from}→${event.to}: ${event.rung} deadline closed (${event.reason})`;
    case 'link.down':
    case 'link.up':
    case 'link.test':
      return `${event.scope === 'relay' ? 'relay link' : 'link'} ${event.from}→${event.to} ${event.type === 'link.test' ? (event.ok ? 'test passed' : 'test failed') : event.type === 'link.up' ? 'up' : 'DOWN'}${event.reason ? `: ${event.reason}` : ''}`;
    case 'audit.alarm':
      return `audit alarm (${event.party}): ${event.reason}`;
    case 'message.relayed':
      return `${event.precedence} message ${event.messageId} ${event.from}→${event.to} relayed`;
  }
}

/** Sends notifications to the configured hooks; one SMTP transport per `smtp` hook, made once. */
export class Deliverer {
  private readonly mailers = new Map<string, Transporter>();
  /** Ends the requests in flight at a stop: each is settled as a failed attempt, tried again later. */
  private readonly stopping = new AbortController();

  constructor(private readonly now: () => number) {}

  async send(hook: Hook, payload: EscalationPayload, attempt: number): Promise<DeliveryResult> {
    try {
      return hook.kind === 'webhook' ? await this.post(hook, payload, attempt) : await this.mail(hook, payload);
    } catch (error) {
      // The error's message only: a fetch cause or an SMTP response, never the request's headers.
      const e = error as Error & { cause?: { code?: string }; responseCode?: number };
      return { ok: false, status: e.name === 'TimeoutError' ? `no answer within ${hook.timeoutMs} ms` : `${e.cause?.code ?? e.responseCode ?? e.name}: ${e.message}`.slice(0, 300) };
    }
  }

  private async post(hook: WebhookHook, payload: EscalationPayload, attempt: number): Promise<DeliveryResult> {
    const body = JSON.stringify(payload);
    const t = Math.floor(this.now() / 1000);
    const res = await fetch(hook.url, {
      method: 'POST',
      body,
      redirect: 'manual',
      signal: AbortSignal.any([AbortSignal.timeout(hook.timeoutMs), this.stopping.signal]),
      headers: {
        'content-type': 'application/json',
        'user-agent': 'hotline-relay',
        'x-hotline-delivery': payload.id,
        'x-hotline-event': payload.event.type,
        'x-hotline-attempt': String(attempt),
        [SIGNATURE_HEADER]: signWebhook(hook.secret, t, body),
      },
    });
    // The answer's body is not read into anything: only its status counts.
    await res.body?.cancel();
    return { ok: res.status >= 200 && res.status < 300, status: `HTTP ${res.status}` };
  }

  private async mail(hook: SmtpHook, payload: EscalationPayload): Promise<DeliveryResult> {
    let mailer = this.mailers.get(hook.name);
    if (!mailer) {
      mailer = nodemailer.createTransport({
        host: hook.host,
        port: hook.port,
        secure: hook.secure,
        ...(hook.auth ? { auth: hook.auth } : {}),
        connectionTimeout: hook.timeoutMs,
        greetingTimeout: hook.timeoutMs,
        socketTimeout: hook.timeoutMs,
      });
      this.mailers.set(hook.name, mailer);
    }
    const summary = summarize(payload.event);
    const info = (await mailer.sendMail({
      from: hook.from,
      to: [...hook.to],
      subject: `[Hotline] ${summary}`,
      text: `${summary}\n\nDelivery ${payload.id}\n\n${JSON.stringify(payload.event, null, 2)}\n`,
      headers: { 'X-Hotline-Delivery': payload.id, 'X-Hotline-Event': payload.event.type },
    })) as { response?: string };
    return { ok: true, status: `SMTP ${(info.response ?? 'accepted').slice(0, 100)}` };
  }

  /** End the requests in flight and close the SMTP connections. */
  close(): void {
    this.stopping.abort(new Error('the relay is stopping'));
    for (const m of this.mailers.values()) m.close();
    this.mailers.clear();
  }
}
