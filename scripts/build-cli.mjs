#!/usr/bin/env node
// Bundles the CLI (client/cli/main.ts and what it imports from client/, shared/ and server/) into
// dist/cli/ as plain JavaScript, so that a command starts without compiling TypeScript (README
// "The CLI"). Packages from node_modules stay external (better-sqlite3 is native; fastify, pino and
// ws load as they are). Code splitting keeps the server's code, and the packages it imports, in
// chunks that only `server`, `demo`, `backup` and `restore` load.
//
// Runs at `npm install`/`npm ci` (the `prepare` script) and before the tests (test/helpers/
// build-cli.ts). dist/cli/inputs.json lists every source file of the bundle: bin/hotline.js runs the
// sources through tsx instead when one of them is newer than the bundle, so an edited clone never
// runs stale code.
import { build } from 'esbuild';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'cli');

const EXTERNAL = ['better-sqlite3', 'pg', 'fastify', '@fastify/*', 'pino', 'pino-*', 'jsonwebtoken', 'esbuild', 'tsx', 'bufferutil', 'utf-8-validate'];

export async function buildCli() {
  const startedAt = Date.now();
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const result = await build({
    absWorkingDir: root,
    entryPoints: { hotline: 'client/cli/main.ts' },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // The server's packages (native better-sqlite3, fastify, pino, pg, esbuild for the consoles) load
    // from node_modules, and only when a server command runs; the small pure ones every command needs
    // (TypeBox, tweetnacl, @noble/hashes, ws) are bundled: resolving their many files cost more
    // start-up time than running them.
    external: EXTERNAL,
    // ws is CommonJS: its require() of Node modules needs a real require in an ES module.
    banner: { js: "import { createRequire as __hotlineCreateRequire } from 'node:module'; const require = __hotlineCreateRequire(import.meta.url);" },
    outdir: out,
    outExtension: { '.js': '.mjs' },
    sourcemap: 'linked',
    metafile: true,
    logLevel: 'warning',
  });
  const inputs = Object.keys(result.metafile.inputs).filter((p) => !p.startsWith('node_modules/'));
  // Written last: without it bin/hotline.js does not use the bundle (a build that failed half-way).
  writeFileSync(join(out, 'inputs.json'), JSON.stringify({ builtAt: startedAt, inputs }, null, 1) + '\n');
  return { inputs: inputs.length, ms: Date.now() - startedAt };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { inputs, ms } = await buildCli();
  console.log(`hotline CLI bundled into dist/cli/ (${inputs} source files, ${ms} ms)`);
}
