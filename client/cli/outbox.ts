import { existsSync } from 'node:fs';
import { HotlineError } from '../../shared/errors.js';
import type { HotlineClient } from '../hotline-client.js';
import { outboxKey, type ClientState, type OutboxItem } from '../storage/client-storage.js';
import { FileStorage } from '../storage/file-storage.js';
import { defaultStatePath, loadDevice, parse, printHelp, required, usage, type Command, type Io } from './common.js';

/** One line per outbox item, as `hotline outbox` prints it and as the flush reports say. */
export interface OutboxRow {
  /** The message id (a receipt: the id of the message it answers). */
  id: string;
  kind: 'message' | 'receipt' | 'refusal';
  precedence?: string;
  to?: string;
  /** waiting (sealed, goes with the next connection), held (not sealed until approved), receipt kind. */
  state: string;
  since?: number;
  linkTest?: boolean;
}

export function outboxRows(state: ClientState): OutboxRow[] {
  return Object.values(state.outbox).map(row);
}

function row(item: OutboxItem): OutboxRow {
  if (item.kind === 'receipt') {
    return { id: item.messageId, kind: 'receipt', state: `${item.receiptKind} receipt, waiting for the relay`, since: item.receipt.receipt.at };
  }
  if (item.kind === 'refusal') {
    return { id: item.messageId, kind: 'refusal', state: `refusal (${item.refusal.refusal.code}), waiting for the relay`, since: item.refusal.refusal.at };
  }
  const base = {
    id: item.id,
    kind: 'message' as const,
    precedence: item.draft.precedence,
    to: item.draft.to,
    since: item.composedAt,
    ...(item.draft.linkTest ? { linkTest: true } : {}),
  };
  if (item.kind === 'held') return { ...base, state: `held: not sealed until the keys of ${item.devices.join(', ')} are confirmed` };
  return { ...base, state: `waiting for the relay (sealed, seq ${item.envelope.header.seq})` };
}

export function rowText(r: OutboxRow): string {
  const what = r.kind === 'receipt' ? `receipt for ${r.id}` : r.kind === 'refusal' ? `refusal of ${r.id}` : `${(r.linkTest ? 'link test' : r.precedence!).padEnd(9)} ${r.id} to ${r.to}`;
  return `  ${what}  ${r.state}${r.since === undefined ? '' : ` since ${new Date(r.since).toISOString()}`}`;
}

const STORAGE_FLAGS = { device: { type: 'string' }, state: { type: 'string' }, json: { type: 'boolean' } } as const;
const STORAGE_HELP = `  --device FILE      the device key file
  --state FILE       the device's state file (default DEVICE.state.json beside the device file)`;

function openState(values: { device?: string | undefined; state?: string | undefined }, io: Io): { storage: FileStorage; key: string; path: string } {
  const device = loadDevice(values.device!, io);
  const path = values.state ?? defaultStatePath(values.device!);
  const c = device.certificate.cert;
  return { storage: new FileStorage(path), key: `${c.party}/${c.device}`, path };
}

export const outboxList: Command = {
  name: 'outbox',
  summary: 'list what waits in a device’s outbox (messages not yet accepted, receipts, held)',
  help: `Usage: hotline outbox --device FILE [--json] [--state FILE]
       hotline outbox drop ID --device FILE

Lists what waits in the device's outbox, from its state file, without connecting: each message
sealed but not yet accepted by the relay (its precedence, id, addressee and since when), each
signed receipt not yet stored, and each held message (not sealed until new peer keys are
confirmed). Everything listed goes with the next send, ack or listen of this device, which says
so. \`hotline outbox drop ID\` discards an item instead.

${STORAGE_HELP}
  --json             one JSON object per item`,
  async run(argv, io) {
    const { values, positionals } = parse('outbox', argv, STORAGE_FLAGS, true);
    if (values.help) return printHelp(io, this.help);
    if (positionals.length > 0) throw usage(`hotline outbox takes no ${positionals[0]}; to discard an item: hotline outbox drop ID --device FILE`);
    required('outbox', values, 'device');
    const { storage, key, path } = openState(values, io);
    const rows = existsSync(path) ? outboxRows(await storage.read(key)) : [];
    if (values.json) {
      for (const r of rows) io.out(JSON.stringify(r));
      return 0;
    }
    if (rows.length === 0) {
      io.out(`the outbox of ${key} is empty`);
      return 0;
    }
    io.out(`the outbox of ${key} (${rows.length}): these go with the next send, ack or listen of this device`);
    for (const r of rows) io.out(rowText(r));
    io.out(`discard one: hotline outbox drop ID --device ${values.device}`);
    return 0;
  },
};

