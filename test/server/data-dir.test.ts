import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync, truncateSync, watch, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { IDENTITY_FILE, LOCK_FILE, readIdentity, writeIdentity, type DataIdentity } from '../../server/data-dir.js';
import { DATABASE_FILE, JWT_SECRET_FILE, startServer, type RunningServer } from '../../server/main.js';
import { HotlineError } from '../../shared/errors.js';
import { createDeployment, tempDir, writeAgreement, type Deployment } from '../helpers/deployment.js';
import { spawnServer } from '../helpers/spawn-server.js';
import { onCleanup } from '../helpers/test-server.js';
import { enrol, login } from '../helpers/ws-client.js';

/**
 * The server knows its data: a data directory that was in use and whose database went missing,
 * empty, corrupt, shorter or different is refused at start with what was found, never served as if
 * new (issue: "fail loudly").
 */
async function setup(): Promise<{ dep: Deployment; dataDir: string; start: (extra?: { acceptDataLoss?: boolean }) => Promise<RunningServer> }> {
  const dep = await createDeployment();
  const dir = tempDir();
  onCleanup(() => dir.remove());
  const dataDir = join(dir.path, 'data');
  const start = (extra: { acceptDataLoss?: boolean } = {}) =>
    startServer({ agreement: dep.agreement, dataDir, host: '127.0.0.1', port: 0, logLevel: 'silent', ...extra });
  return { dep, dataDir, start };
}

/** Start, enrol every device (audit entries), stop cleanly. */
async function useOnce(s: Awaited<ReturnType<typeof setup>>): Promise<DataIdentity> {
  const server = await s.start();
  for (const d of Object.values(s.dep.devices)) await enrol(server.url, d.certificate);
  await server.close();
  return readIdentity(s.dataDir)!;
}

async function refusal(p: Promise<unknown>): Promise<HotlineError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HotlineError);
  return err as HotlineError;
}

function dbFiles(dataDir: string): string[] {
  const db = join(dataDir, DATABASE_FILE);
  return [db, `${db}-wal`, `${db}-shm`];
}

