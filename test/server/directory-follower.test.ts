import { describe, expect, it } from 'vitest';
import { revokeDevice } from '../../shared/crypto/keys.js';
import type { DeviceCertificate, Revocation } from '../../shared/protocol/schemas.js';
import { Directory } from '../../server/directory.js';
import { DirectoryFollower } from '../../server/directory-follower.js';
import { RelayDirectory } from '../../server/federation/setup.js';
import { createLogger } from '../../server/main.js';
import type { ClusterStore, DirectoryRowKey, Store } from '../../server/store/store.js';
import { JP, createDeployment, type Deployment } from '../helpers/deployment.js';
import { LogSink } from '../helpers/log-sink.js';

/**
 * DirectoryFollower (several nodes on one database, docs/postgresql.md "The device directory"):
 * what it does with a notification, a notification it could not read, and a read that fails.
 * The database is a stand-in holding rows; the e2e test (test/e2e/pg-nodes-directory.test.ts)
 * runs the same on PostgreSQL.
 */

/** The rows "the database" holds, and reads that fail while `failing` is set. */
class Rows {
  certificates: DeviceCertificate[] = [];
  revocations: Revocation[] = [];
  failing = false;
  reads = 0;

  private read<T>(value: T): Promise<T> {
    this.reads++;
    return this.failing ? Promise.reject(Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' })) : Promise.resolve(value);
  }

  readonly store = { listDevices: () => this.read([...this.certificates]), listRevocations: () => this.read([...this.revocations]) } as unknown as Store;
  readonly cluster: Pick<ClusterStore, 'directoryRow'> = {
    directoryRow: (key: DirectoryRowKey) =>
      this.read(
        key.kind === 'device'
          ? this.certificates.find((c) => c.cert.party === key.party && c.cert.device === key.device && c.cert.signKey === key.signKey)
          : this.revocations.find((r) => r.revocation.party === key.party && r.revocation.device === key.device && r.revocation.signKey === key.signKey),
      ),
  };
}

async function setUp(): Promise<{ dep: Deployment; rows: Rows; directory: Directory; follower: DirectoryFollower; logs: LogSink; revoked: [string, boolean][]; rev: Revocation }> {
  const dep = await createDeployment();
  const rows = new Rows();
  rows.certificates = Object.values(dep.devices).map((d) => d.certificate);
  const directory = new Directory(dep.agreement, rows.store);
  await directory.load();
  const revoked: [string, boolean][] = [];
  directory.onNewRevocation = (r, elsewhere) => revoked.push([`${r.party}/${r.device}`, elsewhere]);
  const logs = new LogSink();
  const follower = new DirectoryFollower(directory, rows.cluster, createLogger('info', logs));
  const rev = await revokeDevice(dep.parties[JP]!, dep.devices[`${JP}/op2`]!.certificate.cert, { at: Date.now(), reason: 'lost' });
  return { dep, rows, directory, follower, logs, revoked, rev };
}

const keyOf = (rev: Revocation): DirectoryRowKey => ({ kind: 'revocation', party: rev.revocation.party, device: rev.revocation.device, signKey: rev.revocation.signKey });
const isRevoked = (d: Directory) => {
  try {
    d.current(JP, 'op2', Date.now());
    return false;
  } catch (err) {
    return (err as { code?: string }).code === 'HL_ERR_CERT_REVOKED';
  }
};

describe('DirectoryFollower', () => {
  it('a revocation another node stored is learned once, as stored elsewhere; a notification of a row known already changes nothing', async () => {
    const { rows, directory, follower, logs, revoked, rev } = await setUp();
    rows.revocations.push(rev);
    follower.changed(keyOf(rev));
    await logs.waitFor((r) => r['msg'] === 'directory change stored by another node learned' && r['device'] === `${JP}/op2` && r['kind'] === 'revocation');
    expect(isRevoked(directory)).toBe(true);
    expect(revoked).toEqual([[`${JP}/op2`, true]]);

    // The same notification again (or this node's own, come back): known, nothing said or done.
    const reads = rows.reads;
    follower.changed(keyOf(rev));
    await follower.catchUp();
    expect(rows.reads).toBeGreaterThan(reads);
    expect(revoked).toHaveLength(1);
    expect(logs.records().filter((r) => r['msg'] === 'directory change stored by another node learned')).toHaveLength(1);
    follower.stop();
  });

  it("a party's own relay learning another node's revocation ends its relay links to the revoked device, and passes nothing on", async () => {
    const { dep, rows, rev } = await setUp();
    const directory = new RelayDirectory(dep.agreement, rows.store, JP);
    await directory.load();
    const ended: string[] = [];
    const passedOn: unknown[] = [];
    directory.onRevoked = (r) => ended.push(`${r.party}/${r.device}`);
    directory.onLocalChange = (change) => passedOn.push(change);
    const logs = new LogSink();
    const follower = new DirectoryFollower(directory, rows.cluster, createLogger('info', logs));
    rows.revocations.push(rev);
    follower.changed(keyOf(rev));
    await logs.waitFor((r) => r['msg'] === 'directory change stored by another node learned');
    expect(ended).toEqual([`${JP}/op2`]);
    expect(passedOn).toEqual([]);
    // Known already: nothing ended twice.
    expect(directory.learn(rev)).toBe(false);
    expect(ended).toHaveLength(1);
    follower.stop();
  });

  it('a notification whose row key could not be read makes it read the whole directory', async () => {
    const { rows, directory, follower, logs, revoked, rev } = await setUp();
    rows.revocations.push(rev);
    follower.changed(undefined);
    await logs.waitFor((r) => r['msg'] === 'directory read again: changes stored by other nodes learned' && r['learned'] === 1);
    expect(isRevoked(directory)).toBe(true);
    expect(revoked).toEqual([[`${JP}/op2`, true]]);
    follower.stop();
  });

  it('a read that fails (the database away) is tried again until it succeeds: nothing notified is lost', async () => {
    const { rows, directory, follower, logs, revoked, rev } = await setUp();
    rows.revocations.push(rev);
    rows.failing = true;
    follower.changed(keyOf(rev));
    await logs.waitFor((r) => r['msg'] === 'could not read a directory change another node stored; reading the whole directory again' && r['retryMs'] === 1000);
    expect(isRevoked(directory)).toBe(false);
    // The retry (after 1 s) fails too; the next (after 2 s more) finds the database back.
    await logs.waitFor((r) => r['retryMs'] === 2000);
    rows.failing = false;
    await logs.waitFor((r) => r['msg'] === 'directory read again: changes stored by other nodes learned' && r['learned'] === 1);
    expect(isRevoked(directory)).toBe(true);
    expect(revoked).toEqual([[`${JP}/op2`, true]]);
    follower.stop();
  });

  it('stopped, it reads nothing more', async () => {
    const { rows, follower, logs } = await setUp();
    rows.failing = true;
    follower.changed(undefined);
    await logs.waitFor((r) => r['retryMs'] === 1000);
    follower.stop();
    const reads = rows.reads;
    follower.changed(undefined);
    await follower.catchUp();
    expect(rows.reads).toBe(reads);
  });
});
