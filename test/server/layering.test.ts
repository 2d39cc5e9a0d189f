import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The server's layers (README "Architecture"), checked from the sources: the relay decides and
 * imports neither the store nor the shell; a store records the relay's records and imports nothing
 * else of the relay. A static scan of import specifiers, so a type-only import counts too.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const RECORDS = 'server/relay/records.ts';

/** Every .ts file under `dir` (repo-relative, with `/`). */
function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => posix.join(dir, f.split('\\').join('/')))
    .sort();
}

/** The module specifiers of static and dynamic imports and re-exports. */
function specifiers(text: string): string[] {
  const found: string[] = [];
  const patterns = [/\b(?:import|export)\s[^'"]*?\bfrom\s*['"]([^'"]+)['"]/g, /\bimport\s*['"]([^'"]+)['"]/g, /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g];
  for (const re of patterns) for (const m of text.matchAll(re)) found.push(m[1]!);
  return found;
}

interface Import {
  file: string;
  specifier: string;
  /** Repo-relative path of the target (`.js` read as the `.ts` source), or the bare specifier. */
  target: string;
}

function importsOf(file: string): Import[] {
  return specifiers(readFileSync(join(ROOT, file), 'utf8')).map((specifier) => {
    if (!specifier.startsWith('.')) return { file, specifier, target: specifier };
    const target = relative(ROOT, resolve(ROOT, dirname(file), specifier)).split('\\').join('/').replace(/\.js$/, '.ts');
    return { file, specifier, target };
  });
}

const show = (list: Import[]) => list.map((i) => `${i.file}: '${i.specifier}' (${i.target})`);

/** A file directly in server/ (app, main, directory, ...) or under server/plugins/: the shell. */
const isShell = (target: string) => (target.startsWith('server/') && !target.slice('server/'.length).includes('/')) || target.startsWith('server/plugins/');

describe('server layering', () => {
  it('reads the imports it checks (the scan is not vacuous)', () => {
    expect(importsOf('server/store/sqlite-store.ts').map((i) => i.target)).toContain(RECORDS);
    expect(specifiers(`import type { A } from './a.js';\nexport { b } from "../b.js";\nimport './c.js';\nconst d = await import('./d.js');`)).toEqual([
      './a.js',
      '../b.js',
      './c.js',
      './d.js',
    ]);
  });

  it('a store imports nothing of the relay but its records', () => {
    const files = sources('server/store');
    expect(files.length).toBeGreaterThan(0);
    const offending = files.flatMap(importsOf).filter((i) => i.target.startsWith('server/relay/') && i.target !== RECORDS);
    expect(show(offending)).toEqual([]);
  });

  it('the relay imports neither the store nor the server shell', () => {
    const files = sources('server/relay');
    expect(files).toContain(RECORDS);
    const offending = files.flatMap(importsOf).filter((i) => i.target.startsWith('server/store/') || isShell(i.target));
    expect(show(offending)).toEqual([]);
  });
});
