import type { UnlockedKey } from '../key-store.js';
import { textOf } from './panels/content-view.js';
import type { KeyValueStore, RecordStore } from '../../storage/kv.js';
import { SealedPrekeyStore } from '../../storage/sealed-prekey-store.js';
import type { RelayLinkStatus } from '../../../shared/protocol/status.js';
import { h, replace } from '../common/dom.js';
import { onLanguageChange } from '../common/i18n.js';
import { fatalView, pageHeader, SealedNotes } from '../common/shell.js';
import { bootConsole, openSession } from '../common/boot.js';
import { FrameScheduler } from '../common/frame-scheduler.js';
import { startAlarm } from './alarm.js';
import { errParams, type LiveState, type OperatorContext, type Panel, type SectionName } from './context.js';
import { errorKey } from '../common/error-text.js';
import {
  MAX_EVENTS,
  addAlarm,
  applyNote,
  initialConsoleData,
  latestTest,
  noteOf,
  notedIds,
  withoutNotes,
  withNotesOf,
  markLate,
  markRelayed,
  linkPairs as orderedLinkPairs,
  unconfirmedRecipients,
  type ConsoleData,
  type MessageNote,
} from './model.js';
import { auditAlarmPanel } from './panels/audit-alarm-panel.js';
import { composePanel } from './panels/compose-panel.js';
import { eventsPanel, toConsoleEvent } from './panels/events-panel.js';
import { elsewherePanel, linkPanel, statusPanel } from './panels/link-panel.js';
import { lineDownPanel, lineFromEvent, withLine } from './panels/line-panel.js';
import { leadLink } from './link-lock.js';
import { messagesPanel } from './panels/messages-panel.js';
import { peersPanel } from './panels/peers-panel.js';
import { releaseHeld } from './panels/sender-view.js';
import { clockParts } from './panels/clock.js';
import { openDrafts } from './panels/drafts.js';
import { guardWatch } from './watch-guard.js';

const DIRECTORY_REFRESH_MS = 5 * 60_000;
/** A console on watch waits at most this long between reconnect attempts: a relay back after a restart is seen within seconds. */
const RECONNECT_MAX_MS = 5000;

/**
 * The operator console: the unlocked device's session, one panel per concern (panels/), and the
 * client's events turned into redraws. What is drawn comes from the pure view model (model.ts).
 */
