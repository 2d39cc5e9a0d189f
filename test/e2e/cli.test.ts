import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The CLI driven as a user would: separate `node bin/hotline.js` processes for set-up, the server,
 * a listener and a sender, talking only through files, stdout lines and the network. Every wait is
 * on a line of a child's output or on its exit, never on time.
 */

const BIN = resolve('bin/hotline.js');
const children: ChildProcessWithoutNullStreams[] = [];
let dir: string;

class Proc {
  readonly child: ChildProcessWithoutNullStreams;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number>;
  #waiters: (() => void)[] = [];

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(process.execPath, [BIN, ...args], { cwd: dir, env: { ...process.env, ...env } });
    children.push(this.child);
    this.child.stdout.setEncoding('utf8').on('data', (s: string) => {
      this.stdout += s;
      this.#wake();
    });
    this.child.stderr.setEncoding('utf8').on('data', (s: string) => {
      this.stderr += s;
      this.#wake();
    });
    this.exited = new Promise((res) => this.child.on('exit', (code) => res(code ?? -1)));
    void this.exited.then(() => this.#wake());
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** The first complete stdout line matching `re` (waits for it; fails if the process exits first). */
  async line(re: RegExp): Promise<string> {
    let exited = false;
    void this.exited.then(() => (exited = true));
    for (;;) {
      const found = this.stdout.split('\n').slice(0, -1).find((l) => re.test(l));
      if (found !== undefined) return found;
      if (exited) throw new Error(`process exited before printing ${re}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`);
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  /** JSON lines of stdout. */
  json(): Record<string, unknown>[] {
    return this.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

async function run(args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = new Proc(args, env);
  const code = await p.exited;
  return { code, stdout: p.stdout, stderr: p.stderr };
}

async function ok(args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  const r = await run(args, env);
  if (r.code !== 0) throw new Error(`hotline ${args.join(' ')} exited ${r.code}\n${r.stderr}`);
  return r.stdout;
}

let server: Proc;
let url: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hotline-cli-'));
  await ok(['party', 'create', '--no-passphrase', '--id', 'jp-mod', '--name', 'Japan Ministry of Defense', '--languages', 'ja,en', '--out', 'jp-mod.secret.json']);
  await ok(['party', 'create', '--no-passphrase', '--id', 'cn-mnd', '--name', 'China Ministry of National Defense', '--languages', 'zh,en', '--out', 'cn-mnd.secret.json']);
  await ok(['agreement', 'create', '--party', 'jp-mod.public.json', '--party', 'cn-mnd.public.json', '--out', 'agreement.json']);
  await ok(['agreement', 'sign', '--root', 'jp-mod.secret.json', '--agreement', 'agreement.json']);
  await ok(['agreement', 'sign', '--root', 'cn-mnd.secret.json', '--agreement', 'agreement.json']);
  await ok(['device', 'enroll', '--root', 'jp-mod.secret.json', '--id', 'operator-1', '--role', 'operator', '--out', 'jp-op.secret.json']);
  await ok(['device', 'enroll', '--root', 'cn-mnd.secret.json', '--id', 'operator-1', '--role', 'operator', '--out', 'cn-op.secret.json']);
  server = new Proc(['server', '--agreement', 'agreement.json', '--data', 'server-data', '--port', '0', '--log-level', 'warn']);
  url = (await server.line(/^listening on http:\/\/127\.0\.0\.1:\d+$/)).replace('listening on ', '');
}, 60_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.on('exit', r)))));
  rmSync(dir, { recursive: true, force: true });
});

