import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { portMap, readmeText, walkthrough, walkthroughCommands, type StepResult } from '../helpers/walkthrough.js';

/**
 * The README's deployment walkthroughs, executed (issue 14): every command of the blocks marked
 * `<!-- walkthrough: … -->` runs as a real process, in order, in a folder outside the clone, and
 * must exit 0. So the README cannot drift from the CLI: a renamed flag, a step in the wrong order
 * or a file the walkthrough never made fails here.
 */

function report(results: readonly StepResult[]): string {
  return results
    .map((r, i) => `#${i + 1} [exit ${r.code}, ${r.ms ?? '?'} ms] ${r.command}${r.code === 0 ? '' : `\n--- stdout\n${r.out}\n--- stderr\n${r.err}`}`)
    .join('\n');
}

async function runWalkthrough(name: string) {
  const commands = walkthroughCommands(readmeText(), name);
  const dir = mkdtempSync(join(tmpdir(), `hotline-walkthrough-${name}-`));
  const w = walkthrough(commands, await portMap(commands), dir, 90_000);
  try {
    const results = await w.run();
    const stopped = await w.stop();
    // Where the time goes, for whoever makes this test faster or slower.
    console.log(`walkthrough ${name}:\n${report(results)}`);
    return { commands, results, stopped, dir };
  } finally {
    await w.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe.concurrent('README walkthroughs, run command by command', () => {
  it('one shared relay: two parties, operators, auditors, archives, a FLASH acknowledged, a revocation, the backup channel, a verified export', { timeout: 300_000 }, async () => {
    const { commands, results, stopped } = await runWalkthrough('single-relay');
    // What the walkthrough must reach (so that it cannot be emptied).
    for (const needed of [/hotline party create/, /hotline agreement create/, /hotline agreement sign --root jp-mod/, /hotline agreement sign --root cn-mnd/, /hotline server .*--log-key/, /--role auditor/, /--role archive/, /hotline send /, /hotline ack /, /hotline device revoke/, /hotline audit export/, /hotline audit verify/, /hotline audit decrypt/]) {
      expect(commands.some((c) => needed.test(c)), `README single-relay walkthrough lacks ${needed}`).toBe(true);
    }
    expect(results.length, report(results)).toBe(commands.length);
    expect(results.every((r) => r.code === 0), report(results)).toBe(true);
    // The archive reads the FLASH the walkthrough sent, from the verified export.
    const decrypted = results.filter((r) => /hotline audit decrypt/.test(r.command)).map((r) => r.out);
    expect(decrypted.length).toBeGreaterThan(0);
    for (const out of decrypted) expect(out).toContain('至急：明朝の演習について確認されたい');
    // Ctrl-C stops the server and listen cleanly.
    for (const s of stopped) expect(s.code, `${s.command}\n${s.output}`).toBe(0);
  });

  it('two relays, one per party: linked, a FLASH across both, both exports verified and reconciled', { timeout: 300_000 }, async () => {
    const { commands, results, stopped } = await runWalkthrough('two-relays');
    for (const needed of [/hotline agreement sign --root jp-mod/, /hotline agreement sign --root cn-mnd/, /hotline relay enroll/, /hotline server .*--relay/, /hotline send .*--wait/, /hotline audit verify .*\.json .*\.json/]) {
      expect(commands.some((c) => needed.test(c)), `README two-relays walkthrough lacks ${needed}`).toBe(true);
    }
    expect(results.length, report(results)).toBe(commands.length);
    expect(results.every((r) => r.code === 0), report(results)).toBe(true);
    for (const s of stopped) expect(s.code, `${s.command}\n${s.output}`).toBe(0);
  });
});

describe('the walkthrough runner', () => {
  it('reads only the marked blocks, joins continuations, skips comments, in README order', () => {
    const readme = [
      '<!-- walkthrough: w -->',
      '```sh',
      '# a comment',
      'hotline party create --id a \\',
      '  --out a.json   # trailing',
      '',
      '```',
      '```sh',
      'hotline not-marked',
      '```',
      '<!-- walkthrough: w -->',
      '```sh',
      'hotline second',
      '```',
    ].join('\n');
    expect(walkthroughCommands(readme, 'w')).toEqual(['hotline party create --id a --out a.json   # trailing', 'hotline second']);
    expect(walkthroughCommands(readme, 'other')).toEqual([]);
  });

  it('stops at the first command that fails, and reports it with its output', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hotline-walkthrough-fail-'));
    try {
      const w = walkthrough(['hotline --version', 'hotline party create --id x --no-such-flag', 'hotline --version'], new Map(), dir, 30_000);
      const results = await w.run();
      await w.stop();
      expect(results.map((r) => r.code)).toEqual([0, 2]);
      expect(results[1]!.err).toContain('--no-such-flag');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
