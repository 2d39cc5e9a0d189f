import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { closesLink, codeOfCloseCode, ERROR_TABLE, retryPolicy, type HotlineErrorCode } from '../../shared/errors.js';

const codes = Object.keys(ERROR_TABLE) as HotlineErrorCode[];

describe('the error table', () => {
  it('gives every code its own WebSocket close code, inside 4000–4999', () => {
    const byClose = new Map<number, string[]>();
    for (const code of codes) byClose.set(ERROR_TABLE[code].ws, [...(byClose.get(ERROR_TABLE[code].ws) ?? []), code]);
    const shared = [...byClose.values()].filter((list) => list.length > 1);
    expect(shared).toEqual([]);
    for (const code of codes) expect(ERROR_TABLE[code].ws, code).toBeGreaterThanOrEqual(4000);
    for (const code of codes) expect(ERROR_TABLE[code].ws, code).toBeLessThanOrEqual(4999);
  });

  it('maps each close code back to its one code', () => {
    for (const code of codes) expect(codeOfCloseCode(ERROR_TABLE[code].ws)).toBe(code);
    expect(codeOfCloseCode(1006)).toBeUndefined();
  });

  it('is what PROTOCOL.md lists, row for row', () => {
    const spec = readFileSync(new URL('../../shared/PROTOCOL.md', import.meta.url), 'utf8');
    const rows = [...spec.matchAll(/^\| `(HL_ERR_[A-Z0-9_]+)` \| (\d+) \| (\d+) \| (yes|no) \| (\w+) \|$/gm)].map((m) => ({
      code: m[1],
      http: Number(m[2]),
      ws: Number(m[3]),
      closesLink: m[4] === 'yes',
      retry: m[5],
    }));
    expect(rows).toEqual(codes.map((code) => ({ code, ...ERROR_TABLE[code] })));
  });

  it('says which codes end the connection and which a client retries', () => {
    expect(closesLink('HL_ERR_INPUT_MALFORMED_JSON')).toBe(true);
    expect(closesLink('HL_ERR_ENVELOPE_BAD_SIGNATURE')).toBe(false);
    expect(retryPolicy('HL_ERR_CERT_REVOKED')).toBe('stop');
    expect(retryPolicy('HL_ERR_STORE_FAILED')).toBe('later');
    expect(retryPolicy('HL_ERR_ENVELOPE_RECIPIENTS')).toBe('reseal');
    expect(retryPolicy('HL_ERR_ENVELOPE_BAD_SIGNATURE')).toBe('never');
  });
});
