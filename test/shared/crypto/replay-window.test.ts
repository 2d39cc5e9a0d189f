import { describe, expect, it } from 'vitest';
import { REPLAY_WINDOW, acceptSeq, isNewSeq, seqVerdict, type SeqWindow } from '../../../shared/crypto/replay-window.js';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('acceptSeq', () => {
  it('accepts in-order seqs with nothing missing, and refuses each again', () => {
    let w: SeqWindow | undefined;
    for (let s = 1; s <= 5; s++) w = acceptSeq(w, s);
    expect(w).toEqual({ high: 5, missing: [] });
    for (let s = 1; s <= 5; s++) expect(code(() => acceptSeq(w, s))).toBe('HL_ERR_ENVELOPE_REPLAY');
  });

  it('lets an overtaken seq arrive later, once', () => {
    let w = acceptSeq(undefined, 201); // a FLASH sealed after 200 ROUTINE arrives first
    expect(w).toEqual({ high: 201, missing: [[1, 200]] });
    w = acceptSeq(w, 150);
    expect(w.missing).toEqual([[1, 149], [151, 200]]);
    expect(code(() => acceptSeq(w, 150))).toBe('HL_ERR_ENVELOPE_REPLAY');
    for (let s = 1; s <= 200; s++) if (s !== 150) w = acceptSeq(w, s);
    expect(w).toEqual({ high: 201, missing: [] });
  });

  it('refuses what lies below the window and forgets gaps that fall out of it', () => {
    let w = acceptSeq(undefined, 10);
    w = acceptSeq(w, 10 + REPLAY_WINDOW + 5);
    expect(isNewSeq(w, 9)).toBe(false);
    expect(code(() => acceptSeq(w, 5))).toBe('HL_ERR_ENVELOPE_REPLAY');
    expect(w.missing[0]![0]).toBe(w.high - REPLAY_WINDOW + 1);
    expect(isNewSeq(w, w.high - REPLAY_WINDOW + 1)).toBe(true);
  });

  it('reads the older stored form (a bare highest seq) as everything up to it seen', () => {
    expect(isNewSeq(7, 7)).toBe(false);
    expect(isNewSeq(7, 8)).toBe(true);
    expect(acceptSeq(7, 9)).toEqual({ high: 9, missing: [[8, 8]] });
  });

  it('matches a set-based model on a seeded random sequence', () => {
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const seen = new Set<number>();
    let high = 0;
    let w: SeqWindow | undefined;
    for (let i = 0; i < 3000; i++) {
      const s = 1 + Math.floor(rnd() * 6000);
      const expectNew = !seen.has(s) && s > Math.max(high, 0) - REPLAY_WINDOW;
      expect(isNewSeq(w, s)).toBe(expectNew);
      if (expectNew) {
        w = acceptSeq(w, s);
        seen.add(s);
        high = Math.max(high, s);
      }
    }
  });
});

describe('seqVerdict', () => {
  it('asks the store only inside the window', () => {
    const asked: number[] = [];
    const used = (s: number) => (asked.push(s), s === 7);
    expect(seqVerdict(1, 1 + REPLAY_WINDOW, used)).toBe('below-window');
    expect(asked).toEqual([]);
    expect(seqVerdict(7, 10, used)).toBe('reused');
    expect(seqVerdict(8, 10, used)).toBe('new');
    expect(asked).toEqual([7, 8]);
  });
});
