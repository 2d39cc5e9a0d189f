import type { DeviceCertBody, EnvelopeHeader, ReceiptBody } from '../../shared/protocol/schemas.js';
import { deviceKey, type DeviceKey } from './records.js';

/** An envelope goes to exactly the devices it is wrapped for (already checked against the directory). */
export function envelopeMailboxes(header: EnvelopeHeader): DeviceKey[] {
  return header.recipients.map((r) => deviceKey(r));
}

/**
 * A receipt goes to every operator device of both the sender's and the addressee's party except
 * its signer, so that colleagues on the same watch see it too (the contract in shared/PROTOCOL.md).
 */
export function receiptMailboxes(valid: readonly DeviceCertBody[], header: EnvelopeHeader, receipt: ReceiptBody): DeviceKey[] {
  const parties = new Set([header.from.party, header.to]);
  return valid
    .filter((c) => c.role === 'operator' && parties.has(c.party))
    .filter((c) => !(c.party === receipt.by.party && c.device === receipt.by.device))
    .map((c) => deviceKey(c))
    .sort();
}
