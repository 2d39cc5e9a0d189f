import { createServer } from 'node:net';
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

/**
 * An in-process CLI run whose output lines (stdout and stderr, in order) can be awaited while it
 * runs, and which stops as on Ctrl-C when told.
 */
export function cliRun(args: string[], env: NodeJS.ProcessEnv = {}) {
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  let stop: () => void = () => {};
  const push = (l: string) => {
    for (const part of l.split('\n')) {
      lines.push(part);
      for (const w of [...waiters]) {
        if (w.re.test(part)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(part);
        }
      }
    }
  };
  const io: Io = { out: push, err: push, env, interrupted: new Promise<void>((r) => (stop = r)), readStdin: async () => '' };
  const exited = runCli(args, io);
  return {
    lines,
    exited,
    text: () => lines.join('\n'),
    stop: () => stop(),
    /** The first line matching `re` (waits for it; fails if the command exits first). */
    line: (re: RegExp) =>
      new Promise<string>((resolve, reject) => {
        const hit = lines.find((l) => re.test(l));
        if (hit !== undefined) return resolve(hit);
        waiters.push({ re, resolve });
        void exited.then((code) => reject(new Error(`exited ${code} before ${re}; output:\n${lines.join('\n')}`)));
      }),
  };
}

/** A URL on 127.0.0.1 where nothing listens (a port just freed). */
export async function closedUrl(): Promise<string> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return `http://127.0.0.1:${port}`;
}
