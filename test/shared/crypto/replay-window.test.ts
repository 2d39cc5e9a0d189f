import { describe, expect, it } from 'vitest';
import { REPLAY_WINDOW, ReplayWindow, seqVerdict } from '../../../shared/crypto/replay-window.js';

const accept = (w: ReplayWindow, seq: number) => {
  w.check(seq);
  w.record(seq);
};
const REPLAY = expect.objectContaining({ code: 'HL_ERR_ENVELOPE_REPLAY' });

describe('ReplayWindow', () => {
  it('accepts seqs out of order inside the window, each once', () => {
    const w = new ReplayWindow();
    for (const seq of [5, 3, 9, 4, 1, 2, 8, 6, 7]) accept(w, seq);
    expect(w.highest).toBe(9);
    for (let seq = 1; seq <= 9; seq++) expect(() => w.check(seq)).toThrow(REPLAY);
    accept(w, 10);
  });

  it('refuses a reused seq and a seq at or below highest − REPLAY_WINDOW', () => {
    const w = new ReplayWindow();
    accept(w, 3);
    expect(w.verdict(3)).toBe('reused');
    accept(w, 3 + REPLAY_WINDOW);
    expect(w.verdict(3)).toBe('below-window');
    expect(w.verdict(2)).toBe('below-window');
    // Just inside the window and never seen: accepted.
    expect(w.verdict(4)).toBe('new');
    accept(w, 4);
    expect(w.verdict(4)).toBe('reused');
    expect(() => w.check(1)).toThrow(REPLAY);
  });

  it('forgets the seqs that leave the window as it slides (the ring bits are reused cleanly)', () => {
    const w = new ReplayWindow();
    for (let seq = 1; seq <= 100; seq++) accept(w, seq);
    // Jump by less than a window: seqs 101..(100 + REPLAY_WINDOW − 1) share ring bits with 1..100's
    // neighbours but were never seen.
    accept(w, 100 + REPLAY_WINDOW - 1);
    for (let seq = 101; seq < 100 + REPLAY_WINDOW - 1; seq += 97) expect(w.verdict(seq)).toBe('new');
    expect(w.verdict(99)).toBe('below-window');
    expect(w.verdict(100)).toBe('reused');
    // A jump of more than a window clears everything at once.
    accept(w, 10 * REPLAY_WINDOW);
    expect(w.verdict(10 * REPLAY_WINDOW - 1)).toBe('new');
    expect(w.verdict(9 * REPLAY_WINDOW)).toBe('below-window');
  });

  it('agrees with a plain set of seen seqs over a seeded random walk', () => {
    let x = 0x2545f491;
    const rand = (n: number) => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) % n;
    };
    const w = new ReplayWindow();
    const seen = new Set<number>();
    let highest = 0;
    for (let i = 0; i < 20_000; i++) {
      const seq = Math.max(1, highest + rand(3 * REPLAY_WINDOW) - 2 * REPLAY_WINDOW + 64);
      const want = seq <= highest - REPLAY_WINDOW ? 'below-window' : seen.has(seq) ? 'reused' : 'new';
      expect(w.verdict(seq)).toBe(want);
      if (want === 'new') {
        w.record(seq);
        seen.add(seq);
        highest = Math.max(highest, seq);
      }
    }
  });

  it('round-trips through its constant-size stored form', () => {
    const w = new ReplayWindow();
    for (const seq of [1, 2, 40, 4000, 4100]) accept(w, seq);
    const state = w.toState();
    expect(JSON.stringify(state).length).toBeLessThan(720);
    const back = new ReplayWindow(state);
    expect(back.highest).toBe(4100);
    for (const seq of [40, 4000, 4100]) expect(back.verdict(seq)).toBe('reused');
    expect(back.verdict(41)).toBe('new');
    expect(back.verdict(2)).toBe('below-window');
    expect(() => new ReplayWindow({ highest: -1, seen: state.seen })).toThrow(expect.objectContaining({ code: 'HL_ERR_INPUT_SCHEMA' }));
    expect(() => new ReplayWindow({ highest: 1, seen: 'AAAA' })).toThrow(expect.objectContaining({ code: expect.stringMatching(/^HL_ERR_/) }));
  });

  it('fromHighest: a recipient that kept only the highest seq refuses it and everything a window below', () => {
    const w = ReplayWindow.fromHighest(5000);
    expect(w.verdict(5000)).toBe('reused');
    expect(w.verdict(4999)).toBe('new');
    expect(w.verdict(5000 - REPLAY_WINDOW)).toBe('below-window');
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
