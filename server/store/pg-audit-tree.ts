import { HotlineError } from '../../shared/errors.js';
import { utf8 } from '../../shared/encoding/base64.js';
import { leafHash, nodeHash, type NodeRef } from '../../shared/audit/merkle.js';
import { formatAuditEntry } from '../../shared/audit/log-verify.js';
import type { AuditEntry } from '../relay/records.js';
import { checkNodeRows } from './sqlite-audit-tree.js';

/** What the tree needs of a connection: one query at a time (a pool, or a client inside a transaction). */
export interface Queryable {
  query<R extends object = Record<string, unknown>>(text: string, values?: unknown[]): Promise<{ rows: R[]; rowCount: number | null }>;
}

const REBUILD_PAGE = 65_536;

/**
 * The audit log's Merkle tree on PostgreSQL: the same layout as the SQLite adapter's
 * (sqlite-audit-tree.ts): `audit_nodes (level, idx, hash)` holds every complete subtree of 2^level
 * leaves, written in the transaction of the entry that closes it. The tree's frontier (the newest
 * node of each level) is therefore in the database, and start-up reads O(log n) rows. Appends are
 * serialised across nodes by the store's advisory lock (pg-store.ts), so two nodes never close the
 * same subtree.
 */
export class PgAuditTree {
  async size(q: Queryable): Promise<number> {
    const { rows } = await q.query<{ n: number | null }>('SELECT MAX(idx) + 1 AS n FROM audit_entries');
    return rows[0]?.n ?? 0;
  }

  async node(q: Queryable, level: number, index: number): Promise<Uint8Array> {
    const { rows } =
      level === 0
        ? await q.query<{ h: Buffer }>('SELECT leaf_hash AS h FROM audit_entries WHERE idx = $1', [index])
        : await q.query<{ h: Buffer }>('SELECT hash AS h FROM audit_nodes WHERE level = $1 AND idx = $2', [level, index]);
    const row = rows[0];
    if (!row || row.h.length !== 32) {
      throw new HotlineError('HL_ERR_AUDIT_LEAF_MISMATCH', `the audit tree's node ${level}/${index} is missing or damaged`, { detail: { level, index } });
    }
    return new Uint8Array(row.h);
  }

  async nodes(q: Queryable, refs: readonly NodeRef[]): Promise<Uint8Array[]> {
    if (refs.length === 0) return [];
    // One round trip for all of them (a proof asks for ~2·log2 n nodes).
    const { rows } = await q.query<{ level: number; idx: number; h: Buffer }>(
      `SELECT r.level, r.idx, COALESCE(e.leaf_hash, n.hash) AS h
         FROM unnest($1::int[], $2::bigint[]) AS r(level, idx)
         LEFT JOIN audit_entries e ON r.level = 0 AND e.idx = r.idx
         LEFT JOIN audit_nodes n ON r.level > 0 AND n.level = r.level AND n.idx = r.idx`,
      [refs.map((r) => r.level), refs.map((r) => r.index)],
    );
    const found = new Map(rows.map((r) => [`${r.level}/${r.idx}`, r.h]));
    return refs.map((r) => {
      const h = found.get(`${r.level}/${r.index}`);
      if (!h || h.length !== 32) {
        throw new HotlineError('HL_ERR_AUDIT_LEAF_MISMATCH', `the audit tree's node ${r.level}/${r.index} is missing or damaged`, { detail: { level: r.level, index: r.index } });
      }
      return new Uint8Array(h);
    });
  }

  async check(q: Queryable): Promise<string | undefined> {
    const size = await this.size(q);
    const top = (await q.query<{ level: number }>('SELECT level FROM audit_nodes ORDER BY level DESC LIMIT 1')).rows[0]?.level;
    const height = size < 2 ? 0 : Math.floor(Math.log2(size));
    if (top === undefined && height > 0) return `no tree node is stored for a log of ${size} entries (a log from before they were kept)`;
    if (top !== undefined && top > height) return `a node of level ${top} is stored for a log of ${size} entries`;
    for (let level = 1; level <= height; level++) {
      const count = Math.floor(size / 2 ** level);
      const { rows } = await q.query<{ first: number | null; last: number | null }>(
        `SELECT (SELECT idx FROM audit_nodes WHERE level = $1 ORDER BY idx LIMIT 1) AS first,
                (SELECT idx FROM audit_nodes WHERE level = $1 ORDER BY idx DESC LIMIT 1) AS last`,
        [level],
      );
      const first = rows[0]?.first ?? undefined;
      const last = rows[0]?.last ?? undefined;
      if (first !== 0 || last !== count - 1) {
        return `level ${level} holds nodes ${first ?? '-'}..${last ?? '-'}; a log of ${size} entries has 0..${count - 1}`;
      }
      const problem = await this.checkNodes(q, level, count - 1, count);
      if (problem) return problem;
    }
    return undefined;
  }

  async checkNodes(q: Queryable, level: number, from: number, to: number): Promise<string | undefined> {
    const nodes = (await q.query<{ idx: number; h: Buffer }>('SELECT idx, hash AS h FROM audit_nodes WHERE level = $1 AND idx >= $2 AND idx < $3 ORDER BY idx', [level, from, to])).rows;
    const children = (
      level === 1
        ? await q.query<{ idx: number; h: Buffer }>('SELECT idx, leaf_hash AS h FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx', [2 * from, 2 * to])
        : await q.query<{ idx: number; h: Buffer }>('SELECT idx, hash AS h FROM audit_nodes WHERE level = $1 AND idx >= $2 AND idx < $3 ORDER BY idx', [level - 1, 2 * from, 2 * to])
    ).rows;
    return checkNodeRows(level, from, to, nodes, children);
  }