describe('hotline CLI', () => {
  it('writes secret files 0600 and public parts beside them', () => {
    for (const f of ['jp-mod.secret.json', 'cn-mnd.secret.json', 'jp-op.secret.json', 'agreement.log.secret.json']) {
      expect(statSync(join(dir, f)).mode & 0o777, f).toBe(0o600);
    }
    const pub = JSON.parse(readFileSync(join(dir, 'jp-mod.public.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(pub).sort()).toEqual(['id', 'languages', 'name', 'rootKey']);
  });

  it('listen --json on one side, send --wait acknowledged on the other, ack in between', async () => {
    const env = { HOTLINE_SERVER: url, HOTLINE_AGREEMENT: 'agreement.json' };
    const listen = new Proc(['listen', '--device', 'cn-op.secret.json', '--json'], env);
    await listen.line(/"type":"connected"/);
    // cn-mnd's keys, compared by voice, are confirmed before the first message to it.
    expect(await ok(['peers', 'confirm', '--device', 'jp-op.secret.json'], env)).toMatch(/cn-mnd\/operator-1 +operator +new +sign [0-9a-f]{64}/);

    const text = '至急：明朝の演習について受領を確認されたい';
    const send = new Proc(['send', '--device', 'jp-op.secret.json', '--to', 'cn-mnd', '--precedence', 'flash', '--wait', 'acknowledged', '--timeout', '60', text], env);
    const id = await send.line(/^[0-9a-f]{32}$/);
    const shown = JSON.parse(await listen.line(new RegExp(`"type":"message".*"${id}"`))) as Record<string, unknown>;
    expect(shown).toMatchObject({ id, precedence: 'FLASH', to: 'cn-mnd', from: { party: 'jp-mod', device: 'operator-1' }, body: text, lang: 'ja' });

    const acked = await run(['ack', '--device', 'cn-op.secret.json', id], env);
    expect(acked.code).toBe(0);
    expect(await send.exited).toBe(0);
    expect(send.stderr).toMatch(/delivered by cn-mnd\/operator-1 .*signature verified/);
    expect(send.stderr).toMatch(/acknowledged by cn-mnd\/operator-1 .*signature verified/);

    listen.child.kill('SIGINT');
    expect(await listen.exited).toBe(0);
  });

  it('send times out with exit 1 and a clear message when the rung is not reached', async () => {
    const r = await run(['send', '--device', 'jp-op.secret.json', '--server', url, '--agreement', 'agreement.json', '--to', 'cn-mnd', '--precedence', 'routine', '--wait', 'acknowledged', '--timeout', '1', 'nobody acknowledges this']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^[0-9a-f]{32}\n$/);
    expect(r.stderr).toMatch(/not acknowledged within 1 s.*HL_ERR_CLIENT_TIMEOUT/);
  });

  it('seal and open: the same envelope offline, through a file, with a directory fetched earlier', async () => {
    await ok(['directory', '--device', 'jp-op.secret.json', '--server', url, '--out', 'directory.json']);
    const id = (await ok(['seal', '--device', 'jp-op.secret.json', '--to', 'cn-mnd', '--precedence', 'immediate', '--directory', 'directory.json', '--out', 'msg.sealed.json', '--lang', 'zh', '备用信道测试'])).trim();
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    const opened = JSON.parse(await ok(['open', '--device', 'cn-op.secret.json', '--json', '--receipt-out', 'receipt.json', 'msg.sealed.json'])) as Record<string, unknown>;
    expect(opened).toMatchObject({ id, precedence: 'IMMEDIATE', body: '备用信道测试', lang: 'zh' });
    expect(JSON.parse(readFileSync(join(dir, 'receipt.json'), 'utf8'))).toMatchObject({ receipt: { receipt: { messageId: id, kind: 'delivered' } } });
    // The Japanese operator is not a recipient of its own message.
    const notMine = await run(['open', '--device', 'jp-op.secret.json', 'msg.sealed.json']);
    expect(notMine.code).toBe(1);
    expect(notMine.stderr).toContain('HL_ERR_ENVELOPE_NOT_FOR_ME');
  });

  it('a usage error exits 2 and says what to do', async () => {
    const missing = await run(['send', '--device', 'jp-op.secret.json']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/needs --to, --precedence[\s\S]*hotline send --help/);
  });
});

describe('hotline demo (npm start)', () => {
  it('--shared: creates the shared-relay deployment on the first run, prints the commands, and reuses it on the second', async () => {
    const first = new Proc(['demo', '--shared', '--dir', 'demo', '--port', '0']);
    const listening = await first.line(/^listening on http:\/\/127\.0\.0\.1:\d+$/);
    const demoUrl = listening.replace('listening on ', '');
    await first.line(/^Stop with Ctrl-C/);
    expect(first.stdout).toContain('Hotline shared-relay demo created in demo');
    expect(first.stdout).toContain(`npx hotline send --device demo/jp-mod/operator-1.secret.json --server ${demoUrl} --agreement demo/agreement.json --to cn-mnd --precedence flash`);
    expect(first.stdout).toContain('npx hotline listen --device demo/cn-mnd/operator-1.secret.json');
    expect(first.stdout).toContain('npx hotline ack --device demo/cn-mnd/operator-1.secret.json');
    for (const f of ['agreement.json', 'log.secret.json', 'jp-mod/root.secret.json', 'cn-mnd/archive-1.secret.json', 'jp-mod/auditor-1.secret.json']) {
      expect(statSync(join(dir, 'demo', f)).isFile(), f).toBe(true);
    }
    // The printed commands work: the Japanese operator's send is accepted by the demo's relay.
    const sent = await run(['send', '--device', 'demo/jp-mod/operator-1.secret.json', '--server', demoUrl, '--agreement', 'demo/agreement.json', '--to', 'cn-mnd', '--precedence', 'flash', '至急']);
    expect(sent.code).toBe(0);
    first.child.kill('SIGINT');
    expect(await first.exited).toBe(0);

    const agreementBefore = readFileSync(join(dir, 'demo', 'agreement.json'), 'utf8');
    const second = new Proc(['demo', '--shared', '--dir', 'demo', '--port', '0']);
    await second.line(/^Stop with Ctrl-C/);
    expect(second.stdout).toContain('Hotline shared-relay demo reused from demo');
    expect(readFileSync(join(dir, 'demo', 'agreement.json'), 'utf8')).toBe(agreementBefore);
    second.child.kill('SIGINT');
    expect(await second.exited).toBe(0);

    // npm start (the two-relay demo) does not take a shared-relay demo's directory for its own.
    const mixed = await run(['demo', '--dir', 'demo', '--port', '0']);
    expect(mixed.code).toBe(2);
    expect(mixed.stderr).toContain('demo holds a shared-relay demo');
    expect(readFileSync(join(dir, 'demo', 'agreement.json'), 'utf8')).toBe(agreementBefore);
  }, 60_000);

  it('by default (npm start) each ministry on its own relay: both consoles printed, the printed send reaches the rung relayed', async () => {
    const demo = new Proc(['demo', '--dir', 'demo2', '--port', '0']);
    const jpUrl = (await demo.line(/^relay of jp-mod listening on http:\/\/127\.0\.0\.1:\d+$/)).replace('relay of jp-mod listening on ', '');
    const cnUrl = (await demo.line(/^relay of cn-mnd listening on http:\/\/127\.0\.0\.1:\d+$/)).replace('relay of cn-mnd listening on ', '');
    await demo.line(/^Stop with Ctrl-C/);
    expect(jpUrl).not.toBe(cnUrl);
    expect(demo.stdout).toContain(`npx hotline send --device demo2/jp-mod/operator-1.secret.json --server ${jpUrl} --agreement demo2/agreement.json --to cn-mnd`);
    expect(JSON.parse(readFileSync(join(dir, 'demo2', 'agreement.json'), 'utf8')).v).toBe(2);
    // Each ministry's consoles at its own relay.
    expect(demo.stdout).toContain(`Consoles of jp-mod (its own relay; import a key file from demo2/jp-mod): ${jpUrl}/console/operator/ and ${jpUrl}/console/auditor/`);
    expect(demo.stdout).toContain(`Consoles of cn-mnd (its own relay; import a key file from demo2/cn-mnd): ${cnUrl}/console/operator/ and ${cnUrl}/console/auditor/`);
    for (const f of ['jp-mod/relay-data', 'cn-mnd/relay-data']) expect(statSync(join(dir, 'demo2', f)).isDirectory(), f).toBe(true);
    const args = ['--device', 'demo2/jp-mod/operator-1.secret.json', '--server', jpUrl, '--agreement', 'demo2/agreement.json', '--to', 'cn-mnd', '--precedence', 'flash', '--wait', 'relayed', '--timeout', '30', '至急'];
    // The demo prints its commands once the relays are linked (each knows the other's devices).
    const sent = await run(['send', ...args]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(sent.stderr).toContain("relayed: stored by the addressee's relay");
    demo.child.kill('SIGINT');
    expect(await demo.exited).toBe(0);
  }, 90_000);
});
