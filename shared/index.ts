// The public API of shared/: explicit named re-exports only (no `export *`), as jose's index does,
// so that what is public is a decision, visible in one place.
export { ERROR_TABLE, HotlineError, isHotlineError, isHotlineErrorCode } from './errors.js';
export type { HotlineErrorCode } from './errors.js';
export { canonicalize, canonicalizeSigned, canonicalBytes } from './encoding/canonical-json.js';
export { toBase64, fromBase64, toHex, fromHex, utf8, fromUtf8, concatBytes, bytesEqual } from './encoding/base64.js';
export { sha256, sha256Hex } from './crypto/hash.js';
export { randomBytes, randomId } from './crypto/random.js';
export { ed25519Sign, ed25519Verify, generateSigningKeyPair, signingPublicKeyFromSeed, webcryptoSign, webcryptoVerify } from './crypto/ed25519.js';
export type { SigningKeyPair } from './crypto/ed25519.js';
export {
  CONTEXT,
  DEFAULT_DEADLINES,
  DEFAULT_LINK_TEST,
  DEFAULT_REMINDER_INTERVAL_MS,
  agreementHash,
  createAgreement,
  createLogKey,
  createParty,
  enrollDevice,
  findParty,
  fingerprint,
  keyIdOf,
  parseAgreement,
  parseDeviceSecret,
  parseLogSecret,
  parsePartySecret,
  revokeDevice,
  signDeviceCertificate,
  signingBytes,
  verifyDeviceCertificate,
  verifyRevocation,
} from './crypto/keys.js';
export type { CreateAgreementOptions, EnrollDeviceOptions, RevocationCheck, VerifyCertificateOptions } from './crypto/keys.js';
export {
  MAX_ENVELOPE_BYTES,
  checkRecipients,
  checkReplay,
  envelopeHash,
  expectedRecipients,
  keyCommitment,
  openEnvelope,
  parseEnvelopeText,
  sealEnvelope,
  verifyEnvelope,
  verifyHeaderSignature,
} from './crypto/envelope.js';
export type { OpenEnvelopeOptions, ReplayGuard, SealEnvelopeOptions } from './crypto/envelope.js';
export { signReceipt, verifyReceipt } from './crypto/receipt.js';
export { assertSchema, matchesSchema, parseJson } from './protocol/validate.js';
export * as schemas from './protocol/schemas.js';
export * as frames from './protocol/frames.js';
export * as status from './protocol/status.js';
export {
  MerkleLog,
  consistencyProof,
  inclusionProof,
  leafHash,
  merkleTreeHash,
  nodeHash,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
  addSignature,
  cosignCheckpoint,
  formatCheckpointBody,
  parseCheckpoint,
  signNote,
  verifyCheckpoint,
  verifyNote,
  AUDIT_EXPORT_TYPE,
  cosignerName,
  formatAuditEntry,
  logKeyName,
  parseAuditExport,
  verifyAuditExport,
  buildAuditReport,
} from './audit/index.js';
export type { AuditProblem, AuditReport, AuditVerification } from './audit/index.js';
export type { Checkpoint, NoteSigner, NoteVerifier, VerifiedCheckpoint } from './audit/index.js';
export { REPLAY_WINDOW, acceptSeq, isNewSeq, seqVerdict, seqWindowFrom, type SeqVerdict, type SeqWindow } from './crypto/replay-window.js';
