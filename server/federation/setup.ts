import { HotlineError } from '../../shared/errors.js';
import { relayOf } from '../../shared/crypto/keys.js';
import type { DeviceCertificate, Revocation, SignedPrekey } from '../../shared/protocol/schemas.js';
import { Directory } from '../directory.js';
import { WriteQueue } from '../store/write-queue.js';
import type { Write, WriteResult } from '../relay/records.js';
import { RelayLink, type RelayLinkOptions } from './relay-link.js';

/**
 * The write queue of a party's relay: after an envelope, receipt or refusal is committed, `onForward` tells
 * the relay links, which forward what their peer has not yet confirmed (read back from the store).
 */
export class RelayWriteQueue extends WriteQueue {
  onForward: () => void = () => {};
  /** The acceptance times of the envelope writes enqueued and not yet answered (committed or refused). */
  readonly #uncommitted = new Map<number, number>();
  #seq = 0;

  constructor(
    store: ConstructorParameters<typeof WriteQueue>[0],
    /** This relay's party: only its devices fetch from this relay. */
    private readonly local: string,
  ) {
    super(store);
  }

  override enqueue(write: Write, visible?: (result: WriteResult) => void): Promise<WriteResult> {
    // The relay decides mailboxes for every recipient (as a shared relay would); a party's relay
    // fills only its own party's: the other party's devices get their copy from their own relay.
    const own = (device: string) => device.startsWith(`${this.local}/`);
    if (write.kind === 'envelope' || write.kind === 'receipt') {
      write.mailboxes = write.mailboxes.filter(own);
      for (const e of write.effects?.events ?? []) e.mailboxes = e.mailboxes.filter(own);
    } else if (write.kind === 'refusal') {
      for (const e of write.effects?.events ?? []) e.mailboxes = e.mailboxes.filter(own);
    } else if (write.kind === 'events') {
      for (const e of write.events ?? []) e.mailboxes = e.mailboxes.filter(own);
    }
    const p = super.enqueue(write, visible);
    if (write.kind === 'envelope') {
      const k = this.#seq++;
      this.#uncommitted.set(k, write.acceptedAt);
      void p.finally(() => this.#uncommitted.delete(k));
    }
    if (write.kind === 'envelope' || write.kind === 'receipt' || write.kind === 'refusal') {
      void p.then((r) => {
        if (r.ok && r.status === 'new') this.onForward();
      });
    }
    return p;
  }

  /**
   * The earliest acceptance time of an envelope write of this process still waiting for its commit
   * (undefined: none): the drained watermark stays at or below it (PROTOCOL.md "Prekeys between relays").
   */
  oldestUncommitted(): number | undefined {
    let min: number | undefined;
    for (const at of this.#uncommitted.values()) if (min === undefined || at < min) min = at;
    return min;
  }
}

/** A change of a party's directory, as sent to the peer relays (a delta: PROTOCOL.md "relay-directory"). */
export interface DirectoryChange {
  certificates: DeviceCertificate[];
  revocations: Revocation[];
  /** A prekey one of its operator devices published (PROTOCOL.md "Prekeys between relays"). */
  prekeys?: SignedPrekey[];
}

/** The directory of a party's relay: an enrolment or revocation of its own party goes to the peers at once. */
export class RelayDirectory extends Directory {
  onLocalChange: (change: DirectoryChange) => void = () => {};

  constructor(
    agreement: ConstructorParameters<typeof Directory>[0],
    store: ConstructorParameters<typeof Directory>[1],
    private readonly local: string,
  ) {
    super(agreement, store);
  }

  override async enrol(value: unknown, now: number): Promise<DeviceCertificate> {
    const c = await super.enrol(value, now);
    if (c.cert.party === this.local) this.onLocalChange({ certificates: [c], revocations: [] });
    return c;
  }

  /** A prekey of one of this party's operators goes to the peers at once (the next link-up sends it too). */
  override async putPrekey(value: unknown, now: number): Promise<SignedPrekey> {
    const signed = await super.putPrekey(value, now);
    const p = signed.prekey;
    if (p.party === this.local && this.current(p.party, p.device, now).role === 'operator') {
      this.onLocalChange({ certificates: [], revocations: [], prekeys: [signed] });
    }
    return signed;
  }

  /** Any revocation stored here (the relay links end a link whose peer relay it revokes). */
  onRevoked: (rev: Revocation['revocation']) => void = () => {};

  /**
   * A revocation another node of this relay stored (several nodes on one database): the relay links
   * here end a link whose peer relay it revokes, as {@link revoke} does. Not passed on to peer
   * relays: the node that stored it does that.
   */
  override learn(row: DeviceCertificate | Revocation): boolean {
    const fresh = super.learn(row);
    if (fresh && 'revocation' in row) this.onRevoked(row.revocation);
    return fresh;
  }

  override async revoke(value: unknown, now: number): Promise<Revocation> {
    const r = await super.revoke(value, now);
    this.onRevoked(r.revocation);
    if (r.revocation.party === this.local) this.onLocalChange({ certificates: [], revocations: [r] });
    return r;
  }
}

type Shared = Omit<RelayLinkOptions, 'peer' | 'peerUrls'> & { peerUrls?: Readonly<Record<string, readonly string[]>> };

/**
 * One link per other party that runs its own relay in the agreement. Refuses to start a relay
 * whose certificate the agreement does not back (HL_ERR_CONFIG_INVALID).
 */
export function relayLinksFor(o: Shared): RelayLink[] {
  const me = o.identity.certificate.cert;
  const mine = relayOf(o.agreement, me.party);
  if (!mine) throw new HotlineError('HL_ERR_CONFIG_INVALID', `the agreement names no relay of ${me.party}; a shared relay runs without --relay`);
  if (mine.logKey !== me.logKey) throw new HotlineError('HL_ERR_CONFIG_INVALID', `the relay certificate's log key is not the one the agreement names for ${me.party}`);
  return (o.agreement.relays ?? [])
    .filter((r) => r.party !== me.party)
    .map((r) => new RelayLink({ ...o, peer: r.party, peerUrls: o.peerUrls?.[r.party] ?? r.urls }));
}
