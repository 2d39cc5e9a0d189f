import { beforeAll, describe, expect, it } from 'vitest';
import {
  MAX_ALARMS,
  addAlarm,
  dateTimeGroup,
  unreadTitle,
  certIdentity,
  crossesRelays,
  flashAlarms,
  inboxRows,
  initialConsoleData,
  latestTest,
  linkPairs,
  markRelayed,
  noteOf,
  applyNote,
  outRungs,
  outboxRows,
  peerKeys,
  peerTrust,
  unconfirmedRecipients,
} from '../../../client/console/operator/model.js';
import { expectedRecipients } from '../../../shared/crypto/envelope.js';
import { dictionaries } from '../../../client/console/common/i18n.js';
import { initialState, type ClientState } from '../../../client/storage/client-storage.js';
import type { DeviceCertBody, EnvelopeHeader, Precedence } from '../../../shared/protocol/schemas.js';
import { makeDeployment, type TestDeployment } from '../../helpers/fixtures.js';
import { lineFromEvent, lineReason, withLine } from '../../../client/console/operator/panels/line-panel.js';
import { setLanguage } from '../../../client/console/common/i18n.js';

let dep: TestDeployment;
beforeAll(async () => {
  dep = await makeDeployment();
});

function header(id: string, precedence: Precedence, from: string, to: string, extra: Partial<EnvelopeHeader> = {}): EnvelopeHeader {
  return { id, precedence, from: { party: from, device: 'x' }, to, sentAt: 1_000, seq: 1, ...extra } as unknown as EnvelopeHeader;
}

/** An inbox record as the client stores it (its optional fields vary with the client's version). */
function inbox(rec: { header: EnvelopeHeader; envelopeHash: string; receivedAt: number; acknowledgedAt?: number }): ClientState['inbox'][string] {
  return { status: 'ok', ...rec } as ClientState['inbox'][string];
}

describe('inboxRows / flashAlarms', () => {
  it('counts the acknowledgement deadline from acceptedAt, ends it on acknowledgement, and raises the alarm only for unacknowledged FLASH to us', () => {
    const state: ClientState = initialState('cn-mnd/cn-op-1');
    state.inbox.a = inbox({ header: header('a', 'FLASH', 'jp-mod', 'cn-mnd'), envelopeHash: 'h', receivedAt: 5_000 });
    state.inbox.b = inbox({ header: header('b', 'ROUTINE', 'jp-mod', 'cn-mnd'), envelopeHash: 'h', receivedAt: 6_000, acknowledgedAt: 7_000 });
    state.inbox.c = inbox({ header: header('c', 'FLASH', 'cn-mnd', 'jp-mod'), envelopeHash: 'h', receivedAt: 8_000 });
    state.inbox.t = inbox({ header: header('t', 'ROUTINE', 'jp-mod', 'cn-mnd', { linkTest: true }), envelopeHash: 'h', receivedAt: 9_000 });
    const data = initialConsoleData();
    data.inboxAcceptedAt.a = 4_000;
    const rows = inboxRows(state, data, dep.agreement, { party: 'cn-mnd' });
    expect(rows.map((r) => r.id)).toEqual(['c', 'b', 'a']);
    const a = rows.find((r) => r.id === 'a')!;
    expect(a.dueAt).toBe(4_000 + dep.agreement.deadlines.FLASH.acknowledgedMs);
    expect(rows.find((r) => r.id === 'b')!.dueAt).toBeUndefined();
    expect(rows.find((r) => r.id === 'c')!.answerable).toBe(false);
    expect(flashAlarms(rows).map((r) => r.id)).toEqual(['a']);
    data.ackedByColleague.a = { by: 'cn-mnd/cn-op-2', at: 4_500 };
    expect(flashAlarms(inboxRows(state, data, dep.agreement, { party: 'cn-mnd' }))).toEqual([]);
  });
});

