import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { FileStorage } from '../../client/storage/file-storage.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { MAX_RECORDS, pruneState, initialState, type ClientState } from '../../client/storage/client-storage.js';

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
        st.outbox['r:m:delivered'] = { kind: 'receipt' } as never;
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

/** A record about the size of a real one (a header with three recipients), about 1.3 KB as JSON. */
function record(i: number): never {
  const wrapped = 'w'.repeat(300);
  return {
    header: { v: 1, id: `m${i}`, from: { party: 'cn-mnd', device: 'cn-op-1' }, to: 'jp-mod', seq: i, recipients: [1, 2, 3].map((n) => ({ party: 'jp-mod', device: `jp-op-${n}`, wrapped })) },
    envelopeHash: 'h'.repeat(44),
    receivedAt: 1_700_000_000_000 + i,
  } as never;
}

const journalOf = (path: string) => `${path}.journal`;
const sizeOf = (path: string) => (existsSync(path) ? statSync(path).size : 0);

describe('FileStorage journal', () => {
  it('keeps updates in an append-only journal beside the snapshot, and a new instance reads them back in order', async () => {
    const path = join(tempDir(), 'state.json');
    const a = new FileStorage(path);
    await a.update(DEV, (st) => {
      st.lastSeq = 1;
      st.inbox.m1 = record(1);
      st.inbox.m2 = record(2);
      st.sent.s1 = { header: {}, envelopeHash: 'x', receipts: [] } as never;
    });
    const snapshot = readFileSync(path, 'utf8');
    await a.update(DEV, (st) => {
      st.inbox.m3 = record(3);
      delete st.inbox.m1;
      st.inbox.m1 = record(11); // deleted and added again: now the last
      st.sent.s1!.receipts.push({ kind: 'delivered' } as never); // changed in place through a read
      st.peerSeq['cn-mnd/cn-op-1'] = { high: 3, missing: [] };
      st.directory = { certificates: [], revocations: [], fetchedAt: 5 };
      ++st.lastSeq;
    });
    await a.update(DEV, (st) => {
      delete st.directory;
      st.outbox['r:m3:delivered'] = { kind: 'receipt', messageId: 'm3' } as never;
    });
    // The snapshot was written once, by the first update; the others are journal lines.
    expect(readFileSync(path, 'utf8')).toBe(snapshot);
    expect(readFileSync(journalOf(path), 'utf8').split('\n')).toHaveLength(3);
    expect(statSync(journalOf(path)).mode & 0o777).toBe(0o600);

    const expected = {
      ...initialState(DEV),
      lastSeq: 2,
      inbox: { m2: record(2), m3: record(3), m1: record(11) },
      sent: { s1: { header: {}, envelopeHash: 'x', receipts: [{ kind: 'delivered' }] } },
      peerSeq: { 'cn-mnd/cn-op-1': { high: 3, missing: [] } },
      outbox: { 'r:m3:delivered': { kind: 'receipt', messageId: 'm3' } },
    };
    const reopened = await new FileStorage(path).read(DEV);
    expect(reopened).toEqual(expected);
    expect(Object.keys(reopened.inbox)).toEqual(['m2', 'm3', 'm1']);
    expect(await a.read(DEV)).toEqual(expected);
  });

  it('sees what another instance appended or compacted when it reads again', async () => {
    const path = join(tempDir(), 'state.json');
    const a = new FileStorage(path);
    const b = new FileStorage(path, { compactAfterLines: 3 });
    await a.update(DEV, (st) => void (st.inbox.m1 = record(1)));
    expect(Object.keys((await a.read(DEV)).inbox)).toEqual(['m1']);
    for (let i = 2; i <= 4; i++) {
      await b.update(DEV, (st) => void (st.inbox[`m${i}`] = record(i)));
      expect(Object.keys((await a.read(DEV)).inbox)).toEqual(Array.from({ length: i }, (_, k) => `m${k + 1}`));
    }
    await a.update(DEV, (st) => void delete st.inbox.m2);
    expect(Object.keys((await b.read(DEV)).inbox)).toEqual(['m1', 'm3', 'm4']);
  });

  it('ignores a final journal line torn by a crash, keeps the lines before it, and cuts it off at the next update', async () => {
    const path = join(tempDir(), 'state.json');
    const s = new FileStorage(path);
    await s.update(DEV, (st) => void (st.lastSeq = 1)); // the first update writes the snapshot
    for (let i = 1; i <= 3; i++) await s.update(DEV, (st) => void (st.inbox[`m${i}`] = record(i)));
    const whole = readFileSync(journalOf(path), 'utf8');
    const lines = whole.split('\n');
    // The crash cut the last line short: it has no newline and does not pass its checksum.
    writeFileSync(journalOf(path), `${lines[0]}\n${lines[1]}\n${lines[2]!.slice(0, 100)}`);
    const after = await new FileStorage(path).read(DEV);
    expect(Object.keys(after.inbox)).toEqual(['m1', 'm2']);
    // Some file systems leave a crashed append's blocks zero-filled, newline or not.
    appendFileSync(journalOf(path), '\0'.repeat(30) + '\n' + '\0'.repeat(10));
    const next = new FileStorage(path);
    expect(Object.keys((await next.read(DEV)).inbox)).toEqual(['m1', 'm2']);
    await next.update(DEV, (st) => void (st.inbox.m5 = record(5)));
    expect(readFileSync(journalOf(path), 'utf8').startsWith(`${lines[0]}\n${lines[1]}\n`)).toBe(true);
    expect(readFileSync(journalOf(path), 'utf8').split('\n')).toHaveLength(4);
    expect(Object.keys((await new FileStorage(path).read(DEV)).inbox)).toEqual(['m1', 'm2', 'm5']);
  });

  it('refuses a damaged journal (a bad line before good ones, a changed line) with a clear code, and leaves it as it is', async () => {
    const path = join(tempDir(), 'state.json');
    const s = new FileStorage(path);
    for (let i = 1; i <= 4; i++) await s.update(DEV, (st) => void (st.lastSeq = i)); // a snapshot, then 3 lines
    const lines = readFileSync(journalOf(path), 'utf8').split('\n');
    const damaged = [lines[0], lines[1]!.replace('"top"', '"tOp"'), lines[2], ''].join('\n');
    writeFileSync(journalOf(path), damaged);
    await expect(new FileStorage(path).read(DEV)).rejects.toMatchObject({ code: 'HL_ERR_CONFIG_INVALID' });
    await expect(new FileStorage(path).update(DEV, (st) => ++st.lastSeq)).rejects.toMatchObject({ code: 'HL_ERR_CONFIG_INVALID' });
    expect(readFileSync(journalOf(path), 'utf8')).toBe(damaged);
    // A journal whose state file is gone is refused, not taken for a fresh start.
    rmSync(path);
    await expect(new FileStorage(path).read(DEV)).rejects.toMatchObject({ code: 'HL_ERR_CONFIG_INVALID' });
  });

  it('compacts the journal into a new snapshot that keeps the state, and skips lines left by a compaction that stopped before emptying it', async () => {
    const path = join(tempDir(), 'state.json');
    const s = new FileStorage(path, { compactAfterLines: 4 });
    await s.update(DEV, (st) => void (st.lastSeq = 1)); // writes the first snapshot
    await s.update(DEV, (st) => void (st.inbox.m2 = record(2)));
    const early = readFileSync(journalOf(path));
    for (let i = 3; i <= 4; i++) await s.update(DEV, (st) => void (st.inbox[`m${i}`] = record(i)));
    expect(sizeOf(journalOf(path))).toBeGreaterThan(3 * 1000);
    await s.update(DEV, (st) => {
      st.lastSeq = 5;
      delete st.inbox.m2;
    });
    // The fourth journal line triggered the compaction: all of it is in the snapshot now.
    expect(sizeOf(journalOf(path))).toBe(0);
    const snapshot = JSON.parse(readFileSync(path, 'utf8')) as ClientState;
    expect(snapshot).toMatchObject({ lastSeq: 5, inbox: { m3: record(3), m4: record(4) } });
    expect(Object.keys(snapshot.inbox)).toEqual(['m3', 'm4']);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const want = await s.read(DEV);
    expect(await new FileStorage(path).read(DEV)).toEqual(want);

    // A crash after the new snapshot's rename but before the journal was emptied leaves older
    // lines: they are already in the snapshot and must not be applied again (m2 stays deleted).
    writeFileSync(journalOf(path), early);
    expect(await new FileStorage(path).read(DEV)).toEqual(want);
    const t = new FileStorage(path);
    await t.update(DEV, (st) => ++st.lastSeq);
    expect(readFileSync(journalOf(path), 'utf8').split('\n')).toHaveLength(2);
    expect(await new FileStorage(path).read(DEV)).toEqual({ ...want, lastSeq: 6 });
  });

  it('writes per update what changed, not the state: with 5,000 records stored, the state file is left alone and a lastSeq update appends under 300 bytes', async () => {
    const path = join(tempDir(), 'state.json');
    // A state file as earlier versions wrote it (no journal), at the bound of remembered records.
    const st = initialState(DEV);
    for (let i = 0; i < MAX_RECORDS; i++) st.inbox[`m${i}`] = record(i);
    writeFileSync(path, JSON.stringify(st), { mode: 0o600 });
    const before = statSync(path);
    expect(before.size).toBeGreaterThan(5_000_000);
    const written = () => {
      const now = statSync(path);
      // A rewritten snapshot counts whole; the journal counts by its growth.
      const snapshotBytes = now.ino === before.ino && now.mtimeMs === before.mtimeMs && now.size === before.size ? 0 : now.size;
      return snapshotBytes + sizeOf(journalOf(path));
    };
    const s = new FileStorage(path);
    expect(await s.update(DEV, (x) => ++x.lastSeq)).toBe(1);
    const one = written();
    expect(one).toBeGreaterThan(0);
    expect(one).toBeLessThan(300);
    // A received message: one record in (and, at the bound, the oldest out), peerSeq, a receipt queued.
    await s.update(DEV, (x) => {
      x.inbox.new = record(9999);
      x.peerSeq['cn-mnd/cn-op-1'] = { high: 9999, missing: [] };
      x.outbox['r:new:delivered'] = { kind: 'receipt', messageId: 'new' } as never;
    });
    expect(written() - one).toBeLessThan(JSON.stringify(record(9999)).length + 300);
    const reopened = await new FileStorage(path).read(DEV);
    expect(Object.keys(reopened.inbox)).toHaveLength(MAX_RECORDS);
    expect(Object.keys(reopened.inbox)[0]).toBe('m1');
    expect(Object.keys(reopened.inbox).at(-1)).toBe('new');
    expect(reopened.lastSeq).toBe(1);
  });

  it('journals the outbox record by record: with 500 items waiting, queuing and removing one appends about one item', async () => {
    const path = join(tempDir(), 'state.json');
    const s = new FileStorage(path);
    const item = (i: number) => ({ kind: 'receipt', messageId: `m${i}`, receiptKind: 'delivered', receipt: record(i) }) as never;
    await s.update(DEV, (st) => {
      for (let i = 0; i < 500; i++) st.outbox[`r:m${i}:delivered`] = item(i);
    });
    const one = JSON.stringify(item(1000)).length;
    let before = sizeOf(journalOf(path));
    await s.update(DEV, (st) => void (st.outbox['r:m1000:delivered'] = item(1000)));
    expect(sizeOf(journalOf(path)) - before).toBeLessThan(one + 200);
    before = sizeOf(journalOf(path));
    await s.update(DEV, (st) => void delete st.outbox['r:m3:delivered']);
    expect(sizeOf(journalOf(path)) - before).toBeLessThan(200);
    const reopened = await new FileStorage(path).read(DEV);
    expect(Object.keys(reopened.outbox)).toHaveLength(500);
    expect(Object.keys(reopened.outbox).at(-1)).toBe('r:m1000:delivered');
    expect(reopened.outbox['r:m3:delivered']).toBeUndefined();
  });

  it('a crash between two records loses nothing committed: with the journal torn anywhere in its last line, every earlier update is there', async () => {
    const path = join(tempDir(), 'state.json');
    const s = new FileStorage(path);
    await s.update(DEV, (st) => void (st.lastSeq = 0)); // the snapshot
    // One message sent and one received per update, as the client stores them.
    const states: ClientState[] = [];
    for (let i = 1; i <= 4; i++) {
      await s.update(DEV, (st) => {
        st.lastSeq = i;
        st.outbox[`e:out${i}`] = { kind: 'envelope', id: `out${i}`, envelope: record(i) } as never;
        st.inbox[`in${i}`] = record(i);
        st.peerSeq['cn-mnd/cn-op-1'] = { high: i, missing: [] };
        if (i > 1) delete st.outbox[`e:out${i - 1}`];
      });
      states.push(structuredClone(await s.read(DEV)));
    }
    const whole = readFileSync(journalOf(path));
    const lastStart = whole.lastIndexOf(0x0a, whole.length - 2) + 1;
    // Every cut inside the last line (a bounded sample of them), as a crash during its append leaves it.
    const cuts = [0, 1, 17, 18, 100, Math.floor((whole.length - lastStart) / 2), whole.length - lastStart - 2, whole.length - lastStart - 1];
    for (const cut of cuts) {
      writeFileSync(journalOf(path), whole.subarray(0, lastStart + cut));
      expect(await new FileStorage(path).read(DEV)).toEqual(states[2]);
    }
    // The whole line, newline included, is the committed fourth update.
    writeFileSync(journalOf(path), whole);
    expect(await new FileStorage(path).read(DEV)).toEqual(states[3]);
  });

  it('migrates a state file of the older shape (outbox array, highest seq per peer), keeping every outbox item, and stores it in the new shape at the next update', async () => {
    const path = join(tempDir(), 'state.json');
    const items = [
      { kind: 'envelope', id: 'a1', draft: { to: 'cn-mnd' }, envelope: record(1), composedAt: 1, resealed: 0 },
      { kind: 'receipt', messageId: 'in1', receiptKind: 'delivered', receipt: { sig: 'x' } },
      { kind: 'receipt', messageId: 'in1', receiptKind: 'acknowledged', receipt: { sig: 'y' } },
      { kind: 'envelope', id: 'a2', draft: { to: 'cn-mnd' }, envelope: record(2), composedAt: 2, resealed: 1 },
    ];
    const old = { v: 1, device: DEV, lastSeq: 9, outbox: items, inbox: { in1: record(1) }, sent: {}, peerSeq: { 'cn-mnd/cn-op-1': 41 }, journalGen: 3 };
    writeFileSync(path, JSON.stringify(old), { mode: 0o600 });
    // A journal line of the older version (the whole outbox array as a top-level field) still applies.
    const line = JSON.stringify({ g: 3, top: [['outbox', [...items, { kind: 'receipt', messageId: 'in2', receiptKind: 'delivered', receipt: {} }]]] });
    writeFileSync(journalOf(path), `${createHash('sha256').update(line).digest('hex').slice(0, 16)} ${line}\n`, { mode: 0o600 });
    const want = ['e:a1', 'r:in1:delivered', 'r:in1:acknowledged', 'e:a2', 'r:in2:delivered'];
    const read = await new FileStorage(path).read(DEV);
    expect(Object.keys(read.outbox)).toEqual(want);
    expect(read.outbox['e:a2']).toEqual(items[3]);
    expect(read.peerSeq).toEqual({ 'cn-mnd/cn-op-1': { high: 41, missing: [] } });
    const s = new FileStorage(path);
    await s.update(DEV, (st) => void delete st.outbox['r:in1:delivered']);
    const snapshot = JSON.parse(readFileSync(path, 'utf8')) as ClientState;
    expect(Object.keys(snapshot.outbox)).toEqual(want.filter((k) => k !== 'r:in1:delivered'));
    expect(snapshot.peerSeq['cn-mnd/cn-op-1']).toEqual({ high: 41, missing: [] });
    expect(sizeOf(journalOf(path))).toBe(0);
    await s.update(DEV, (st) => ++st.lastSeq);
    const again = await new FileStorage(path).read(DEV);
    expect(Object.keys(again.outbox)).toEqual(want.filter((k) => k !== 'r:in1:delivered'));
    expect(again.lastSeq).toBe(10);
  });

  it('loses nothing when two processes interleave updates on one file, compactions included', async () => {
    const dir = tempDir();
    const path = join(dir, 'state.json');
    const script = join(dir, 'child.mts');
    const storageUrl = new URL('../../client/storage/file-storage.ts', import.meta.url).href;
    writeFileSync(script, `
      import { createInterface } from 'node:readline';
      import { FileStorage } from ${JSON.stringify(storageUrl)};
      const [path, tag] = process.argv.slice(2);
      const s = new FileStorage(path, { compactAfterLines: 7 });
      let done = 0;
      console.log('ready');
      for await (const line of createInterface({ input: process.stdin })) {
        const seqs = [];
        for (let i = 0; i < Number(line); i++, done++) {
          const n = done;
          seqs.push(await s.update(${JSON.stringify(DEV)}, (st) => {
            const seq = ++st.lastSeq;
            st.sent[tag + n] = { seq };
            return seq;
          }));
          await s.read(${JSON.stringify(DEV)});
        }
        console.log(JSON.stringify(seqs));
      }
    `);
    const start = (tag: string) => {
      const child = spawn(process.execPath, ['--import', 'tsx', script, path, tag], { cwd: fileURLToPath(new URL('../..', import.meta.url)), stdio: ['pipe', 'pipe', 'inherit'] });
      const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
      const next = async () => (await lines.next()).value as string;
      return { child, next };
    };
    const kids = [start('a'), start('b')];
    for (const k of kids) expect(await k.next()).toBe('ready');
    const got: Record<string, number[]> = { a: [], b: [] };
    // Rounds in which both run at once: each must take in what the other appended or compacted.
    for (let round = 0; round < 6; round++) {
      for (const k of kids) k.child.stdin!.write('6\n');
      const [a, b] = await Promise.all(kids.map((k) => k.next()));
      got.a!.push(...(JSON.parse(a!) as number[]));
      got.b!.push(...(JSON.parse(b!) as number[]));
    }
    for (const k of kids) k.child.stdin!.end();
    for (const k of kids) if (k.child.exitCode === null) await once(k.child, 'exit');
    expect(kids.map((k) => k.child.exitCode)).toEqual([0, 0]);
    expect([...got.a!, ...got.b!].sort((x, y) => x - y)).toEqual(Array.from({ length: 72 }, (_, i) => i + 1));
    const final = await new FileStorage(path).read(DEV);
    expect(final.lastSeq).toBe(72);
    const sent = final.sent as unknown as Record<string, { seq: number }>;
    expect(Object.keys(sent)).toHaveLength(72);
    for (const tag of ['a', 'b']) got[tag]!.forEach((seq, n) => expect(sent[`${tag}${n}`]).toEqual({ seq }));
  }, 30_000);
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
