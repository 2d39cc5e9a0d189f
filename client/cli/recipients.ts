import { HotlineError } from '../../shared/errors.js';
import type { DeviceCertBody } from '../../shared/protocol/schemas.js';
import type { Io } from './common.js';

/**
 * Before sealing for `to`: the directory must hold an operator device of the addressee party (a
 * message is readable only by the devices it is sealed for, so one sealed while the addressee has
 * no registered operator could never be read or answered by an operator enrolled later: refused,
 * HL_ERR_ENVELOPE_RECIPIENTS). A party without a registered archive device gets no archive copy:
 * said as a warning, for the addressee and for the sender's own party, with what to do.
 */
export function checkAddressee(directory: readonly DeviceCertBody[], me: { party: string; device: string }, to: string, io: Io): void {
  const has = (party: string, role: 'operator' | 'archive') => directory.some((c) => c.party === party && c.role === role && !(c.party === me.party && c.device === me.device));
  if (!has(to, 'operator')) {
    throw new HotlineError(
      'HL_ERR_ENVELOPE_RECIPIENTS',
      `${to} has no registered operator device (never registered, or revoked): nobody at ${to} could read or acknowledge this message, and a device enrolled later cannot open it. Ask ${to} to enrol one (hotline device enroll --server, or hotline device register), then send again`,
    );
  }
  for (const party of [to, me.party]) {
    if (!has(party, 'archive')) {
      io.err(`warning: ${party} has no registered archive device: its archive gets no copy of this message (register one: hotline device register --device FILE --server URL)`);
    }
  }
}