describe('outboxRows', () => {
  it('climbs the rungs sent → accepted → delivered → acknowledged with the next deadline of each', () => {
    const state: ClientState = initialState('jp-mod/jp-op-1');
    const d = dep.agreement.deadlines.IMMEDIATE;
    state.outbox['e:s'] = {
      kind: 'envelope',
      id: 's',
      draft: { to: 'cn-mnd', precedence: 'IMMEDIATE', plaintext: { body: 'x', lang: 'en' } },
      envelope: { header: header('s', 'IMMEDIATE', 'jp-mod', 'cn-mnd') } as never,
      composedAt: 100,
      resealed: 0,
    };
    const by = { party: 'cn-mnd', device: 'cn-op-1' };
    state.sent.a = { header: header('a', 'IMMEDIATE', 'jp-mod', 'cn-mnd', { sentAt: 2_000 }), envelopeHash: 'h', acceptedAt: 2_000, receipts: [] };
    state.sent.d = { header: header('d', 'IMMEDIATE', 'jp-mod', 'cn-mnd', { sentAt: 3_000 }), envelopeHash: 'h', acceptedAt: 3_000, receipts: [{ kind: 'delivered', by, at: 3_100 } as never] };
    state.sent.k = {
      header: header('k', 'IMMEDIATE', 'jp-mod', 'cn-mnd', { sentAt: 4_000 }),
      envelopeHash: 'h',
      acceptedAt: 4_000,
      receipts: [{ kind: 'delivered', by, at: 4_100 } as never, { kind: 'acknowledged', by, at: 4_200 } as never],
    };
    const rows = Object.fromEntries(outboxRows(state, initialConsoleData(), dep.agreement).map((r) => [r.id, r]));
    expect(rows.s).toMatchObject({ rung: 'sent', dueAt: 100 + d.deliveredMs });
    expect(rows.a).toMatchObject({ rung: 'accepted', dueAt: 2_000 + d.deliveredMs });
    expect(rows.d).toMatchObject({ rung: 'delivered', dueAt: 3_000 + d.acknowledgedMs });
    expect(rows.k!.rung).toBe('acknowledged');
    expect(rows.k!.dueAt).toBeUndefined();
    expect(rows.k!.receipts.at(-1)).toEqual({ kind: 'acknowledged', by: 'cn-mnd/cn-op-1', at: 4_200 });
    // The sender's view: when each rung was reached (the first receipt of each kind).
    expect(rows.s!.rungAt).toEqual({ sent: 1_000 });
    expect(rows.a!.rungAt).toEqual({ sent: 2_000, accepted: 2_000 });
    expect(rows.k!.rungAt).toEqual({ sent: 4_000, accepted: 4_000, delivered: 4_100, acknowledged: 4_200 });

    // Its receipt came before its `accepted` (PROTOCOL.md "Delivery before durability"): still in
    // the outbox and already with a sent record; one row, delivered, not yet accepted.
    state.sent.s = { header: header('s', 'IMMEDIATE', 'jp-mod', 'cn-mnd'), envelopeHash: 'h', receipts: [{ kind: 'delivered', by, at: 1_100 } as never] };
    const again = outboxRows(state, initialConsoleData(), dep.agreement).filter((r) => r.id === 's');
    expect(again).toHaveLength(1);
    expect(again[0]).toMatchObject({ rung: 'delivered', rungAt: { sent: 1_000, delivered: 1_100 } });
  });

  it('lists a held message with the devices it waits for, its text from the draft, and its delivery deadline from when it was composed', () => {
    const state: ClientState = initialState('jp-mod/jp-op-1');
    state.outbox['e:h'] = {
      kind: 'held',
      id: 'h',
      draft: { to: 'cn-mnd', precedence: 'FLASH', plaintext: { body: 'held text', subject: 'held', lang: 'ja' }, exercise: true },
      composedAt: 500,
      resealed: 1,
      devices: ['cn-mnd/cn-op-2'],
      heldAt: 600,
    };
    const [row] = outboxRows(state, initialConsoleData(), dep.agreement);
    expect(row).toMatchObject({
      id: 'h',
      rung: 'held',
      held: ['cn-mnd/cn-op-2'],
      header: { id: 'h', to: 'cn-mnd', precedence: 'FLASH', sentAt: 500, exercise: true },
      text: { body: 'held text', subject: 'held', lang: 'ja' },
      rungAt: {},
      dueAt: 500 + dep.agreement.deadlines.FLASH.deliveredMs,
    });
  });
});

