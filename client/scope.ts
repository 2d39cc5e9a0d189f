import { HotlineError } from '../shared/errors.js';
import type { Agreement, DeviceRef, DeviceSecretFile, Role } from '../shared/protocol/schemas.js';
import type { ClientStorage } from './storage/client-storage.js';
import type { Clock } from './ports.js';
import type { EmitEvent } from './events.js';

/**
 * What the parts of one client (relay API, directory, outbox, inbox, link-test agent, witness)
 * know of the device they work for. Built once by HotlineClient; each part takes only the fields
 * it uses.
 */
export interface DeviceScope {
  readonly agreement: Agreement;
  /** This device: party, device id and role from its certificate. */
  readonly me: DeviceRef & { role: Role };
  /** `party/device`: this device's name in its storage. */
  readonly key: string;
  readonly device: DeviceSecretFile;
  readonly storage: ClientStorage;
  readonly clock: Clock;
  readonly emit: EmitEvent;
  /** Hand an error to the `error` event (dropped when nobody listens). */
  readonly report: (err: HotlineError) => void;
  /** True from start() until stop() or a fatal refusal: timers and retries end when it turns false. */
  readonly running: () => boolean;
}

export function toHotlineError(err: unknown): HotlineError {
  if (err instanceof HotlineError) return err;
  return new HotlineError('HL_ERR_INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
}

/** The ids of the agreement's parties other than this device's. */
export function otherParties({ agreement, me }: Pick<DeviceScope, 'agreement' | 'me'>): string[] {
  return agreement.parties.map((p) => p.id).filter((p) => p !== me.party);
}
