import { HotlineError, retryPolicy } from '../../shared/errors.js';
import { agreementHash } from '../../shared/crypto/keys.js';
import { CANNOT_COMPLY_REASONS, PRECEDENCES, RECEIPT_KINDS, type CannotComplyReason, type EnvelopeHeader, type Plaintext, type ReceiptKind } from '../../shared/protocol/schemas.js';
import { labelBanner, labelCodes, makeLabel } from '../../shared/protocol/labels.js';
import type { HotlineEvent, Rung as DeadlineRung } from '../../shared/protocol/frames.js';
import type { HotlineClient, MessageEvent, ReceiptEvent, RefusedEvent } from '../hotline-client.js';
import type { SendInput } from '../outbox.js';
import type { ClientState } from '../storage/client-storage.js';
import { translationAddressee } from '../../shared/protocol/translation.js';
import { partyLanguages, requireCatalogueEntry } from '../../shared/protocol/catalogue.js';
import type { RevokedSinceChange } from '../revoked-since.js';
import {
  LINK_FLAGS,
  LINK_HELP,
  openClient,
  parse,
  printHelp,
  required,
  seconds,
  usage,
  withTimeout,
  writePublicFile,
  type Command,
  type Io,
} from './common.js';
import { outboxKeys, reportOutboxFlush } from './outbox.js';
import { checkAddressee } from './recipients.js';
import { checkPeersConfirmed } from './peers.js';
import { checkReceiptReason } from '../../shared/crypto/receipt.js';
import { contentJson, contentLines, readAttachments, saveAttachments, type ReaderView } from './content.js';

const RUNGS = ['accepted', 'relayed', 'delivered', 'acknowledged', 'answered', 'will-comply', 'have-complied'] as const;
type Rung = (typeof RUNGS)[number];

/** What each `--wait` rung is reached by, among the addressee's verified receipts (the ladder: docs/ladder.md). */
const REACHED_BY: Partial<Record<Rung, readonly ReceiptKind[]>> = {
  delivered: RECEIPT_KINDS,
  acknowledged: ['acknowledged', 'will-comply', 'cannot-comply', 'have-complied'],
  answered: ['will-comply', 'cannot-comply', 'have-complied'],
  'will-comply': ['will-comply', 'have-complied'],
  'have-complied': ['have-complied'],
};

export const send: Command = {
  name: 'send',
  summary: 'send a signed, encrypted message and wait for its receipts',
  help: `Usage: hotline send --device FILE --to PARTY --precedence flash|immediate|priority|routine TEXT
                   [--wait accepted|relayed|delivered|acknowledged|answered|will-comply|have-complied]
                   [--timeout S]
                   [--subject S] [--lang L] [--exercise] [--attach FILE ...] [--code C]
                   [--label CLASS [--caveat C ...]]
                   [--server URL] [--agreement FILE]

Seals TEXT (use - to read it from stdin) for every operator and archive device of PARTY and of
your own party, puts it in the device's outbox and sends it. Prints the message id on stdout, then
waits until the wanted rung is reached (default: accepted, i.e. stored by the relay):
relayed (two-relay deployments) waits until the addressee's relay has stored it;
delivered and acknowledged wait for the other side's signed receipt, verified here; answered for
its will-comply or cannot-comply; will-comply for a will-comply (or have-complied); have-complied
for the report that it was done. Any higher rung reaches the lower ones (a will-comply also
acknowledges). Waiting for will-comply or have-complied, a cannot-comply ends the wait: exit 1
(HL_ERR_CLIENT_CANNOT_COMPLY) with its reason.
Exit 0 when reached; 1 on refusal or timeout (the message then stays in the outbox and goes with
the next send, ack or listen of this device; hotline outbox lists it).

Refused before anything is sealed when PARTY has no registered operator device, or while a key of
PARTY is new or changed and not confirmed by you (compare fingerprints by voice: hotline peers,
then hotline peers confirm).

${LINK_HELP}
  --to PARTY         the addressee party (e.g. cn-mnd)
  --precedence P     flash, immediate, priority or routine
  --wait RUNG        accepted (default), relayed, delivered, acknowledged, answered, will-comply
                     or have-complied
  --timeout S        give up after S seconds (default 60)
  --subject S        a subject line
  --lang L           language of TEXT (default: your party's first language)
  --exercise         mark the message as an exercise
  --attach FILE      attach FILE (repeat, at most 8; 30 KiB in all), with its name and a media
                     type from its extension; over the limit: HL_ERR_ATTACHMENT_TOO_LARGE
  --code C           send the agreement's catalogue entry C (e.g. C07): the recipient reads it in
                     its own language from its own agreement; TEXT is then optional free text
                     beside it. A code not in your agreement is refused (HL_ERR_CATALOGUE_UNKNOWN_CODE)
  --label CLASS      its security classification, one the agreement defines (README "Security
                     labels"); shown as a banner wherever the message is shown
  --caveat C         a handling caveat the agreement defines (repeat for several; needs --label)`,
  async run(argv, io) {
    const { values, positionals } = parse(
      'send',
      argv,
      {
        ...LINK_FLAGS,
        to: { type: 'string' },
        precedence: { type: 'string' },
        wait: { type: 'string' },
        timeout: { type: 'string' },
        subject: { type: 'string' },
        lang: { type: 'string' },
        exercise: { type: 'boolean' },
        label: { type: 'string' },
        caveat: { type: 'string', multiple: true },
        attach: { type: 'string', multiple: true },
        code: { type: 'string' },
      },
      true,
    );
    if (values.help) return printHelp(io, this.help);
    required('send', values, 'device', 'to', 'precedence');
    const label = makeLabel(values.label, values.caveat ?? []);
    const precedence = values.precedence!.toUpperCase();
    if (!(PRECEDENCES as readonly string[]).includes(precedence)) {
      throw usage(`--precedence must be flash, immediate, priority or routine, got "${values.precedence}"`);
    }
    const wait = (values.wait ?? 'accepted') as Rung;
    if (!RUNGS.includes(wait)) throw usage(`--wait must be accepted, relayed, delivered, acknowledged, answered, will-comply or have-complied, got "${values.wait}"`);
    const timeoutMs = seconds('timeout', values.timeout, 60) * 1000;
    let body = positionals.join(' ');
    if (body === '-') body = await io.readStdin();
    // With --code the catalogue entry is the message: free text beside it is optional.
    if (body.trim() === '' && values.code === undefined) throw usage('hotline send needs the message TEXT (or - to read it from stdin), or --code C\nRun: hotline send --help');
    const attachments = values.attach === undefined ? undefined : readAttachments(values.attach);
    return sendAndWait('send', values, io, { wait, timeoutMs }, async (client) => {
      if (values.code !== undefined) requireCatalogueEntry(client.agreement, values.code);
      return {
        to: values.to!,
        precedence: precedence as (typeof PRECEDENCES)[number],
        body,
        ...(values.subject === undefined ? {} : { subject: values.subject }),
        ...(values.lang === undefined ? {} : { lang: values.lang }),
        ...(values.exercise ? { exercise: true } : {}),
        ...(values.code === undefined ? {} : { code: values.code }),
        ...(attachments === undefined ? {} : { attachments }),
        ...(label === undefined ? {} : { label }),
      };
    });
  },
};