describe('the relayed rung (two relays)', () => {
  it('is on the ladder only where the message crosses two relays, and is reached by `message.relayed` (kept in the sealed note) or implied by a receipt', () => {
    const two = { ...dep.agreement, v: 2 as const, relays: [{ party: 'jp-mod', urls: ['https://jp.example'], logKey: dep.agreement.logKey }, { party: 'cn-mnd', urls: ['https://cn.example'], logKey: dep.agreement.logKey }] };
    const half = { ...two, relays: [two.relays[0]!] };
    expect(crossesRelays(dep.agreement, 'jp-mod', 'cn-mnd')).toBe(false);
    expect(crossesRelays(two, 'jp-mod', 'cn-mnd')).toBe(true);
    // One party on its own relay, the other on the shared one: still a hop between two relays.
    expect(crossesRelays(half, 'jp-mod', 'cn-mnd')).toBe(true);
    expect(outRungs(dep.agreement, 'jp-mod', 'cn-mnd')).toEqual(['sent', 'accepted', 'delivered', 'acknowledged']);
    expect(outRungs(two, 'jp-mod', 'cn-mnd')).toEqual(['sent', 'accepted', 'relayed', 'delivered', 'acknowledged']);

    const state: ClientState = initialState('jp-mod/jp-op-1');
    const by = { party: 'cn-mnd', device: 'cn-op-1' };
    state.sent.r = { header: header('r', 'FLASH', 'jp-mod', 'cn-mnd', { sentAt: 2_000 }), envelopeHash: 'h', acceptedAt: 2_010, receipts: [] };
    state.sent.d = { header: header('d', 'FLASH', 'jp-mod', 'cn-mnd', { sentAt: 3_000 }), envelopeHash: 'h', acceptedAt: 3_010, receipts: [{ kind: 'delivered', by, at: 3_100 } as never] };
    const data = initialConsoleData();
    markRelayed(data, 'r', 2_050);
    // A second report (a reconnection redelivers the event) keeps the first time.
    markRelayed(data, 'r', 2_090);
    const rows = Object.fromEntries(outboxRows(state, data, two).map((x) => [x.id, x]));
    expect(rows.r).toMatchObject({ rung: 'relayed', rungAt: { sent: 2_000, accepted: 2_010, relayed: 2_050 }, dueAt: 2_010 + two.deadlines.FLASH.deliveredMs });
    expect(rows.d).toMatchObject({ rung: 'delivered', rungAt: { sent: 3_000, accepted: 3_010, delivered: 3_100 } });
    // Kept in the message's sealed note, and back from it (another tab, a reload).
    const again = initialConsoleData();
    applyNote(again, 'r', noteOf(data, 'r'));
    expect(again.relayed).toEqual({ r: 2_050 });
  });

  it('the line between the relays: each peer once, the newer report kept, its reason told in the interface language', () => {
    const down = lineFromEvent({ type: 'link.down', scope: 'relay', from: 'jp-mod', to: 'cn-mnd', ok: false, reason: 'no heartbeat from the relay of cn-mnd for 15 s', at: 2_000 }, { party: 'jp-mod' });
    expect(down).toEqual({ peer: 'cn-mnd', status: 'down', since: 2_000, reason: 'no heartbeat from the relay of cn-mnd for 15 s' });
    const up = { peer: 'cn-mnd', status: 'up' as const, since: 1_000 };
    // A status answer older than the event seen does not undo it; a newer one does.
    expect(withLine([down], up)).toEqual([down]);
    expect(withLine([down], { ...up, since: 3_000 })).toEqual([{ ...up, since: 3_000 }]);
    expect(withLine([down], { peer: 'ru-mod', status: 'unknown' }).map((l) => l.peer)).toEqual(['cn-mnd', 'ru-mod']);
    setLanguage('ja');
    try {
      expect(lineReason(down.reason)).toBe('cn-mnd の中継サーバーから 15 秒間応答なし');
      expect(lineReason('HL_ERR_RELAY_WRONG_PARTY: relay of ru-mod')).toBe(dictionaries().ja.err_relay_link);
      expect(lineReason('connect ECONNREFUSED 127.0.0.1:9')).toBe(dictionaries().ja.line_reason_closed);
      expect(lineReason(undefined)).toBe(dictionaries().ja.line_reason_closed);
    } finally {
      setLanguage('en');
    }
  });
});

