import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('./server-process.ts', import.meta.url));

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  /** Resolves with the exit signal/code once the process has ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start test/helpers/server-process.ts with `node --import tsx` and wait for its URL on stdout. */
export function spawnServer(env: { agreementPath: string; dataDir: string; extraEnv?: NodeJS.ProcessEnv }): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', SCRIPT], {
    env: { ...process.env, ...env.extraEnv, HOTLINE_AGREEMENT: env.agreementPath, HOTLINE_DATA_DIR: env.dataDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /HOTLINE_URL (\S+)\n/.exec(out);
      if (m) resolve({ url: m[1]!, child, exited });
    });
    void exited.then(({ code, signal }) => reject(new Error(`server process ended (${code ?? signal}) before listening: ${stderr}`)));
  });
}
