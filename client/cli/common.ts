import { existsSync, readFileSync, statSync, writeFileSync, mkdirSync, renameSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import WebSocket from 'ws';
import { HotlineError, type HotlineErrorCode } from '../../shared/errors.js';
import { parseAgreement, parseDeviceSecret, parsePartySecret, relayOf } from '../../shared/crypto/keys.js';
import { ALLOW_UNSIGNED_ENV, requireSignedAgreement } from '../../shared/crypto/agreement-signatures.js';
import type { Agreement, DeviceSecretFile, PartySecretFile } from '../../shared/protocol/schemas.js';
import { HotlineClient } from '../hotline-client.js';
import { FileStorage } from '../storage/file-storage.js';
import { FilePrekeyStore } from '../storage/prekey-file-store.js';
import { unsealKeyFile } from './key-files.js';

/** Where a command writes: injected so that tests can run commands in-process. */
export interface Io {
  out(line: string): void;
  err(line: string): void;
  env: NodeJS.ProcessEnv;
  /** Resolves when the user asks the command to stop (SIGINT/SIGTERM). */
  interrupted: Promise<void>;
  readStdin(): Promise<string>;
  /** --passphrase-file, taken out of argv by runCli (any command): unlocks sealed key files. */
  passphraseFile?: string;
}

/** A command: parses its own argv, returns the exit code. */
export interface Command {
  name: string;
  summary: string;
  help: string;
  run(argv: string[], io: Io): Promise<number>;
}

export function usage(message: string): HotlineError {
  return new HotlineError('HL_ERR_USAGE', message);
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Edit distance between two short words, a swap of two neighbouring letters counting as one edit. */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The candidate nearest to a mistyped `word` ("did you mean"), if one is near enough to be meant. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: { c: string; d: number } | undefined;
  for (const c of candidates) {
    const d = c.startsWith(word) && word.length >= 3 ? 1 : distance(word, c);
    if (best === undefined || d < best.d) best = { c, d };
  }
  return best !== undefined && best.d <= Math.max(1, Math.floor(best.c.length / 3)) ? best.c : undefined;
}

/** node:util parseArgs with errors turned into usage errors that name the command (and the flag meant). */
export function parse<O extends Options>(command: string, argv: string[], options: O, allowPositionals = false) {
  const all = { ...options, help: { type: 'boolean', short: 'h' } } as const;
  try {
    return parseArgs({ args: argv, options: all, allowPositionals, strict: true });
  } catch (err) {
    let message = (err as Error).message.replace(/\. To specify a positional.*$/s, '').trim();
    const unknown = /^Unknown option '--([^']+)'/.exec(message)?.[1];
    const meant = unknown === undefined ? undefined : closest(unknown.split('=')[0]!, Object.keys(all));
    if (meant !== undefined) message += `; did you mean --${meant}?`;
    throw usage(`${message}\nRun: hotline ${command} --help`);
  }
}

export function required(command: string, values: Record<string, unknown>, ...names: string[]): void {
  const missing = names.filter((n) => values[n] === undefined || values[n] === '');
  if (missing.length > 0) {
    throw usage(`hotline ${command} needs ${missing.map((n) => `--${n}`).join(', ')}\nRun: hotline ${command} --help`);
  }
}

/**
 * Read and parse a JSON file, with an error that says which file and what to do. Text that is not
 * JSON is HL_ERR_CONFIG_INVALID, or `notJson` for a file that has its own code (an audit export).
 */
export function readJson(path: string, what: string, notJson?: { code: HotlineErrorCode; message: string }): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    throw new HotlineError('HL_ERR_CONFIG_INVALID', `cannot read the ${what} ${path} (${code ?? 'error'}); check the path`, { cause });
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new HotlineError(notJson?.code ?? 'HL_ERR_CONFIG_INVALID', notJson?.message ?? `the ${what} ${path} is not valid JSON`, { cause });
  }
}

/** `--help`: print the command's help on stdout; exit 0. */
export function printHelp(io: Io, text: string): number {
  io.out(text);
  return 0;
}