describe('peerKeys / peerTrust', () => {
  it('lists the other parties’ operator and archive keys and blocks until confirmed, and again after a change', () => {
    const certs: DeviceCertBody[] = Object.values(dep.devices).map((d) => d.certificate.cert);
    const me = { party: 'jp-mod' };
    const keys = peerKeys(certs, me, []);
    expect(keys.map((k) => `${k.party}/${k.device}`)).toEqual(['cn-mnd/cn-archive', 'cn-mnd/cn-op-1']);
    expect(keys[0]!.signFingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(peerTrust(keys, [])).toBe('unconfirmed');
    const confirmed = keys.map((k) => k.identity);
    expect(peerTrust(peerKeys(certs, me, confirmed), confirmed)).toBe('ok');
    const changed = certs.map((c) => (c.device === 'cn-op-1' ? { ...c, signKey: dep.devices.jpOp.certificate.cert.signKey } : c));
    const after = peerKeys(changed, me, confirmed);
    expect(peerTrust(after, confirmed)).toBe('changed');
    expect(after.find((k) => k.device === 'cn-op-1')!.confirmed).toBe(false);
    expect(certIdentity(changed[0]!)).toContain(changed[0]!.signKey);
    expect(peerTrust([], [])).toBe('none');
  });
});

describe('unconfirmedRecipients', () => {
  it('names the other parties’ recipients whose keys are not confirmed, ignoring this party’s own devices', () => {
    const certs: DeviceCertBody[] = Object.values(dep.devices).map((d) => d.certificate.cert);
    const jpOp = dep.devices.jpOp!.certificate.cert;
    const recipients = expectedRecipients(certs, jpOp, 'cn-mnd');
    const peers = recipients.filter((c) => c.party === 'cn-mnd');
    expect(peers.length).toBeGreaterThan(0);
    expect(unconfirmedRecipients(recipients, jpOp, []).map((c) => c.device).sort()).toEqual(peers.map((c) => c.device).sort());
    const confirmed = peerKeys(certs, jpOp, []).map((k) => k.identity);
    expect(unconfirmedRecipients(recipients, jpOp, confirmed)).toEqual([]);
    // A new key for a confirmed device is a new identity: unconfirmed again.
    const rekeyed = recipients.map((c) => (c.party === 'cn-mnd' && c.role === 'operator' ? { ...c, boxKey: jpOp.boxKey } : c));
    expect(unconfirmedRecipients(rekeyed, jpOp, confirmed).map((c) => c.role)).toEqual(['operator']);
  });
});

describe('addAlarm', () => {
  it('keeps alarms newest first, once each, and at most MAX_ALARMS', () => {
    const a = { at: 10, party: 'jp-mod', reason: 'equivocation' };
    const b = { at: 20, party: 'jp-mod', reason: 'jp-mod/op1: HL_ERR_AUDIT_EQUIVOCATION: equivocation' };
    let list = addAlarm(undefined, a);
    list = addAlarm(list, b);
    expect(addAlarm(list, { ...a })).toEqual([b, a]);
    for (let i = 0; i < MAX_ALARMS + 5; i++) list = addAlarm(list, { at: 100 + i, party: 'jp-mod', reason: `r${i}` });
    expect(list).toHaveLength(MAX_ALARMS);
    expect(list[0]!.reason).toBe(`r${MAX_ALARMS + 4}`);
  });
});

describe('linkPairs / latestTest', () => {
  it('shows both directions with every other party, unknown until the server has a test', () => {
    const up = { from: 'jp-mod', to: 'cn-mnd', status: 'up' as const, last: { messageId: 'm'.repeat(32), sentAt: 1, ok: true, roundTripMs: 40, at: 41 } };
    const pairs = linkPairs(dep.agreement, { party: 'jp-mod' }, [up]);
    expect(pairs.map((p) => `${p.from}>${p.to}:${p.status}`)).toEqual(['jp-mod>cn-mnd:up', 'cn-mnd>jp-mod:unknown']);
  });

  it('keeps the newest test of what the console saw and what the server reports', () => {
    const seen = { ok: false, at: 50 };
    expect(latestTest(seen, [undefined, { ok: true, at: 41, roundTripMs: 40 }])).toEqual(seen);
    expect(latestTest(seen, [{ ok: true, at: 60, roundTripMs: 12 }])).toEqual({ ok: true, at: 60, roundTripMs: 12 });
    expect(latestTest(undefined, [])).toBeUndefined();
  });
});

describe('i18n dictionaries', () => {
  it('give every key in English, Japanese and Chinese with the same placeholders', () => {
    const dicts = dictionaries();
    const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    for (const [key, text] of Object.entries(dicts.en)) {
      for (const lang of ['ja', 'zh'] as const) {
        const other = (dicts[lang] as Record<string, string>)[key];
        expect(other, `${lang}.${key}`).toBeTypeOf('string');
        expect(placeholders(other!), `${lang}.${key}`).toEqual(placeholders(text));
      }
    }
  });
});

describe('dateTimeGroup / unreadTitle', () => {
  it('writes DDHHMMZ MON YY in UTC, and counts unacknowledged messages by precedence, most urgent first', () => {
    expect(dateTimeGroup(Date.UTC(2026, 11, 4, 19, 30, 59))).toBe('041930Z DEC 26');
    expect(dateTimeGroup(Date.UTC(2027, 0, 31, 0, 5))).toBe('310005Z JAN 27');
    expect(unreadTitle([])).toBe('');
    expect(unreadTitle(['ROUTINE', 'FLASH', 'ROUTINE', 'IMMEDIATE'])).toBe('(FLASH 1 · IMMEDIATE 1 · ROUTINE 2) ');
  });
});

describe('a deadline closed because the addressee refused the message (issue 13)', () => {
  it('is told by its reason in every language, with the relay\'s detail (devices and code)', async () => {
    const { eventText, toConsoleEvent } = await import('../../../client/console/operator/panels/events-panel.js');
    const { setLanguage } = await import('../../../client/console/common/i18n.js');
    const base = { type: 'deadline.closed', messageId: 'a'.repeat(32), from: 'jp-mod', to: 'cn-mnd', precedence: 'PRIORITY', rung: 'acknowledged', dueAt: 2, at: 1 } as const;
    const refused = toConsoleEvent({ ...base, reason: 'recipient-refused', detail: 'refused by the device it was delivered to: cn-mnd/op1 (HL_ERR_CERT_UNKNOWN_DEVICE)' });
    const revoked = toConsoleEvent({ ...base, reason: 'recipients-revoked', detail: 'every operator device it was sealed to is revoked or no longer valid: cn-mnd/op1' });
    const words = { en: 'refused the message', ja: '拒否しました', zh: '拒收' } as const;
    try {
      for (const lang of ['en', 'ja', 'zh'] as const) {
        setLanguage(lang);
        expect(eventText(refused)).toContain(words[lang]);
        expect(eventText(refused)).toContain('cn-mnd/op1 (HL_ERR_CERT_UNKNOWN_DEVICE)');
        expect(eventText(revoked)).not.toContain(words[lang]);
      }
    } finally {
      setLanguage('en');
    }
  });
});
