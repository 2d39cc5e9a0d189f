import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../server/config.js';

type Yaml = string | Yaml[] | { [k: string]: Yaml };

/**
 * A parser for the small YAML subset docker-compose.yml uses here: block maps, block lists,
 * plain/quoted scalars, flow lists of quoted strings, comments. Anything else fails the test.
 */
function parseYaml(text: string): Yaml {
  const lines = text
    .split('\n')
    .map((raw) => raw.replace(/\s+#.*$|^\s*#.*$/, ''))
    .filter((l) => l.trim() !== '')
    .map((l) => ({ indent: l.length - l.trimStart().length, text: l.trim() }));
  let i = 0;
  const scalar = (s: string): Yaml => {
    if (s.startsWith('[')) return JSON.parse(s) as Yaml;
    if (/^".*"$/.test(s)) return JSON.parse(s) as string;
    if (/^'.*'$/.test(s)) return s.slice(1, -1);
    return s;
  };
  const block = (indent: number): Yaml => {
    if (lines[i]!.text.startsWith('- ')) {
      const list: Yaml[] = [];
      while (i < lines.length && lines[i]!.indent === indent && lines[i]!.text.startsWith('- ')) list.push(scalar(lines[i++]!.text.slice(2)));
      return list;
    }
    const map: Record<string, Yaml> = {};
    while (i < lines.length && lines[i]!.indent === indent) {
      const m = /^([A-Za-z0-9_.-]+):(?:\s+(.*))?$/.exec(lines[i]!.text);
      if (!m) throw new Error(`unsupported YAML: ${lines[i]!.text}`);
      i++;
      if (m[2] !== undefined) map[m[1]!] = scalar(m[2]);
      else if (i < lines.length && lines[i]!.indent > indent) map[m[1]!] = block(lines[i]!.indent);
      else map[m[1]!] = {};
    }
    return map;
  };
  const doc = block(0);
  if (i !== lines.length) throw new Error(`unparsed YAML from: ${lines[i]!.text}`);
  return doc;
}

describe('docker-compose.yml', () => {
  const compose = parseYaml(readFileSync(new URL('../docker-compose.yml', import.meta.url), 'utf8')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

  it('runs the same server as `hotline server` with a named volume for its data on port 8080', () => {
    const svc = compose['services']['hotline'];
    expect(svc.command).toEqual(['node', 'bin/hotline.js', 'server']);
    expect(svc.ports).toEqual(['8080:8080']);
    const [volume, mount] = (svc.volumes[0] as string).split(':');
    expect(Object.keys(compose['volumes'])).toContain(volume);
    expect(mount).toBe('/data');
    const env = svc.environment as Record<string, string>;
    expect(env['HOTLINE_DATA_DIR']!.startsWith('/data')).toBe(true);
    expect(env['HOTLINE_AGREEMENT']!.startsWith('/data/')).toBe(true);
  });

  it('gives the server a configuration it accepts: listening on all interfaces of the container at 8080', () => {
    const env = compose['services']['hotline'].environment as Record<string, string>;
    for (const k of Object.keys(env)) expect(k).toMatch(/^HOTLINE_/);
    const config = loadConfig(env);
    expect(config).toMatchObject({ host: '0.0.0.0', port: 8080, dataDir: env['HOTLINE_DATA_DIR'], agreementPath: env['HOTLINE_AGREEMENT'] });
  });

  it('has a Dockerfile that builds the image it names', () => {
    const dockerfile = readFileSync(new URL('../Dockerfile', import.meta.url), 'utf8');
    expect(compose['services']['hotline'].build).toBe('.');
    expect(dockerfile).toMatch(/^FROM node:20/m);
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
  });
});
