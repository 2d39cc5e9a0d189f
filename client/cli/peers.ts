import { existsSync, readFileSync } from 'node:fs';
import { HotlineError } from '../../shared/errors.js';
import { fingerprint } from '../../shared/crypto/keys.js';
import { fromBase64 } from '../../shared/encoding/base64.js';
import type { DeviceCertBody } from '../../shared/protocol/schemas.js';
import { LINK_FLAGS, LINK_HELP, openClient, parse, printHelp, required, seconds, stem, withTimeout, writePublicFile, type Command, type Io } from './common.js';
import { reportOutboxFlush } from './outbox.js';

/**
 * Peer keys confirmed by this device's operator (README "Peer keys"), the same rule as the operator
 * console: a message is sealed to another party's device only once its keys were confirmed
 * (compared by voice, by fingerprint); a new device, or new keys of a known one, block sending to
 * that party until `hotline peers confirm`. Kept in DEVICE.peers.json beside the device key file.
 */
interface PeersFile {
  type: 'hotline-peers';
  v: 1;
  confirmed: { party: string; device: string; role: string; signKey: string; boxKey: string; at: number }[];
}

/** A certificate's identity for confirmation: any change of key (or role) is a new identity (as the console's). */
function identity(c: { party: string; device: string; role: string; signKey: string; boxKey: string }): string {
  return `${c.party}/${c.device}/${c.role}/${c.signKey}/${c.boxKey}`;
}

export function peersPath(devicePath: string): string {
  return `${stem(devicePath)}.peers.json`;
}

function readPeers(path: string): PeersFile {
  if (!existsSync(path)) return { type: 'hotline-peers', v: 1, confirmed: [] };
  let value: PeersFile;
  try {
    value = JSON.parse(readFileSync(path, 'utf8')) as PeersFile;
  } catch (cause) {
    throw new HotlineError('HL_ERR_CONFIG_INVALID', `${path} (the confirmed peer keys) is not valid JSON; move it away and confirm the keys again`, { cause });
  }
  if (value?.type !== 'hotline-peers' || !Array.isArray(value.confirmed)) {
    throw new HotlineError('HL_ERR_CONFIG_INVALID', `${path} is not a file of confirmed peer keys (hotline peers confirm writes it)`);
  }
  return value;
}

const fp = (key: string) => fingerprint(fromBase64(key, 32));

/** Other parties' devices that messages are sealed to (operators and archives), with their state. */
function peerRows(directory: readonly DeviceCertBody[], me: { party: string }, file: PeersFile, party?: string) {
  const confirmed = new Set(file.confirmed.map(identity));
  const known = new Set(file.confirmed.map((c) => `${c.party}/${c.device}`));
  return directory
    .filter((c) => c.party !== me.party && (c.role === 'operator' || c.role === 'archive') && (party === undefined || c.party === party))
    .sort((a, b) => `${a.party}/${a.device}`.localeCompare(`${b.party}/${b.device}`))
    .map((c) => ({
      cert: c,
      state: confirmed.has(identity(c)) ? ('confirmed' as const) : known.has(`${c.party}/${c.device}`) ? ('CHANGED' as const) : ('NEW' as const),
    }));
}

function rowText(r: { cert: DeviceCertBody; state: string }): string {
  const c = r.cert;
  return `  ${`${c.party}/${c.device}`.padEnd(22)} ${c.role.padEnd(8)} ${r.state.padEnd(9)} sign ${fp(c.signKey)}\n  ${''.padEnd(41)} box  ${fp(c.boxKey)}`;
}

/**
 * Refuse to seal for `to` while a device it would be sealed to has keys this device's operator has
 * not confirmed (HL_ERR_PEER_KEY_UNCONFIRMED), naming them with their fingerprints.
 */
export function checkPeersConfirmed(directory: readonly DeviceCertBody[], me: { party: string }, to: string, devicePath: string): void {
  const rows = peerRows(directory, me, readPeers(peersPath(devicePath)), to).filter((r) => r.state !== 'confirmed');
  if (rows.length === 0) return;
  throw new HotlineError(
    'HL_ERR_PEER_KEY_UNCONFIRMED',
    [
      `not sent: ${rows.length === 1 ? 'a key' : 'keys'} of ${to} ${rows.length === 1 ? 'is' : 'are'} new or changed and not confirmed:`,
      ...rows.map(rowText),
      `Compare these fingerprints with ${to} by voice (they read theirs from hotline device enroll or their console), then run:`,
      `  hotline peers confirm --device ${devicePath} --party ${to}`,
    ].join('\n'),
  );
}

const PEERS_FLAGS = { ...LINK_FLAGS, party: { type: 'string' }, timeout: { type: 'string' } } as const;

