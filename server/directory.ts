import { verifyDeviceCertificate, verifyRevocation } from '../shared/crypto/keys.js';
import { deviceName, newestValid, requireValid, revocationKey } from '../shared/crypto/directory.js';
import { keyIdOf } from '../shared/crypto/keys.js';
import { prekeyInDate, prekeyRotationMs, verifyPrekey } from '../shared/crypto/prekey.js';
import { fromBase64 } from '../shared/encoding/base64.js';
import { HotlineError } from '../shared/errors.js';
import type { Agreement, DeviceCertBody, DeviceCertificate, Revocation, SignedPrekey } from '../shared/protocol/schemas.js';

type Role = DeviceCertBody['role'];
import type { Store } from './store/store.js';
import { deviceEnrolledEntry, deviceRevokedEntry } from './relay/audit-entries.js';

/**
 * The server's view of the device directory: every stored certificate and revocation, held in
 * memory (loaded from the store at start, updated on each enrolment and revocation) so that the
 * hot path (each envelope) needs no store read. A certificate is accepted only if it chains to the
 * agreement, so enrolment needs no token (docs/design.md "Trust model").
 *
 * The set of valid certificates is cached (issue 9: rebuilding and sorting it twice per message was
 * 53 % of the server's time with 5,000 devices). It can only change at an enrolment, a revocation,
 * or when the clock crosses a certificate's `notBefore` or `notAfter`; so the cache keeps the
 * window `[from, until)` between the nearest such times around the moment it was computed, is
 * patched for the one device an enrolment or revocation concerns, and is recomputed in full only
 * when asked about a time outside its window.
 */
export class Directory {
  private readonly certificates: DeviceCertificate[] = [];
  /** Every certificate of a device, by `party/device`, in enrolment order. */
  private readonly byDevice = new Map<string, DeviceCertificate[]>();
  private readonly stored = new Set<string>();
  private revocations: Revocation[] = [];
  private revokedKeys = new Set<string>();
  private cache: ValidSet | undefined;
  /** Stored prekeys by `party/device`, each with its keyId (PROTOCOL.md "Prekeys and forward secrecy"). */
  private readonly prekeys = new Map<string, { signed: SignedPrekey; keyId: string }[]>();
  /**
   * A revocation became known now (not one known already): the relay tells every open link.
   * `elsewhere` when another node on the same database stored it (learn/sync): this node then also
   * ends the revoked certificate's links, as the node that stored it did with its own.
   */
  onNewRevocation: (rev: Revocation['revocation'], elsewhere: boolean) => void = () => {};

  constructor(
    private readonly agreement: Agreement,
    private readonly store: Store,
  ) {}

  async load(): Promise<void> {
    this.certificates.length = 0;
    this.byDevice.clear();
    this.stored.clear();
    for (const c of await this.store.listDevices()) this.add(c);
    this.revocations = await this.store.listRevocations();
    this.revokedKeys = new Set(this.revocations.map((r) => revocationKey(r.revocation)));
    this.cache = undefined;
    this.prekeys.clear();
    for (const p of await this.store.listPrekeys(0)) this.addPrekey(p);
  }

  /**
   * Verify a device's signed prekey against that device's valid certificate (the one whose signKey
   * it names) and store it. Self-authenticating like an enrolment: it needs no token. Idempotent.
   * Refused: not signed by the certificate key (HL_ERR_PREKEY_BAD_SIGNATURE), no such valid
   * certificate (the HL_ERR_CERT_* code), in date for more than two rotation periods or no longer
   * in date (HL_ERR_PREKEY_VALIDITY).
   */
  async putPrekey(value: unknown, now: number): Promise<SignedPrekey> {
    const claimed = (value as Partial<SignedPrekey> | null)?.prekey;
    if (typeof claimed?.party !== 'string' || typeof claimed.device !== 'string') {
      throw new HotlineError('HL_ERR_PREKEY_MALFORMED', 'a prekey names its party and device');
    }
    // The device's valid certificate now: a prekey naming another signKey is refused by verifyPrekey.
    const cert = this.current(claimed.party, claimed.device, now);
    const p = await verifyPrekey(value, cert, prekeyRotationMs(this.agreement));
    if (p.notAfter <= now) throw new HotlineError('HL_ERR_PREKEY_VALIDITY', `prekey of ${p.party}/${p.device} is no longer in date`);
    const signed = value as SignedPrekey;
    if (await this.store.putPrekey(signed, now)) this.addPrekey(signed);
    return signed;
  }

  /**
   * Read the prekeys in date from the store again: on PostgreSQL several nodes share it, and a
   * device publishes its prekey through one of them (README "Running on PostgreSQL"). Called before
   * the directory is served, so a sender's directory and this node's admission agree. The store
   * holds only prekeys some node verified.
   */
  async refreshPrekeys(now: number): Promise<void> {
    for (const p of await this.store.listPrekeys(now)) this.addPrekey(p);
  }

