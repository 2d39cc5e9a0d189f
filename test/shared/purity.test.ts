import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * shared/ runs in Node and in browsers and holds no I/O (README "Architecture"): its files may
 * import each other and these pure packages only. A static scan of every import specifier (static
 * `import`/`export … from`, dynamic `import()`, `require()`), so that a Node module or a reach into
 * server/ or client/ fails here with the file named, before a browser bundle breaks.
 */
const ALLOWED_PACKAGES = ['tweetnacl', '@noble/hashes', '@sinclair/typebox'];

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../shared');
const SPECIFIER = /(?:\bimport|\bexport)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]|\bimport\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]|\brequire\s*\(\s*['"]([^'"]+)['"]/g;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return /\.(ts|js|mjs|cjs)$/.test(e.name) ? [path] : [];
  });
}

/** The import specifiers of a source text, comments removed first. */
function importSpecifiers(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"\\])\/\/.*$/gm, '$1');
  return [...code.matchAll(SPECIFIER)].map((m) => m[1] ?? m[2] ?? m[3] ?? m[4]!);
}

/** Why `spec`, imported by `file`, is not allowed in shared/; undefined when it is. */
function offence(file: string, spec: string): string | undefined {
  if (spec.startsWith('node:') || builtinModules.includes(spec) || builtinModules.includes(spec.split('/')[0]!)) return 'a Node module';
  if (spec.startsWith('.')) {
    const target = resolve(dirname(file), spec);
    return target === ROOT || target.startsWith(ROOT + sep) ? undefined : `outside shared/ (${relative(ROOT, target)})`;
  }
  if (spec.startsWith('/')) return 'an absolute path';
  const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
  return ALLOWED_PACKAGES.includes(pkg) ? undefined : `a package not allowed in shared/ (allowed: ${ALLOWED_PACKAGES.join(', ')})`;
}

describe('shared/ purity', () => {
  it('imports no Node module, nothing outside shared/, and only the allowed packages', () => {
    const files = sourceFiles(ROOT);
    expect(files.length).toBeGreaterThan(10);
    const offenders: string[] = [];
    for (const file of files) {
      for (const spec of importSpecifiers(readFileSync(file, 'utf8'))) {
        const why = offence(file, spec);
        if (why) offenders.push(`shared/${relative(ROOT, file)}: '${spec}' is ${why}`);
      }
    }
    expect(offenders, `shared/ must stay pure:\n${offenders.join('\n')}`).toEqual([]);
  });

  it('the scan sees every form of import and names each kind of offence', () => {
    const file = join(ROOT, 'crypto', 'x.ts');
    const text = [
      "import { a } from './a.js';",
      "import type { KeyObject } from 'node:crypto';",
      "export { b } from '../../server/clock.js';",
      "import 'fs';",
      'const m = await import("ws");',
      "const p = require('path/posix');",
      "import nacl from 'tweetnacl';",
      "import { sha256 } from '@noble/hashes/sha2.js';",
      "// import { c } from 'node:fs';",
      "/* export * from 'pino'; */",
    ].join('\n');
    const specs = importSpecifiers(text);
    expect(specs).toEqual(['./a.js', 'node:crypto', '../../server/clock.js', 'fs', 'ws', 'path/posix', 'tweetnacl', '@noble/hashes/sha2.js']);
    expect(specs.map((s) => offence(file, s))).toEqual([
      undefined,
      'a Node module',
      'outside shared/ (../server/clock.js)',
      'a Node module',
      expect.stringMatching(/^a package not allowed/),
      'a Node module',
      undefined,
      undefined,
    ]);
  });
});
