import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';

/**
 * The README's deployment walkthroughs, run as a reader would run them (README "Deploying, step by
 * step"): the shell blocks that follow a `<!-- walkthrough: NAME -->` comment, in README order,
 * one command at a time, in a folder of their own outside the clone.
 *
 * What is substituted, and nothing else: `hotline` (on the reader's PATH after `npm link`) runs
 * `node bin/hotline.js` of this clone; each port the walkthrough names (`127.0.0.1:8080`,
 * `--port 8080`) becomes a free port. A command ending in `&` runs in the background as in the
 * shell; the next command starts once it printed the line it prints when ready (a server
 * "listening on …", `listen` "connected as …"). `export A=B …` sets the environment of the
 * commands after it; `ID=$(…)` keeps the command's output for `$ID`. Everything else runs in bash.
 */

const ROOT = resolve('.');
const BIN = join(ROOT, 'bin/hotline.js');

export interface WalkthroughCommand {
  /** The logical line as the README has it (continuations joined). */
  readme: string;
  /** After substitution, as run. */
  line: string;
}

export interface StepResult {
  command: string;
  code: number;
  out: string;
  err: string;
  /** Wall time of the step (for a background command: until it was ready). */
  ms?: number;
}

/** The logical commands of the README blocks marked `<!-- walkthrough: name -->`, in order. */
export function walkthroughCommands(readme: string, name: string): string[] {
  const commands: string[] = [];
  const marker = `<!-- walkthrough: ${name} -->`;
  let at = readme.indexOf(marker);
  while (at !== -1) {
    const open = readme.indexOf('```sh\n', at);
    const close = readme.indexOf('\n```', open + 6);
    if (open === -1 || close === -1) throw new Error(`README: no shell block after ${marker}`);
    const between = readme.slice(at + marker.length, open);
    if (between.trim() !== '') throw new Error(`README: text between ${marker} and its shell block`);
    const block = readme.slice(open + 6, close);
    let pending = '';
    for (const raw of block.split('\n')) {
      const line = raw.trimEnd();
      if (pending === '' && (line.trim() === '' || line.trim().startsWith('#'))) continue;
      if (line.endsWith('\\')) {
        pending += line.slice(0, -1).trimEnd() + ' ';
        continue;
      }
      commands.push((pending + line.trim()).trim());
      pending = '';
    }
    if (pending !== '') throw new Error(`README: a continuation line ends the block after ${marker}`);
    at = readme.indexOf(marker, close);
  }
  return commands;
}

export function readmeText(): string {
  return readFileSync(join(ROOT, 'README.md'), 'utf8');
}

/** A free port on 127.0.0.1 (one just freed). */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Each port the commands name, mapped to a free one. */
export async function portMap(commands: readonly string[]): Promise<Map<string, string>> {
  const ports = new Map<string, string>();
  for (const c of commands) {
    for (const m of c.matchAll(/(?:127\.0\.0\.1:|--port )(\d{2,5})\b/g)) {
      if (!ports.has(m[1]!)) ports.set(m[1]!, String(await freePort()));
    }
  }
  return ports;
}

function substitute(line: string, ports: ReadonlyMap<string, string>): string {
  let out = line.replace(/127\.0\.0\.1:(\d{2,5})\b/g, (all, p: string) => `127.0.0.1:${ports.get(p) ?? p}`);
  out = out.replace(/--port (\d{2,5})\b/g, (all, p: string) => `--port ${ports.get(p) ?? p}`);
  return out;
}

/** `A=B C=D` (an export's list): values without spaces or quotes. */
function assignments(text: string): [string, string][] {
  return text
    .trim()
    .split(/\s+/)
    .map((a) => {
      const m = /^([A-Z_][A-Z0-9_]*)=(\S*)$/.exec(a);
      if (m === null) throw new Error(`walkthrough: cannot read the assignment "${a}"`);
      return [m[1]!, m[2]!] as [string, string];
    });
}

/** The line a background command prints once it is ready. */
function readyLine(line: string): RegExp {
  if (/\bhotline server\b/.test(line)) return /^listening on /m;
  if (/\bhotline listen\b/.test(line)) return /^connected as /m;
  throw new Error(`walkthrough: no ready line known for the background command: ${line}`);
}

