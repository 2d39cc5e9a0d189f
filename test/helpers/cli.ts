import { runCli } from '../../client/cli/run.js';
import type { Io } from '../../client/cli/common.js';

/** Run the `hotline` CLI in-process; its exit code, stdout and stderr as text. */
export async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: Io = {
    out: (l) => (out += l + '\n'),
    err: (l) => (err += l + '\n'),
    env,
    interrupted: new Promise(() => {}),
    readStdin: async () => '',
  };
  const code = await runCli(args, io);
  return { code, out, err };
}
