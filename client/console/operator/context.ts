import type { HotlineClient } from '../../hotline-client.js';
import type { BrowserStorage } from '../../storage/browser-storage.js';
import type { Agreement, DeviceCertBody } from '../../../shared/protocol/schemas.js';
import type { LinkPairStatus, RelayLinkStatus } from '../../../shared/protocol/status.js';
import type { SealedRecord } from '../common/shell.js';
import type { ConsoleData, ConsoleEvent, LastTest } from './model.js';

/** The panels drawn on their own, by name: a panel asks for another's redraw through {@link OperatorContext.redraw}. */
export type SectionName = 'status' | 'elsewhere' | 'line' | 'auditAlarm' | 'link' | 'peers' | 'compose' | 'events';

/** What the console learnt of the link since it started: not stored, shown in the status and link panels. */
export interface LiveState {
  connected: boolean;
  /** Another tab of this console holds the link (see link-lock.ts): this one shows, and does not send. */
  elsewhere: boolean;
  lastTest?: LastTest;
  lastSent?: { to: string; at: number };
  lastCosigned?: { size: number; at: number };
  linkPairs: LinkPairStatus[];
  /** Two-relay deployments: this party's relay's line to each peer relay (empty on a shared relay). */
  relayLines: RelayLinkStatus[];
  /** Deadlines run on the server's clock: countdowns use the offset measured at each connection. */
  serverOffset: number;
}

/**
 * What every panel of the operator console shares: the unlocked device, its client and sealed
 * data, the live link state, and the ways to ask for a redraw. Panels draw from these and from
 * the pure view model (model.ts); none keeps state another panel needs.
 */
export interface OperatorContext {
  readonly me: { party: string; device: string };
  /** `party/device` of this console's device. */
  readonly key: string;
  /** This device's certificate. */
  readonly cert: DeviceCertBody;
  readonly agreement: Agreement;
  readonly client: HotlineClient;
  readonly storage: BrowserStorage;
  readonly data: SealedRecord<ConsoleData>;
  readonly live: LiveState;
  /** Store the per-message note of `id` (its text, acceptance time, colleague's acknowledgement). */
  saveNote(id: string): Promise<void>;
  /** Add a line to Events (stored, newest first). */
  addEvent(ev: ConsoleEvent): Promise<void>;
  /** Redraw these panels in the next frame. */
  redraw(...sections: SectionName[]): void;
  /** Redraw the row of message `id` in the inbox or the outbox in the next frame. */
  markInbox(id: string): void;
  markOutbox(id: string): void;
  /** Take the link from the tab that holds it; resolves once this tab is connected. */
  takeOver(): Promise<void>;
}

/** A panel: its element, kept across redraws, and how to draw its content again. */
export interface Panel {
  readonly el: HTMLElement;
  draw(): void;
}

/** The `{code, message}` of an error for an Events line. */
export function errParams(err: unknown): Record<string, string> {
  const code = (err as { code?: unknown }).code;
  return { code: typeof code === 'string' ? code : 'HL_ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) };
}