describe('the data directory is checked at start', () => {
  it('records the log size and root at a clean stop, and starts again on the same data', async () => {
    const s = await setup();
    const recorded = await useOnce(s);
    expect(recorded).toMatchObject({ type: 'hotline-data-identity', reason: 'stop' });
    const db = new Database(join(s.dataDir, DATABASE_FILE), { readonly: true });
    const size = (db.prepare('SELECT COUNT(*) AS n FROM audit_entries').get() as { n: number }).n;
    db.close();
    expect(recorded.auditSize).toBe(size);
    const again = await s.start();
    await again.close();
    expect(existsSync(join(s.dataDir, LOCK_FILE))).toBe(false);
  });

  it('refuses a database truncated to 0 bytes, and starts with --accept-data-loss, which the log records', async () => {
    const s = await setup();
    const recorded = await useOnce(s);
    truncateSync(join(s.dataDir, DATABASE_FILE), 0);
    const err = await refusal(s.start());
    expect(err.code).toBe('HL_ERR_STORE_DATA_LOST');
    expect(err.message).toContain('empty (0 bytes)');
    expect(err.message).toContain('--accept-data-loss');

    const server = await s.start({ acceptDataLoss: true });
    const entries = (await server.store.auditEntries(0, await server.store.auditSize())).map((e) => JSON.parse(e.entry) as { type: string; recorded?: { auditSize: number } });
    await server.close();
    expect(entries[0]).toMatchObject({ type: 'store.data-loss.accepted', recorded: { auditSize: recorded.auditSize } });
    // The loss is now on record: the next start needs no flag.
    await (await s.start()).close();
  });

  it('refuses a deleted database (the token secret still beside it), also in a directory from before identity files', async () => {
    const s = await setup();
    await useOnce(s);
    for (const f of dbFiles(s.dataDir)) rmSync(f, { force: true });
    expect((await refusal(s.start())).message).toContain('is missing');

    rmSync(join(s.dataDir, IDENTITY_FILE));
    expect(existsSync(join(s.dataDir, JWT_SECRET_FILE))).toBe(true);
    const legacy = await refusal(s.start());
    expect([legacy.code, legacy.message.includes('is missing')]).toEqual(['HL_ERR_STORE_DATA_LOST', true]);
  });

  it('refuses a database with random bytes over a page at 60 % of the file', async () => {
    const s = await setup();
    const server = await s.start();
    for (let i = 0; i < 300; i++) await server.store.appendAudit({ type: 'test.filler', at: i, text: 'x'.repeat(2000) });
    await server.close();
    const path = join(s.dataDir, DATABASE_FILE);
    const size = statSync(path).size;
    expect(size).toBeGreaterThan(100 * 4096);
    const at = Math.floor((size * 0.6) / 4096) * 4096;
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, at);
    closeSync(fd);
    const err = await refusal(s.start());
    expect(err.code).toBe('HL_ERR_STORE_DATA_LOST');
    expect(err.message).toMatch(/corrupt|cannot be opened/);
  });

  it('refuses a log shorter than recorded (entries rolled back), and a log changed under its recorded root', async () => {
    const s = await setup();
    const recorded = await useOnce(s);
    const db = new Database(join(s.dataDir, DATABASE_FILE));
    db.prepare('DELETE FROM audit_entries WHERE idx >= ?').run(recorded.auditSize - 2);
    db.close();
    const short = await refusal(s.start());
    expect(short.message).toContain(`but ${recorded.auditSize} were recorded`);

    const s2 = await setup();
    const r2 = await useOnce(s2);
    const { type: _t, v: _v, checksum: _c, ...fields } = r2;
    writeIdentity(s2.dataDir, { ...fields, auditRoot: 'ab'.repeat(32) });
    expect((await refusal(s2.start())).message).toContain('do not match the root');
  });

  it('refuses the database of another data directory', async () => {
    const a = await setup();
    await useOnce(a);
    const b = await setup();
    await useOnce(b);
    for (const f of dbFiles(b.dataDir)) rmSync(f, { force: true });
    writeFileSync(join(b.dataDir, DATABASE_FILE), readFileSync(join(a.dataDir, DATABASE_FILE)));
    expect((await refusal(b.start())).message).toContain('belongs to another data directory');
  });

  it('refuses a second server on the same data directory, and takes over the lock of a process that is gone', async () => {
    const s = await setup();
    const first = await s.start();
    const err = await refusal(s.start());
    expect([err.code, err.message.includes(`pid ${process.pid}`)]).toEqual(['HL_ERR_STORE_LOCKED', true]);
    await first.close();

    // A lock left by a killed server: the pid of a process that has exited.
    const gone = spawnSync(process.execPath, ['-e', '0']).pid;
    writeFileSync(join(s.dataDir, LOCK_FILE), JSON.stringify({ pid: gone, host: (await import('node:os')).hostname(), since: 'then' }));
    await (await s.start()).close();
  });

  it('refuses to start after SIGKILL and a deleted WAL, because the log is shorter than recorded', async () => {
    const dep = await createDeployment();
    const dir = tempDir();
    onCleanup(() => dir.remove());
    const agreementPath = writeAgreement(dir.path, dep.agreement);
    const dataDir = join(dir.path, 'data');
    const server = await spawnServer({ agreementPath, dataDir, extraEnv: { HOTLINE_CHECKPOINT_INTERVAL_MS: '1000' } });
    onCleanup(() => {
      server.child.kill('SIGKILL');
    });
    for (const d of Object.values(dep.devices)) await enrol(server.url, d.certificate);
    for (let i = 0; i < 5; i++) await login(server.url, dep.devices[Object.keys(dep.devices)[0]!]!, dep.agreement);
    // Wait for the next interval's record of the log to cover these entries (an event: the file's rename).
    const watcher = watch(dataDir);
    onCleanup(() => watcher.close());
    const covered = (): boolean => {
      try {
        const id = readIdentity(dataDir);
        return id !== undefined && id.reason === 'checkpoint' && id.auditSize >= 12;
      } catch {
        return false;
      }
    };
    if (!covered()) {
      await new Promise<void>((resolve) => {
        watcher.on('change', () => {
          if (covered()) resolve();
        });
      });
    }
    server.child.kill('SIGKILL');
    await server.exited;
    rmSync(join(dataDir, `${DATABASE_FILE}-wal`), { force: true });
    rmSync(join(dataDir, `${DATABASE_FILE}-shm`), { force: true });
    const err = await refusal(startServer({ agreement: dep.agreement, dataDir, host: '127.0.0.1', port: 0, logLevel: 'silent' }));
    expect(err.code).toBe('HL_ERR_STORE_DATA_LOST');
    expect(err.message).toMatch(/entries were lost|is empty|is missing/);
  });
});
