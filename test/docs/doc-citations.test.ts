import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Source comments cite the repository's own documents (README, shared/PROTOCOL.md, docs/*.md),
 * never a design document that is not in it (issue 14); and a citation of docs/design.md names a
 * section that exists there.
 */

const ROOT = resolve('.');
const SOURCE_DIRS = ['server', 'client', 'shared', 'bench', 'scripts', 'bin', 'test'];

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist') continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sources(path));
    else if (/\.(ts|js|mjs|cjs|sh)$/.test(name)) out.push(path);
  }
  return out;
}

const files = SOURCE_DIRS.flatMap((d) => sources(join(ROOT, d)));
// This file names the forbidden document itself.
const self = join(ROOT, 'test/docs/doc-citations.test.ts');

describe('citations in source comments', () => {
  it('no source file cites DESIGN.md', () => {
    expect(files.length).toBeGreaterThan(100);
    const offenders = files
      .filter((f) => f !== self)
      .flatMap((f) =>
        readFileSync(f, 'utf8')
          .split('\n')
          .map((line, i) => ({ line, at: `${relative(ROOT, f)}:${i + 1}` }))
          .filter(({ line }) => /DESIGN\.md/.test(line))
          .map(({ at, line }) => `${at}: ${line.trim()}`),
      );
    expect(offenders).toEqual([]);
  });

  it('every section of docs/design.md cited exists there', () => {
    const headings = new Set(
      readFileSync(join(ROOT, 'docs/design.md'), 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('## '))
        .map((l) => l.slice(3).trim()),
    );
    const cited: string[] = [];
    const missing: string[] = [];
    for (const f of files.filter((x) => x !== self)) {
      // A citation may wrap across comment lines: join them first.
      const text = readFileSync(f, 'utf8').replace(/\n\s*(\*|\/\/)\s*/g, ' ');
      for (const m of text.matchAll(/docs\/design\.md "([^"]+)"/g)) {
        cited.push(m[1]!);
        if (!headings.has(m[1]!)) missing.push(`${relative(ROOT, f)}: "${m[1]}"`);
      }
    }
    expect(cited.length).toBeGreaterThan(10);
    expect(missing).toEqual([]);
  });
});
