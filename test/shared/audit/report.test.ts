import { describe, expect, it } from 'vitest';
import { buildAuditReport } from '../../../shared/audit/report.js';

/** Entries as the relay writes them, reduced to what the report reads (it works on a verified export). */
const T0 = Date.UTC(2026, 11, 5, 9, 0, 0);
const id = (n: number) => n.toString(16).padStart(32, '0');
const envelope = (n: number, at: number, extra: { exercise?: boolean; linkTest?: boolean } = {}) => ({
  type: 'envelope.accepted',
  at,
  header: { id: id(n), precedence: 'FLASH', from: { party: 'jp-mod', device: 'jp-op-1' }, to: 'cn-mnd', ...extra },
});
const receipt = (n: number, kind: string, at: number, party = 'cn-mnd') => ({
  type: 'receipt.accepted',
  at,
  receipt: { receipt: { messageId: id(n), kind, by: { party, device: `${party}-op-1` } } },
});

describe('buildAuditReport: the response ladder', () => {
  it('counts a will-comply as acknowledged (and delivered), a have-complied as every rung, and times each rung', () => {
    const r = buildAuditReport([
      envelope(1, T0),
      receipt(1, 'will-comply', T0 + 60_000),
      envelope(2, T0),
      receipt(2, 'delivered', T0 + 1_000),
      receipt(2, 'cannot-comply', T0 + 120_000),
      envelope(3, T0),
      receipt(3, 'have-complied', T0 + 600_000),
      envelope(4, T0),
      receipt(4, 'acknowledged', T0 + 5_000),
      // The sender's own party answers nothing.
      receipt(4, 'will-comply', T0 + 6_000, 'jp-mod'),
    ]);
    const flash = r.rows.find((x) => x.precedence === 'FLASH')!;
    expect(flash).toMatchObject({ sent: 4, delivered: 4, acknowledged: 4, answered: 3, willComply: 2, cannotComply: 1, complied: 1 });
    expect(flash.toAnswered).toEqual({ count: 3, medianMs: 120_000, p95Ms: 600_000, worstMs: 600_000 });
    expect(flash.toComplied).toEqual({ count: 1, medianMs: 600_000, p95Ms: 600_000, worstMs: 600_000 });
  });

  it('counts exercises apart from traffic, link tests only as link tests, and missed deadlines per table', () => {
    const r = buildAuditReport([
      envelope(1, T0),
      envelope(2, T0, { exercise: true }),
      receipt(2, 'will-comply', T0 + 1_000),
      envelope(3, T0, { linkTest: true }),
      receipt(3, 'delivered', T0 + 10),
      { type: 'link.test', at: T0 + 10, ok: true },
      { type: 'deadline.missed', at: T0 + 30_000, messageId: id(1), rung: 'delivered' },
      { type: 'deadline.missed', at: T0 + 330_000, messageId: id(1), rung: 'delivered' },
      { type: 'deadline.missed', at: T0 + 30_000, messageId: id(2), rung: 'complied' },
    ]);
    expect(r.rows.find((x) => x.precedence === 'FLASH')).toMatchObject({ sent: 1, delivered: 0, acknowledged: 0, deadlinesMissed: 1 });
    expect(r.exercises).toBe(1);
    expect(r.exerciseRows.find((x) => x.precedence === 'FLASH')).toMatchObject({ sent: 1, delivered: 1, acknowledged: 1, answered: 1, willComply: 1, deadlinesMissed: 1 });
    expect(r.linkTests).toEqual({ passed: 1, failed: 0 });
  });
});

describe('buildAuditReport: security labels (PROTOCOL.md "Security labels")', () => {
  it('counts messages by label, exercises apart, link tests not at all; no label table when no message has one', () => {
    const restricted = { classification: 'RESTRICTED', caveats: ['HOTLINE-ONLY'] };
    const label = (n: number, l: object, extra: { exercise?: boolean; linkTest?: boolean } = {}) => {
      const e = envelope(n, T0, extra);
      return { ...e, header: { ...e.header, label: l } };
    };
    const r = buildAuditReport([
      label(1, restricted),
      label(2, restricted),
      label(3, restricted, { exercise: true }),
      label(4, { classification: 'UNCLASSIFIED' }),
      envelope(5, T0),
      label(6, restricted, { linkTest: true }),
    ]);
    expect(r.labels).toEqual([
      { label: restricted, sent: 2, exercises: 1 },
      { label: { classification: 'UNCLASSIFIED' }, sent: 1, exercises: 0 },
      { sent: 1, exercises: 0 },
    ]);
    expect(buildAuditReport([envelope(1, T0)]).labels).toEqual([]);
  });
});