async function runConsole(root: HTMLElement, kv: KeyValueStore & RecordStore, unlocked: UnlockedKey): Promise<void> {
  const cert = unlocked.device.certificate.cert;
  const me = { party: cert.party, device: cert.device };
  const key = `${cert.party}/${cert.device}`;
  // Created inside the unlock click, so that the browser lets it sound later.
  const alarm = startAlarm();

  const { data, agreement, storage, client } = await openSession<ConsoleData>(kv, unlocked, {
    initial: initialConsoleData,
    stored: withoutNotes,
    client: (d) => ({
      testAgent: d.value.testAgent === true,
      backoff: { maxMs: RECONNECT_MAX_MS },
      // Every party witnesses the audit log: a checkpoint that fails its checks is an alarm here.
      cosign: true,
      // Its own prekeys, sealed like its other records: what is wrapped to them cannot be read
      // with the certificate key alone once their secrets are deleted (PROTOCOL.md "Prekeys and forward secrecy").
      prekeys: { store: new SealedPrekeyStore(kv, unlocked.data, `prekeys/${key}`) },
      // Checked at every seal, the automatic reseal after a directory change included: nothing is
      // encrypted to a peer key the operator has not confirmed (link tests carry no content). Such
      // a message is held in the outbox until the keys are confirmed (sender-view.ts), never dropped.
      approveRecipients: (recipients, draft) => (draft.linkTest ? [] : unconfirmedRecipients(recipients, me, d.value.confirmed).map((x) => `${x.party}/${x.device}`)),
    }),
  });
  const notes = await SealedNotes.open<MessageNote>(kv, unlocked.data, `console/${key}`);
  for (const [id, note] of notes.values) applyNote(data.value, id, note);
  // Data stored before notes existed keeps every message's text in its one record: move them out once.
  const unsaved = notedIds(data.value).filter((id) => !notes.values.has(id));
  if (unsaved.length > 0) {
    await notes.save(unsaved.map((id) => [id, noteOf(data.value, id)]));
    await data.save(() => undefined);
  }

  const live: LiveState = { connected: false, elsewhere: false, linkPairs: [], relayLines: [], serverOffset: 0 };
  /** Who waits for this tab to be connected after taking the link over. */
  const takeOverWaiters: (() => void)[] = [];
  const dirtySections = new Set<SectionName>();
  const ctx: OperatorContext = {
    me,
    key,
    cert,
    agreement,
    client,
    storage,
    data,
    live,
    saveNote: (id) => notes.save([[id, noteOf(data.value, id)]]),
    addEvent: (ev) => {
      const saved = data.save((d) => {
        // One line per cause: an error shown in the same words as the newest line (the relay
        // unreachable, reported by the link's attempts and by the requests that failed with them,
        // under three codes) replaces that line, with its time, instead of repeating it.
        const last = d.events[0];
        if (ev.kind === 'error' && last?.kind === 'error' && errorKey(last.params['code']) === errorKey(ev.params['code'])) {
          d.events[0] = ev;
          return;
        }
        d.events.unshift(ev);
        d.events.length = Math.min(d.events.length, MAX_EVENTS);
      });
      ctx.redraw('events');
      return saved;
    },
    redraw: (...sections) => {
      for (const s of sections) dirtySections.add(s);
      frames.schedule();
    },
    markInbox: (id) => messages.markInbox(id),
    markOutbox: (id) => messages.markOutbox(id),
    takeOver: () => {
      lead.takeOver();
      return new Promise((resolve) => takeOverWaiters.push(resolve));
    },
  };

  const compose = composePanel(ctx, await openDrafts(kv, unlocked, key));
  const line = lineDownPanel(ctx);
  const sections: Record<SectionName, Panel> = {
    status: statusPanel(ctx),
    elsewhere: elsewherePanel(ctx),
    line,
    auditAlarm: auditAlarmPanel(ctx),
    link: linkPanel(ctx),
    peers: peersPanel(ctx),
    compose,
    events: eventsPanel(ctx),
  };
  // The lock screen, idle auto-lock, desktop alerts and link-down banner (watch-guard.ts).
  const watch = await guardWatch(ctx, { kv, unlocked, root, alarm, lockStatus: line.lockEl });
  const messages = messagesPanel(ctx, await storage.read(key), alarm, () => frames.schedule(), (target) => compose.startReply(target));
  /** One frame's drawing: panels first, then changed rows, FLASH and IMMEDIATE before the rest. */
  const frames = new FrameScheduler(async (deadline) => {
    const due = [...dirtySections];
    dirtySections.clear();
    for (const name of due) sections[name].draw();
    return messages.drawRows(deadline);
  });
  const drawAll = () => {
    messages.resync();
    ctx.redraw('status', 'elsewhere', 'line', 'auditAlarm', 'link', 'peers', 'compose', 'events');
  };

  // Every tab of this console shows the same: what one stores, the others are told of (sealed).
  data.share(
    (current, stored) => withNotesOf(current, stored as ConsoleData),
    () => {
      ctx.redraw('status', 'elsewhere', 'line', 'auditAlarm', 'link', 'peers', 'compose', 'events');
      // Confirmed keys are compared with the directory the tab holding the link last stored.
      if (live.elsewhere) void client.loadStoredDirectory().catch(() => undefined);
      // Keys confirmed in another tab: what was held for them goes from the tab holding the link.
      else releaseHeld(ctx);
    },
  );
  notes.share((ids) => {
    for (const id of ids) {
      applyNote(data.value, id, notes.values.get(id)!);
      messages.markInbox(id);
      messages.markOutbox(id);
    }
  });

  /**
   * The link tests the server has judged so far (`GET /v1/status`, through the client's own
   * session: no second login), so that the answer is on screen at once.
   */
  const loadStatus = async () => {
    try {
      const status = await client.status();
      live.linkPairs = orderedLinkPairs(agreement, me, status.links);
      live.lastTest = latestTest(live.lastTest, status.links.map((p) => p.last));
      // The relay's line to its peers (two relays): what it reports now, newer than any event seen.
      if (status.relayLinks) {
        live.relayLines = status.relayLinks.reduce(withLine, live.relayLines);
        shareLines();
      }
      sections.status.draw();
      sections.link.draw();
      sections.line.draw();
    } catch {
      // An older server without /v1/status: the link events alone fill the status in.
    }
  };

  // What the client stored, here or in another tab of this console: redraw those rows.
  storage.onChange((device, change) => {
    if (device !== key) return;
    for (const id of change.inbox) messages.markInbox(id);
    for (const id of change.sent) messages.markOutbox(id);
    for (const k of change.outbox) if (k.startsWith('e:')) messages.markOutbox(k.slice(2));
  });

  // ----- client events -----
  client.on('connected', ({ serverTime }) => {
    live.connected = true;
    live.serverOffset = serverTime - Date.now();
    sections.status.draw();
    drawAll();
    void loadStatus();
    releaseHeld(ctx);
  });
  client.on('disconnected', () => {
    live.connected = false;
    sections.status.draw();
  });
  client.on('message', (m) => {
    const id = m.header.id;
    data.value.texts[id] = textOf(m.header, m.plaintext);
    // A translation is drawn beside its original too.
    if (m.header.translationOf) {
      messages.markInbox(m.header.translationOf.id);
      messages.markOutbox(m.header.translationOf.id);
    }
    data.value.inboxAcceptedAt[id] = m.acceptedAt;
    void ctx.saveNote(id);
    // A FLASH is drawn now, banner and alarm included, ahead of whatever routine drawing waits
    // for the next frame (the stored record is the one the client just wrote).
    if (m.header.precedence === 'FLASH') messages.showFlash(id, { header: m.header, envelopeHash: m.envelopeHash, receivedAt: m.acceptedAt });
    messages.markInbox(id);
  });
  client.on('receipt', (r) => {
    const b = r.receipt.receipt;
    if (!r.verified) {
      void ctx.addEvent({ at: Date.now(), kind: 'error', params: { code: r.error?.code ?? 'HL_ERR_RECEIPT_BAD_SIGNATURE', message: `receipt for ${b.messageId} from ${b.by.party}/${b.by.device} does not verify` } });
      return;
    }
    // Every rung above delivered is given by a person who read it: a colleague's will-comply acknowledges too.
    if (b.kind !== 'delivered' && b.by.party === me.party && messages.inInbox(b.messageId)) {
      data.value.ackedByColleague[b.messageId] ??= { by: `${b.by.party}/${b.by.device}`, at: b.at };
      void ctx.saveNote(b.messageId);
      messages.markInbox(b.messageId);
      return;
    }
    messages.markOutbox(b.messageId);
  });
  client.on('accepted', ({ id }) => messages.markOutbox(id));
  client.on('receipt-accepted', ({ messageId }) => {
    messages.markInbox(messageId);
    messages.markOutbox(messageId);
  });
  client.on('refused', (e) => {
    // The recipients changed (a peer device enrolled or revoked): look at the directory again,
    // so that a changed peer key blocks sending at once.
    if (e.code === 'HL_ERR_ENVELOPE_RECIPIENTS') void client.refreshDirectory().catch(() => undefined);
    void ctx.addEvent({ at: Date.now(), kind: 'error', params: { code: e.code, message: e.message } });
    // The refused item may have left the outbox.
    messages.resync();
  });
  client.on('error', (e) => void ctx.addEvent({ at: Date.now(), kind: 'error', params: errParams(e) }));
  // Fetched again at each connection, after a refusal and on the timer: peer keys are compared
  // with the confirmed set every time, and a change blocks sending until confirmed again.
  // A revocation pushed by the relay brings a directory fetch at once: messages from that sender
  // now show "sender revoked since".
  client.on('revoked-since', () => drawAll());
  client.on('directory', () => {
    ctx.redraw('peers', 'compose');
    // A held message whose recipients are all confirmed now (a new device revoked again) goes.
    releaseHeld(ctx);
  });
  // The line between the relays is known to the tab holding the link (its client gets the
  // relay's events and status): it tells this console's other tabs, sealed like all they share,
  // so that every tab shows the line down. A tab that finds the link held elsewhere asks.
  const Channel = (globalThis as { BroadcastChannel?: typeof BroadcastChannel }).BroadcastChannel;
  const lineChannel = Channel ? new Channel(`hotline-line/${key}`) : undefined;
  const shareLines = () => lineChannel?.postMessage(unlocked.data.seal({ lines: live.relayLines }));
  lineChannel?.addEventListener('message', (ev: MessageEvent<unknown>) => {
    if (typeof ev.data !== 'string') return;
    let said: { lines?: RelayLinkStatus[]; ask?: true };
    try {
      said = unlocked.data.open(ev.data) as typeof said;
    } catch {
      return;
    }
    if (said.ask && !live.elsewhere) shareLines();
    if (said.lines && live.elsewhere) {
      live.relayLines = said.lines.reduce(withLine, live.relayLines);
      ctx.redraw('status', 'line');
    }
  });
  const askLines = () => lineChannel?.postMessage(unlocked.data.seal({ ask: true }));
  const linesChanged = () => {
    ctx.redraw('status', 'line');
    shareLines();
  };

  client.on('link', (ev) => {
    if (ev.scope === 'relay') {
      // The hotline's line between the two relays, not a link test: the header and its banner.
      live.relayLines = withLine(live.relayLines, lineFromEvent(ev, me));
      linesChanged();
      return;
    }
    if (ev.type === 'link.test') live.lastTest = latestTest(live.lastTest, [ev]);
    ctx.redraw('status', 'link');
    void loadStatus();
  });
  // Two relays: the addressee's relay stored a message of this party (the `relayed` rung).
  client.on('relayed', (ev) => {
    markRelayed(data.value, ev.messageId, ev.at);
    void ctx.saveNote(ev.messageId);
    messages.markOutbox(ev.messageId);
  });
  // The relay's store was found corrupt: it refuses every write until restored (an operator notice).
  client.on('notice', (n) => void ctx.addEvent({ at: n.at, kind: 'notice', params: { reason: n.reason } }));
  client.on('link-test-sent', (s) => {
    live.lastSent = { to: s.to, at: s.at };
    ctx.redraw('link');
  });
  client.on('cosigned', (c) => {
    live.lastCosigned = { size: c.size, at: c.at };
    ctx.redraw('link');
  });
  client.on('event', (ev) => {
    // Raised here by the cosigner, or reported by another device of this party through the server.
    if (ev.type === 'audit.alarm') void data.save((d) => (d.alarms = addAlarm(d.alarms, { at: ev.at, party: ev.party, reason: ev.reason, ...('code' in ev && typeof ev.code === 'string' ? { code: ev.code } : {}) }))).then(() => ctx.redraw('auditAlarm'));
    // The server's judgement, kept with the message: a rung reached after its deadline is shown late.
    if (ev.type === 'deadline.met' && ev.late) {
      markLate(data.value, ev.messageId, ev.rung, ev.lateMs);
      void ctx.saveNote(ev.messageId);
      messages.markInbox(ev.messageId);
      messages.markOutbox(ev.messageId);
    }
    void ctx.addEvent(toConsoleEvent(ev));
  });

  // The watch works in UTC and quotes messages by date-time group: both always in the header.
  const clockEl = h('span', { class: 'clock', id: 'utc-clock' });
  const drawClock = () => {
    const now = Date.now() + live.serverOffset;
    replace(clockEl, ...clockParts(now));
  };
  const relayout = () => {
    replace(
      root,
      pageHeader('app_operator', h('div', { class: 'status' }, clockEl, sections.status.el), watch.lock),
      watch.linkDownEl,
      sections.auditAlarm.el,
      sections.elsewhere.el,
      sections.line.el,
      messages.bannerEl,
      messages.senderOverdueEl,
      h('main', { class: 'grid' }, h('div', { class: 'col' }, messages.findEl, messages.inboxEl, messages.outboxEl), h('div', { class: 'col side' }, sections.compose.el, watch.alertsEl, sections.link.el, sections.peers.el, sections.events.el)),
    );
    messages.drawTables();
    // Every row carries translated text: draw them all again.
    messages.clear();
    drawAll();
  };
  onLanguageChange(relayout);
  relayout();
  drawClock();
  setInterval(() => {
    messages.tick();
    drawClock();
  }, 1000);
  setInterval(() => {
    if (client.connected) void client.refreshDirectory().then(drawAll, () => undefined);
  }, DIRECTORY_REFRESH_MS);
  // One tab of this console holds the link; the others show what it stores and can take it over.
  const lead = leadLink(`hotline-link/${key}`, {
    held: () => {
      live.elsewhere = false;
      ctx.redraw('status', 'elsewhere', 'line', 'compose');
      client.start().then(
        () => {
          // The directory was fetched and verified as part of connecting: show the peers' keys now.
          drawAll();
          for (const resolve of takeOverWaiters.splice(0)) resolve();
        },
        (err: unknown) => {
          // Stopped because another tab took the link: no error.
          if (!live.elsewhere) replace(root, pageHeader('app_operator', null), fatalView(err));
        },
      );
    },
    lost: () => {
      live.elsewhere = true;
      live.connected = false;
      void client.stop();
      ctx.redraw('status', 'elsewhere', 'line', 'compose');
      void client.loadStoredDirectory().catch(() => undefined);
      askLines();
    },
  });
}

void bootConsole('operator', 'app_operator', runConsole);
