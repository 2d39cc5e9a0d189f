/**
 * The audit log's hashing and checkpoints: RFC 9162 Merkle trees and proofs, C2SP signed-note
 * checkpoints and cosignatures. Pure and isomorphic (Node and browser).
 */
export {
  HASH_SIZE,
  MerkleLog,
  NodeTree,
  completeSubtrees,
  consistencyProof,
  consistencyProofLength,
  emptyRoot,
  inclusionProof,
  inclusionProofLength,
  isValidConsistency,
  isValidInclusion,
  leafHash,
  merkleTreeHash,
  nodeHash,
  nodesRead,
  rangeFromNodes,
  rootFromInclusionProof,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
} from './merkle.js';
export type { NodeLookup, NodeRef } from './merkle.js';
export {
  NOTE_SIGNATURE_TYPES,
  addSignature,
  cosignCheckpoint,
  formatCheckpointBody,
  formatNote,
  formatVerifierKey,
  noteKeyId,
  parseCheckpoint,
  parseCheckpointBody,
  parseNote,
  parseVerifierKey,
  signNote,
  verifyCheckpoint,
  verifyNote,
} from './checkpoint.js';
export type {
  Checkpoint,
  Note,
  NoteSignature,
  NoteSignatureType,
  NoteSigner,
  NoteVerifier,
  VerifiedCheckpoint,
  VerifiedNote,
  VerifiedSignature,
} from './checkpoint.js';
export { AUDIT_EXPORT_TYPE, AuditExport, cosignerName, formatAuditEntry, logKeyName, parseAuditExport, verifyAuditExport } from './log-verify.js';
export type { AuditProblem, AuditVerification, VerifyAuditOptions } from './log-verify.js';
export { exportLogParty, receiptHash, reconcileAuditExports } from './reconcile.js';
export type { ReconcileFinding, Reconciliation } from './reconcile.js';
export { buildAuditReport } from './report.js';
export type { AuditReport, PrecedenceRow, RungStats } from './report.js';
