import type { Io } from './common.js';
import { runCli } from './run.js';
import { useNodeCrypto } from '../../server/node-crypto.js';

function processIo(): Io {
  const interrupted = new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  return {
    out: (line) => process.stdout.write(line + '\n'),
    err: (line) => process.stderr.write(line + '\n'),
    env: process.env,
    interrupted,
    readStdin: async () => {
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    },
  };
}

// The reader of our output went away (`hotline listen --json | head -1`): stop quietly, as a
// pipeline expects, instead of dying with an EPIPE stack trace. The state file is crash-safe.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

useNodeCrypto();
const code = await runCli(process.argv.slice(2), processIo());
// Let stdout drain (it may be a pipe), then exit: a client's closing socket must not hold the process.
process.stdout.write('', () => process.exit(code));