export interface Walkthrough {
  /** Run every command in order; stops at the first that fails (its result is the last). */
  run(): Promise<StepResult[]>;
  /** Stop the background processes (SIGTERM, as Ctrl-C) and return their exit codes. */
  stop(): Promise<{ command: string; code: number | null; output: string }[]>;
}

export function walkthrough(commands: readonly string[], ports: ReadonlyMap<string, string>, cwd: string, timeoutMs: number): Walkthrough {
  const env: NodeJS.ProcessEnv = { ...process.env, HOTLINE_CLI_SOURCE: '', HOTLINE_BIN: BIN };
  for (const k of Object.keys(env)) if (k.startsWith('HOTLINE_') && k !== 'HOTLINE_CLI_SOURCE' && k !== 'HOTLINE_BIN') delete env[k];
  const background: { command: string; child: ChildProcess; output: () => string; exited: Promise<number | null> }[] = [];
  // `hotline` as on the reader's PATH; in the background `exec`, so that the signal reaches it.
  const prelude = 'set -o pipefail; hotline() { node "$HOTLINE_BIN" "$@"; }; ';

  const spawnLine = (line: string) => spawn('bash', ['-c', prelude + line], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });

  const runOne = (line: string): Promise<StepResult> =>
    new Promise((res) => {
      const child = spawnLine(line);
      let out = '';
      let err = '';
      child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
      child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
      const timer = setTimeout(() => {
        err += `\n[walkthrough: killed after ${timeoutMs} ms]`;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.on('close', (code) => {
        clearTimeout(timer);
        res({ command: line, code: code ?? -1, out, err });
      });
    });

  const startBackground = (line: string): Promise<StepResult> => {
    const ready = readyLine(line);
    const execLine = line.replace(/^((?:[A-Z_][A-Z0-9_]*=\S+\s+)*)hotline\s/, '$1exec node "$HOTLINE_BIN" ');
    const child = spawnLine(execLine);
    let text = '';
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    background.push({ command: line, child, output: () => text, exited });
    return new Promise((res) => {
      let done = false;
      const finish = (code: number) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        res({ command: `${line} &`, code, out: text, err: '' });
      };
      const onData = (s: string) => {
        text += s;
        if (ready.test(text)) finish(0);
      };
      child.stdout!.setEncoding('utf8').on('data', onData);
      child.stderr!.setEncoding('utf8').on('data', onData);
      const timer = setTimeout(() => finish(-2), timeoutMs);
      void exited.then((code) => finish(code === 0 ? -1 : (code ?? -1)));
    });
  };

  return {
    async run() {
      const results: StepResult[] = [];
      for (const command of commands) {
        const line = substitute(command, ports);
        let result: StepResult;
        const started = performance.now();
        const exp = /^export\s+(.*)$/.exec(line);
        const capture = /^([A-Z_][A-Z0-9_]*)=\$\((.*)\)(\s+#.*)?$/.exec(line);
        const bg = /^(.*?)\s+&(\s+#.*)?$/.exec(line);
        if (exp !== null) {
          for (const [k, v] of assignments(exp[1]!)) env[k] = v;
          result = { command: line, code: 0, out: '', err: '' };
        } else if (capture !== null) {
          result = await runOne(capture[2]!);
          result.command = line;
          const value = result.out.trim();
          if (result.code === 0 && (value === '' || value.includes('\n'))) {
            result = { ...result, code: -3, err: result.err + `\n[walkthrough: ${capture[1]} needs one line of output]` };
          }
          env[capture[1]!] = value;
        } else if (bg !== null) {
          result = await startBackground(bg[1]!);
        } else {
          result = await runOne(line);
        }
        result.ms = Math.round(performance.now() - started);
        results.push(result);
        if (result.code !== 0) break;
      }
      return results;
    },
    async stop() {
      const codes = [];
      for (const b of background.reverse()) {
        if (b.child.exitCode === null && b.child.signalCode === null) b.child.kill('SIGTERM');
        codes.push({ command: b.command, code: await b.exited, output: b.output() });
      }
      return codes;
    },
  };
}