/**
 * Seal what `make` returns (given the open client and its stored state), print its id and wait
 * for the rung: `send` and `translate`.
 */
async function sendAndWait(
  command: string,
  values: Parameters<typeof openClient>[1],
  io: Io,
  { wait, timeoutMs }: { wait: Rung; timeoutMs: number },
  make: (client: HotlineClient, stored: ClientState) => Promise<SendInput>,
): Promise<number> {
  const { client, statePath, storage, devicePath } = await openClient(command, values, io, false);
  reportOutboxFlush(client, storage, io, await outboxKeys(storage, client));
  const seen = collect(client);
  // Say at once when the relay cannot be reached (the client keeps trying until the timeout),
  // and why in the end (the last reason, e.g. the connection refused).
  const unreachable = watchUnreachable(client, io);
  // One deadline for connecting and for the rung.
  const deadline = Date.now() + timeoutMs;
  try {
    // Before connecting: a wrong code or an unknown original is said at once, even offline.
    const input = await make(client, await storage.read(`${client.me.party}/${client.me.device}`));
    await withTimeout(client.start(), timeoutMs, `cannot connect to the relay within ${timeoutMs / 1000} s`).catch((err: unknown) => {
      // Offline: the message is still sealed and stored, and goes with the next connection.
      if (err instanceof HotlineError && (err.code === 'HL_ERR_CLIENT_TIMEOUT' || err.code === 'HL_ERR_CLIENT_UNREACHABLE')) return err;
      throw err;
    });
    if (client.directory().length === 0) await client.loadStoredDirectory();
    // Nothing known yet (never connected): the outbox says so when it seals.
    if (client.directory().length > 0) {
      checkAddressee(client.directory(), client.me, input.to, io);
      checkPeersConfirmed(client.directory(), client.me, input.to, devicePath);
    }
    const { id } = await client.send(input);
    io.out(id);
    const reached = await withTimeout(seen.until(id, wait, io), Math.max(1, deadline - Date.now()), '').catch((err: unknown) => {
      if (err instanceof HotlineError && err.code === 'HL_ERR_CLIENT_TIMEOUT') return undefined;
      throw err;
    });
    if (reached === undefined) {
      const never = unreachable.last();
      const state = seen.accepted.has(id)
        ? `it was accepted by the relay but not ${wait} within ${timeoutMs / 1000} s`
        : `it was not accepted by the relay within ${timeoutMs / 1000} s${never === undefined ? '' : ` (${never})`}; it stays in the outbox (${statePath}) and goes with the next send, ack or listen of this device (hotline outbox lists it)`;
      throw new HotlineError('HL_ERR_CLIENT_TIMEOUT', `message ${id}: ${state}`);
    }
    return 0;
  } finally {
    await client.stop();
  }
}