  /** Recompute every node from the leaves, inside the caller's transaction (holding the audit lock). */
  async rebuild(q: Queryable): Promise<number> {
    await q.query('DELETE FROM audit_nodes');
    const edge: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const page = (await q.query<{ idx: number; h: Buffer }>('SELECT idx, leaf_hash AS h FROM audit_entries WHERE idx >= $1 ORDER BY idx LIMIT $2', [size, REBUILD_PAGE])).rows;
      if (page.length === 0) break;
      const levels: number[] = [];
      const idxs: number[] = [];
      const hashes: Buffer[] = [];
      for (const row of page) {
        if (row.idx !== size || row.h.length !== 32) {
          throw new HotlineError('HL_ERR_AUDIT_ENTRY_INVALID', `audit entry ${size} is missing or damaged: the tree cannot be rebuilt`, { detail: { index: size } });
        }
        let hash: Uint8Array = new Uint8Array(row.h);
        let i = size;
        for (let level = 1; i % 2 === 1; level++) {
          hash = nodeHash(edge.pop()!, hash);
          i = (i - 1) / 2;
          levels.push(level);
          idxs.push(i);
          hashes.push(Buffer.from(hash));
        }
        edge.push(hash);
        size++;
      }
      if (levels.length > 0) {
        await q.query('INSERT INTO audit_nodes (level, idx, hash) SELECT * FROM unnest($1::int[], $2::bigint[], $3::bytea[])', [levels, idxs, hashes]);
      }
    }
    return size;
  }
}

/**
 * The complete subtrees on the right edge of a tree of `size` leaves (its frontier), highest first:
 * one per bit set in `size`. Appending needs exactly these.
 */
export function frontierRefs(size: number): NodeRef[] {
  const refs: NodeRef[] = [];
  let offset = 0;
  for (let level = size < 1 ? -1 : Math.floor(Math.log2(size)); level >= 0; level--) {
    const width = 2 ** level;
    if (Math.floor(size / width) % 2 === 1) {
      refs.push({ level, index: offset / width });
      offset += width;
    }
  }
  return refs;
}

/**
 * The audit appends of one transaction. The first append takes the audit lock (held to commit:
 * appends get one serial order across every node on the database) and reads the last entry and the
 * tree's frontier (O(log n) rows, one round trip); the entries and the nodes they close are then
 * computed in memory and written at `flush`, two statements for the whole transaction, whatever
 * the batch size. Nothing is written unless `flush` runs before the commit.
 */
export class AuditAppender {
  private started = false;
  private size = 0;
  private last: Uint8Array | null = null;
  private edge: Uint8Array[] = [];
  private entries: { idx: number; text: string; hash: Uint8Array }[] = [];
  private nodes: { level: number; idx: number; hash: Uint8Array }[] = [];

  constructor(
    private readonly q: Queryable,
    private readonly tree: PgAuditTree,
    private readonly lockSql: string,
  ) {}

  async append(entry: AuditEntry): Promise<number> {
    if (!this.started) await this.start();
    // Each entry names its own index and the leaf hash of the one before it (shared/audit/log-verify.ts).
    const idx = this.size;
    const text = formatAuditEntry(entry, idx, this.last);
    const hash = leafHash(utf8(text));
    this.entries.push({ idx, text, hash });
    let h = hash;
    let i = idx;
    for (let level = 1; i % 2 === 1; level++) {
      h = nodeHash(this.edge.pop()!, h);
      i = (i - 1) / 2;
      this.nodes.push({ level, idx: i, hash: h });
    }
    this.edge.push(h);
    this.size++;
    this.last = hash;
    return idx;
  }

  private async start(): Promise<void> {
    await this.q.query(this.lockSql);
    const last = (await this.q.query<{ idx: number; leaf_hash: Buffer }>('SELECT idx, leaf_hash FROM audit_entries ORDER BY idx DESC LIMIT 1')).rows[0];
    this.size = last ? last.idx + 1 : 0;
    this.last = last ? new Uint8Array(last.leaf_hash) : null;
    // A missing or damaged frontier node fails here with HL_ERR_AUDIT_LEAF_MISMATCH, as a read would.
    this.edge = await this.tree.nodes(this.q, frontierRefs(this.size));
    this.started = true;
  }

  /** Write what was appended (inside the transaction, before its commit). */
  async flush(): Promise<void> {
    if (this.entries.length === 0) return;
    // Entries and nodes in one statement (one round trip); a transaction that appended nothing writes nothing.
    await this.q.query(
      `WITH n AS (
         INSERT INTO audit_nodes (level, idx, hash) SELECT * FROM unnest($4::int[], $5::bigint[], $6::bytea[])
         ON CONFLICT (level, idx) DO UPDATE SET hash = excluded.hash)
       INSERT INTO audit_entries (idx, entry, leaf_hash) SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[])`,
      [
        this.entries.map((e) => e.idx),
        this.entries.map((e) => e.text),
        this.entries.map((e) => Buffer.from(e.hash)),
        this.nodes.map((n) => n.level),
        this.nodes.map((n) => n.idx),
        this.nodes.map((n) => Buffer.from(n.hash)),
      ],
    );
    this.entries = [];
    this.nodes = [];
  }
}
