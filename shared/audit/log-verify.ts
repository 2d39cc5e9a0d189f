import { Type, type Static } from '@sinclair/typebox';
import { HotlineError, isHotlineError, type HotlineErrorCode } from '../errors.js';
import { canonicalize } from '../encoding/canonical-json.js';
import { bytesEqual, fromBase64, fromUtf8, toHex, utf8 } from '../encoding/base64.js';
import { sha256 } from '../crypto/hash.js';
import { agreementHash, verifyDeviceCertificate, verifyRelayCertificate, verifyRevocation } from '../crypto/keys.js';
import { envelopeHash, verifyHeaderSignature } from '../crypto/envelope.js';
import { verifyReceipt } from '../crypto/receipt.js';
import { verifyRefusal } from '../crypto/refusal.js';
import { assertSchema, parseJson } from '../protocol/validate.js';
import {
  DeviceCertificate,
  EnvelopeHeader,
  Hash256,
  Millis,
  RelayCertificate,
  Revocation,
  Signature,
  SignedReceipt,
  type Agreement,
  type DeviceCertBody,
  type RelayCertBody,
} from '../protocol/schemas.js';
import { MerkleLog, leafHash } from './merkle.js';

/** The rungs a deadline event may name (PROTOCOL.md "Deadlines"; answered and complied since the complete ladder). */
const DEADLINE_RUNGS = ['delivered', 'acknowledged', 'answered', 'complied'] as const;
import { noteKeyId, verifyCheckpoint, type NoteVerifier } from './checkpoint.js';

/**
 * Offline verification of the audit log (docs/design.md "Audit log"): an auditor holding only the
 * agreement checks every entry, every hash, every signature and every checkpoint of an export, and
 * is told the first bad entry by index. Pure: runs in the CLI and in the auditor's browser.
 *
 * Every entry is canonical JSON carrying `idx` (its own position) and `prev` (hex leaf hash of the
 * entry before it, `""` for entry 0). The Merkle tree makes any change visible against a signed
 * checkpoint; `idx` and `prev` make it *locatable*: a changed byte in entry k breaks `prev` in
 * entry k+1, a deleted or moved row breaks `idx`.
 */

export const AUDIT_EXPORT_TYPE = 'hotline-audit-export';

export const AuditExport = Type.Object(
  {
    type: Type.Literal(AUDIT_EXPORT_TYPE),
    v: Type.Literal(1),
    agreementHash: Hash256,
    exportedAt: Millis,
    /** Canonical JSON text of each entry, in log order. */
    entries: Type.Array(Type.String()),
    /** Checkpoint notes (C2SP), each with the log signature and the parties' cosignatures, by size. */
    checkpoints: Type.Array(Type.String()),
    /** Every device certificate the entries refer to, revoked ones included. */
    certificates: Type.Array(DeviceCertificate),
    revocations: Type.Array(Revocation),
    /** Optional: base64 ciphertext by message id, for `hotline audit decrypt`. */
    ciphertexts: Type.Optional(Type.Record(Type.String(), Type.String())),
    /** Two relays: the certificates of the peer relays that cosigned (witnessed) this log's checkpoints. */
    relays: Type.Optional(Type.Array(RelayCertificate, { maxItems: 1000 })),
  },
  { additionalProperties: false },
);
export type AuditExport = Static<typeof AuditExport>;

/** The entry fields every entry has. Type-specific fields are checked per type below. */
const EntryBase = Type.Object({ idx: Millis, prev: Type.String(), type: Type.String({ minLength: 1 }), at: Millis });
const EnvelopeEntry = Type.Object({ envelopeHash: Hash256, header: EnvelopeHeader, signature: Signature });
const ReceiptEntry = Type.Object({ receipt: SignedReceipt });
const RefusalEntry = Type.Object({ refusal: Type.Object({ refusal: Type.Object({ messageId: Type.String(), by: Type.Object({ party: Type.String(), device: Type.String() }), at: Type.Number() }) }) });

export interface AuditProblem {
  /** The first bad entry's index, when the problem is in an entry. */
  index?: number;
  /** The checkpoint's position in the export, when the problem is in a checkpoint. */
  checkpoint?: number;
  code: HotlineErrorCode;
  message: string;
}

