import { describe, expect, it } from 'vitest';
import { RankQueue } from '../../client/rank-queue.js';

describe('RankQueue', () => {
  it('hands out the lowest rank first and, within a rank, the earliest pushed (against a sorted list, pushes and shifts interleaved)', () => {
    const q = new RankQueue<number>();
    const model: { rank: number; n: number }[] = [];
    const takeModel = () => {
      model.sort((a, b) => a.rank - b.rank || a.n - b.n);
      return model.shift()?.n;
    };
    let x = 7; // a seeded generator: the same sequence every run
    for (let n = 0; n < 600; n++) {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      const rank = (x % 5) - 1;
      q.push(rank, n);
      model.push({ rank, n });
      if (x % 3 === 0) expect(q.shift()).toBe(takeModel());
    }
    expect(q.size).toBe(model.length);
    while (model.length > 0) expect(q.shift()).toBe(takeModel());
    expect(q.shift()).toBeUndefined();
  });

  it('removes what a predicate selects and keeps the order of the rest', () => {
    const q = new RankQueue<number>();
    for (let i = 0; i < 20; i++) q.push(i % 3, i);
    q.remove((n) => n % 2 === 0);
    const out: number[] = [];
    for (let n = q.shift(); n !== undefined; n = q.shift()) out.push(n);
    expect(out).toEqual([3, 9, 15, 1, 7, 13, 19, 5, 11, 17]);
  });
});
