import type { StatusDeadline, StatusResponse } from '../../shared/protocol/status.js';
import { revokedSinceLines } from './link.js';
import { labelCodes } from '../../shared/protocol/labels.js';
import type { ClientState } from '../storage/client-storage.js';
import { LINK_FLAGS, LINK_HELP, openClient, parse, printHelp, seconds, withTimeout, type Command } from './common.js';

export const status: Command = {
  name: 'status',
  summary: 'what waits for acknowledgement, what is overdue, and the last link test',
  help: `Usage: hotline status --device FILE [--json] [--server URL] [--agreement FILE]

Asks the relay for your party's view: the messages waiting for your party's delivery or
acknowledgement, and the messages your party sent that the other side has not yet acknowledged,
one line per message with each rung still open (delivered, acknowledged), the time left or how
long it is overdue (and its escalation level); then, for each pair
of parties, the state of the link (up, down, or no test yet) and the last link test with its round
trip. Times are the relay's. Then what this device holds from devices revoked since: messages
received and receipts for its messages, accepted while the certificate was valid (still valid,
labelled "revoked since"). Operator and auditor devices.

${LINK_HELP}
  --json             print the relay's answer as one JSON object
  --timeout S        give up after S seconds (default 30)`,
  async run(argv, io) {
    const { values } = parse('status', argv, { ...LINK_FLAGS, json: { type: 'boolean' }, timeout: { type: 'string' } });
    if (values.help) return printHelp(io, this.help);
    const timeoutMs = seconds('timeout', values.timeout, 30) * 1000;
    const { client, storage } = await openClient('status', values, io, false);
    try {
      const st = await withTimeout(client.status(), timeoutMs, `the relay did not answer within ${timeoutMs / 1000} s`);
      // The directory brings the revocations since the last fetch: what this device stored before
      // them is labelled "revoked since" (README "Revoked devices and old messages").
      await withTimeout(client.refreshDirectory(), timeoutMs, `the relay did not answer within ${timeoutMs / 1000} s`);
      const revoked = await client.revokedLabels();
      if (values.json) io.out(JSON.stringify({ ...st, revokedSince: revoked }));
      else {
        io.out(statusText(st, client.agreement.parties.map((p) => p.id), labelsHeld(await storage.read(`${client.me.party}/${client.me.device}`))));
        if (revoked.messages.length + revoked.receipts.length > 0) {
          io.out(['', 'Stored here, from devices revoked since (still valid: accepted before the revocation):', ...revokedSinceLines(revoked).map((l) => `  ${l.text}`)].join('\n'));
        }
      }
      return 0;
    } finally {
      await client.stop();
    }
  },
};

/** The labels of the messages this device received or sent, by id (codes). */
function labelsHeld(state: ClientState): Map<string, string> {
  const out = new Map<string, string>();
  for (const r of [...Object.values(state.inbox), ...Object.values(state.sent)]) if (r.header.label) out.set(r.header.id, labelCodes(r.header.label));
  return out;
}

/** A duration for people: "2 h 05 min", "4 min 10 s", "12 s". */
export function duration(ms: number): string {
  const s = Math.floor(Math.abs(ms) / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h} h ${String(m).padStart(2, '0')} min`;
  if (m > 0) return `${m} min ${String(sec).padStart(2, '0')} s`;
  return `${sec} s`;
}

/**
 * One line per message: the relay reports a deadline per rung (delivered, acknowledged), so a
 * message waiting for both has two; they are shown together, and the message counted once.
 */
function messageLine(rungs: readonly StatusDeadline[], peer: string, labels?: ReadonlyMap<string, string>): string {
  const d = rungs[0]!;
  const label = labels?.get(d.messageId);
  const overdue = rungs.some((r) => r.overdue);
  const parts = rungs.map((r) => `${r.rung.padEnd(12)} ${r.overdue ? `OVERDUE ${duration(r.remainingMs)}${r.level > 0 ? ` (level ${r.level})` : ''}` : `${duration(r.remainingMs)} left`}`);
  return `  ${overdue ? '!' : ' '} ${d.precedence.padEnd(9)} ${d.messageId}  ${peer.padEnd(14)} ${parts.join('; ')}${label === undefined ? '' : `  [${label}]`}`;
}

/** Deadlines grouped by message, in the relay's order (by due time) of each message's first rung. */
function byMessage(deadlines: readonly StatusDeadline[]): StatusDeadline[][] {
  const groups = new Map<string, StatusDeadline[]>();
  for (const d of deadlines) {
    const g = groups.get(d.messageId);
    if (g) g.push(d);
    else groups.set(d.messageId, [d]);
  }
  return [...groups.values()];
}

const messages = (n: number) => `${n} message${n === 1 ? '' : 's'}`;

/**
 * `labels`: the security label (by its codes) of the messages this device holds, by id: the relay's
 * status does not carry headers, so a label is shown for the messages known here (PROTOCOL.md
 * "Security labels").
 */
export function statusText(st: StatusResponse, parties: readonly string[], labels?: ReadonlyMap<string, string>): string {
  const iso = (ms: number) => new Date(ms).toISOString();
  const lines = [`${st.party} — status at ${iso(st.now)} (relay time)`, ''];
  const waiting = byMessage(st.waiting);
  lines.push(`Waiting for ${st.party} (${messages(waiting.length)}):`);
  if (waiting.length === 0) lines.push('    nothing');
  for (const g of waiting) lines.push(messageLine(g, `from ${g[0]!.from}`, labels));
  const sent = byMessage(st.sent);
  lines.push('', `Sent by ${st.party}, not yet delivered/acknowledged (${messages(sent.length)}):`);
  if (sent.length === 0) lines.push('    nothing');
  for (const g of sent) lines.push(messageLine(g, `to ${g[0]!.to}`, labels));
  lines.push('', 'Link tests:');
  const others = parties.filter((p) => p !== st.party);
  for (const other of others) {
    for (const [from, to] of [
      [st.party, other],
      [other, st.party],
    ] as const) {
      const pair = st.links.find((l) => l.from === from && l.to === to);
      const head = `  ${pair?.status === 'down' ? '!' : ' '} ${from} → ${to}`.padEnd(36);
      if (!pair || pair.status === 'unknown') {
        lines.push(`${head} no test recorded (run hotline listen --test-agent on an operator device of ${from})`);
        continue;
      }
      const since = pair.since === undefined ? '' : ` since ${iso(pair.since)}`;
      const last = pair.last;
      const result = !last
        ? ''
        : last.ok
          ? `; last test ${iso(last.sentAt)} ok, round trip ${last.roundTripMs ?? '?'} ms (${duration(st.now - last.at)} ago)`
          : `; last test ${iso(last.sentAt)} FAILED: ${last.reason ?? 'no answer'} (${duration(st.now - last.at)} ago)`;
      lines.push(`${head} ${pair.status.toUpperCase()}${since}${result}`);
    }
  }
  if (st.relayLinks !== undefined) {
    // Two-relay deployments: the line between this party's relay and the others'.
    lines.push('', 'Relay links:');
    for (const l of st.relayLinks) {
      const since = l.since === undefined ? '' : ` since ${iso(l.since)}`;
      lines.push(`  ${l.status === 'down' ? '!' : ' '} ${st.party} relay ↔ ${l.peer} relay`.padEnd(36) + ` ${l.status.toUpperCase()}${since}${l.reason ? `: ${l.reason}` : ''}`);
    }
  }
  return lines.join('\n');
}
