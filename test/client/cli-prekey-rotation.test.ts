import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { prekeyRotationMs } from '../../shared/crypto/prekey.js';
import { parseAgreement } from '../../shared/crypto/keys.js';
import { cli } from '../helpers/cli.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hotline-cli-rotation-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('agreement create --prekey-rotation-days', () => {
  it('writes prekeyRotationMs into the agreement, says so, and refuses a value outside 1–366 whole days', { timeout: 60_000 }, async () => {
    const at = (f: string) => join(dir, f);
    for (const [id, file] of [['jp-mod', 'jp'], ['cn-mnd', 'cn']]) {
      expect((await cli(['party', 'create', '--no-passphrase', '--id', id!, '--name', id!, '--out', at(`${file}.secret.json`)])).code).toBe(0);
    }
    const create = (out: string, ...extra: string[]) => cli(['agreement', 'create', '--party', at('jp.public.json'), '--party', at('cn.public.json'), '--out', at(out), ...extra]);
    const made = await create('agreement.json', '--prekey-rotation-days', '2');
    expect(made.code, made.err).toBe(0);
    expect(made.out).toContain('prekey rotation: every 2 days');
    const agreement = parseAgreement(JSON.parse(readFileSync(at('agreement.json'), 'utf8')));
    expect(agreement.prekeyRotationMs).toBe(2 * 24 * 3_600_000);
    expect(prekeyRotationMs(agreement)).toBe(2 * 24 * 3_600_000);

    // Absent: the member is left out, and the default (7 days) applies.
    expect((await create('default.json')).code).toBe(0);
    const plain = JSON.parse(readFileSync(at('default.json'), 'utf8')) as Record<string, unknown>;
    expect(plain['prekeyRotationMs']).toBeUndefined();
    for (const bad of ['0', '1.5', '367', 'weekly']) expect((await create(`bad-${bad}.json`, '--prekey-rotation-days', bad)).code, bad).toBe(2);
  });
});