  /** The stored prekeys of `cert`'s device, made with its key, in date at `now`. */
  prekeysOf(cert: Pick<DeviceCertBody, 'party' | 'device' | 'signKey'>, now: number): { signed: SignedPrekey; keyId: string }[] {
    return (this.prekeys.get(deviceName(cert)) ?? []).filter((p) => p.signed.prekey.signKey === cert.signKey && prekeyInDate(p.signed.prekey, now));
  }

  /** The keyIds an envelope may be wrapped to for `cert`'s device at `now` (empty: its certificate's box key). */
  prekeyIds = (cert: DeviceCertBody, now: number): string[] => this.prekeysOf(cert, now).map((p) => p.keyId);

  /** The prekeys in date at `now` of the devices valid now: what the directory serves. */
  validPrekeys(now: number): SignedPrekey[] {
    return this.valid(now).all().flatMap((c) => this.prekeysOf(c.cert, now).map((p) => p.signed));
  }

  /** The prekeys in date at `now` of `party`'s valid operator devices: what its relay forwards to its peers. */
  operatorPrekeys(now: number, party: string): SignedPrekey[] {
    return this.validBodies(now, [party], ['operator']).flatMap((c) => this.prekeysOf(c, now).map((p) => p.signed));
  }

  private addPrekey(signed: SignedPrekey): void {
    const name = deviceName(signed.prekey);
    const list = this.prekeys.get(name) ?? [];
    if (list.some((p) => p.signed.prekey.boxKey === signed.prekey.boxKey)) return;
    list.push({ signed, keyId: keyIdOf(fromBase64(signed.prekey.boxKey, 32)) });
    this.prekeys.set(name, list);
  }

  /** Revocations name the certificate's signKey: a re-enrolled device of the same name is not revoked. */
  isRevoked = (cert: { party: string; device: string; signKey: string }): boolean => this.revokedKeys.has(revocationKey(cert));

  /** Verify and store a certificate. Idempotent. */
  async enrol(value: unknown, now: number): Promise<DeviceCertificate> {
    await verifyDeviceCertificate(this.agreement, value, { now, isRevoked: this.isRevoked });
    const certificate = value as DeviceCertificate;
    if (await this.store.putDevice(certificate, now, deviceEnrolledEntry(certificate, now))) this.addCertificate(certificate);
    return certificate;
  }

  /** Verify and store a revocation. Idempotent. */
  async revoke(value: unknown, now: number): Promise<Revocation> {
    const rev = await verifyRevocation(this.agreement, value);
    if ((await this.store.putRevocation(rev, now, deviceRevokedEntry(rev, now))) && this.addRevocation(rev)) this.onNewRevocation(rev.revocation, false);
    return rev;
  }

  /**
   * A certificate or revocation another node stored (several nodes on one database: a notification
   * named it and it was read from the store). Applied as if stored here; not verified again, as
   * {@link load} does not: the store holds only what a node verified. Idempotent: true when it
   * was new here.
   */
  learn(row: DeviceCertificate | Revocation): boolean {
    if ('cert' in row) return this.addCertificate(row);
    if (!this.addRevocation(row)) return false;
    this.onNewRevocation(row.revocation, true);
    return true;
  }

  /**
   * Read the whole directory from the store again and {@link learn} what is new: after the listening
   * connection came back (notifications sent while it was away are lost, the rows are not).
   * Returns how many rows were new here.
   */
  async sync(): Promise<number> {
    const [certificates, revocations] = await Promise.all([this.store.listDevices(), this.store.listRevocations()]);
    return [...certificates, ...revocations].filter((row) => this.learn(row)).length;
  }

  /**
   * Every stored certificate that is not among {@link validCertificates} now: revoked, expired, or
   * superseded by a re-enrolment. Clients need them to verify a message or receipt at the time the
   * relay accepted it (PROTOCOL.md "Revocation is about the time of acceptance").
   */
  pastCertificates(now: number): DeviceCertificate[] {
    const valid = new Set(this.valid(now).all());
    return this.certificates.filter((c) => !valid.has(c));
  }

  allRevocations(): Revocation[] {
    return [...this.revocations];
  }

  /**
   * The currently valid certificates (in date, not revoked), one per device, in `party/device`
   * order: when a device was re-enrolled, the newest valid certificate wins.
   */
  validCertificates(now: number): DeviceCertificate[] {
    return [...this.valid(now).all()];
  }

  /**
   * The bodies of the currently valid certificates, in `party/device` order; with `parties`, only
   * those of these parties, and with `roles` only devices of these roles (O(k) in the devices
   * returned: routing an envelope needs the operators and archives, not the auditors, however many
   * of those are enrolled).
   */
  validBodies(now: number, parties?: readonly string[], roles?: readonly Role[]): DeviceCertBody[] {
    if (parties === undefined) return this.valid(now).all().map((c) => c.cert);
    const lists = [...new Set(parties)].map((p) => this.valid(now).ofParty(p, roles));
    if (lists.length === 1) return [...lists[0]!];
    return lists.flat().sort((a, b) => (deviceName(a) < deviceName(b) ? -1 : 1));
  }

