import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/config.js';

const base = { HOTLINE_AGREEMENT: '/etc/hotline/agreement.json', HOTLINE_DATA_DIR: '/data' };

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('loadConfig', () => {
  it('applies defaults', () => {
    expect(loadConfig(base)).toEqual({ agreementPath: '/etc/hotline/agreement.json', dataDir: '/data', host: '127.0.0.1', port: 8080, logLevel: 'info' });
  });

  it('lets flags win over the environment', () => {
    const c = loadConfig({ ...base, HOTLINE_PORT: '9000' }, ['--port', '0', '--host=0.0.0.0', '--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--log-key', 'log.json']);
    expect(c).toMatchObject({ port: 0, host: '0.0.0.0', tls: { certPath: 'c.pem', keyPath: 'k.pem' }, logKeyPath: 'log.json' });
  });

  it('refuses missing, malformed and half-given settings with HL_ERR_CONFIG_INVALID, naming each', () => {
    expect(codeOf(() => loadConfig({}))).toBe('HL_ERR_CONFIG_INVALID');
    let message = '';
    try {
      loadConfig({ HOTLINE_PORT: '80a', HOTLINE_LOG_LEVEL: 'loud', HOTLINE_TLS_CERT: 'c.pem' });
    } catch (e) {
      message = (e as Error).message;
    }
    for (const name of ['HOTLINE_AGREEMENT', 'HOTLINE_DATA_DIR', 'HOTLINE_PORT', 'HOTLINE_LOG_LEVEL', 'HOTLINE_TLS_KEY']) expect(message).toContain(name);
    expect(codeOf(() => loadConfig(base, ['--port', '70000']))).toBe('HL_ERR_CONFIG_INVALID');
    expect(codeOf(() => loadConfig(base, ['--bogus', 'x']))).toBe('HL_ERR_CONFIG_INVALID');
    expect(codeOf(() => loadConfig(base, ['--port']))).toBe('HL_ERR_CONFIG_INVALID');
  });

  it('takes --accept-data-loss as a switch, and HOTLINE_ACCEPT_DATA_LOSS as yes or no only', () => {
    expect(loadConfig(base).acceptDataLoss).toBeUndefined();
    expect(loadConfig(base, ['--accept-data-loss']).acceptDataLoss).toBe(true);
    expect(loadConfig({ ...base, HOTLINE_ACCEPT_DATA_LOSS: '1' }).acceptDataLoss).toBe(true);
    expect(loadConfig({ ...base, HOTLINE_ACCEPT_DATA_LOSS: 'no' }).acceptDataLoss).toBeUndefined();
    expect(codeOf(() => loadConfig({ ...base, HOTLINE_ACCEPT_DATA_LOSS: 'maybe' }))).toBe('HL_ERR_CONFIG_INVALID');
    expect(codeOf(() => loadConfig(base, ['--accept-data-loss=1']))).toBe('HL_ERR_CONFIG_INVALID');
  });

  it('takes the per-address connection cap', () => {
    expect(loadConfig(base, ['--max-connections-per-address', '64']).maxConnectionsPerAddress).toBe(64);
    expect(loadConfig({ ...base, HOTLINE_MAX_CONNECTIONS_PER_ADDRESS: '8' }).maxConnectionsPerAddress).toBe(8);
    expect(codeOf(() => loadConfig(base, ['--max-connections-per-address', '0']))).toBe('HL_ERR_CONFIG_INVALID');
  });

  it('takes the PostgreSQL URL from HOTLINE_DATABASE_URL or --database-url, and never echoes a bad one (it may hold a password)', () => {
    expect(loadConfig(base).databaseUrl).toBeUndefined();
    expect(loadConfig({ ...base, HOTLINE_DATABASE_URL: 'postgres://relay:pw@db:5432/hotline' }).databaseUrl).toBe('postgres://relay:pw@db:5432/hotline');
    expect(loadConfig(base, ['--database-url', 'postgresql://db/hotline']).databaseUrl).toBe('postgresql://db/hotline');
    let message = '';
    try {
      loadConfig(base, ['--database-url', 'mysql://relay:s3cret@db/hotline']);
    } catch (e) {
      message = (e as Error).message;
      expect((e as { code?: string }).code).toBe('HL_ERR_CONFIG_INVALID');
    }
    expect(message).toContain('HOTLINE_DATABASE_URL');
    expect(message).not.toContain('s3cret');
    // A URL without a database name is refused too.
    expect(codeOf(() => loadConfig(base, ['--database-url', 'postgres://db:5432']))).toBe('HL_ERR_CONFIG_INVALID');
  });
});
