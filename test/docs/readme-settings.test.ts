import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SERVER_FLAGS, SERVER_SWITCHES } from '../../server/config.js';

/**
 * README "Settings" lists every HOTLINE_* environment variable the code reads (issue 14), so the
 * documentation cannot drift from the code: a variable added without its row fails here.
 */

const ROOT = resolve('.');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sources(path));
    else if (/\.(ts|js|mjs|sh)$/.test(name)) out.push(path);
  }
  return out;
}

/** The table rows of README's "## Settings" section. */
function settingsRows(): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Settings\n');
  expect(start, 'README has a "## Settings" section').toBeGreaterThan(-1);
  const end = readme.indexOf('\n## ', start + 1);
  return readme
    .slice(start, end === -1 ? undefined : end)
    .split('\n')
    .filter((l) => l.startsWith('| `'));
}

describe('README "Settings"', () => {
  it('has a table row for every HOTLINE_* variable read by the server, the CLI, bin/ and scripts/', () => {
    const read = new Map<string, string>();
    for (const dir of ['server', 'client', 'bin', 'scripts']) {
      for (const f of sources(join(ROOT, dir))) {
        for (const m of readFileSync(f, 'utf8').matchAll(/\bHOTLINE_[A-Z0-9_]*[A-Z0-9]\b/g)) {
          if (!read.has(m[0])) read.set(m[0], relative(ROOT, f));
        }
      }
    }
    expect(read.size).toBeGreaterThan(15);
    const rows = settingsRows();
    const undocumented = [...read].filter(([name]) => !rows.some((r) => r.includes(`\`${name}\``))).map(([name, file]) => `${name} (${file})`);
    expect(undocumented).toEqual([]);
  });

  it('names each server variable with its flag, in the same row', () => {
    const rows = settingsRows();
    const all = { ...SERVER_FLAGS, ...SERVER_SWITCHES };
    expect(Object.keys(all).length).toBeGreaterThan(10);
    const wrong = Object.entries(all)
      .filter(([flag, name]) => !rows.some((r) => r.includes(`\`${name}\``) && r.includes(`\`${flag}\``)))
      .map(([flag, name]) => `${name} ${flag}`);
    expect(wrong).toEqual([]);
  });
});
