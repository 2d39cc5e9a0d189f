import { HotlineError } from '../../shared/errors.js';
import { exitCodeOf, type Command, type Io } from './common.js';
import { agreementCreate, deviceEnroll, deviceRevoke, partyCreate } from './setup.js';
import { relayEnroll } from './relay.js';
import { ack, directory, listen, send } from './link.js';
import { open, seal } from './offline.js';
import { demo, server } from './server.js';
import { backup, restore } from './backup.js';
import { status } from './status.js';
import { AUDIT_COMMANDS, auditGroup } from './audit.js';

/** Every command of `hotline`, in the order the help lists them. */
// The audit group's overview comes after its commands: lookup takes the first match.
export const COMMANDS: readonly Command[] = [partyCreate, agreementCreate, deviceEnroll, deviceRevoke, relayEnroll, server, backup, restore, send, listen, ack, status, directory, seal, open, ...AUDIT_COMMANDS, auditGroup, demo];

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'Usage: hotline COMMAND [options]   (hotline COMMAND --help for each)',
    '',
    'Signed, end-to-end encrypted crisis hotline between ministries.',
    '',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Set-up: party create (each party) → agreement create → device enroll → server.',
    'Environment: HOTLINE_SERVER (--server), HOTLINE_AGREEMENT (--agreement).',
  ].join('\n');
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
export async function runCli(argv: string[], io: Io): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    io.out(overview());
    return argv.length === 0 ? 2 : 0;
  }
  const found = lookup(argv);
  if (!found) {
    const group = COMMANDS.filter((c) => c.name.startsWith(`${argv[0]} `)).map((c) => `hotline ${c.name}`);
    io.err(
      group.length > 0
        ? `hotline: "${argv.slice(0, 2).join(' ')}" is not a command; did you mean ${group.join(' or ')}?`
        : `hotline: unknown command "${argv[0]}"; run hotline --help for the list`,
    );
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
