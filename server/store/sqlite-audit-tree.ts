import type Database from 'better-sqlite3';
import { HotlineError } from '../../shared/errors.js';
import { bytesEqual } from '../../shared/encoding/base64.js';
import { nodeHash, type NodeRef } from '../../shared/audit/merkle.js';

/**
 * The audit log's Merkle tree on SQLite (issue 9): beside each leaf hash in `audit_entries`, the
 * table `audit_nodes (level, idx, hash)` holds the hash of every complete subtree of 2^level leaves
 * (level ≥ 1), written in the transaction of the entry that closes it, so that roots and proofs read
 * O(log n) rows and start-up never reads every leaf. The nodes are derived data: they are checked
 * against the leaves (cheaply at start, in full in the background; server/audit-log.ts) and rebuilt
 * from the leaves whenever they disagree.
 */
const REBUILD_PAGE = 65_536;

export class SqliteAuditTree {
  private readonly stmt;

  constructor(private readonly db: Database.Database) {
    this.stmt = {
      size: db.prepare<[], { n: number | null }>('SELECT MAX(idx) + 1 AS n FROM audit_entries'),
      leaf: db.prepare<[number], { h: Buffer }>('SELECT leaf_hash AS h FROM audit_entries WHERE idx = ?'),
      node: db.prepare<[number, number], { h: Buffer }>('SELECT hash AS h FROM audit_nodes WHERE level = ? AND idx = ?'),
      insertNode: db.prepare('INSERT OR REPLACE INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)'),
      topLevel: db.prepare<[], { level: number }>('SELECT level FROM audit_nodes ORDER BY level DESC LIMIT 1'),
      firstAt: db.prepare<[number], { idx: number }>('SELECT idx FROM audit_nodes WHERE level = ? ORDER BY idx LIMIT 1'),
      lastAt: db.prepare<[number], { idx: number }>('SELECT idx FROM audit_nodes WHERE level = ? ORDER BY idx DESC LIMIT 1'),
      leafRange: db.prepare<[number, number], { idx: number; h: Buffer }>('SELECT idx, leaf_hash AS h FROM audit_entries WHERE idx >= ? AND idx < ? ORDER BY idx'),
      nodeRange: db.prepare<[number, number, number], { idx: number; h: Buffer }>(
        'SELECT idx, hash AS h FROM audit_nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx',
      ),
      leafPage: db.prepare<[number, number], { idx: number; h: Buffer }>('SELECT idx, leaf_hash AS h FROM audit_entries WHERE idx >= ? ORDER BY idx LIMIT ?'),
      clear: db.prepare('DELETE FROM audit_nodes'),
    };
  }

  size(): number {
    return this.stmt.size.get()?.n ?? 0;
  }

  /** Inside the caller's transaction: store the complete subtrees that leaf `idx` closes. */
  addLeaf(idx: number, leaf: Uint8Array): void {
    let hash = leaf;
    let i = idx;
    for (let level = 1; i % 2 === 1; level++) {
      hash = nodeHash(this.node(level - 1, i - 1), hash);
      i = (i - 1) / 2;
      this.stmt.insertNode.run(level, i, Buffer.from(hash));
    }
  }

  node(level: number, index: number): Uint8Array {
    const row = level === 0 ? this.stmt.leaf.get(index) : this.stmt.node.get(level, index);
    if (!row || row.h.length !== 32) {
      throw new HotlineError('HL_ERR_AUDIT_LEAF_MISMATCH', `the audit tree's node ${level}/${index} is missing or damaged`, { detail: { level, index } });
    }
    return new Uint8Array(row.h);
  }

  nodes(refs: readonly NodeRef[]): Uint8Array[] {
    return refs.map((r) => this.node(r.level, r.index));
  }