export interface AuditVerification {
  ok: boolean;
  entries: number;
  checkpoints: number;
  /** Largest checkpoint size verified against the entries. */
  verifiedSize: number;
  /** Cosigners seen on the newest checkpoint, `party/device` (a peer relay's: `party/relay id`). */
  cosigners: string[];
  /** Of those, the peer relays (witnesses of this log over the relay-to-relay link). */
  witnesses?: string[];
  envelopes: number;
  receipts: number;
  /** Two relays (agreement version 2): the party whose relay's log key signed the checkpoints. */
  logParty?: string;
  problem?: AuditProblem;
}

export interface VerifyAuditOptions {
  /** Called every few hundred entries (for a progress bar). */
  onProgress?: (done: number, total: number) => void;
}

/** The key name the log signs checkpoints with: the agreement's name (also the origin line). */
export function logKeyName(agreement: Agreement): string {
  return agreement.name;
}

/** The note key name a party device cosigns with. */
export function cosignerName(cert: { party: string; device: string }): string {
  return `${cert.party}/${cert.device}`;
}

class EntryError extends Error {
  constructor(
    readonly index: number,
    readonly code: HotlineErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Verify an audit export against the pinned agreement. Never throws for bad input: the result says
 * what failed first, by entry index or checkpoint position.
 *
 * @example
 * const result = await verifyAuditExport(agreement, JSON.parse(text));
 * if (!result.ok) console.error(`entry ${result.problem?.index}: ${result.problem?.message}`);
 */
export async function verifyAuditExport(agreement: Agreement, value: unknown, options: VerifyAuditOptions = {}): Promise<AuditVerification> {
  const result: AuditVerification = { ok: false, entries: 0, checkpoints: 0, verifiedSize: 0, cosigners: [], envelopes: 0, receipts: 0 };
  let exp: AuditExport;
  try {
    exp = assertSchema(AuditExport, value, 'HL_ERR_AUDIT_EXPORT_INVALID');
    if (exp.agreementHash !== agreementHash(agreement)) {
      throw new HotlineError('HL_ERR_AUDIT_EXPORT_INVALID', 'the export was made under a different agreement');
    }
  } catch (err) {
    result.problem = toProblem(err);
    return result;
  }
  result.entries = exp.entries.length;
  result.checkpoints = exp.checkpoints.length;

  // Certificates are trusted only through the agreement's roots, never because the export has them.
  const certs = new Map<string, DeviceCertBody[]>();
  const relayCerts: RelayCertBody[] = [];
  try {
    for (const c of exp.certificates) {
      const body = await verifyDeviceCertificate(agreement, c, { now: c.cert.notBefore });
      const k = cosignerName(body);
      certs.set(k, [...(certs.get(k) ?? []), body]);
    }
    for (const r of exp.revocations) await verifyRevocation(agreement, r);
    // Peer relays' certificates, checked against their party's root like a device's.
    for (const c of exp.relays ?? []) relayCerts.push(await verifyRelayCertificate(agreement, c, { now: c.cert.notBefore }));
  } catch (err) {
    result.problem = toProblem(err);
    return result;
  }
  const certAt = (ref: { party: string; device: string }, at: number, index: number): DeviceCertBody => {
    const list = certs.get(cosignerName(ref)) ?? [];
    const c = list.find((x) => x.notBefore <= at && at < x.notAfter);
    if (!c) throw new EntryError(index, 'HL_ERR_CERT_UNKNOWN_DEVICE', `no certificate of ${cosignerName(ref)} valid at ${at}`);
    return c;
  };

  const revokedAt = new Map<string, number>();
  for (const r of exp.revocations) revokedAt.set(`${cosignerName(r.revocation)}|${r.revocation.signKey}`, r.revocation.at);
  // A relay that accepted a message or receipt from a device after its revocation is caught here.
  const assertNotRevoked = (ref: { party: string; device: string }, cert: DeviceCertBody, at: number, index: number): void => {
    const when = revokedAt.get(`${cosignerName(ref)}|${cert.signKey}`);
    if (when !== undefined && when <= at) {
      throw new EntryError(index, 'HL_ERR_CERT_REVOKED', `entry ${index}: accepted from ${cosignerName(ref)} after its revocation`);
    }
  };

  const log = new MerkleLog();
  const headers = new Map<string, { header: Static<typeof EnvelopeHeader>; hash: string; acceptedAt: number }>();
  let prevHex = '';
  try {
    for (let i = 0; i < exp.entries.length; i++) {
      const text = exp.entries[i]!;
      let parsed: unknown;
      try {
        parsed = parseJson(text);
      } catch {
        throw new EntryError(i, 'HL_ERR_AUDIT_ENTRY_INVALID', `entry ${i} is not valid JSON`);
      }
      let canonical: string;
      try {
        canonical = canonicalize(parsed);
      } catch {
        throw new EntryError(i, 'HL_ERR_AUDIT_ENTRY_INVALID', `entry ${i} is not canonical JSON`);
      }
      if (canonical !== text) throw new EntryError(i, 'HL_ERR_AUDIT_ENTRY_INVALID', `entry ${i} is not in canonical form (bytes changed)`);
      const entry = parsed as Static<typeof EntryBase> & Record<string, unknown>;
      try {
        assertSchema(EntryBase, entry, 'HL_ERR_AUDIT_ENTRY_INVALID');
      } catch (err) {
        throw new EntryError(i, 'HL_ERR_AUDIT_ENTRY_INVALID', `entry ${i}: ${(err as Error).message}`);
      }
      if (entry.idx !== i) {
        throw new EntryError(i, 'HL_ERR_AUDIT_ENTRY_INVALID', `entry ${i} says it is entry ${entry.idx}: entries were deleted, inserted or reordered`);
      }
      if (entry.prev !== prevHex) {
        // Entry i's link names entry i-1's hash; a mismatch means entry i-1's bytes were changed
        // (or this link itself was).
        throw new EntryError(Math.max(0, i - 1), 'HL_ERR_AUDIT_LEAF_MISMATCH', `entry ${i - 1} was changed: its hash no longer matches the link stored in entry ${i}`);
      }
      await checkEntry(entry, i);
      const lh = leafHash(utf8(text));
      log.append(lh);
      prevHex = toHex(lh);
      if (i % 256 === 0) options.onProgress?.(i, exp.entries.length);
    }
    options.onProgress?.(exp.entries.length, exp.entries.length);
  } catch (err) {
    result.problem = err instanceof EntryError ? { index: err.index, code: err.code, message: err.message } : toProblem(err);
    return result;
  }

  async function checkEntry(entry: Record<string, unknown> & { type: string; at: number }, i: number): Promise<void> {
    try {
      switch (entry.type) {
        case 'envelope.accepted': {
          const e = assertSchema(EnvelopeEntry, entry, 'HL_ERR_AUDIT_ENTRY_INVALID');
          const cert = certAt(e.header.from, e.header.sentAt, i);
          await verifyHeaderSignature(e.header, e.signature, cert);
          assertNotRevoked(e.header.from, cert, entry.at, i);
          if (envelopeHash(e.header) !== e.envelopeHash) {
            throw new EntryError(i, 'HL_ERR_AUDIT_ENTRY_INVALID', `entry ${i}: envelopeHash does not match the header`);
          }
          const ct = exp.ciphertexts?.[e.header.id];
          if (ct !== undefined && !bytesEqual(sha256(fromBase64(ct)), fromHexSafe(e.header.ciphertextHash))) {
            throw new EntryError(i, 'HL_ERR_ENVELOPE_CIPHERTEXT_HASH', `entry ${i}: the exported ciphertext of ${e.header.id} does not match its signed hash`);
          }
          headers.set(e.header.id, { header: e.header, hash: e.envelopeHash, acceptedAt: entry.at });
          result.envelopes++;
          return;
        }
        case 'receipt.accepted': {
          const e = assertSchema(ReceiptEntry, entry, 'HL_ERR_AUDIT_ENTRY_INVALID');
          const h = headers.get(e.receipt.receipt.messageId);
          if (!h) throw new EntryError(i, 'HL_ERR_RECEIPT_UNKNOWN_MESSAGE', `entry ${i}: receipt for a message not in the log before it`);
          const cert = certAt(e.receipt.receipt.by, e.receipt.receipt.at, i);
          await verifyReceipt(e.receipt, cert, h.header);
          assertNotRevoked(e.receipt.receipt.by, cert, entry.at, i);
          result.receipts++;
          return;
        }
        case 'refusal.accepted': {
          // A device's signed refusal of a message delivered to it: signed by a device the message
          // was wrapped for, over the header hash in the log (PROTOCOL.md "Refusals").
          const e = assertSchema(RefusalEntry, entry, 'HL_ERR_AUDIT_ENTRY_INVALID');
          const body = e.refusal.refusal;
          const h = headers.get(body.messageId);
          if (!h) throw new EntryError(i, 'HL_ERR_REFUSAL_UNKNOWN_MESSAGE', `entry ${i}: refusal of a message not in the log before it`);
          const cert = certAt(body.by, body.at, i);
          await verifyRefusal(entry['refusal'], cert, { header: h.header, envelopeHash: h.hash });
          assertNotRevoked(body.by, cert, entry.at, i);
          return;
        }
        case 'device.enrolled': {
          await verifyDeviceCertificate(agreement, entry['certificate'], { now: (entry['certificate'] as { cert: { notBefore: number } })?.cert?.notBefore ?? 0 });
          return;
        }
        case 'device.revoked': {
          await verifyRevocation(agreement, entry['revocation']);
          return;
        }
        case 'deadline.missed':
        case 'deadline.met':
        case 'deadline.closed': {
          const id = entry['messageId'];
          if (typeof id !== 'string' || !headers.has(id)) {
            throw new EntryError(i, 'HL_ERR_AUDIT_ENTRY_INVALID', `entry ${i}: deadline event for a message not in the log before it`);
          }
          // Deadlines run from the server's acceptance, not the sender's (possibly skewed) clock.
          const acceptedAt = headers.get(id)!.acceptedAt;
          const rung = entry['rung'];
          if (!(DEADLINE_RUNGS as readonly unknown[]).includes(rung)) throw new EntryError(i, 'HL_ERR_AUDIT_ENTRY_INVALID', `entry ${i}: unknown rung`);
          const due = entry['dueAt'];
          if (typeof due !== 'number' || due < acceptedAt) throw new EntryError(i, 'HL_ERR_AUDIT_ENTRY_INVALID', `entry ${i}: impossible due time`);
          if (entry.type === 'deadline.missed' && entry.at < due) {
            throw new EntryError(i, 'HL_ERR_AUDIT_ENTRY_INVALID', `entry ${i}: deadline recorded as missed before it was due`);
          }
          return;
        }
        default:
          // Logins, server start/stop, link tests: metadata only, covered by the hashes.
          return;
      }
    } catch (err) {
      if (err instanceof EntryError) throw err;
      const code = isHotlineError(err) ? err.code : 'HL_ERR_AUDIT_ENTRY_INVALID';
      throw new EntryError(i, code, `entry ${i} (${entry.type}): ${(err as Error).message}`);
    }
  }

  // Checkpoints: signed by the log key, cosigned by party devices, and each root must be the root
  // of the entries at its size.
  // The log key of whichever relay kept this log: the shared relay's, or (agreement version 2)
  // one party's relay's; every checkpoint of one export by the same key (the export is bound to
  // that relay: `logParty`, what the two-log reconciliation pairs exports by).
  const logKeys = new Set([agreement.logKey, ...(agreement.relays ?? []).map((r) => r.logKey)]);
  const relayByKeyId = new Map<number, string>();
  for (const r of agreement.relays ?? []) relayByKeyId.set(noteKeyId(logKeyName(agreement), fromBase64(r.logKey, 32)), r.party);
  let signerKeyId: number | undefined;
  const verifiers: NoteVerifier[] = [...logKeys].map((k) => ({ name: logKeyName(agreement), publicKey: fromBase64(k, 32) }));
  for (const list of certs.values()) {
    for (const c of list) {
      if (c.role === 'operator' || c.role === 'auditor') {
        verifiers.push({ name: cosignerName(c), publicKey: fromBase64(c.signKey, 32), type: 'cosignature/v1' });
      }
    }
  }
  const witnessNames = new Set<string>();
  for (const c of relayCerts) {
    const name = cosignerName({ party: c.party, device: c.relay });
    witnessNames.add(name);
    verifiers.push({ name, publicKey: fromBase64(c.signKey, 32), type: 'cosignature/v1' });
  }
  let lastSize = -1;
  for (let k = 0; k < exp.checkpoints.length; k++) {
    try {
      const v = await verifyCheckpoint(exp.checkpoints[k]!, dedupeVerifiers(verifiers));
      if (!v.verified.some((s) => s.name === logKeyName(agreement) && s.type === 'ed25519')) {
        throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE', `checkpoint ${k} is not signed by the log key`);
      }
      const logSig = v.verified.find((s) => s.name === logKeyName(agreement) && s.type === 'ed25519')!;
      if (signerKeyId === undefined) {
        signerKeyId = logSig.keyId;
        const party = relayByKeyId.get(logSig.keyId);
        if (party !== undefined) result.logParty = party;
      } else if (signerKeyId !== logSig.keyId) {
        throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_SIGNATURE', `checkpoint ${k} is signed by another log key than checkpoint 0: two relays' logs are mixed in one export`);
      }
      if (v.checkpoint.origin !== logKeyName(agreement)) {
        throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_MALFORMED', `checkpoint ${k} is for another log (${v.checkpoint.origin})`);
      }
      const size = v.checkpoint.size;
      if (size < lastSize) throw new HotlineError('HL_ERR_AUDIT_CHECKPOINT_MALFORMED', `checkpoint ${k} is smaller than the one before it`);
      lastSize = size;
      if (size > log.size) {
        throw new HotlineError('HL_ERR_AUDIT_ROOT_MISMATCH', `the log was truncated: checkpoint ${k} covers ${size} entries, the export holds ${log.size}`);
      }
      if (!bytesEqual(log.root(size), v.checkpoint.rootHash)) {
        throw new HotlineError('HL_ERR_AUDIT_ROOT_MISMATCH', `entries 0..${size - 1} do not hash to the root signed in checkpoint ${k}: an entry was changed and its link rewritten`);
      }
      result.verifiedSize = size;
      result.cosigners = v.verified.filter((s) => s.type === 'cosignature/v1').map((s) => s.name);
      if (witnessNames.size > 0) result.witnesses = result.cosigners.filter((n) => witnessNames.has(n));
    } catch (err) {
      const p = toProblem(err);
      result.problem = { ...p, checkpoint: k, ...(p.code === 'HL_ERR_AUDIT_ROOT_MISMATCH' ? { index: Math.min(lastSize, log.size) - 1 } : {}) };
      return result;
    }
  }
  result.ok = true;
  return result;
}

function fromHexSafe(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

function dedupeVerifiers(list: NoteVerifier[]): NoteVerifier[] {
  const seen = new Set<string>();
  return list.filter((v) => {
    const k = `${v.name}|${v.type ?? 'ed25519'}|${toHex(v.publicKey)}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function toProblem(err: unknown): AuditProblem {
  if (isHotlineError(err)) return { code: err.code, message: err.message };
  return { code: 'HL_ERR_AUDIT_EXPORT_INVALID', message: err instanceof Error ? err.message : String(err) };
}

/** Parse an export file's text (JSON), with a clear error. */
export function parseAuditExport(text: string | Uint8Array): unknown {
  return parseJson(typeof text === 'string' ? text : fromUtf8(text));
}

/**
 * The canonical text of audit entry `idx`, linked to the leaf hash of the entry before it. The
 * server's store writes exactly this; {@link verifyAuditExport} checks it.
 *
 * @example
 * const text = formatAuditEntry({ type: 'login', at: now, party, device }, 0, null);
 */
export function formatAuditEntry(entry: { type: string; at: number } & Record<string, unknown>, idx: number, prevLeafHash: Uint8Array | null): string {
  return canonicalize({ ...entry, idx, prev: prevLeafHash ? toHex(prevLeafHash) : '' });
}
