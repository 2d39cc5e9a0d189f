import { HotlineError } from '../../shared/errors.js';
import { readFileSync } from 'node:fs';
import { closest, exitCodeOf, type Command, type Io } from './common.js';
import { agreementCreate, agreementSign, deviceEnroll, deviceRegister, deviceRevoke, partyCreate } from './setup.js';
import { relayEnroll } from './relay.js';
import { ack, directory, listen, send, translate } from './link.js';
import { open, seal } from './offline.js';
import { demo, server } from './server.js';
import { backup, restore } from './backup.js';
import { status } from './status.js';
import { prekeys } from './prekeys.js';
import { outboxDrop, outboxList } from './outbox.js';
import { peersConfirm, peersList } from './peers.js';
import { AUDIT_COMMANDS, auditGroup } from './audit.js';

/** Every command of `hotline`, in the order the help lists them. */
// The audit group's overview comes after its commands: lookup takes the first match.
export const COMMANDS: readonly Command[] = [partyCreate, agreementCreate, agreementSign, deviceEnroll, deviceRegister, deviceRevoke, relayEnroll, server, backup, restore, send, translate, listen, ack, status, prekeys, outboxDrop, outboxList, peersConfirm, peersList, directory, seal, open, ...AUDIT_COMMANDS, auditGroup, demo];

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'Usage: hotline COMMAND [options]   (hotline COMMAND --help for each)',
    '',
    'Signed, end-to-end encrypted crisis hotline between ministries.',
    '',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Set-up: party create (each party) → agreement create → agreement sign (each party) → device enroll → server.',
    'Environment: HOTLINE_SERVER (--server), HOTLINE_AGREEMENT (--agreement).',
    'Sealed key files: --passphrase-file FILE (any command), HOTLINE_PASSPHRASE_FILE or HOTLINE_PASSPHRASE.',
    'hotline --version prints the version.',
  ].join('\n');
}

/** `hotline GROUP --help` (e.g. party, agreement, device): the group's commands. */
function groupHelp(group: string): string | undefined {
  const members = COMMANDS.filter((c) => c.name.startsWith(`${group} `));
  if (members.length === 0) return undefined;
  const width = Math.max(...members.map((c) => c.name.length));
  return [
    `Usage: hotline ${group} COMMAND [options]   (hotline ${group} COMMAND --help for each)`,
    '',
    ...members.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
  ].join('\n');
}

/**
 * The version, and how this process runs the CLI: bin/hotline.js says whether it loaded the compiled
 * bundle or the TypeScript sources (README "The CLI").
 */
function version(): string {
  // package.json is two levels up both from client/cli/ (sources) and from dist/cli/ (the bundle).
  let v = 'unknown';
  try {
    v = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? v;
  } catch {
    // Reported as unknown rather than failing --version.
  }
  const how = (globalThis as { hotlineCliBuild?: string }).hotlineCliBuild;
  return `hotline ${v}${how === undefined ? '' : ` (${how})`}`;
}

/** Find the command named by the first one or two words of argv. */
function lookup(argv: string[]): { command: Command; rest: string[] } | undefined {
  for (const c of COMMANDS) {
    const words = c.name.split(' ');
    if (words.every((w, i) => argv[i] === w)) return { command: c, rest: argv.slice(words.length) };
  }
  return undefined;
}

/** Run the CLI; returns the exit code (0 ok, 1 refused or timed out, 2 usage). */
/** Take `--passphrase-file FILE` (a global option: any command may open a sealed key file) out of argv. */
function globalOptions(argv: string[], io: Io): { argv: string[]; io: Io } {
  const rest: string[] = [];
  let passphraseFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--passphrase-file' && i + 1 < argv.length) passphraseFile = argv[++i];
    else if (a.startsWith('--passphrase-file=')) passphraseFile = a.slice('--passphrase-file='.length);
    else rest.push(a);
  }
  return { argv: rest, io: passphraseFile === undefined ? io : { ...io, passphraseFile } };
}

export async function runCli(args: string[], given: Io): Promise<number> {
  const { argv, io } = globalOptions(args, given);
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    io.out(overview());
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === '--version' || argv[0] === '-V' || argv[0] === 'version') {
    io.out(version());
    return 0;
  }
  const found = lookup(argv);
  if (!found) {
    const word = argv[0]!;
    const groupText = groupHelp(word);
    if (groupText !== undefined && (argv[1] === '--help' || argv[1] === '-h')) {
      io.out(groupText);
      return 0;
    }
    const group = COMMANDS.filter((c) => c.name.startsWith(`${word} `));
    if (group.length > 0) {
      // A group with a mistyped (or no) sub-command: "device enrol" → device enroll.
      const sub = argv[1] !== undefined && !argv[1].startsWith('-') ? closest(argv[1], group.map((c) => c.name.slice(word.length + 1))) : undefined;
      const names = sub !== undefined ? [`hotline ${word} ${sub}`] : group.map((c) => `hotline ${c.name}`);
      io.err(`hotline: "${argv.slice(0, 2).join(' ')}" is not a command; did you mean ${names.join(' or ')}?`);
      return 2;
    }
    const words = [...new Set(COMMANDS.map((c) => c.name.split(' ')[0]!))];
    const guess = word.startsWith('-') ? undefined : closest(word, words);
    io.err(`hotline: unknown command "${word}"; ${guess === undefined ? '' : `did you mean hotline ${guess}? `}run hotline --help for the list`);
    return 2;
  }
  try {
    return await found.command.run(found.rest, io);
  } catch (err) {
    if (err instanceof HotlineError) {
      io.err(`hotline ${found.command.name}: ${err.message}${err.code === 'HL_ERR_USAGE' ? '' : ` (${err.code})`}`);
      return exitCodeOf(err.code);
    }
    io.err(`hotline ${found.command.name}: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return 1;
  }
}
