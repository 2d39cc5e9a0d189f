import { parse, printHelp, required, type Command } from './common.js';

export const backup: Command = {
  name: 'backup',
  summary: 'copy the server database consistently, even while the server runs',
  help: `Usage: hotline backup --data DIR --out FILE

Copies the relay's database in DIR (hotline.sqlite) to FILE with SQLite's online backup: consistent
while the server runs and writes. The copy is checked (quick_check) and its audit log size printed.
FILE must not exist. Keep backups off the machine; see README "Operations" for how often.`,
  async run(argv, io) {
    const { values } = parse('backup', argv, { data: { type: 'string' }, out: { type: 'string' } });
    if (values.help) return printHelp(io, this.help);
    required('backup', values, 'data', 'out');
    // The server's modules (SQLite) load only for the commands that use them.
    const { backupDatabase } = await import('../../server/backup.js');
    const result = await backupDatabase(values.data!, values.out!);
    io.out(`backup written to ${result.out}: ${result.auditSize} audit log entries`);
    return 0;
  },
};

export const restore: Command = {
  name: 'restore',
  summary: 'put a backup in place as the server database, verified against the cosigned log',
  help: `Usage: hotline restore --data DIR --from FILE

Puts the backup FILE in place as the database of DIR. No server may be running on DIR. Before
anything is replaced, the backup's audit log is checked against the newest checkpoint the parties
cosigned (refused if it does not match); the database it replaces is kept beside it
(hotline.sqlite.replaced-<time>); the entries the directory had recorded and the backup lacks are
named; and the restore is itself an audit entry (store.restored) that both parties' auditors see.`,
  async run(argv, io) {
    const { values } = parse('restore', argv, { data: { type: 'string' }, from: { type: 'string' } });
    if (values.help) return printHelp(io, this.help);
    required('restore', values, 'data', 'from');
    const { restoreDatabase } = await import('../../server/backup.js');
    const r = await restoreDatabase(values.data!, values.from!);
    io.out(`restored ${values.from} into ${values.data}: ${r.auditSize} audit log entries (store.restored included)`);
    io.out(r.cosigned ? `the log matches the checkpoint of size ${r.cosigned.size} cosigned by ${r.cosigned.cosigners.join(', ')}` : 'no cosigned checkpoint in the backup: nothing to verify the log against');
    if (r.recorded && r.gap > 0) io.out(`GAP: the directory had recorded ${r.recorded.auditSize} entries at ${new Date(r.recorded.at).toISOString()}; ${r.gap} entries after the backup are lost`);
    if (r.movedAside) io.out(`the replaced database is kept at ${r.movedAside}`);
    return 0;
  },
};
