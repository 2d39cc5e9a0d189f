#!/usr/bin/env node
// The `hotline` command. Runs the compiled bundle dist/cli/hotline.mjs (built by `npm install` /
// `npm ci` through the `prepare` script, or `npm run build:cli`) when it is there and not older than
// any of its sources; otherwise runs the TypeScript sources through tsx (slower to start, never stale).
import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The bundle's URL when it is complete and fresh, else undefined. */
function bundle() {
  if (process.env.HOTLINE_CLI_SOURCE === '1') return undefined;
  try {
    const dist = join(root, 'dist', 'cli');
    const { builtAt, inputs } = JSON.parse(readFileSync(join(dist, 'inputs.json'), 'utf8'));
    for (const input of inputs) if (statSync(join(root, input)).mtimeMs > builtAt) return undefined;
    return pathToFileURL(join(dist, 'hotline.mjs')).href;
  } catch {
    // No bundle (never built, or a source file moved): the sources.
    return undefined;
  }
}

const compiled = bundle();
// Read by `hotline --version`.
globalThis.hotlineCliBuild = compiled === undefined ? 'TypeScript sources via tsx' : 'compiled bundle';
if (compiled !== undefined) {
  await import(compiled);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../client/cli/main.ts');
}
