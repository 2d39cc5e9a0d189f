import { HotlineError } from '../../../shared/errors.js';
import { KeyStore, type UnlockedKey } from '../key-store.js';
import type { KeyValueStore } from '../../storage/kv.js';
import { SealedRecord } from '../common/shell.js';
import type { Alarm } from './alarm.js';
import type { OperatorContext } from './context.js';
import { desktopAlerts } from './desktop-alerts.js';
import { LockScreen, watchIdle, type LockAlert } from './lock-screen.js';
import { alertsPanel, DEFAULT_IDLE_MINUTES } from './panels/alerts-panel.js';
import { linkDownPanel } from './panels/link-down-panel.js';

/** This device's lock settings, sealed like the rest of its console data. */
interface LockSettings {
  idleMinutes?: number;
}

export interface WatchGuard {
  /** Lock the console now (the header's Lock button). */
  lock(): void;
  /** The link-down banner with "Reconnect now", for the top of the page. */
  readonly linkDownEl: HTMLElement;
  /** The "Lock and alerts" card (idle minutes, desktop alerts). */
  readonly alertsEl: HTMLElement;
}

export interface WatchGuardOptions {
  kv: KeyValueStore;
  unlocked: UnlockedKey;
  /** The console's content, covered while locked. */
  root: HTMLElement;
  alarm: Alarm;
  /** Shown on the lock screen (the hotline line's state, kept up to date by its panel). */
  lockStatus?: HTMLElement;
}

/**
 * What keeps a watch from missing a FLASH when nobody looks at the console (issue 10, problem 4):
 * the lock screen and the idle auto-lock (lock-screen.ts), desktop notifications while the tab is
 * hidden or locked (desktop-alerts.ts) and the link-down banner. Wired to the client's events
 * here, beside the console's own handlers in main.ts, which go on drawing (and sounding) as before.
 */
export async function guardWatch(ctx: OperatorContext, o: WatchGuardOptions): Promise<WatchGuard> {
  const settings = await SealedRecord.open<LockSettings>(o.kv, o.unlocked.data, `console-lock/${ctx.key}`, () => ({}));
  const store = new KeyStore(o.kv, 'operator');
  const screen = new LockScreen({
    root: o.root,
    device: ctx.key,
    ...(o.lockStatus ? { status: o.lockStatus } : {}),
    async verify(passphrase) {
      const k = await store.unlock(passphrase);
      const c = k.device.certificate.cert;
      // Another key imported in this browser meanwhile does not open this console.
      if (`${c.party}/${c.device}` !== ctx.key) throw new HotlineError('HL_ERR_KEY_INVALID', 'the stored key is not the one this console runs with');
    },
  });
  const alerts = desktopAlerts();
  const unseen = () => document.hidden || screen.locked;

  // New inbox records, stored by this tab's client or by the tab holding the link: every tab's lock
  // screen lists them. The desktop notification comes from the tab holding the link only, once.
  const known = new Set(Object.keys((await ctx.storage.read(ctx.key)).inbox));
  ctx.storage.onChange((device, change) => {
    if (device !== ctx.key) return;
    const fresh = change.inbox.filter((id) => !known.has(id));
    if (fresh.length === 0) return;
    for (const id of fresh) known.add(id);
    void ctx.storage.read(ctx.key).then((state) => {
      for (const id of fresh) {
        const header = state.inbox[id]?.header;
        if (!header || (header.precedence !== 'FLASH' && header.precedence !== 'IMMEDIATE')) continue;
        const from = `${header.from.party}/${header.from.device}`;
        const exercise = header.exercise === true;
        screen.alert({ kind: 'message', id, precedence: header.precedence, from, exercise, at: state.inbox[id]!.receivedAt });
        if (unseen() && !ctx.live.elsewhere) alerts.notify({ id, precedence: header.precedence, from, exercise });
      }
    });
  });
  const overdue = (a: LockAlert) => {
    if (!screen.locked) return;
    screen.alert(a);
    // The FLASH alarm sounds on by itself while a FLASH waits; a missed deadline is heard too.
    o.alarm.chime();
  };
  // A missed deadline, and a colleague's acknowledgement that settles it, reach only the tab
  // holding the link (its client gets the relay's events): it tells the other tabs of this
  // console, so that every lock screen lists the same. Sealed under the data key like everything
  // the tabs share, although it carries no content.
  const Channel = (globalThis as { BroadcastChannel?: typeof BroadcastChannel }).BroadcastChannel;
  const overdueChannel = Channel ? new Channel(`hotline-overdue/${ctx.key}`) : undefined;
  overdueChannel?.addEventListener('message', (ev: MessageEvent<unknown>) => {
    if (typeof ev.data !== 'string') return;
    let a: LockAlert | { kind: 'settled'; id: string };
    try {
      a = o.unlocked.data.open(ev.data) as typeof a;
    } catch {
      return;
    }
    if (a.kind === 'overdue') overdue(a);
    else if (a.kind === 'settled') screen.settled(a.id);
  });
  ctx.client.on('event', (ev) => {
    if (ev.type !== 'deadline.missed') return;
    const inbound = ev.to === ctx.me.party;
    const a: LockAlert = { kind: 'overdue', id: ev.messageId, precedence: ev.precedence, inbound, party: inbound ? ev.from : ev.to, rung: ev.rung, level: ev.level, at: ev.at };
    overdueChannel?.postMessage(o.unlocked.data.seal(a));
    overdue(a);
  });
  ctx.client.on('receipt', (r) => {
    const b = r.receipt.receipt;
    // Any rung above delivered settles it (a will-comply acknowledges too).
    if (!r.verified || b.kind === 'delivered' || b.by.party !== ctx.me.party) return;
    overdueChannel?.postMessage(o.unlocked.data.seal({ kind: 'settled', id: b.messageId }));
    screen.settled(b.messageId);
  });

  const idleMinutes = () => settings.value.idleMinutes ?? DEFAULT_IDLE_MINUTES;
  watchIdle(idleMinutes, () => screen.lockThisTab());
  const panel = alertsPanel({
    alerts,
    idleMinutes,
    setIdleMinutes: (minutes) => settings.save((s) => (s.idleMinutes = minutes)),
    signOut: () => void ctx.client.stop().finally(() => location.reload()),
  });
  return { lock: () => screen.lock(), linkDownEl: linkDownPanel(ctx).el, alertsEl: panel.el };
}