/** The kinds of Hotline JSON file, by what {@link fileKind} recognises. */
const FILE_KINDS = {
  'party-secret': 'a party root file (the secret from hotline party create)',
  'party-public': "a party's public part (from hotline party create)",
  device: 'a device key file (from hotline device enroll)',
  'log-secret': 'a server log key file',
  relay: 'a relay key file (from hotline relay enroll)',
  agreement: 'an agreement (from hotline agreement create)',
  'device-certificate': 'a device certificate (public, no keys)',
  'relay-certificate': 'a relay certificate (public, no keys)',
  sealed: 'a sealed message (from hotline seal)',
  receipt: 'a receipt file (from hotline open --receipt-out)',
  directory: 'a directory file (from hotline directory)',
  'audit-export': 'an audit export (from hotline audit export)',
  'console-key': 'a key exported by a browser console',
  'data-identity': "a relay data directory's identity file",
  state: "a device's state file",
} as const;
export type FileKind = keyof typeof FILE_KINDS;

/** What a Hotline JSON file is, told by its shape (for "this is X, not Y" errors). */
export function fileKind(value: unknown): FileKind | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  const byType: Record<string, FileKind> = {
    'hotline-party-secret': 'party-secret',
    'hotline-device': 'device',
    'hotline-log-secret': 'log-secret',
    'hotline-relay': 'relay',
    'hotline-sealed': 'sealed',
    'hotline-receipt': 'receipt',
    'hotline-directory': 'directory',
    'hotline-audit-export': 'audit-export',
    'hotline-console-key': 'console-key',
    'hotline-data-identity': 'data-identity',
  };
  if (typeof v.type === 'string' && byType[v.type] !== undefined) return byType[v.type];
  // A sealed key file is what it contains (its `contains` is readable without the passphrase).
  if (v.type === 'hotline-sealed-key' && typeof v.contains === 'string') return byType[v.contains];
  if (Array.isArray(v.parties) && typeof v.logKey === 'string') return 'agreement';
  if (typeof v.rootKey === 'string' && typeof v.id === 'string') return 'party-public';
  if (typeof v.cert === 'object' && v.cert !== null && typeof v.signature === 'string') {
    return (v.cert as { type?: unknown }).type === 'relay' ? 'relay-certificate' : 'device-certificate';
  }
  if (typeof v.device === 'string' && typeof v.outbox === 'object') return 'state';
  return undefined;
}

/**
 * Re-throw a parse error of a file with the file named. Given the parsed JSON and the kind of file
 * expected: when the file is another kind of Hotline file, say which and what was expected ("…
 * is a party root file (…), not a device key file") instead of the schema's words.
 */
export function named<T>(path: string, what: string, fn: () => T, file?: { value: unknown; expect: FileKind }): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof HotlineError) {
      const kind = file === undefined ? undefined : fileKind(file.value);
      if (kind !== undefined && kind !== file?.expect) {
        throw new HotlineError(err.code, `${path} is ${FILE_KINDS[kind]}, not ${/^[aeiou]/.test(what) ? 'an' : 'a'} ${what}`, { cause: err });
      }
      throw new HotlineError(err.code, `${path} is not a valid ${what}: ${err.message}`, { cause: err });
    }
    throw err;
  }
}

/** Read and check a party root secret file. */
export function loadPartyRoot(path: string, io: Io): PartySecretFile {
  const read = readJson(path, 'party root secret file');
  const raw = fileKind(read) === 'party-secret' ? unsealKeyFile(path, read, io) : read;
  return named(path, 'party root file', () => parsePartySecret(raw), { value: raw, expect: 'party-secret' });
}

/**
 * Write a secret file (mode 0600), never over an existing file: overwriting a root or device key
 * by a slip of the `--out` flag could not be undone.
 */