export const translate: Command = {
  name: 'translate',
  summary: 'send a signed translation of a message, bound to its original',
  help: `Usage: hotline translate --device FILE ID --lang L TEXT
                        [--wait RUNG] [--timeout S] [--server URL] [--agreement FILE]

Sends TEXT (use - for stdin), in language L, as a translation of message ID, which this device
holds (received with hotline listen, or sent by it). The translation is its own signed, encrypted
message: its header names the original by id and envelope hash, so it is bound to exactly that
envelope; it goes to the other party of the original with the original's precedence, and, as
every message, to the other devices of your own party. Recipients show it beside the original,
marked as a translation; the original stays authoritative. Receipts, deadlines and the audit log
treat it as any message; the audit report lists it under its original.

${LINK_HELP}
  --lang L           the language of the translation (required), e.g. en
  --wait RUNG        as for hotline send (default accepted)
  --timeout S        give up after S seconds (default 60)`,
  async run(argv, io) {
    const { values, positionals } = parse('translate', argv, { ...LINK_FLAGS, lang: { type: 'string' }, wait: { type: 'string' }, timeout: { type: 'string' } }, true);
    if (values.help) return printHelp(io, this.help);
    required('translate', values, 'device', 'lang');
    const [id, ...words] = positionals;
    if (id === undefined || !/^[0-9a-f]{32}$/.test(id)) throw usage('hotline translate needs the ID of the message translated (32 hex characters), then the TEXT\nRun: hotline translate --help');
    let body = words.join(' ');
    if (body === '-') body = await io.readStdin();
    if (body.trim() === '') throw usage('hotline translate needs the translation TEXT (or - to read it from stdin)');
    const wait = (values.wait ?? 'accepted') as Rung;
    if (!RUNGS.includes(wait)) throw usage(`--wait must be one of ${RUNGS.join(', ')}, got "${values.wait}"`);
    const timeoutMs = seconds('timeout', values.timeout, 60) * 1000;
    return sendAndWait('translate', values, io, { wait, timeoutMs }, async (client, stored) => {
      const held = stored.inbox[id] ?? stored.sent[id];
      if (!held) throw new HotlineError('HL_ERR_TRANSLATION_UNKNOWN_ORIGINAL', `no message ${id} on this device to translate (hotline listen shows the ids received)`);
      return { to: translationAddressee(held.header, client.me.party), precedence: held.header.precedence, body, lang: values.lang!, translationOf: id };
    });
  },
};

/** Why a network error happened, from its cause chain: ECONNREFUSED, ENOTFOUND, ... */
function networkReason(err: unknown): string | undefined {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
  }
  return undefined;
}

const REASONS: Record<string, string> = {
  ECONNREFUSED: 'the connection was refused: is the server running, on that port?',
  ENOTFOUND: 'the host name was not found',
  ECONNRESET: 'the connection was reset',
  ETIMEDOUT: 'the connection timed out',
  EHOSTUNREACH: 'the host is unreachable',
};

/**
 * While the client cannot reach the relay: say so once, at once ("cannot reach URL (retrying)",
 * the URL that failed: with several, the client goes on to the next), and keep the last reason
 * for the final message; say when it connects after all, and where.
 */
function watchUnreachable(client: HotlineClient, io: Io): { last(): string | undefined } {
  let reason: string | undefined;
  let said = false;
  client.on('error', (e) => {
    if (e.code !== 'HL_ERR_CLIENT_UNREACHABLE') return;
    // The error is reported before the client moves on to the next URL: this is the one that failed.
    const url = client.serverUrl;
    const why = networkReason(e);
    reason = `cannot reach ${url}: ${why === undefined ? e.message : (REASONS[why] ?? why)}`;
    if (!said) io.err(`cannot reach ${url} (retrying${client.serverUrls.length > 1 ? ', and the other URLs' : ''})`);
    said = true;
  });
  client.on('connected', ({ url }) => {
    if (said) io.err(`connected to ${url}`);
    said = false;
    reason = undefined;
  });
  return { last: () => reason };
}

