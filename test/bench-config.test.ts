import { describe, expect, it } from 'vitest';
import { loadBenchConfig } from '../bench/config.js';

describe('bench config: --only', () => {
  it('runs every phase by default, only those named with --only or HOTLINE_BENCH_ONLY, and scale with the capacity it replays', () => {
    expect(loadBenchConfig({}, []).only).toBeUndefined();
    expect(loadBenchConfig({}, ['--only=capacity,clients']).only).toEqual(['capacity', 'clients']);
    expect(loadBenchConfig({ HOTLINE_BENCH_ONLY: 'backlog' }, []).only).toEqual(['backlog']);
    expect(loadBenchConfig({}, ['--only=scale']).only).toEqual(['scale', 'capacity']);
  });

  it('refuses a phase it does not know, naming the known ones', () => {
    expect(() => loadBenchConfig({}, ['--only=capacty'])).toThrow(/unknown bench phase "capacty"; known: clients, two-relays, capacity/);
  });
});