export function writeSecretFile(path: string, value: unknown): void {
  if (existsSync(path)) {
    throw new HotlineError('HL_ERR_USAGE', `${path} already exists; refusing to overwrite a key file. Choose another --out, or move the old file away first`);
  }
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(value, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
}

/** Write a public file atomically (temporary file and rename). */
export function writePublicFile(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.tmp`);
  writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n', { mode: 0o644 });
  renameSync(tmp, path);
}

/** `x.secret.json` → `x`, `x.json` → `x`. */
export function stem(path: string): string {
  return path.replace(/(\.secret)?\.json$/, '');
}

export function defaultStatePath(devicePath: string): string {
  return `${stem(devicePath)}.state.json`;
}

export function loadDevice(path: string, io: Io): DeviceSecretFile {
  const read = readJson(path, 'device key file');
  const raw = fileKind(read) === 'device' ? unsealKeyFile(path, read, io) : read;
  const device = named(path, 'device key file', () => parseDeviceSecret(raw), { value: raw, expect: 'device' });
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) io.err(`warning: ${path} is readable by other users (mode ${mode.toString(8)}); run: chmod 600 ${path}`);
  return device;
}

/**
 * The agreement from --agreement, HOTLINE_AGREEMENT, or agreement.json beside (or above) the device
 * file, refused unless every party's root has signed it (HL_ERR_AGREEMENT_UNSIGNED; development
 * only: HOTLINE_ALLOW_UNSIGNED_AGREEMENT=1, with a warning on stderr).
 */
export async function loadAgreement(flag: string | undefined, io: Io, near?: string): Promise<{ agreement: Agreement; path: string }> {
  const loaded = readAgreementFile(flag, io, near);
  await requireSignedAgreement(loaded.agreement, { allowUnsigned: io.env[ALLOW_UNSIGNED_ENV] === '1', warn: (text) => io.err(text) });
  return loaded;
}

/** The agreement file as it is, signed or not (for `agreement sign`, which adds the signatures). */
export function readAgreementFile(flag: string | undefined, io: Io, near?: string): { agreement: Agreement; path: string } {
  let path = flag ?? io.env.HOTLINE_AGREEMENT;
  if (path === undefined && near !== undefined) {
    path = [join(dirname(near), 'agreement.json'), join(dirname(dirname(near)), 'agreement.json')].find((p) => existsSync(p));
  }
  if (path === undefined) throw usage('no agreement given: pass --agreement FILE or set HOTLINE_AGREEMENT');
  const p = path;
  const raw = readJson(p, 'agreement file');
  return { agreement: named(p, 'agreement', () => parseAgreement(raw), { value: raw, expect: 'agreement' }), path: p };
}

export function serverUrl(flag: string | undefined, io: Io): string {
  const url = flag ?? (io.env.HOTLINE_SERVER || undefined);
  if (url === undefined) throw usage('no server given: pass --server URL (e.g. http://127.0.0.1:8080) or set HOTLINE_SERVER');
  if (!/^https?:\/\/[^/]+/.test(url)) throw usage(`--server must be an http:// or https:// URL, got "${url}"`);
  return url;
}

/**
 * The relay's URLs for a command that links a device, in the order to try them (docs/failover.md):
 * every `--server` (repeatable, each may be a comma-separated list), else `HOTLINE_SERVER` (a
 * comma-separated list), else the URLs that a version-2 agreement gives for the device's party.
 */
export function serverUrls(flag: string | readonly string[] | undefined, io: Io, agreement?: Agreement, party?: string): string[] {
  const split = (text: string) => text.split(',').map((u) => u.trim()).filter((u) => u !== '');
  const given = flag === undefined ? [] : (typeof flag === 'string' ? [flag] : flag).flatMap(split);
  const env = given.length === 0 ? split(io.env.HOTLINE_SERVER ?? '') : [];
  const fromAgreement = given.length === 0 && env.length === 0 && agreement !== undefined && party !== undefined ? (relayOf(agreement, party)?.urls ?? []) : [];
  const urls = [...given, ...env, ...fromAgreement];
  if (urls.length === 0) {
    throw usage(
      'no server given: pass --server URL (e.g. http://127.0.0.1:8080; repeat it, or separate URLs with commas, for the nodes of one relay) or set HOTLINE_SERVER',
    );
  }
  for (const url of urls) if (!/^https?:\/\/[^/]+/.test(url)) throw usage(`--server must be an http:// or https:// URL, got "${url}"`);
  return [...new Set(urls.map((u) => u.replace(/\/+$/, '')))];
}

/** Seconds from a --timeout flag. */
export function seconds(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw usage(`--${name} must be a positive number of seconds, got "${text}"`);
  return n;
}

export interface LinkOptions {
  device?: string | undefined;
  server?: string | readonly string[] | undefined;
  agreement?: string | undefined;
  state?: string | undefined;
}

/** Where the CLI keeps a device's prekey secrets: beside its state file. */
export function prekeyPath(statePath: string): string {
  return `${statePath}.prekeys`;
}

/** Build a client for a CLI command from its flags. */
export async function openClient(
  command: string,
  values: LinkOptions,
  io: Io,
  consumeMailbox: boolean,
  extra: { testAgent?: boolean; cosignIfOperator?: boolean; keepPrekeysMs?: number } = {},
): Promise<{ client: HotlineClient; statePath: string; devicePath: string; storage: FileStorage; serverUrls: string[] }> {
  required(command, values as Record<string, unknown>, 'device');
  const devicePath = values.device!;
  const device = loadDevice(devicePath, io);
  const { agreement } = await loadAgreement(values.agreement, io, devicePath);
  const statePath = values.state ?? defaultStatePath(devicePath);
  const storage = new FileStorage(statePath);
  const urls = serverUrls(values.server, io, agreement, device.certificate.cert.party);
  const client = new HotlineClient({
    serverUrl: urls,
    agreement,
    device,
    storage,
    WebSocket,
    consumeMailbox,
    // The process that reads the mailbox keeps the prekeys (PROTOCOL.md "Prekeys and forward secrecy").
    ...(consumeMailbox || extra.keepPrekeysMs !== undefined
      ? { prekeys: { store: new FilePrekeyStore(prekeyPath(statePath)), ...(extra.keepPrekeysMs === undefined ? {} : { keepMs: extra.keepPrekeysMs }) } }
      : {}),
    ...(extra.testAgent ? { testAgent: true } : {}),
    // Operators cosign the audit log's checkpoints while they listen (README "Auditing").
    ...(extra.cosignIfOperator && device.certificate.cert.role === 'operator' ? { cosign: true } : {}),
  });
  return { client, statePath, devicePath, storage, serverUrls: urls };
}

/** Resolve with `promise`, or reject with HL_ERR_CLIENT_TIMEOUT after `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HotlineError('HL_ERR_CLIENT_TIMEOUT', message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Exit code for an error: 2 for usage, 1 for everything refused or timed out. */
export function exitCodeOf(code: HotlineErrorCode): number {
  return code === 'HL_ERR_USAGE' ? 2 : 1;
}

export const LINK_FLAGS = {
  device: { type: 'string' },
  server: { type: 'string', multiple: true },
  agreement: { type: 'string' },
  state: { type: 'string' },
} as const;

export const LINK_HELP = `  --device FILE      the device key file (from hotline device enroll); if sealed, its passphrase
                     from --passphrase-file FILE, HOTLINE_PASSPHRASE_FILE or HOTLINE_PASSPHRASE
  --server URL       the relay, e.g. http://127.0.0.1:8080 (or HOTLINE_SERVER); the nodes of one
                     relay: repeat it or separate URLs with commas, tried in turn (a lost link
                     goes to the next within 2 s). Default: a version-2 agreement's URLs for
                     the device's party
  --agreement FILE   the pinned agreement (or HOTLINE_AGREEMENT; default agreement.json beside the device file)
  --state FILE       client state: outbox, seq, inbox (default DEVICE.state.json beside the device file)`;

/**
 * Run a server start; a port already taken (or not allowed) becomes a sentence with what to do
 * instead of a stack trace.
 */
export async function listening<T>(host: string, port: number, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') {
      throw new HotlineError(
        'HL_ERR_CONFIG_INVALID',
        `port ${port} on ${host} is already in use (another hotline server or demo still running?); stop it, or choose another port with --port N or HOTLINE_PORT (0 picks a free one)`,
        { cause: err },
      );
    }
    if (code === 'EACCES') {
      throw new HotlineError('HL_ERR_CONFIG_INVALID', `not allowed to listen on port ${port} on ${host} (ports below 1024 need privileges); choose another with --port N or HOTLINE_PORT`, { cause: err });
    }
    if (code === 'EADDRNOTAVAIL') {
      throw new HotlineError('HL_ERR_CONFIG_INVALID', `${host} is not an address of this machine; choose another with --host H or HOTLINE_HOST`, { cause: err });
    }
    throw err;
  }
}
