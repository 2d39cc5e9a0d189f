import type { HotlineErrorCode } from '../shared/errors.js';
import type { Role } from '../shared/protocol/schemas.js';
import type { DirectoryChangedFrame, OperatorNotice } from '../shared/protocol/frames.js';
import { deviceKey, type DeviceKey, type MailboxItem } from './relay/records.js';

/** A live link as the hub sees it: whose it is, and how to hand it an item or end it. */
export interface LiveLink {
  readonly party: string;
  readonly device: string;
  readonly role: Role;
  /** The certificate's signKey the login was proved with. */
  readonly signKey: string;
  /** Open and not closing. */
  isOpen(): boolean;
  /** Hand it a new mailbox item (called only while it is open). */
  push(item: MailboxItem): void;
  /** Answer with a coded error, then close. */
  close(code: HotlineErrorCode, message: string): void;
  /** Send an operator notice (no cursor, not stored). */
  notice(notice: OperatorNotice): void;
  /** Tell it the directory changed (no cursor, not stored). */
  directoryChanged(revocation: DirectoryChangedFrame['revocation']): void;
  /**
   * Read the device's new items from the store (another node committed some: several nodes on one
   * database, docs/postgresql.md). Optional: a single node is told of every item by `push`.
   */
  pull?(): void;
}

/**
 * The live links by device. Built in buildApp before the plugins and given to each that needs it:
 * the link plugin registers its connections; writers elsewhere (the deadline scheduler, audit
 * alarms) push what they committed; a revocation disconnects; a link test asks who is online.
 */
export class LinkHub {
  readonly #byDevice = new Map<DeviceKey, Set<LiveLink>>();

  register(link: LiveLink): void {
    const key = deviceKey(link);
    let set = this.#byDevice.get(key);
    if (!set) this.#byDevice.set(key, (set = new Set()));
    set.add(link);
  }

  unregister(link: LiveLink): void {
    const key = deviceKey(link);
    const set = this.#byDevice.get(key);
    set?.delete(link);
    if (set?.size === 0) this.#byDevice.delete(key);
  }

  /** Hand new mailbox items to the open links of their devices (the rest read them from the mailbox). */
  push(delivered: readonly { device: DeviceKey; item: MailboxItem }[]): void {
    for (const { device, item } of delivered) {
      for (const link of this.#byDevice.get(device) ?? []) if (link.isOpen()) link.push(item);
    }
  }

  /** Have the open links of these devices read their new items from the store (a notification named them). */
  pull(devices: readonly DeviceKey[]): void {
    for (const device of devices) {
      for (const link of this.#byDevice.get(device) ?? []) if (link.isOpen()) link.pull?.();
    }
  }

  /** Have every open link read its new items (the listener was restored: notifications may have been lost). */
  pullAll(): void {
    for (const set of this.#byDevice.values()) for (const link of set) if (link.isOpen()) link.pull?.();
  }

  /** End the links of one certificate of a device (the signKey names it): a re-enrolled device keeps its new links. */
  disconnect(cert: { party: string; device: string; signKey: string }, code: HotlineErrorCode, message: string): void {
    for (const link of this.#byDevice.get(deviceKey(cert)) ?? []) if (link.signKey === cert.signKey) link.close(code, message);
  }

  /** A certificate was revoked: its live links are answered HL_ERR_CERT_REVOKED and closed. */
  revoked(cert: { party: string; device: string; signKey: string }): void {
    this.disconnect(cert, 'HL_ERR_CERT_REVOKED', 'this device certificate has been revoked');
  }

  /** Send a notice to every open link; returns how many got it. */
  noticeAll(notice: OperatorNotice): number {
    let n = 0;
    for (const set of this.#byDevice.values()) {
      for (const link of set) {
        if (!link.isOpen()) continue;
        link.notice(notice);
        n++;
      }
    }
    return n;
  }

  /**
   * A certificate was revoked here (posted, or passed on by a peer relay): every open link is told
   * at once, so that its client fetches the directory now rather than at its next refresh.
   */
  directoryChangedAll(revocation: DirectoryChangedFrame['revocation']): number {
    let n = 0;
    for (const set of this.#byDevice.values()) {
      for (const link of set) {
        if (!link.isOpen()) continue;
        // The revoked certificate's own links are being closed (HL_ERR_CERT_REVOKED): nothing to refresh there.
        if (link.party === revocation.party && link.device === revocation.device && link.signKey === revocation.signKey) continue;
        link.directoryChanged(revocation);
        n++;
      }
    }
    return n;
  }

  /** Whether a device of `party` with `role` has an open link now. */
  isOnline(party: string, role: Role): boolean {
    for (const set of this.#byDevice.values()) {
      for (const link of set) if (link.party === party && link.role === role && link.isOpen()) return true;
    }
    return false;
  }
}