  check(): string | undefined {
    const size = this.size();
    const top = this.stmt.topLevel.get()?.level;
    const height = size < 2 ? 0 : Math.floor(Math.log2(size));
    if (top === undefined && height > 0) return `no tree node is stored for a log of ${size} entries (a log from before they were kept)`;
    if (top !== undefined && top > height) return `a node of level ${top} is stored for a log of ${size} entries`;
    for (let level = 1; level <= height; level++) {
      const count = Math.floor(size / 2 ** level);
      const first = this.stmt.firstAt.get(level)?.idx;
      const last = this.stmt.lastAt.get(level)?.idx;
      if (first !== 0 || last !== count - 1) {
        return `level ${level} holds nodes ${first ?? '-'}..${last ?? '-'}; a log of ${size} entries has 0..${count - 1}`;
      }
      const problem = this.checkNodes(level, count - 1, count);
      if (problem) return problem;
    }
    return undefined;
  }

  checkNodes(level: number, from: number, to: number): string | undefined {
    const nodes = this.stmt.nodeRange.all(level, from, to);
    const children =
      level === 1 ? this.stmt.leafRange.all(2 * from, 2 * to) : this.stmt.nodeRange.all(level - 1, 2 * from, 2 * to);
    return checkNodeRows(level, from, to, nodes, children);
  }

  /**
   * Recompute every node from the leaves in one transaction. A missing leaf (a gap in the indexes)
   * leaves nothing to compute from: the stored nodes are then kept, and the error says which.
   */
  rebuild(): number {
    return this.db.transaction(() => {
      this.stmt.clear.run();
      // The right edge of the tree so far: one complete subtree per level at most.
      const edge: Uint8Array[] = [];
      let size = 0;
      // Paged by index: better-sqlite3 cannot write while a statement iterates.
      for (let page = this.stmt.leafPage.all(0, REBUILD_PAGE); page.length > 0; page = this.stmt.leafPage.all(size, REBUILD_PAGE)) {
        for (const row of page) {
          if (row.idx !== size || row.h.length !== 32) {
            throw new HotlineError('HL_ERR_AUDIT_ENTRY_INVALID', `audit entry ${size} is missing or damaged: the tree cannot be rebuilt`, { detail: { index: size } });
          }
          let hash: Uint8Array = new Uint8Array(row.h);
          let i = size;
          for (let level = 1; i % 2 === 1; level++) {
            hash = nodeHash(edge.pop()!, hash);
            i = (i - 1) / 2;
            this.stmt.insertNode.run(level, i, Buffer.from(hash));
          }
          edge.push(hash);
          size++;
        }
      }
      return size;
    })();
  }
}

/** A stored node or leaf hash, by its index at its level (as both adapters read them). */
export interface HashRow {
  idx: number;
  h: Uint8Array;
}

/**
 * Nodes [from, to) of one level against their children (the level below, or the leaves at level 1),
 * both read in index order: what is missing, stray or not the hash of its children. Shared by the
 * SQLite and PostgreSQL trees.
 */
export function checkNodeRows(level: number, from: number, to: number, nodes: readonly HashRow[], children: readonly HashRow[]): string | undefined {
  for (let k = 0; k < to - from; k++) {
    const n = nodes[k];
    const left = children[2 * k];
    const right = children[2 * k + 1];
    const i = from + k;
    if (!n || n.idx !== i) return `node ${level}/${i} is missing`;
    if (!left || left.idx !== 2 * i || !right || right.idx !== 2 * i + 1) return `a child of node ${level}/${i} is missing`;
    if (n.h.length !== 32 || left.h.length !== 32 || right.h.length !== 32) return `node ${level}/${i} or a child is not 32 bytes`;
    if (!bytesEqual(new Uint8Array(n.h), nodeHash(new Uint8Array(left.h), new Uint8Array(right.h)))) {
      return `node ${level}/${i} is not the hash of its children`;
    }
  }
  if (nodes.length > to - from) return `stray nodes at level ${level} in ${from}..${to - 1}`;
  return undefined;
}
