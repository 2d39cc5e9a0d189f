import { prekeyRotationMs } from '../../shared/crypto/prekey.js';
import { FilePrekeyStore } from '../storage/prekey-file-store.js';
import { LINK_FLAGS, LINK_HELP, openClient, parse, prekeyPath, printHelp, seconds, usage, withTimeout, type Command } from './common.js';

const DAY = 24 * 3_600_000;

export const prekeys: Command = {
  name: 'prekeys',
  summary: 'rotate this device’s prekeys now and say which secrets it keeps (archives: with their retention)',
  help: `Usage: hotline prekeys --device FILE [--keep-days N] [--server URL] [--agreement FILE] [--json]

Forward secrecy (README "Key rotation and forward secrecy"): makes a new prekey if one is due (the
agreement's prekeyRotationMs, default 7 days), publishes it to the relay, deletes the secrets no
message can still need, and says what is kept, in DEVICE.state.json.prekeys. \`hotline listen\` does
the same by itself for operator devices; archive devices, which never connect, run this on a
schedule (e.g. daily from cron) with their retention:

  --keep-days N      keep each prekey's secret N days after it went out of date (an archive's
                     retention: messages accepted within it stay readable with \`audit decrypt\`,
                     older ones no longer). Required for an archive device.
${LINK_HELP}
  --json             one JSON object: rotated, deleted, held (keyId, notBefore, notAfter, deleteAfter)
  --timeout S        give up after S seconds (default 30)`,
  async run(argv, io) {
    const { values } = parse('prekeys', argv, { ...LINK_FLAGS, 'keep-days': { type: 'string' }, json: { type: 'boolean' }, timeout: { type: 'string' } });
    if (values.help) return printHelp(io, this.help);
    const timeoutMs = seconds('timeout', values.timeout, 30) * 1000;
    const keepDays = values['keep-days'] === undefined ? undefined : Number(values['keep-days']);
    if (keepDays !== undefined && !(Number.isInteger(keepDays) && keepDays >= 0)) throw usage('--keep-days takes a whole number of days (0 or more)');
    const { client, statePath } = await openClient('prekeys', values, io, false, { keepPrekeysMs: (keepDays ?? 0) * DAY });
    try {
      if (client.me.role === 'archive' && keepDays === undefined) throw usage('an archive device keeps its prekeys for its retention: give --keep-days N');
      const done = await withTimeout(client.maintainPrekeys(), timeoutMs, `the relay did not answer within ${timeoutMs / 1000} s`);
      const keepMs = (keepDays ?? 0) * DAY;
      const held = (await new FilePrekeyStore(prekeyPath(statePath)).load()).map((h) => ({
        keyId: h.keyId,
        notBefore: h.signed.prekey.notBefore,
        notAfter: h.signed.prekey.notAfter,
        deleteAfter: h.signed.prekey.notAfter + keepMs,
      }));
      if (values.json) {
        io.out(JSON.stringify({ device: `${client.me.party}/${client.me.device}`, rotationMs: prekeyRotationMs(client.agreement), keepMs, ...done, held }));
        return 0;
      }
      const iso = (t: number) => new Date(t).toISOString();
      if (done.rotated) io.out(`new prekey ${done.rotated} published`);
      for (const k of done.deleted) io.out(`prekey ${k}: secret deleted`);
      for (const h of held) io.out(`holds ${h.keyId}: in date ${iso(h.notBefore)} to ${iso(h.notAfter)}; its secret is deleted after ${iso(h.deleteAfter)}`);
      io.out(
        keepDays === undefined
          ? 'Keeps each prekey secret until no message wrapped to it can still arrive unread (PROTOCOL.md "When a prekey\'s secret is deleted").'
          : `Retention: keeps each prekey secret ${keepDays} days after it went out of date; messages wrapped to a prekey whose secret is deleted can no longer be opened with this device's keys. Messages wrapped to its certificate's key (from senders that had no prekey of it) stay readable as long as the key file is kept.`,
      );
      return 0;
    } finally {
      await client.stop();
    }
  },
};
