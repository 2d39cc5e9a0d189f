import { open, stat, type FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { dirname, basename } from 'node:path';
import { createHash } from 'node:crypto';
import { HotlineError } from '../../shared/errors.js';
import { syncDir, writeFileAtomic } from './atomic-file.js';
import { withFileLock, type FileLockOptions } from './file-lock.js';
import { applyChanges, initialState, migrateState, pruneState, RECORD_MAPS, trackChanges, type ClientState, type ClientStorage, type RecordChanges, type RecordMapName, type StateChanges } from './client-storage.js';

export interface FileStorageOptions extends FileLockOptions {
  /** Fold the journal into a new snapshot once it holds this many updates (default 2,000). */
  compactAfterLines?: number;
  /**
   * ... or once it is this large, or larger than the snapshot, whichever is more (default 1 MiB):
   * a compaction costs one snapshot write, so tying it to the snapshot's size keeps the cost of an
   * update proportional to what it changed, amortised.
   */
  compactAfterBytes?: number;
}

/**
 * Client state in a snapshot file plus an append-only journal, `FILE` and `FILE.journal`, both mode
 * 0600 (they hold drafts of unsent messages).
 *
 * `FILE` is a whole state as JSON (the format of earlier versions, so their files keep working, with
 * a `journalGen` number added; a state of the older shape is migrated on load and written as a new
 * snapshot by the next update). Each update appends one line to `FILE.journal` and fsyncs it before
 * resolving: the top-level fields it touched, and for the record maps (`outbox`, `inbox`, `sent`,
 * `peerSeq`) only the records it set or deleted (pruned ones included; see `trackChanges`), so an
 * update costs what it changed, not the size of the state. A line carries a checksum and the
 * snapshot generation it applies to: a line
 * torn by a crash is the last one and is ignored (and cut off by the next writer), so a crash
 * leaves the old or the new state. Once the journal is long, the state is written to a new
 * snapshot (temporary file, fsync, rename) with the next generation and the journal is emptied; a
 * crash between the two leaves lines of the old generation, which are skipped.
 *
 * Several processes may use the same device (`hotline listen` in one terminal, `hotline send` in
 * another): every update takes an exclusive lock file (`FILE.lock`, O_EXCL), catches up with what
 * the others wrote, applies the change and appends it, so no process overwrites another's `seq` or
 * outbox. Between calls the state is kept in memory and re-read only when either file changed
 * (size, mtime, inode); lines another process appended are replayed, anything else reloads.
 *
 * Like `MemoryStorage`, `read` returns the live state: treat it as read-only (change it through
 * `update`).
 *
 * @example
 * const storage = new FileStorage('jp-op.state.json');
 * const seq = await storage.update('jp-mod/op-1', (s) => ++s.lastSeq);
 */
export class FileStorage implements ClientStorage {
  readonly path: string;
  readonly #journalPath: string;
  readonly #lock: FileLockOptions;
  readonly #compactLines: number;
  readonly #compactBytes: number;
  /** Serialises calls within this process; the lock file serialises updates across processes. */
  #queue: Promise<unknown> = Promise.resolve();
  #cache: Loaded | undefined;

  constructor(path: string, options: FileStorageOptions = {}) {
    this.path = path;
    this.#journalPath = `${path}.journal`;
    this.#lock = { staleLockMs: options.staleLockMs, lockTimeoutMs: options.lockTimeoutMs };
    this.#compactLines = options.compactAfterLines ?? 2000;
    this.#compactBytes = options.compactAfterBytes ?? 1 << 20;
  }

  read(device: string): Promise<ClientState> {
    return this.#serial(async () => (await this.#current(device, false)).state);
  }

  update<T>(device: string, mutate: (state: ClientState) => T): Promise<T> {
    return this.#serial(() => this.#locked(async () => {
      const loaded = await this.#current(device, true);
      const tracker = trackChanges(loaded.state);
      let result: T;
      try {
        result = mutate(tracker.draft);
        pruneState(tracker.draft);
      } catch (err) {
        // The live state is half-changed; the files are not: read them again next time.
        this.#cache = undefined;
        throw err;
      }
      try {
        // A state migrated from the older shape is stored whole once: the journal's lines then all
        // apply to the current shape.
        if (loaded.snap === undefined || loaded.migrated) {
          await this.#compact(loaded);
        } else {
          const changes = tracker.changes();
          if (changes !== undefined) await this.#append(loaded, toEntry(loaded.gen, changes));
          if (loaded.journalLines >= this.#compactLines || loaded.journalEnd >= Math.max(this.#compactBytes, loaded.snap.size)) {
            await this.#compact(loaded);
          }
        }
      } catch (err) {
        this.#cache = undefined;
        throw err;
      }
      return result;
    }));
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /**
   * The latest state: the one in memory if neither file changed, else caught up with the lines
   * appended since, else loaded anew. Under the lock (`locked`), also cuts a torn or stale journal
   * tail so that the next line follows the last good one.
   */
  async #current(device: string, locked: boolean): Promise<Loaded> {
    const [snap, journal] = await Promise.all([statFile(this.path), statFile(this.#journalPath)]);
    let loaded = this.#cache;
    if (loaded && sameFile(loaded.snap, snap)) {
      if (!sameFile(loaded.journal, journal) || (journal?.size ?? 0) !== loaded.journalEnd) {
        if (!(journal && loaded.journal && journal.ino === loaded.journal.ino && journal.size > loaded.journalEnd && (await this.#catchUp(loaded)))) loaded = undefined;
      }
    } else {
      loaded = undefined;
    }
    loaded ??= await this.#load(device);
    this.#cache = loaded;
    if (loaded.state.device !== device) {
      throw new HotlineError('HL_ERR_CONFIG_INVALID', `the state file ${this.path} belongs to ${loaded.state.device}, not ${device}; pass --state`);
    }
    if (locked && loaded.journal && loaded.journal.size !== loaded.journalEnd) {
      try {
        const fh = await open(this.#journalPath, 'r+');
        try {
          await fh.truncate(loaded.journalEnd);
          await fh.datasync();
          loaded.journal = fileId(await fh.stat());
        } finally {
          await fh.close();
        }
      } catch (err) {
        this.#cache = undefined;
        throw new HotlineError('HL_ERR_STORE_FAILED', `cannot repair the journal ${this.#journalPath}`, { cause: err });
      }
    }
    return loaded;
  }

  /** Apply the lines another process appended since `loaded` was read; false if that is not possible. */
  async #catchUp(loaded: Loaded): Promise<boolean> {
    let buf: Buffer;
    let st: Stats;
    try {
      const fh = await open(this.#journalPath, 'r');
      try {
        st = await fh.stat();
        // Start at the newline ending the last line read, to be sure the file was not cut and refilled.
        const from = Math.max(0, loaded.journalEnd - 1);
        buf = Buffer.alloc(Math.max(0, st.size - from));
        const { bytesRead } = await fh.read(buf, 0, buf.length, from);
        buf = buf.subarray(0, bytesRead);
        if (loaded.journalEnd > 0) {
          if (buf[0] !== 0x0a) return false;
          buf = buf.subarray(1);
        }
      } finally {
        await fh.close();
      }
    } catch {
      return false;
    }
    let parsed: ParsedJournal;
    try {
      parsed = parseJournal(buf, loaded.gen, this.#journalPath);
    } catch {
      return false;
    }
    for (const e of parsed.entries) applyEntry(loaded.state, e);
    if (migrateState(loaded.state)) loaded.migrated = true;
    loaded.journalEnd += parsed.end;
    loaded.journalLines += parsed.entries.length;
    loaded.journal = fileId(st);
    return true;
  }

  async #load(device: string): Promise<Loaded> {
    // Without the lock, another process may replace the snapshot and empty the journal while they
    // are read here: read again until the snapshot read is still the one in place afterwards.
    for (let attempt = 0; ; attempt++) {
      const snapshot = await readWithStat(this.path, 'the client state file');
      const journal = await readWithStat(this.#journalPath, 'the client state journal');
      const after = await statFile(this.path);
      if (!sameFile(snapshot && fileId(snapshot.stat), after) && attempt < 20) continue;
      if (snapshot === undefined) {
        if (journal !== undefined && journal.data.length > 0) {
          throw new HotlineError('HL_ERR_CONFIG_INVALID', `found the journal ${this.#journalPath} without its state file ${this.path}; move the journal aside too, or put the state file back`);
        }
        return { state: initialState(device), gen: 0, snap: undefined, journal: journal && fileId(journal.stat), journalEnd: 0, journalLines: 0, migrated: false };
      }
      const { state, gen } = this.#parseSnapshot(snapshot.data);
      const parsed = journal === undefined ? { entries: [], end: 0 } : parseJournal(journal.data, gen, this.#journalPath);
      for (const e of parsed.entries) applyEntry(state, e);
      const migrated = migrateState(state);
      this.#checkState(state, false);
      return {
        state,
        gen,
        migrated,
        snap: fileId(snapshot.stat),
        journal: journal && fileId(journal.stat),
        journalEnd: parsed.end,
        journalLines: parsed.entries.length,
      };
    }
  }

  #parseSnapshot(data: Buffer): { state: ClientState; gen: number } {
    let raw: ClientState & { journalGen?: unknown };
    try {
      raw = JSON.parse(data.toString('utf8')) as ClientState & { journalGen?: unknown };
    } catch (cause) {
      throw new HotlineError('HL_ERR_CONFIG_INVALID', `the client state file ${this.path} is not valid JSON; move it (and ${basename(this.#journalPath)}) aside and try again`, { cause });
    }
    this.#checkState(raw, true);
    const gen = raw.journalGen ?? 0;
    if (typeof gen !== 'number' || !Number.isSafeInteger(gen) || gen < 0) {
      throw new HotlineError('HL_ERR_CONFIG_INVALID', `${this.path} has a malformed journalGen`);
    }
    delete raw.journalGen;
    return { state: raw, gen };
  }

  /** `olderShape`: also accept the outbox as an array (before {@link migrateState}). */
  #checkState(state: ClientState, olderShape: boolean): void {
    const outboxOk = isMap(state?.outbox) || (olderShape && Array.isArray(state?.outbox));
    if (state?.v !== 1 || typeof state.device !== 'string' || typeof state.lastSeq !== 'number' || !outboxOk || !isMap(state.inbox) || !isMap(state.sent) || !isMap(state.peerSeq)) {
      throw new HotlineError('HL_ERR_CONFIG_INVALID', `${this.path} is not a Hotline client state file`);
    }
  }

  async #append(loaded: Loaded, entry: JournalEntry): Promise<void> {
    const line = encodeLine(entry);
    const created = loaded.journal === undefined;
    let fh: FileHandle | undefined;
    try {
      fh = await open(this.#journalPath, 'a', 0o600);
      await fh.appendFile(line);
      await fh.datasync();
      loaded.journal = fileId(await fh.stat());
    } catch (err) {
      // Cut off whatever part of the line reached the file, so that the journal still ends on a
      // whole line; if even that fails, the next writer cuts it as a torn tail.
      await fh?.truncate(loaded.journalEnd).catch(() => undefined);
      throw new HotlineError('HL_ERR_STORE_FAILED', `cannot append to the client state journal ${this.#journalPath}`, { cause: err });
    } finally {
      await fh?.close().catch(() => undefined);
    }
    if (created) await syncDir(dirname(this.path));
    loaded.journalEnd += Buffer.byteLength(line);
    loaded.journalLines += 1;
  }

  /** Write the whole state as the next generation's snapshot, then empty the journal. */
  async #compact(loaded: Loaded): Promise<void> {
    const gen = loaded.gen + 1;
    await writeFileAtomic(this.path, JSON.stringify({ ...loaded.state, journalGen: gen }), 'the client state file');
    loaded.gen = gen;
    loaded.migrated = false;
    loaded.snap = await statFile(this.path);
    // From here the journal's lines are of an older generation: skipped on load, so emptying the
    // journal is tidying, not a step the state depends on.
    if (loaded.journal !== undefined) {
      try {
        const fh = await open(this.#journalPath, 'r+');
        try {
          await fh.truncate(0);
          await fh.datasync();
          loaded.journal = fileId(await fh.stat());
        } finally {
          await fh.close();
        }
      } catch (err) {
        throw new HotlineError('HL_ERR_STORE_FAILED', `cannot empty the client state journal ${this.#journalPath}`, { cause: err });
      }
    }
    loaded.journalEnd = 0;
    loaded.journalLines = 0;
  }

  #locked<T>(fn: () => Promise<T>): Promise<T> {
    return withFileLock(this.path, fn, this.#lock);
  }
}

/** The state in memory and what it was read from. */
interface Loaded {
  state: ClientState;
  /** Generation of the snapshot; journal lines of another generation do not apply to it. */
  gen: number;
  snap: FileId | undefined;
  journal: FileId | undefined;
  /** Bytes of the journal accounted for (whole lines); a torn tail lies beyond. */
  journalEnd: number;
  journalLines: number;
  /** The stored state is of the older shape (migrated in memory only): the next update writes a snapshot. */
  migrated: boolean;
}

interface FileId {
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

function fileId(s: Stats): FileId {
  return { ino: s.ino, size: s.size, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs };
}

function sameFile(a: FileId | undefined, b: FileId | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

async function statFile(path: string): Promise<FileId | undefined> {
  try {
    return fileId(await stat(path));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new HotlineError('HL_ERR_STORE_FAILED', `cannot read ${path}`, { cause: err });
  }
}

async function readWithStat(path: string, what: string): Promise<{ data: Buffer; stat: Stats } | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new HotlineError('HL_ERR_STORE_FAILED', `cannot read ${what} ${path}`, { cause: err });
  }
  try {
    const st = await fh.stat();
    return { data: await fh.readFile(), stat: st };
  } catch (err) {
    throw new HotlineError('HL_ERR_STORE_FAILED', `cannot read ${what} ${path}`, { cause: err });
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Journal lines: `<first 16 hex digits of SHA-256 of JSON> <JSON>\n`

type Pair = [string, unknown];

/**
 * One committed update (a {@link StateChanges} on the wire). Pairs (not objects) keep the order of
 * appended records and any key as data. Lines written before the outbox and peerSeq were record
 * maps have no `outbox` or `peerSeq` member and still read.
 */
type JournalEntry = {
  /** Generation of the snapshot this line follows. */
  g: number;
  /** Top-level fields replaced whole. */
  top?: Pair[];
  /** Top-level fields deleted. */
  unset?: string[];
} & Partial<Record<RecordMapName, MapChange>>;

interface MapChange {
  /** Keys deleted (applied first). */
  del: string[];
  /** Records set, in order: those changed in place, then those appended. */
  set: Pair[];
}

interface ParsedJournal {
  entries: JournalEntry[];
  /**
   * Bytes of whole lines of this generation. Lines of an older one (left when a compaction stopped
   * before emptying the journal) are skipped and count as a tail to cut.
   */
  end: number;
}

function checksum(json: string): string {
  return createHash('sha256').update(json).digest('hex').slice(0, 16);
}

function toEntry(g: number, changes: StateChanges): JournalEntry {
  const e: JournalEntry = { g };
  if (changes.set.length > 0) e.top = changes.set;
  if (changes.deleted.length > 0) e.unset = changes.deleted;
  for (const name of RECORD_MAPS) {
    const c = changes.maps[name];
    if (c !== undefined) e[name] = { del: c.deleted, set: c.set };
  }
  return e;
}

function applyEntry(state: ClientState, e: JournalEntry): void {
  const maps: Partial<Record<RecordMapName, RecordChanges>> = {};
  for (const name of RECORD_MAPS) {
    const c = e[name];
    if (c !== undefined) maps[name] = { deleted: c.del, set: c.set };
  }
  applyChanges(state, { set: e.top ?? [], deleted: e.unset ?? [], maps });
}

function encodeLine(entry: JournalEntry): string {
  const json = JSON.stringify(entry);
  return `${checksum(json)} ${json}\n`;
}

/**
 * Parse journal bytes (from disk, so possibly torn or damaged). A line that is incomplete or fails
 * its checksum ends the journal when nothing valid follows it: that is a write cut short by a crash.
 * A bad line followed by good ones, or a good line of the wrong shape or generation, is damage and
 * is refused.
 */
function parseJournal(data: Buffer, gen: number, path: string): ParsedJournal {
  const corrupt = (why: string) => new HotlineError('HL_ERR_CONFIG_INVALID', `the client state journal ${path} is damaged (${why}); move it and the state file aside and try again`);
  const entries: JournalEntry[] = [];
  let stale = false;
  let end = 0;
  let torn = false;
  let pos = 0;
  while (pos < data.length) {
    const nl = data.indexOf(0x0a, pos);
    if (nl < 0) break;
    const entry = decodeLine(data.toString('utf8', pos, nl));
    pos = nl + 1;
    if (entry === undefined) {
      torn = true;
      continue;
    }
    if (torn) throw corrupt('a good line follows a bad one');
    if (!isEntry(entry)) throw corrupt('a line of an unknown shape');
    if (entry.g < gen) {
      if (entries.length > 0) throw corrupt('a line of an older generation follows current ones');
      stale = true;
    } else if (entry.g === gen) {
      if (stale) throw corrupt('a current line follows lines of an older generation');
      entries.push(entry);
      end = pos;
    } else {
      throw corrupt(`a line of generation ${entry.g} after a snapshot of generation ${gen}`);
    }
  }
  return { entries, end };
}

function decodeLine(line: string): unknown {
  if (line.length < 18 || line[16] !== ' ') return undefined;
  const json = line.slice(17);
  if (checksum(json) !== line.slice(0, 16)) return undefined;
  try {
    return JSON.parse(json) as unknown;
  } catch {
    return undefined;
  }
}

function isEntry(e: unknown): e is JournalEntry {
  if (typeof e !== 'object' || e === null) return false;
  const x = e as Record<string, unknown>;
  const isPairs = (v: unknown) => Array.isArray(v) && v.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string');
  const isKeys = (v: unknown) => Array.isArray(v) && v.every((k) => typeof k === 'string');
  const isChange = (v: unknown) => v === undefined || (typeof v === 'object' && v !== null && isKeys((v as MapChange).del) && isPairs((v as MapChange).set));
  return Number.isSafeInteger(x.g) && (x.top === undefined || isPairs(x.top)) && (x.unset === undefined || isKeys(x.unset)) && RECORD_MAPS.every((name) => isChange(x[name]));
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