  /**
   * The valid certificate of a device now (optionally the one with this signKey), or the error
   * that says why there is none: unknown, revoked, expired, not yet valid. O(k) in the device's
   * certificates.
   */
  current(party: string, device: string, now: number, signKey?: string): DeviceCertBody {
    const mine = (this.byDevice.get(deviceName({ party, device })) ?? []).filter((c) => signKey === undefined || c.cert.signKey === signKey);
    return requireValid({ party, device }, mine, now, this.isRevoked).cert;
  }

  /** The device's valid certificate at `at` by the validCertificates rule, or undefined. */
  resolve(name: string, at: number): DeviceCertificate | undefined {
    return newestValid(this.byDevice.get(name) ?? [], at, this.isRevoked);
  }

  private valid(now: number): ValidSet {
    if (!this.cache?.covers(now)) this.cache = new ValidSet(this, this.certificates, now);
    return this.cache;
  }

  private addCertificate(c: DeviceCertificate): boolean {
    if (!this.add(c)) return false;
    this.cache?.update(this, c.cert);
    return true;
  }

  /** Remember a stored revocation; false when it is known already. */
  private addRevocation(rev: Revocation): boolean {
    const key = revocationKey(rev.revocation);
    if (this.revokedKeys.has(key)) return false;
    this.revocations.push(rev);
    this.revokedKeys.add(key);
    this.cache?.update(this, rev.revocation);
    return true;
  }

  /** Remember a stored certificate; false when that exact one is known already. */
  private add(c: DeviceCertificate): boolean {
    const key = revocationKey(c.cert);
    if (this.stored.has(key)) return false;
    this.stored.add(key);
    this.certificates.push(c);
    const name = deviceName(c.cert);
    const list = this.byDevice.get(name);
    if (list) list.push(c);
    else this.byDevice.set(name, [c]);
    return true;
  }
}

/**
 * The valid certificates at one moment `at`, and the window `[from, until)` around it in which no
 * certificate's validity changes (each `notBefore` and `notAfter` is such a boundary).
 */
class ValidSet {
  private from = -Infinity;
  private until = Infinity;
  private readonly byDevice = new Map<string, DeviceCertificate>();
  private readonly byParty = new Map<string, Map<string, DeviceCertBody>>();
  // Sorted views, made on demand and dropped when a device of theirs changes.
  private sorted: DeviceCertificate[] | undefined;
  private readonly sortedParty = new Map<string, Map<string, DeviceCertBody[]>>();

  constructor(
    directory: Directory,
    certificates: readonly DeviceCertificate[],
    private readonly at: number,
  ) {
    const names = new Set<string>();
    for (const c of certificates) {
      this.narrow(c.cert);
      names.add(deviceName(c.cert));
    }
    for (const name of names) this.set(name, directory.resolve(name, at));
  }

  covers(now: number): boolean {
    return now >= this.from && now < this.until;
  }

  /** A certificate of `ref`'s device was enrolled or revoked: recompute that device only. */
  update(directory: Directory, ref: { party: string; device: string; notBefore?: number; notAfter?: number }): void {
    if (ref.notBefore !== undefined && ref.notAfter !== undefined) this.narrow({ notBefore: ref.notBefore, notAfter: ref.notAfter });
    const name = deviceName(ref);
    this.set(name, directory.resolve(name, this.at));
  }

  all(): readonly DeviceCertificate[] {
    this.sorted ??= [...this.byDevice.values()].sort((a, b) => (deviceName(a.cert) < deviceName(b.cert) ? -1 : 1));
    return this.sorted;
  }

  ofParty(party: string, roles?: readonly Role[]): readonly DeviceCertBody[] {
    let views = this.sortedParty.get(party);
    if (!views) this.sortedParty.set(party, (views = new Map()));
    const key = roles === undefined ? '*' : roles.join(',');
    let list = views.get(key);
    if (!list) {
      list = [...(this.byParty.get(party)?.values() ?? [])]
        .filter((c) => roles === undefined || roles.includes(c.role))
        .sort((a, b) => (deviceName(a) < deviceName(b) ? -1 : 1));
      views.set(key, list);
    }
    return list;
  }

  private narrow(c: { notBefore: number; notAfter: number }): void {
    for (const t of [c.notBefore, c.notAfter]) {
      if (t <= this.at) this.from = Math.max(this.from, t);
      else this.until = Math.min(this.until, t);
    }
  }

  private set(name: string, c: DeviceCertificate | undefined): void {
    const party = name.slice(0, name.indexOf('/'));
    const prev = this.byDevice.get(name);
    if (prev === c) return;
    this.sorted = undefined;
    this.sortedParty.delete(party);
    if (prev) this.byParty.get(party)?.delete(name);
    if (!c) {
      this.byDevice.delete(name);
      return;
    }
    this.byDevice.set(name, c);
    let members = this.byParty.get(party);
    if (!members) {
      members = new Map();
      this.byParty.set(party, members);
    }
    members.set(name, c.cert);
  }
}
