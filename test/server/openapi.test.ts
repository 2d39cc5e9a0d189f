import { describe, expect, it } from 'vitest';
import { routesOf } from '../../server/app.js';
import { onCleanup, startTestServer } from '../helpers/test-server.js';
import { startRelayPair } from '../helpers/two-relays.js';

interface OpenApi {
  openapi: string;
  paths: Record<string, Record<string, { responses?: Record<string, unknown>; requestBody?: unknown }>>;
}

/** Fastify's `/x/:id` is OpenAPI's `/x/{id}`. */
const toOpenApiPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

async function check(url: string, app: Parameters<typeof routesOf>[0]): Promise<OpenApi> {
  const r = await fetch(`${url}/v1/openapi.json`);
  expect(r.status).toBe(200);
  const doc = (await r.json()) as OpenApi;
  expect(doc.openapi).toMatch(/^3\./);
  // Every registered route (HEAD ones are GET's shadows, which the document leaves out) …
  const routes = routesOf(app).filter((x) => x.method !== 'HEAD' && x.method !== 'OPTIONS');
  expect(routes.length).toBeGreaterThan(10);
  const registered = new Set(routes.map((x) => `${x.method.toLowerCase()} ${toOpenApiPath(x.url)}`));
  const documented = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`)));
  // … appears in the document, and the document has nothing else.
  expect([...registered].filter((x) => !documented.has(x))).toEqual([]);
  expect([...documented].filter((x) => !registered.has(x))).toEqual([]);
  return doc;
}

describe('GET /v1/openapi.json (@fastify/swagger, from the TypeBox schemas)', () => {
  it('lists every HTTP route of a shared relay and nothing else, with the schemas the routes validate with', async () => {
    const s = await startTestServer();
    const doc = await check(s.url, s.app);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/status', '/metrics', '/v1/openapi.json', '/v1/agreement']));
    // A route with a TypeBox response schema carries it into the document.
    expect(JSON.stringify(doc.paths['/v1/status']!['get']!.responses?.['200'])).toContain('relayLinks');
  });

  it('lists the routes of a party’s own relay (two relays) too', async () => {
    const pair = await startRelayPair();
    onCleanup(() => pair.close());
    await check(pair.jp.url, pair.jp.app);
  });
});
