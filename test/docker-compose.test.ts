import { execFileSync, spawnSync } from 'node:child_process';
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

  it('runs the same server as `hotline server` with a named volume for its data, published on 127.0.0.1:8080 only', () => {
    const svc = compose['services']['hotline'];
    expect(svc.command).toEqual(['node', 'bin/hotline.js', 'server']);
    expect(svc.ports).toEqual(['127.0.0.1:8080:8080']);
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

  it('mounts the log key as a secret and points HOTLINE_LOG_KEY at it, so checkpoints are signed', () => {
    const svc = compose['services']['hotline'];
    expect(svc.secrets).toEqual(['hotline_log_key']);
    expect(svc.environment['HOTLINE_LOG_KEY']).toBe('/run/secrets/hotline_log_key');
    expect(compose['secrets']['hotline_log_key'].file).toMatch(/^\.\/secrets\//);
    expect(loadConfig(svc.environment as Record<string, string>).logKeyPath).toBe('/run/secrets/hotline_log_key');
  });

  it('has a Dockerfile that builds the image it names', () => {
    expect(compose['services']['hotline'].build).toBe('.');
  });
});

/** Each `FROM … AS name` stage of the Dockerfile, with its instructions (continuations joined). */
function stages(dockerfile: string): { from: string; name: string; lines: string[] }[] {
  const out: { from: string; name: string; lines: string[] }[] = [];
  const lines = dockerfile.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  for (const line of lines) {
    const m = /^FROM (\S+) AS (\S+)$/i.exec(line);
    if (m) out.push({ from: m[1]!, name: m[2]!, lines: [] });
    else out[out.length - 1]?.lines.push(line);
  }
  return out;
}

describe('Dockerfile', () => {
  const dockerfile = readFileSync(new URL('../Dockerfile', import.meta.url), 'utf8');
  const [builder, runtime, ...more] = stages(dockerfile);

  it('builds in a builder stage with the native toolchain: npm ci, then the sources, then the CLI bundle', () => {
    expect(more).toEqual([]);
    expect(builder!.from).toMatch(/^node:20-bookworm$/);
    const at = (re: RegExp) => builder!.lines.findIndex((l) => re.test(l));
    expect(builder!.lines[at(/apt-get install/)]).toMatch(/python3/);
    expect(builder!.lines[at(/apt-get install/)]).toMatch(/\bmake\b/);
    expect(builder!.lines[at(/apt-get install/)]).toMatch(/g\+\+/);
    expect(at(/^RUN npm ci\b/)).toBeGreaterThan(at(/apt-get install/));
    expect(at(/^COPY \. \.$/)).toBeGreaterThan(at(/^RUN npm ci\b/));
    expect(at(/npm run build:cli/)).toBeGreaterThan(at(/^COPY \. \.$/));
    expect(builder!.lines[at(/npm run build:cli/)]).toMatch(/npm prune --omit=dev/);
  });

  it('runs on bookworm-slim as a non-root user with only what the builder made, and /data as a volume', () => {
    expect(runtime!.from).toBe('node:20-bookworm-slim');
    expect(runtime!.lines).toContain('USER node');
    expect(runtime!.lines.some((l) => /^VOLUME .*\/data/.test(l))).toBe(true);
    // Nothing from the build context: every COPY is from the builder, and no compiler is installed.
    for (const l of runtime!.lines.filter((x) => x.startsWith('COPY'))) expect(l).toMatch(/--from=builder/);
    expect(runtime!.lines.some((l) => /apt-get|npm (ci|install)/.test(l))).toBe(false);
    expect(runtime!.lines.some((l) => /\/app\/dist /.test(l))).toBe(true);
    expect(runtime!.lines[runtime!.lines.length - 1]).toBe('CMD ["node", "bin/hotline.js", "server"]');
  });
});

describe('.dockerignore', () => {
  const patterns = readFileSync(new URL('../.dockerignore', import.meta.url), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  /** Whether a path is left out of the build context (Docker's rules for these simple patterns: `*` within a path segment, matched from the root or as a basename glob). */
  const ignored = (path: string) =>
    patterns.some((p) => {
      const re = new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`);
      return re.test(path) || (!p.includes('/') && re.test(path.split('/').pop()!));
    });

  it('leaves out keys, state (message plaintext) and its journal, revocations, exports, databases, results and the repository', () => {
    for (const path of [
      'jp-operator-1.secret.json',
      'jp-mod.secret.json',
      'agreement.log.secret.json',
      'secrets/log.secret.json',
      'tls/server.key',
      'server.pem',
      'jp-operator-1.state.json',
      'jp-operator-1.state.json.journal',
      'jp-operator-1.revocation.json',
      'audit.json',
      'jp.export.json',
      'data/server/hotline.sqlite',
      'hotline.sqlite-wal',
      'test-results/x.png',
      'bench/results/2026.json',
      '.git/config',
      'node_modules/x/index.js',
      'dist/cli/hotline.mjs',
      '.env',
      'metrics-token',
    ]) expect(ignored(path), path).toBe(true);
  });

  it('keeps what the build needs', () => {
    const tracked = execFileSync('git', ['ls-files'], { cwd: new URL('..', import.meta.url), encoding: 'utf8' }).split('\n').filter((f) => f !== '');
    for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', 'scripts/build-cli.mjs', 'bin/hotline.js', 'server/main.ts', 'shared/protocol/schemas.ts']) {
      expect(tracked, f).toContain(f);
      expect(ignored(f), f).toBe(false);
    }
    // No tracked source, test or fixture file is left out by a pattern meant for secrets.
    const lost = tracked.filter((f) => ignored(f) && !/^(bench\/results\/.*|docs\/.*\.png|\.gitignore|\.ci\/.*|\.dockerignore)$/.test(f));
    expect(lost).toEqual([]);
  });
});

describe('docker-compose.pg.yml (two relay nodes on one PostgreSQL)', () => {
  const compose = parseYaml(readFileSync(new URL('../docker-compose.pg.yml', import.meta.url), 'utf8')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const nodes = ['node1', 'node2'];

  it('runs PostgreSQL with its password as a secret, and two nodes on the same database URL', () => {
    expect(compose['services']['postgres'].image).toMatch(/^postgres:15/);
    expect(compose['services']['postgres'].environment['POSTGRES_PASSWORD_FILE']).toBe('/run/secrets/pg_password');
    expect(compose['services']['postgres'].ports).toBeUndefined();
    const urls = nodes.map((n) => compose['services'][n].environment['HOTLINE_DATABASE_URL'] as string);
    expect(new Set(urls).size).toBe(1);
    expect(urls[0]).toMatch(/^postgres:\/\/hotline:\$\{HOTLINE_PG_PASSWORD:\?[^}]+\}@postgres:5432\/hotline$/);
    for (const n of nodes) expect(compose['services'][n].depends_on).toContain('postgres');
  });

  it('gives each node its own data directory, the log key as a secret, and a port on 127.0.0.1 only; the server accepts the settings', () => {
    const dirs = new Set<string>();
    for (const n of nodes) {
      const svc = compose['services'][n];
      const env = { ...(svc.environment as Record<string, string>), HOTLINE_DATABASE_URL: 'postgres://hotline:x@postgres:5432/hotline' };
      const config = loadConfig(env);
      expect(config.databaseUrl).toBe(env['HOTLINE_DATABASE_URL']);
      expect(config.logKeyPath).toBe('/run/secrets/hotline_log_key');
      dirs.add(config.dataDir);
      expect(svc.secrets).toEqual(['hotline_log_key']);
      for (const p of svc.ports as string[]) expect(p).toMatch(/^127\.0\.0\.1:\d+:8080$/);
    }
    expect(dirs.size).toBe(2);
    expect(Object.keys(compose['secrets'])).toEqual(['hotline_log_key', 'pg_password']);
  });
});

describe('every compose file', () => {
  it('publishes ports on 127.0.0.1 only (TLS goes in front: docs/container.md)', () => {
    for (const file of ['../docker-compose.yml', '../docker-compose.pg.yml']) {
      const c = parseYaml(readFileSync(new URL(file, import.meta.url), 'utf8')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
      for (const [name, svc] of Object.entries(c['services'] as Record<string, { ports?: string[] }>)) {
        for (const p of svc.ports ?? []) expect(p, `${file} ${name}`).toMatch(/^127\.0\.0\.1:/);
      }
    }
  });
});

/** Whether a Docker engine answers here (the CLI alone is not enough). */
function dockerEngine(): { ok: true } | { ok: false; why: string } {
  const r = spawnSync('docker', ['info', '--format', '{{.ServerVersion}}'], { encoding: 'utf8', timeout: 15_000 });
  if (r.error) return { ok: false, why: `no docker command (${r.error.message})` };
  if (r.status !== 0) return { ok: false, why: (r.stderr || r.stdout).trim().split('\n')[0] ?? `docker info exited ${r.status}` };
  return { ok: true };
}

describe('the image', () => {
  it('builds from the Dockerfile and starts `hotline --version` as a non-root user (needs a Docker engine)', { timeout: 900_000 }, (ctx) => {
    const engine = dockerEngine();
    if (!engine.ok) ctx.skip(`no Docker engine: ${engine.why}`);
    const root = new URL('..', import.meta.url);
    const build = spawnSync('docker', ['build', '-t', 'hotline:test', '.'], { cwd: root, encoding: 'utf8', timeout: 880_000 });
    expect(build.status, build.stderr).toBe(0);
    const who = spawnSync('docker', ['run', '--rm', 'hotline:test', 'id', '-u'], { encoding: 'utf8', timeout: 60_000 });
    expect(who.stdout.trim()).not.toBe('0');
    const version = spawnSync('docker', ['run', '--rm', 'hotline:test', 'node', 'bin/hotline.js', '--version'], { encoding: 'utf8', timeout: 60_000 });
    expect(version.status, version.stderr).toBe(0);
    expect(version.stdout).toMatch(/compiled bundle/);
  });
});