export const outboxDrop: Command = {
  name: 'outbox drop',
  summary: 'discard an item from a device’s outbox (it is not sent)',
  help: `Usage: hotline outbox drop ID --device FILE [--state FILE]

Discards the outbox item ID (a message id as \`hotline outbox\` lists it, or the start of one
that names a single item; for a receipt, the id of the message it answers) so that it is not sent.
Asks nothing; prints what it dropped. A sealed message that a connection already sent may still be
accepted by the relay: dropping it only stops this device from sending it again.

${STORAGE_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parse('outbox drop', argv, { device: STORAGE_FLAGS.device, state: STORAGE_FLAGS.state }, true);
    if (values.help) return printHelp(io, this.help);
    required('outbox drop', values, 'device');
    const id = positionals[0];
    if (id === undefined || positionals.length > 1 || !/^[0-9a-f]{4,32}$/.test(id)) {
      throw usage('hotline outbox drop needs exactly one ID (hex, as hotline outbox lists it)\nRun: hotline outbox drop --help');
    }
    const { storage, key, path } = openState(values, io);
    if (!existsSync(path)) throw new HotlineError('HL_ERR_USAGE', `${key} has no state file (${path}): its outbox is empty`);
    const dropped = await storage.update(key, (s): { ambiguous: string[] } | { rows: { key: string; row: OutboxRow }[] } => {
      const matches = Object.entries(s.outbox).filter(([, item]) => (item.kind === 'receipt' || item.kind === 'refusal' ? item.messageId : item.id).startsWith(id));
      const ids = new Set(matches.map(([, item]) => (item.kind === 'receipt' || item.kind === 'refusal' ? item.messageId : item.id)));
      if (ids.size > 1) return { ambiguous: [...ids] };
      const rows = matches.map(([k, item]) => {
        delete s.outbox[k];
        return { key: k, row: row(item) };
      });
      return { rows };
    });
    if ('ambiguous' in dropped) throw usage(`${id} names ${dropped.ambiguous.length} items (${dropped.ambiguous.join(', ')}); give more of the id`);
    if (dropped.rows.length === 0) {
      throw new HotlineError('HL_ERR_USAGE', `nothing in the outbox of ${key} has the id ${id} (it was accepted by the relay, or dropped already); list it with hotline outbox --device ${values.device}`);
    }
    for (const d of dropped.rows) io.out(`dropped:${rowText(d.row)}`);
    return 0;
  },
};

/** What a command waits for before it stops, so that what it said it sent has really gone. */
export interface FlushReport {
  /**
   * Wait, at most `ms`, until the relay accepted (or refused) every item said to be "also sent";
   * then say how many are still in the outbox. A command that stops right after its own work
   * (directory, peers) would otherwise close the link before they went.
   */
  settled(ms: number): Promise<void>;
}

/**
 * Say what a connection sends from the outbox besides the command's own message: at each
 * connection, every item that waited (queued by an earlier command that gave up, or by another
 * process of the device). `before`: only these keys (those in the outbox before this command added
 * its own); without it, every item except automatic link tests.
 */
export function reportOutboxFlush(client: HotlineClient, storage: FileStorage, io: Io, before?: ReadonlySet<string>): FlushReport {
  const key = `${client.me.party}/${client.me.device}`;
  let going = new Set<string>();
  let told = Promise.resolve();
  client.on('connected', () => {
    told = storage
      .read(key)
      .then((state) => {
        const items = Object.values(state.outbox).filter((i) => (before === undefined ? !((i.kind === 'envelope' || i.kind === 'held') && i.draft.linkTest) : before.has(outboxKey(i))));
        const sent = items.filter((i) => i.kind !== 'held');
        going = new Set(sent.map(outboxKey));
        const held = items.filter((i) => i.kind === 'held').length;
        if (sent.length > 0) {
          io.err(`also sent from the outbox (${sent.length}, waiting from before):`);
          for (const i of sent) io.err(rowText(row(i)));
        }
        if (held > 0) io.err(`${held} held message${held === 1 ? '' : 's'} not sent; see hotline outbox`);
      })
      .catch(() => undefined);
  });
  return {
    async settled(ms) {
      await told;
      const until = Date.now() + ms;
      const left = async () => {
        const outbox = existsSync(storage.path) ? (await storage.read(key)).outbox : {};
        return [...going].filter((k) => k in outbox).length;
      };
      let n = await left();
      while (n > 0 && Date.now() < until) {
        // Each answer from the relay removes an item before it is emitted (client/outbox.ts).
        await new Promise<void>((resolve) => {
          const offs: (() => void)[] = [];
          const done = () => {
            clearTimeout(timer);
            for (const off of offs) off();
            resolve();
          };
          const timer = setTimeout(done, until - Date.now());
          offs.push(client.on('accepted', done), client.on('receipt-accepted', done), client.on('refusal-accepted', done), client.on('refused', done));
        });
        n = await left();
      }
      if (n > 0) io.err(`${n} of them not yet accepted by the relay; still in the outbox, they go with the next connection (hotline outbox lists them)`);
    },
  };
}

/** The keys in the outbox now (before a command adds its own item). */
export async function outboxKeys(storage: FileStorage, client: HotlineClient): Promise<Set<string>> {
  if (!existsSync(storage.path)) return new Set();
  return new Set(Object.keys((await storage.read(`${client.me.party}/${client.me.device}`)).outbox));
}