async function directoryOf(command: string, values: { device?: string | undefined; server?: string | readonly string[] | undefined; agreement?: string | undefined; state?: string | undefined; timeout?: string | undefined }, io: Io) {
  const timeoutMs = seconds('timeout', values.timeout, 30) * 1000;
  const { client, devicePath, storage } = await openClient(command, values, io, false);
  const flushed = reportOutboxFlush(client, storage, io);
  try {
    await withTimeout(client.start(), timeoutMs, `cannot connect to the relay within ${timeoutMs / 1000} s`);
    await flushed.settled(timeoutMs);
    return { directory: client.directory(), me: client.me, devicePath };
  } finally {
    await client.stop();
  }
}

export const peersList: Command = {
  name: 'peers',
  summary: 'list the other parties’ device keys and whether you confirmed them',
  help: `Usage: hotline peers --device FILE [--party PARTY] [--server URL] [--agreement FILE]
       hotline peers confirm --device FILE [--party PARTY]

Fetches the directory (each certificate verified here against the agreement) and lists the devices
of the other parties that your messages are sealed to (operators and archives), each with the
fingerprints of its signing and encryption keys and its state: confirmed, NEW (never confirmed) or
CHANGED (confirmed before with other keys). As in the operator console, \`send\` and \`seal\` refuse
to seal for a party while any of its keys is NEW or CHANGED (HL_ERR_PEER_KEY_UNCONFIRMED): compare
the fingerprints with that party by voice, then \`hotline peers confirm\`.

${LINK_HELP}
  --party PARTY      only this party's devices`,
  async run(argv, io) {
    const { values } = parse('peers', argv, PEERS_FLAGS);
    if (values.help) return printHelp(io, this.help);
    required('peers', values, 'device');
    const { directory, me, devicePath } = await directoryOf('peers', values, io);
    const rows = peerRows(directory, me, readPeers(peersPath(devicePath)), values.party);
    if (rows.length === 0) {
      io.out(`no device of ${values.party ?? 'another party'} in the directory`);
      return 0;
    }
    for (const r of rows) io.out(rowText(r));
    const open = rows.filter((r) => r.state !== 'confirmed');
    if (open.length > 0) io.out(`${open.length} not confirmed: compare by voice, then hotline peers confirm --device ${devicePath}${values.party === undefined ? '' : ` --party ${values.party}`}`);
    return 0;
  },
};

export const peersConfirm: Command = {
  name: 'peers confirm',
  summary: 'confirm the other parties’ current device keys (after comparing fingerprints)',
  help: `Usage: hotline peers confirm --device FILE [--party PARTY] [--server URL] [--agreement FILE]

Fetches the directory (verified here) and records every current operator and archive key of PARTY
(default: of every other party) as confirmed by this device's operator, in DEVICE.peers.json beside
the device key file; prints each key confirmed with its fingerprints. Run it only after comparing
the fingerprints (hotline peers) with the other party by voice. Keys confirmed before and no longer
in the directory are kept, so that a device that comes back with the same keys needs no new
confirmation; a changed key is a new confirmation.

${LINK_HELP}
  --party PARTY      only this party's devices`,
  async run(argv, io) {
    const { values } = parse('peers confirm', argv, PEERS_FLAGS);
    if (values.help) return printHelp(io, this.help);
    required('peers confirm', values, 'device');
    const { directory, me, devicePath } = await directoryOf('peers confirm', values, io);
    const path = peersPath(devicePath);
    const file = readPeers(path);
    const open = peerRows(directory, me, file, values.party).filter((r) => r.state !== 'confirmed');
    if (open.length === 0) {
      io.out(`nothing to confirm: every key of ${values.party ?? 'the other parties'} is confirmed already`);
      return 0;
    }
    const now = Date.now();
    for (const r of open) {
      const c = r.cert;
      file.confirmed.push({ party: c.party, device: c.device, role: c.role, signKey: c.signKey, boxKey: c.boxKey, at: now });
    }
    writePublicFile(path, file);
    io.out(`confirmed (${path}):`);
    for (const r of open) io.out(rowText({ ...r, state: r.state === 'NEW' ? 'new' : 'changed' }));
    return 0;
  },
};

/**
 * Record `certificates` of the other parties as confirmed for the device at `devicePath`, when it has
 * no peers file yet: the demo made every key itself, so there is nothing to compare by voice.
 */
export function confirmForDemo(devicePath: string, me: { party: string }, certificates: readonly DeviceCertBody[]): void {
  const path = peersPath(devicePath);
  if (existsSync(path)) return;
  const confirmed = certificates
    .filter((c) => c.party !== me.party && (c.role === 'operator' || c.role === 'archive'))
    .map((c) => ({ party: c.party, device: c.device, role: c.role, signKey: c.signKey, boxKey: c.boxKey, at: Date.now() }));
  writePublicFile(path, { type: 'hotline-peers', v: 1, confirmed } satisfies PeersFile);
}
