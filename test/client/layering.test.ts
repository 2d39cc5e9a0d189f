import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The client library (client/*.ts) and its storage (client/storage/) are what the CLI and the
// consoles build on: they must not reach back into either (README "Architecture").
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const FORBIDDEN = ['client/console/', 'client/cli/'];

/** Every module specifier a TypeScript source imports or re-exports, static or dynamic. */
function importSpecifiers(source: string): string[] {
  const out: string[] = [];
  const patterns = [/\b(?:import|export)\s[^'";]*?\bfrom\s*['"]([^'"]+)['"]/g, /\bimport\s*['"]([^'"]+)['"]/g, /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g];
  for (const re of patterns) for (const m of source.matchAll(re)) out.push(m[1]!);
  return out;
}

/** The imports of `file` (a path from the repository root) that land in a forbidden folder. */
function forbiddenImports(file: string, source: string): string[] {
  return importSpecifiers(source).filter((spec) => {
    if (!spec.startsWith('.')) return false;
    const target = relative(ROOT, resolve(ROOT, dirname(file), spec)).split('\\').join('/');
    return FORBIDDEN.some((f) => target.startsWith(f));
  });
}

function libraryFiles(): string[] {
  const ts = (dir: string) =>
    readdirSync(join(ROOT, dir), { withFileTypes: true })
      .filter((e) => e.isFile() && e.name.endsWith('.ts'))
      .map((e) => `${dir}/${e.name}`);
  return [...ts('client'), ...ts('client/storage')];
}

describe('client layering', () => {
  it('finds a forbidden import however it is written (the check can fail)', () => {
    const source = [
      "import { MemoryKeyValueStore } from '../console/kv.js';",
      "import type {\n  Thing,\n} from '../cli/common.js';",
      "export { x } from '../console/operator/model.js';",
      "const m = await import('../console/key-store.js');",
      "import './kv.js';",
      "import { HotlineError } from '../../shared/errors.js';",
    ].join('\n');
    expect(forbiddenImports('client/storage/x.ts', source)).toEqual(['../console/kv.js', '../cli/common.js', '../console/operator/model.js', '../console/key-store.js']);
    expect(forbiddenImports('client/x.ts', "import { a } from './console/kv.js';")).toEqual(['./console/kv.js']);
  });

  it('the library modules and client/storage/ import nothing from client/console/ or client/cli/', () => {
    const files = libraryFiles();
    expect(files).toContain('client/hotline-client.ts');
    expect(files).toContain('client/storage/browser-storage.ts');
    const offending = files.flatMap((file) => forbiddenImports(file, readFileSync(join(ROOT, file), 'utf8')).map((spec) => `${file} imports ${spec}`));
    expect(offending).toEqual([]);
  });
});
