import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { HotlineError } from '../../shared/errors.js';

/**
 * The browser consoles, served by the server (issue 6): static pages and two script bundles made
 * in memory with esbuild on first request, so that `npm start` needs no separate build step and
 * server tests that never open a console pay nothing. The consoles use the same HTTP API and
 * WebSocket as the CLI; all cryptography happens in the browser.
 *
 * Routes: `/` → `/console/`, `/console/` (index), `/console/operator/`, `/console/auditor/`,
 * `/console/assets/{operator.js, auditor.js, style.css}`, and the app shell's service worker
 * `/console/sw.js` (client/console/shell-worker/sw.ts), at that path so that its scope covers
 * both consoles.
 */

/** No inline scripts or styles, no eval, nothing from elsewhere; the WebSocket to this server only. */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self' ws: wss:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export interface ConsolePluginOptions {
  /** Bundle at registration instead of on first request (main.ts, so that the first page is quick). */
  warm?: boolean;
}

interface Asset {
  type: string;
  body: string;
}

const CONSOLES = ['operator', 'auditor'] as const;

/** client/console/ from server/plugins/ (run by tsx) or dist/server/plugins/ (after `npm run build`). */
function consoleDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['../..', '../../..']) {
    const dir = join(here, up, 'client', 'console');
    if (existsSync(join(dir, 'pages', 'operator.html'))) return dir;
  }
  throw new HotlineError('HL_ERR_CONFIG_INVALID', 'client/console/pages not found next to the server');
}

/** Bundle both consoles for the browser; returns every asset by URL path. */
export async function buildConsoleAssets(): Promise<Map<string, Asset>> {
  const { build } = await import('esbuild');
  const dir = consoleDir();
  const shim = join(dir, 'shims', 'typebox-compiler.ts');
  const result = await build({
    entryPoints: Object.fromEntries(CONSOLES.map((c) => [c, join(dir, c, 'main.ts')])),
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    outdir: '/console-assets',
    minify: true,
    legalComments: 'none',
    logLevel: 'silent',
    plugins: [
      {
        name: 'hotline-browser',
        setup(b) {
          // TypeBox's compiler uses `new Function`, which the CSP forbids: use the interpreter.
          b.onResolve({ filter: /^@sinclair\/typebox\/compiler$/ }, () => ({ path: shim }));
          // Nothing Node-only may reach a browser bundle: fail the build, not the page.
          b.onResolve({ filter: /^node:/ }, (args) => ({ errors: [{ text: `${args.path} imported from ${args.importer}: the browser has no Node modules` }] }));
        },
      },
    ],
  });
  // A classic script (no module service workers in every browser yet), bundled on its own.
  const worker = await build({
    entryPoints: [join(dir, 'shell-worker', 'sw.ts')],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const assets = new Map<string, Asset>();
  assets.set('/console/sw.js', { type: 'text/javascript; charset=utf-8', body: worker.outputFiles[0]!.text });
  for (const file of result.outputFiles) {
    const name = file.path.split('/').pop()!;
    assets.set(`/console/assets/${name}`, { type: 'text/javascript; charset=utf-8', body: file.text });
  }
  assets.set('/console/assets/style.css', { type: 'text/css; charset=utf-8', body: readFileSync(join(dir, 'pages', 'style.css'), 'utf8') });
  const html = (name: string): Asset => ({ type: 'text/html; charset=utf-8', body: readFileSync(join(dir, 'pages', `${name}.html`), 'utf8') });
  assets.set('/console/', html('index'));
  for (const c of CONSOLES) assets.set(`/console/${c}/`, html(c));
  return assets;
}

export const consolePlugin: FastifyPluginAsync<ConsolePluginOptions> = async (app, options) => {
  let assets: Promise<Map<string, Asset>> | undefined;
  const load = () => {
    assets ??= buildConsoleAssets().catch((err: unknown) => {
      assets = undefined;
      throw err;
    });
    return assets;
  };
  if (options.warm) await load();

  const send = async (path: string, reply: FastifyReply) => {
    let map: Map<string, Asset>;
    try {
      map = await load();
    } catch (cause) {
      app.log.error({ err: { message: (cause as Error).message } }, 'console bundle failed');
      throw new HotlineError('HL_ERR_INTERNAL', 'the console could not be built', { cause });
    }
    const asset = map.get(path);
    if (!asset) throw new HotlineError('HL_ERR_NOT_FOUND', 'no such console file');
    return reply
      .header('content-type', asset.type)
      .header('content-security-policy', CONSOLE_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cross-origin-opener-policy', 'same-origin')
      .header('cache-control', 'no-cache')
      .send(asset.body);
  };

  app.get('/', async (_req, reply) => reply.redirect('/console/'));
  app.get('/console', async (_req, reply) => reply.redirect('/console/'));
  app.get('/console/', async (_req, reply) => send('/console/', reply));
  for (const c of CONSOLES) {
    app.get(`/console/${c}`, async (_req, reply) => reply.redirect(`/console/${c}/`));
    app.get(`/console/${c}/`, async (_req, reply) => send(`/console/${c}/`, reply));
  }
  app.get('/console/sw.js', async (_req, reply) => send('/console/sw.js', reply));
  app.get<{ Params: { file: string } }>('/console/assets/:file', async (req, reply) => send(`/console/assets/${req.params.file}`, reply));
};
