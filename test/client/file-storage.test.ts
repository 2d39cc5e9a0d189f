import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileStorage } from '../../client/storage/file-storage.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { MAX_RECORDS, pruneState, initialState } from '../../client/storage/client-storage.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'hotline-storage-'));
  dirs.push(d);
  return d;
}
const DEV = 'jp-mod/jp-op-1';

describe('FileStorage', () => {
  it('starts from a fresh state and writes the file with mode 0600', async () => {
    const path = join(tempDir(), 'state.json');
    const s = new FileStorage(path);
    expect(await s.read(DEV)).toEqual(initialState(DEV));
    expect(await s.update(DEV, (st) => ++st.lastSeq)).toBe(1);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ v: 1, device: DEV, lastSeq: 1 });
  });

  it('stores all of an update or none of it: a mutation that throws leaves the file as it was, and no temporary file', async () => {
    const dir = tempDir();
    const path = join(dir, 'state.json');
    const s = new FileStorage(path);
    await s.update(DEV, (st) => {
      st.lastSeq = 7;
    });
    const before = readFileSync(path, 'utf8');
    await expect(
      s.update(DEV, (st) => {
        st.lastSeq = 8;
        st.outbox.push({ kind: 'receipt' } as never);
        throw new Error('crash in the middle');
      }),
    ).rejects.toThrow('crash in the middle');
    expect(readFileSync(path, 'utf8')).toBe(before);
    expect(readdirSync(dir).sort()).toEqual(['state.json']);
    // The lock was released: the next update goes through.
    expect(await s.update(DEV, (st) => ++st.lastSeq)).toBe(8);
  });

  it('serialises updates from several processes (instances) on one file: no seq is lost or given twice', async () => {
    const path = join(tempDir(), 'state.json');
    const a = new FileStorage(path);
    const b = new FileStorage(path);
    const got = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).update(DEV, (st) => ++st.lastSeq)));
    expect(new Set(got).size).toBe(40);
    expect((await a.read(DEV)).lastSeq).toBe(40);
  });

  it('breaks a lock left by a crashed process once it is stale, and waits for a fresh one', async () => {
    const path = join(tempDir(), 'state.json');
    writeFileSync(`${path}.lock`, '');
    const old = new Date(Date.now() - 60_000);
    utimesSync(`${path}.lock`, old, old);
    expect(await new FileStorage(path).update(DEV, (st) => ++st.lastSeq)).toBe(1);
    writeFileSync(`${path}.lock`, '');
    await expect(new FileStorage(path, { lockTimeoutMs: 20 }).update(DEV, (st) => ++st.lastSeq)).rejects.toMatchObject({ code: 'HL_ERR_STORE_FAILED' });
  });

  it('refuses a corrupt file and a file of another device with a clear code', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'bad.json'), '{"v":1,');
    await expect(new FileStorage(join(dir, 'bad.json')).read(DEV)).rejects.toMatchObject({ code: 'HL_ERR_CONFIG_INVALID' });
    const path = join(dir, 'other.json');
    await new FileStorage(path).update('cn-mnd/cn-op-1', (st) => ++st.lastSeq);
    await expect(new FileStorage(path).read(DEV)).rejects.toMatchObject({ code: 'HL_ERR_CONFIG_INVALID' });
  });
});

describe('MemoryStorage', () => {
  it('applies updates in order, returns their results, prunes, and keeps to one device', async () => {
    const s = new MemoryStorage();
    const seqs = await Promise.all([1, 2, 3].map(() => s.update(DEV, (st) => ++st.lastSeq)));
    expect(seqs).toEqual([1, 2, 3]);
    expect((await s.read(DEV)).lastSeq).toBe(3);
    for (let i = 0; i < MAX_RECORDS + 300; i++) await s.update(DEV, (st) => void (st.sent[`id${i}`] = { receipts: [] } as never));
    // Pruned every few hundred updates: never far above the bound, the oldest dropped first.
    const keys = Object.keys((await s.read(DEV)).sent);
    expect(keys.length).toBeLessThanOrEqual(MAX_RECORDS + 256);
    expect(keys.length).toBeLessThan(MAX_RECORDS + 300);
    expect(keys.at(-1)).toBe(`id${MAX_RECORDS + 299}`);
    await expect(s.read('other-party/dev')).rejects.toMatchObject({ code: 'HL_ERR_CONFIG_INVALID' });
  });

  it('copies the initial state it is given', async () => {
    const initial = initialState(DEV);
    const s = new MemoryStorage(initial);
    initial.lastSeq = 7;
    expect((await s.read(DEV)).lastSeq).toBe(0);
  });
});

describe('pruneState', () => {
  it('drops the oldest inbox records beyond the bound', () => {
    const st = initialState(DEV);
    for (let i = 0; i < MAX_RECORDS + 3; i++) st.inbox[`id${i}`] = { receivedAt: i } as never;
    pruneState(st);
    const keys = Object.keys(st.inbox);
    expect(keys).toHaveLength(MAX_RECORDS);
    expect(keys[0]).toBe('id3');
  });
});
