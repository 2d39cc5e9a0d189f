import { beforeAll, describe, expect, it } from 'vitest';
import { KeyStore, PBKDF2_ITERATIONS, derivePassphraseKey, type KeyStoreRecord } from '../../../client/console/key-store.js';
import { MemoryKeyValueStore } from '../../../client/storage/kv.js';
import { BrowserStorage } from '../../../client/storage/browser-storage.js';
import { fromBase64, toHex } from '../../../shared/encoding/base64.js';
import { makeDeployment, type TestDeployment } from '../../helpers/fixtures.js';

let dep: TestDeployment;
beforeAll(async () => {
  dep = await makeDeployment();
});

function keyFileText(): string {
  return JSON.stringify(dep.devices.jpOp);
}

/** Every way a secret might sit in clear in a stored string: base64, hex, and the raw bytes as latin-1. */
function secretForms(): string[] {
  const out: string[] = [];
  for (const b64 of [dep.devices.jpOp.signSecret, dep.devices.jpOp.boxSecret]) {
    const bytes = fromBase64(b64);
    out.push(b64, toHex(bytes), String.fromCharCode(...bytes), JSON.stringify(Array.from(bytes)).slice(1, -1));
  }
  return out;
}

describe('derivePassphraseKey', () => {
  it('matches an RFC 6070-style PBKDF2-HMAC-SHA-256 vector (password, salt, 1 iteration)', async () => {
    // PBKDF2-HMAC-SHA-256("password", "salt", c=1, dkLen=32), from RFC 7914 §11's companion vectors.
    const k = await derivePassphraseKey('password', new TextEncoder().encode('salt'), 1);
    expect(toHex(k)).toBe('120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b');
  });
});

describe('KeyStore', () => {
  it('imports a key file and unlocks it with the right passphrase', async () => {
    const kv = new MemoryKeyValueStore();
    const store = new KeyStore(kv, 'operator');
    expect(await store.label()).toBeUndefined();
    await store.importKeyFile(keyFileText(), 'correct horse battery');
    expect(await store.label()).toEqual({ party: 'jp-mod', device: 'jp-op-1', role: 'operator' });
    const unlocked = await store.unlock('correct horse battery');
    expect(unlocked.device).toEqual(dep.devices.jpOp);
    const record = JSON.parse(kv.map.get('keystore/operator')!) as KeyStoreRecord;
    expect(record.kdf.iterations).toBeGreaterThanOrEqual(600_000);
    expect(fromBase64(record.kdf.salt)).toHaveLength(16);
  });

  it('refuses a wrong passphrase with HL_ERR_KEYSTORE_PASSPHRASE', async () => {
    const store = new KeyStore(new MemoryKeyValueStore(), 'operator');
    await store.importKeyFile(keyFileText(), 'correct horse battery');
    await expect(store.unlock('correct horse batterY')).rejects.toMatchObject({ code: 'HL_ERR_KEYSTORE_PASSPHRASE' });
  });

  it('stores nothing of the secret keys in clear', async () => {
    const kv = new MemoryKeyValueStore();
    await new KeyStore(kv, 'operator').importKeyFile(keyFileText(), 'correct horse battery');
    const everything = [...kv.map.entries()].flat().join('\n');
    for (const form of secretForms()) expect(everything).not.toContain(form);
  });

  it('refuses a short passphrase, a file that is not a key, and a key of the wrong role', async () => {
    const store = new KeyStore(new MemoryKeyValueStore(), 'auditor');
    await expect(store.importKeyFile(keyFileText(), 'short')).rejects.toMatchObject({ code: 'HL_ERR_KEYSTORE_PASSPHRASE' });
    await expect(store.importKeyFile('{"type":"nope"}', 'long enough pass')).rejects.toMatchObject({ code: 'HL_ERR_KEY_INVALID' });
    const tampered = { ...dep.devices.jpOp, signSecret: dep.devices.cnOp.signSecret };
    await expect(store.importKeyFile(JSON.stringify(tampered), 'long enough pass')).rejects.toMatchObject({ code: 'HL_ERR_KEY_INVALID' });
    await expect(store.importKeyFile(keyFileText(), 'long enough pass', { roles: ['auditor'] })).rejects.toMatchObject({ code: 'HL_ERR_CERT_WRONG_ROLE' });
  });

  it('refuses a record whose work factor was lowered, and one whose box was altered', async () => {
    const kv = new MemoryKeyValueStore();
    const store = new KeyStore(kv, 'operator');
    await store.importKeyFile(keyFileText(), 'correct horse battery');
    const record = JSON.parse(kv.map.get('keystore/operator')!) as KeyStoreRecord;
    kv.map.set('keystore/operator', JSON.stringify({ ...record, kdf: { ...record.kdf, iterations: 1 } }));
    await expect(store.unlock('correct horse battery')).rejects.toMatchObject({ code: 'HL_ERR_KEY_INVALID' });
    const box = fromBase64(record.box);
    box[5]! ^= 1;
    kv.map.set('keystore/operator', JSON.stringify({ ...record, box: Buffer.from(box).toString('base64') }));
    await expect(store.unlock('correct horse battery')).rejects.toMatchObject({ code: 'HL_ERR_KEYSTORE_PASSPHRASE' });
  });

  it('keeps slots apart and forgets a key', async () => {
    const kv = new MemoryKeyValueStore();
    const op = new KeyStore(kv, 'operator');
    const aud = new KeyStore(kv, 'auditor');
    await op.importKeyFile(keyFileText(), 'correct horse battery');
    expect(await aud.label()).toBeUndefined();
    await op.forget();
    expect(await op.label()).toBeUndefined();
    await expect(op.unlock('correct horse battery')).rejects.toMatchObject({ code: 'HL_ERR_USAGE' });
  });

  it('uses the documented work factor', () => {
    expect(PBKDF2_ITERATIONS).toBeGreaterThanOrEqual(600_000);
  });
});

describe('BrowserStorage', () => {
  it('keeps client state sealed with the data key, and updates atomically', async () => {
    const kv = new MemoryKeyValueStore();
    const unlocked = await new KeyStore(kv, 'operator').importKeyFile(keyFileText(), 'correct horse battery');
    const storage = new BrowserStorage(kv, unlocked.data);
    const seqs = await Promise.all([1, 2, 3, 4, 5].map(() => storage.update('jp-mod/jp-op-1', (s) => ++s.lastSeq)));
    expect(seqs.sort()).toEqual([1, 2, 3, 4, 5]);
    await storage.update('jp-mod/jp-op-1', (s) => {
      s.outbox[`e:${'a'.repeat(32)}`] = {
        kind: 'envelope',
        id: 'a'.repeat(32),
        draft: { to: 'cn-mnd', precedence: 'FLASH', plaintext: { body: '至急：国境付近の演習について', lang: 'ja' } },
        envelope: {} as never,
        composedAt: 1,
        resealed: 0,
      };
    });
    const stored = [...kv.map.values(), ...[...kv.recordMaps.values()].flatMap((m) => [...m.values()])].join('\n');
    expect(stored).not.toContain('至急');
    expect(stored).not.toContain('lastSeq');
    const again = new BrowserStorage(kv, (await new KeyStore(kv, 'operator').unlock('correct horse battery')).data);
    const state = await again.read('jp-mod/jp-op-1');
    expect(state.lastSeq).toBe(5);
    expect(Object.values(state.outbox)[0]).toMatchObject({ draft: { plaintext: { body: '至急：国境付近の演習について' } } });
    await expect(again.read('cn-mnd/cn-op-1')).resolves.toMatchObject({ lastSeq: 0 });
  });
});
