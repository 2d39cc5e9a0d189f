import type { DeviceRef } from '../shared/protocol/schemas.js';
import type { ClientState } from './storage/client-storage.js';

/** The signed time of the revocation of the certificate `ref` had at `at`, if it has been revoked. */
export type RevokedSince = (ref: DeviceRef, at: number) => number | undefined;

/** What {@link labelRevoked} marked: messages whose sender, and receipts whose signer, was revoked since. */
export interface RevokedSinceChange {
  messages: { id: string; from: string; revokedAt: number }[];
  receipts: { messageId: string; by: string; revokedAt: number }[];
}

/**
 * Mark in `state`, in place, what was stored here before a revocation that has just become known
 * (README "Revoked devices and old messages"): each inbox message whose sender's certificate (the
 * one valid when the relay accepted it) is now revoked gets `senderRevokedAt`; each sent message's
 * receipt signers likewise get `signersRevokedAt`. Nothing is removed: what was accepted while the
 * certificate was valid stays readable and answerable, and is labelled. Returns what changed.
 */
export function labelRevoked(state: ClientState, revokedSince: RevokedSince): RevokedSinceChange {
  const change: RevokedSinceChange = { messages: [], receipts: [] };
  for (const [id, rec] of Object.entries(state.inbox)) {
    if (rec.senderRevokedAt !== undefined) continue;
    // Records stored before `acceptedAt` was kept: the time it arrived here, just after acceptance.
    const revokedAt = revokedSince(rec.header.from, rec.acceptedAt ?? rec.receivedAt);
    if (revokedAt === undefined) continue;
    rec.senderRevokedAt = revokedAt;
    change.messages.push({ id, from: `${rec.header.from.party}/${rec.header.from.device}`, revokedAt });
  }
  for (const [messageId, rec] of Object.entries(state.sent)) {
    for (const r of rec.receipts) {
      const by = `${r.by.party}/${r.by.device}`;
      if (rec.signersRevokedAt?.[by] !== undefined) continue;
      // The relay's acceptance time of a receipt is not kept: its signed time, when it was made.
      const revokedAt = revokedSince(r.by, r.at);
      if (revokedAt === undefined) continue;
      (rec.signersRevokedAt ??= {})[by] = revokedAt;
      change.receipts.push({ messageId, by, revokedAt });
    }
  }
  return change;
}

/** Everything stored here that carries a "revoked since" label (for `hotline status`). */
export function revokedLabels(state: ClientState): RevokedSinceChange {
  const out: RevokedSinceChange = { messages: [], receipts: [] };
  for (const [id, rec] of Object.entries(state.inbox)) {
    if (rec.senderRevokedAt !== undefined) out.messages.push({ id, from: `${rec.header.from.party}/${rec.header.from.device}`, revokedAt: rec.senderRevokedAt });
  }
  for (const [messageId, rec] of Object.entries(state.sent)) {
    for (const [by, revokedAt] of Object.entries(rec.signersRevokedAt ?? {})) out.receipts.push({ messageId, by, revokedAt });
  }
  return out;
}