/** Watches a client's events for a message's rungs. */
function collect(client: HotlineClient) {
  const accepted = new Map<string, number>();
  const receipts: ReceiptEvent[] = [];
  const refused: RefusedEvent[] = [];
  let wake: () => void = () => {};
  client.on('accepted', (a) => {
    accepted.set(a.id, a.at);
    wake();
  });
  client.on('receipt', (r) => {
    receipts.push(r);
    wake();
  });
  const relayed = new Map<string, number>();
  client.on('relayed', (r) => {
    relayed.set(r.messageId, r.at);
    wake();
  });
  client.on('refused', (r) => {
    refused.push(r);
    wake();
  });
  return {
    accepted,
    async until(id: string, rung: Rung, io: Io): Promise<true> {
      const said = new Set<string>();
      for (;;) {
        const refusal = refused.find((r) => r.ref === id);
        if (refusal) throw new HotlineError('HL_ERR_CLIENT_REFUSED', `the relay refused message ${id}: ${refusal.code}: ${refusal.message}`);
        // Nothing before `accepted`: a receipt may come first (PROTOCOL.md "Delivery before
        // durability"), and until `accepted` the message stays in this device's outbox. Then the
        // rungs are told in their order.
        if (!accepted.has(id)) {
          await new Promise<void>((resolve) => (wake = resolve));
          continue;
        }
        if (!said.has('accepted')) {
          said.add('accepted');
          io.err(`accepted by the relay at ${iso(accepted.get(id)!)}`);
        }
        if (relayed.has(id) && !said.has('relayed')) {
          said.add('relayed');
          io.err(`relayed: stored by the addressee's relay at ${iso(relayed.get(id)!)}`);
        }
        for (const r of receipts.filter((x) => x.receipt.receipt.messageId === id)) {
          const b = r.receipt.receipt;
          const k = `${b.kind}/${b.by.party}/${b.by.device}`;
          if (said.has(k)) continue;
          said.add(k);
          if (!r.verified) {
            io.err(`warning: ignored a ${b.kind} receipt claiming ${b.by.party}/${b.by.device} that does not verify (${r.error?.code ?? 'unknown'})`);
            continue;
          }
          io.err(`${b.kind}${b.reason === undefined ? '' : ` (${b.reason})`} by ${b.by.party}/${b.by.device} at ${iso(b.at)} (signature verified)`);
        }
        const verified = receipts.filter((x) => x.verified && x.receipt.receipt.messageId === id).map((x) => x.receipt.receipt);
        const kinds = verified.map((b) => b.kind);
        if (rung === 'accepted') return true;
        // A receipt from the addressee proves its relay had the message, whatever came first.
        if (rung === 'relayed' && (relayed.has(id) || verified.length > 0)) return true;
        // Any verified rung from the addressee implies the rungs below it (delivered by any).
        if (REACHED_BY[rung]?.some((k) => kinds.includes(k))) return true;
        // Waiting for compliance, a cannot-comply means it will never come (unless complied anyway, above).
        const no = verified.find((b) => b.kind === 'cannot-comply');
        if ((rung === 'will-comply' || rung === 'have-complied') && no) {
          throw new HotlineError('HL_ERR_CLIENT_CANNOT_COMPLY', `message ${id}: ${no.by.party}/${no.by.device} answered cannot-comply (${no.reason ?? 'no reason given'}); it will not be ${rung === 'will-comply' ? 'complied with' : 'done'}`);
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
  };
}

export const listen: Command = {
  name: 'listen',
  summary: 'receive messages, receipts and events (sends delivered receipts)',
  help: `Usage: hotline listen --device FILE [--json] [--test-agent] [--save-attachments DIR]
                     [--server URL] [--agreement FILE]

Connects the device and keeps it connected (reconnecting with backoff), prints every message it
receives (verified and decrypted here), every receipt (with whether its signature verifies) and
every deadline or link event. An operator device answers each message addressed to its party with a
signed "delivered" receipt; acknowledge with \`hotline ack\`. Stop with Ctrl-C.

An operator device also cosigns the audit log's checkpoints while it listens, each after checking
the log's signature and a consistency proof from the last checkpoint it cosigned; a failed check
prints "! audit alarm", is reported to both consoles of the party, and stops the cosigning.

Deadline events: "deadline missed" when a message was not delivered or acknowledged in the time its
precedence allows (repeated as reminders with a rising level until it is), "deadline met" when it
finally was. Link events: each link test's result and round trip, "link.down" / "link.up" alarms.

${LINK_HELP}
  --json             one JSON object per line: {"type":"message"|"receipt"|"event"|"connected"|...}
  --test-agent       be your party's link-test agent (operator devices): send a signed test
                     message to each other party now and then at the agreement's interval
                     (linkTest.intervalMs); the relay reports the round trip to both parties
  --save-attachments DIR
                     save each message's attachments in DIR (made if missing) under safe names,
                     never overwriting a file (a taken name gets a number); without it they are
                     listed (name, type, size) and not saved

A message sent by catalogue code is shown with the entry in your party's language from your own
agreement ([C07] …), and its free text, if any, below; a code your agreement lacks is shown as
unknown. A translation is marked TRANSLATION with the id of its original, which stays
authoritative; one that names a message this device does not hold, or another envelope than the
one held under that id, is refused (HL_ERR_TRANSLATION_UNKNOWN_ORIGINAL / _MISMATCH).`,
  async run(argv, io) {
    const { values } = parse('listen', argv, { ...LINK_FLAGS, json: { type: 'boolean' }, 'test-agent': { type: 'boolean' }, 'save-attachments': { type: 'string' } });
    if (values.help) return printHelp(io, this.help);
    const testAgent = values['test-agent'] === true;
    const { client, devicePath, storage } = await openClient('listen', values, io, true, { testAgent, cosignIfOperator: true });
    reportOutboxFlush(client, storage, io);
    if (testAgent && client.me.role !== 'operator') {
      throw usage(`--test-agent needs an operator device; ${client.me.party}/${client.me.device} is ${client.me.role}`);
    }
    const json = values.json === true;
    const print = (obj: Record<string, unknown>, human: string) => (json ? io.out(JSON.stringify(obj)) : io.out(human));
    client.on('connected', (c) => {
      if (json) io.out(JSON.stringify({ type: 'connected', device: client.me, serverTime: c.serverTime, url: c.url }));
      else io.err(`connected as ${client.me.party}/${client.me.device} (${client.me.role}) at ${c.url}`);
    });
    // With several URLs (the nodes of one relay) each line names the one that failed and the next.
    const several = client.serverUrls.length > 1;
    client.on('disconnected', (d) => {
      if (json) {
        io.out(
          JSON.stringify({
            type: 'disconnected',
            code: d.code,
            url: d.url,
            ...(d.retryInMs === undefined ? {} : { retryInMs: d.retryInMs }),
            ...(d.nextUrl === undefined ? {} : { nextUrl: d.nextUrl }),
          }),
        );
      } else {
        const at = several ? ` at ${d.url}` : '';
        const next = d.retryInMs === undefined ? '' : `; retrying${several && d.nextUrl !== undefined ? ` at ${d.nextUrl}` : ''} in ${(d.retryInMs / 1000).toFixed(1)} s`;
        io.err(`link down${at} (${d.code}${d.reason ? ` ${d.reason}` : ''})${next}`);
      }
    });
    const saveDir = values['save-attachments'];
    const view = { agreement: client.agreement, party: client.me.party };
    client.on('message', (m) => {
      let saved: string[] | undefined;
      try {
        saved = saveDir !== undefined && m.plaintext.attachments !== undefined ? saveAttachments(saveDir, m.plaintext.attachments) : undefined;
      } catch (err) {
        io.err(`could not save the attachments of ${m.header.id} in ${saveDir}: ${(err as Error).message}`);
      }
      print(messageJson(m, { view, ...(saved ? { saved } : {}) }), messageText(m, devicePath, client, { view, ...(saved ? { saved } : {}) }));
    });
    client.on('receipt', (r) => print(receiptJson(r), receiptText(r)));
    client.on('event', (e) => print({ type: 'event', event: e }, eventText(e, client.me.party)));
    client.on('link-test-sent', (t) => print({ type: 'link-test-sent', ...t }, `  link test sent to ${t.to} (${t.id})`));
    // Forward secrecy at work (README "Key rotation and forward secrecy"): key ids only, never a secret.
    client.on('prekeys', (p) =>
      print({ type: 'prekeys', ...p }, [...(p.rotated ? [`  prekey ${p.rotated} published`] : []), ...p.deleted.map((k) => `  prekey ${k}: secret deleted`)].join('\n')),
    );
    client.on('cosigned', (c) =>
      json ? io.out(JSON.stringify({ type: 'cosigned', ...c })) : io.err(`cosigned the audit log's checkpoint at ${c.size} entries${c.from === undefined ? '' : ` (consistent with the one at ${c.from} entries)`}`),
    );
    client.on('refused', (r) => print({ type: 'refused', ...r }, `refused${r.ref ? ` ${r.ref}` : ''}: ${r.code}: ${r.message}`));
    client.on('revoked-since', (c) => {
      for (const line of revokedSinceLines(c)) print(line.json, line.text);
    });
    client.on('notice', (n) => print({ type: 'notice', notice: n }, `! relay notice: ${n.type}: ${n.reason}`));
    // A refusal the client will not retry (the device revoked, the agreement changed) ends listen:
    // exit 1 with a sentence, instead of a listener that looks alive and receives nothing.
    // The client gives up by a `disconnected` without retryInMs, after reporting the refusal.
    let stopWith: (e: HotlineError) => void = () => {};
    const fatal = new Promise<never>((_, reject) => (stopWith = reject));
    let lastRefusal: HotlineError | undefined;
    client.on('error', (e) => {
      if (retryPolicy(e.code) === 'stop') lastRefusal = e;
      if (json) io.out(JSON.stringify({ type: 'error', code: e.code, message: e.message }));
      else io.err(`${e.code}: ${e.message}`);
    });
    client.on('disconnected', (d) => {
      if (d.retryInMs === undefined) stopWith(lastRefusal ?? new HotlineError('HL_ERR_CLIENT_REFUSED', `the relay closed the link for good (${d.code}${d.reason ? ` ${d.reason}` : ''})`));
    });
    client.start().catch(stopWith);
    try {
      await Promise.race([io.interrupted, fatal]);
      return 0;
    } catch (err) {
      if (err instanceof HotlineError && err.code === 'HL_ERR_CERT_REVOKED') {
        throw new HotlineError(
          err.code,
          `this device, ${client.me.party}/${client.me.device}, has been revoked by its party; the relay refuses it from now on. Enrol a new device (hotline device enroll) to go on`,
          { cause: err },
        );
      }
      throw err;
    } finally {
      await client.stop();
    }
  },
};

const ANSWER_KINDS = ['acknowledged', 'will-comply', 'cannot-comply', 'have-complied'] as const;

export const ack: Command = {
  name: 'ack',
  summary: 'acknowledge or answer a received message (signed receipt)',
  help: `Usage: hotline ack --device FILE ID [--kind acknowledged|will-comply|cannot-comply|have-complied]
                  [--reason R] [--timeout S]

Signs a receipt for message ID, which this device received (with \`hotline listen\`), and sends
it. Exit 0 once the relay has stored it. Each receipt is one rung of the response ladder, which
the sender sees verified (\`hotline send --wait\`, \`hotline listen\`):

  delivered       automatic: an operator device of the addressee verified and decrypted it
  acknowledged    (default) a person read it
  will-comply     the answer: your party will do what the message asks
  cannot-comply   the answer: your party cannot; --reason says why (required), a reply the rest
  have-complied   your party has done what the message asks

Each rung reaches the ones below it (a will-comply also acknowledges), and each may have its own
deadline in the agreement (acknowledged always; answered and complied where the agreement sets
them). Typically acknowledged at once, then will-comply or cannot-comply once decided, then
have-complied once done: each is its own signed receipt.

${LINK_HELP}
  --kind K           acknowledged (default), will-comply, cannot-comply or have-complied
  --reason R         with cannot-comply only: ${CANNOT_COMPLY_REASONS.join(', ')}.
                     Not encrypted (the relays and the audit log read it): details go in a reply
  --timeout S        give up after S seconds (default 30)`,
  async run(argv, io) {
    const { values, positionals } = parse('ack', argv, { ...LINK_FLAGS, kind: { type: 'string' }, reason: { type: 'string' }, timeout: { type: 'string' } }, true);
    if (values.help) return printHelp(io, this.help);
    const id = positionals[0];
    if (id === undefined || positionals.length > 1 || !/^[0-9a-f]{32}$/.test(id)) {
      throw usage('hotline ack needs exactly one message ID (32 hex characters, as printed by hotline listen)\nRun: hotline ack --help');
    }
    const kind = (values.kind ?? 'acknowledged') as (typeof ANSWER_KINDS)[number];
    if (!ANSWER_KINDS.includes(kind)) throw usage(`--kind must be acknowledged, will-comply, cannot-comply or have-complied`);
    const reason = values.reason as CannotComplyReason | undefined;
    if (reason !== undefined && !CANNOT_COMPLY_REASONS.includes(reason)) throw usage(`--reason must be one of ${CANNOT_COMPLY_REASONS.join(', ')}, got "${reason}"`);
    // Said before connecting: the same rule the relay keeps (HL_ERR_RECEIPT_REASON_REQUIRED / _UNEXPECTED).
    checkReceiptReason({ kind, messageId: id, ...(reason === undefined ? {} : { reason }) });
    const timeoutMs = seconds('timeout', values.timeout, 30) * 1000;
    const { client, storage } = await openClient('ack', values, io, false);
    reportOutboxFlush(client, storage, io, await outboxKeys(storage, client));
    try {
      const stored = new Promise<number>((resolve, reject) => {
        client.on('receipt-accepted', (r) => r.messageId === id && r.kind === kind && resolve(r.at));
        client.on('refused', (r) => r.ref === id && reject(new HotlineError('HL_ERR_CLIENT_REFUSED', `the relay refused the receipt: ${r.code}: ${r.message}`)));
      });
      stored.catch(() => undefined);
      await withTimeout(client.start(), timeoutMs, `cannot connect to the relay within ${timeoutMs / 1000} s`);
      await client.acknowledge(id, kind, reason === undefined ? {} : { reason });
      const at = await withTimeout(stored, timeoutMs, `the relay did not confirm the receipt within ${timeoutMs / 1000} s; run hotline ack again`);
      io.out(`${kind}${reason === undefined ? '' : ` (${reason})`} ${id} (stored by the relay at ${iso(at)})`);
      return 0;
    } finally {
      await client.stop();
    }
  },
};

export const directory: Command = {
  name: 'directory',
  summary: 'save the verified directory of device certificates (for hotline seal)',
  help: `Usage: hotline directory --device FILE --out FILE [--server URL] [--agreement FILE]

Fetches the directory of device certificates and revocations, verifies every certificate against
the pinned agreement here, and writes it to FILE, for \`hotline seal\` when the relay is unreachable.

${LINK_HELP}
  --out FILE         where to write the directory`,
  async run(argv, io) {
    const { values } = parse('directory', argv, { ...LINK_FLAGS, out: { type: 'string' }, timeout: { type: 'string' } });
    if (values.help) return printHelp(io, this.help);
    required('directory', values, 'device', 'out');
    const timeoutMs = seconds('timeout', values.timeout, 30) * 1000;
    const { client, storage } = await openClient('directory', values, io, false);
    const flushed = reportOutboxFlush(client, storage, io);
    try {
      await withTimeout(client.start(), timeoutMs, `cannot connect to the relay within ${timeoutMs / 1000} s`);
      const snap = await client.directorySnapshot();
      if (!snap) throw new HotlineError('HL_ERR_CLIENT_REFUSED', 'the relay sent no directory');
      writePublicFile(values.out!, { type: 'hotline-directory', v: 1, agreementHash: agreementHash(client.agreement), ...snap });
      io.out(`directory written: ${values.out}`);
      for (const c of client.directory()) io.out(`  ${c.party}/${c.device} (${c.role}) valid until ${iso(c.notAfter)}`);
      await flushed.settled(timeoutMs);
      return 0;
    } finally {
      await client.stop();
    }
  },
};

// ---------------------------------------------------------------------------------------------
// Printing

export function messageJson(
  m: { header: EnvelopeHeader; plaintext: Plaintext; envelopeHash: string; acceptedAt?: number; senderRevokedAt?: number },
  content: { view?: ReaderView; saved?: readonly string[] } = {},
): Record<string, unknown> {
  const h = m.header;
  return {
    type: 'message',
    id: h.id,
    from: h.from,
    to: h.to,
    precedence: h.precedence,
    seq: h.seq,
    sentAt: h.sentAt,
    ...(m.acceptedAt === undefined ? {} : { acceptedAt: m.acceptedAt }),
    ...(m.senderRevokedAt === undefined ? {} : { senderRevokedAt: m.senderRevokedAt }),
    ...(h.exercise ? { exercise: true } : {}),
    ...(h.replyTo ? { replyTo: h.replyTo } : {}),
    ...(h.linkTest ? { linkTest: true } : {}),
    ...(h.label === undefined ? {} : { label: h.label }),
    ...(m.plaintext.subject === undefined ? {} : { subject: m.plaintext.subject }),
    lang: m.plaintext.lang,
    body: m.plaintext.body,
    ...contentJson(h, m.plaintext, content.view, content.saved),
    envelopeHash: m.envelopeHash,
  };
}

/**
 * The security label line of a message (PROTOCOL.md "Security labels"): the names in the reader's
 * language (its party's first), then the codes; "(no label)" when the agreement defines labels and
 * the message has none.
 */
export function labelLine(h: EnvelopeHeader, view?: ReaderView): string | undefined {
  if (h.label === undefined) return view?.agreement.labels === undefined ? undefined : '   LABEL: (no label)';
  const codes = labelCodes(h.label);
  if (view === undefined) return `   LABEL: ${codes}`;
  const names = labelBanner(view.agreement, h.label, partyLanguages(view.agreement, view.party)[0] ?? 'en');
  return `   LABEL: ${names}${names === codes ? '' : ` [${codes}]`}`;
}

export function messageText(
  m: MessageEvent | { header: EnvelopeHeader; plaintext: Plaintext },
  devicePath?: string,
  client?: HotlineClient,
  content: { view?: ReaderView; saved?: readonly string[] } = {},
): string {
  const h = m.header;
  // A link test is answered automatically (the delivered receipt) and needs nobody.
  if (h.linkTest) return `  link test from ${h.from.party}/${h.from.device} at ${iso(h.sentAt)} (${h.id}): answered automatically`;
  const lines = [
    `── ${h.exercise ? 'EXERCISE ' : ''}${h.precedence} from ${h.from.party}/${h.from.device} to ${h.to} at ${iso(h.sentAt)}`,
    `   id ${h.id}`,
  ];
  const view = content.view ?? (client ? { agreement: client.agreement, party: client.me.party } : undefined);
  const label = labelLine(h, view);
  if (label !== undefined) lines.splice(1, 0, label);
  if ('senderRevokedAt' in m && m.senderRevokedAt !== undefined) lines.push(`   sender revoked since ${iso(m.senderRevokedAt)} (signed while its certificate was valid)`);
  const extra = contentLines(h, m.plaintext, view, content.saved);
  lines.push(...extra.before);
  if (m.plaintext.subject !== undefined) lines.push(`   subject: ${m.plaintext.subject}`);
  // Sent by catalogue code alone: no free text to print.
  if (m.plaintext.code === undefined || m.plaintext.body !== '') lines.push(...m.plaintext.body.split('\n').map((l) => `   ${l}`));
  lines.push(...extra.after);
  if (devicePath && client && h.to === client.me.party && client.me.role === 'operator') {
    lines.push(`   acknowledge: hotline ack --device ${devicePath} ${h.id}`);
  }
  return lines.join('\n');
}

function receiptJson(r: ReceiptEvent): Record<string, unknown> {
  const b = r.receipt.receipt;
  return {
    type: 'receipt', messageId: b.messageId, kind: b.kind, ...(b.reason === undefined ? {} : { reason: b.reason }), by: b.by, at: b.at, verified: r.verified,
    ...(r.signerRevokedAt === undefined ? {} : { signerRevokedAt: r.signerRevokedAt }),
    ...(r.error ? { error: r.error.code } : {}),
  };
}

function receiptText(r: ReceiptEvent): string {
  const b = r.receipt.receipt;
  const v = r.verified ? 'signature verified' : `NOT VERIFIED: ${r.error?.code ?? ''}`;
  const revoked = r.signerRevokedAt === undefined ? '' : `, signer revoked since ${iso(r.signerRevokedAt)}`;
  return `✓ ${b.kind}${b.reason === undefined ? '' : ` (${b.reason})`} ${b.messageId} by ${b.by.party}/${b.by.device} at ${iso(b.at)} (${v}${revoked})`;
}

const OVERDUE_FOR: Record<DeadlineRung, string> = {
  delivered: 'delivery',
  acknowledged: 'acknowledgement',
  answered: 'an answer (will-comply or cannot-comply)',
  complied: 'have-complied',
};

/** An event as the operator of `me` reads it: the sender side and the addressee side see it differently. */
export function eventText(e: HotlineEvent, me?: string): string {
  switch (e.type) {
    case 'deadline.missed': {
      const late = `${Math.round(e.lateMs / 1000)} s late, level ${e.level}`;
      if (me === e.from) return `! deadline missed: your ${e.precedence} ${e.messageId} not yet ${e.rung} by ${e.to} — ${late}`;
      if (me === e.to) return `! deadline missed: ${e.precedence} message ${e.messageId} from ${e.from} overdue for ${OVERDUE_FOR[e.rung]} — ${late}`;
      return `! deadline missed: ${e.precedence} ${e.messageId} (${e.from} → ${e.to}) not ${e.rung} — ${late}`;
    }
    case 'deadline.met':
      return `  deadline met: ${e.precedence} ${e.messageId} ${e.rung}${e.late ? ` ${Math.round(e.lateMs / 1000)} s late` : ' on time'}`;
    case 'deadline.closed': {
      if (e.reason === 'cannot-comply') return `  deadline closed: ${e.precedence} ${e.messageId} (${e.from} → ${e.to}) ${e.rung}: ${e.to} answered cannot-comply`;
      const why = e.reason === 'recipient-refused' ? `refused by ${e.to}'s device` : `${e.to}'s devices revoked`;
      return `! deadline closed: ${e.precedence} ${e.messageId} (${e.from} → ${e.to}) ${e.rung} can no longer be reached (${why}) — ${e.detail}`;
    }
    case 'audit.alarm':
      return `! audit alarm (${e.party}): ${e.reason}`;
    case 'message.relayed':
      return `  relayed: ${e.precedence} ${e.messageId} stored by ${e.to}'s relay`;
    default:
      return `${e.ok ? ' ' : '!'} ${e.type}: ${e.from} → ${e.to}${e.roundTripMs === undefined ? '' : ` ${e.roundTripMs} ms`}${e.reason ? ` (${e.reason})` : ''}`;
  }
}

/** What a directory fetch newly labelled "revoked since" (`listen`, `status`), one line each. */
export function revokedSinceLines(c: RevokedSinceChange): { json: Record<string, unknown>; text: string }[] {
  return [
    ...c.messages.map((m) => ({
      json: { type: 'sender-revoked', messageId: m.id, from: m.from, revokedAt: m.revokedAt },
      text: `! sender revoked since ${iso(m.revokedAt)}: message ${m.id} from ${m.from} stays readable (accepted while its certificate was valid)`,
    })),
    ...c.receipts.map((r) => ({
      json: { type: 'signer-revoked', messageId: r.messageId, by: r.by, revokedAt: r.revokedAt },
      text: `! signer revoked since ${iso(r.revokedAt)}: receipts by ${r.by} for ${r.messageId} stay valid (signed before the revocation)`,
    })),
  ];
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
