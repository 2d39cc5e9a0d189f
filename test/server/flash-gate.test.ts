import { describe, expect, it } from 'vitest';
import { FlashGate } from '../../server/relay/flash-gate.js';
import { Slices } from '../../server/relay/slices.js';
import { ManualClock } from '../helpers/manual-clock.js';

/** Whether a promise has settled, after the microtasks queued so far. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return done;
}

describe('FlashGate: lower-rank work waits while a FLASH is on its way through the relay', () => {
  it('is open with nothing held; a hold closes it until its release, and waiters are woken then', async () => {
    const clock = new ManualClock();
    const gate = new FlashGate(clock, { holdMs: 25, maxHeldMs: 100, openMs: 25 });
    expect(gate.held).toBe(false);
    expect(await settled(gate.wait().done)).toBe(true);

    gate.hold('a');
    gate.hold('b');
    expect(gate.held).toBe(true);
    const w = gate.wait().done;
    expect(await settled(w)).toBe(false);
    gate.release('a');
    expect(gate.held).toBe(true);
    expect(await settled(w)).toBe(false);
    gate.release('b');
    expect(gate.held).toBe(false);
    expect(await settled(w)).toBe(true);
    // Releasing what is not held changes nothing.
    gate.release('never');
    expect(gate.held).toBe(false);
    expect(gate.counts).toEqual({ released: 2, expired: 0, breaks: 0 });
    expect(gate.heldSeconds()).toBe(0);
  });

  it('a hold never released ends after holdMs (an addressee offline costs the rest that much once)', async () => {
    const clock = new ManualClock();
    const gate = new FlashGate(clock, { holdMs: 25, maxHeldMs: 100, openMs: 25 });
    gate.hold('lost');
    const w = gate.wait().done;
    clock.advance(24);
    expect(gate.held).toBe(true);
    expect(await settled(w)).toBe(false);
    expect(gate.heldSeconds()).toBeCloseTo(0.024, 6);
    clock.advance(1);
    expect(gate.held).toBe(false);
    expect(await settled(w)).toBe(true);
    expect(clock.pending).toBe(0);
    expect(gate.counts).toEqual({ released: 0, expired: 1, breaks: 0 });
    expect(gate.heldSeconds()).toBeCloseTo(0.025, 6);
  });

  it('held without a break for maxHeldMs, it opens for openMs whatever is held: a FLASH stream cannot starve the rest', async () => {
    const clock = new ManualClock();
    const gate = new FlashGate(clock, { holdMs: 25, maxHeldMs: 100, openMs: 25 });
    // A FLASH every 10 ms, each released 20 ms later: always at least one held.
    let openAt: number | undefined;
    const t0 = clock.now();
    gate.hold('f0');
    const w = gate.wait().done;
    void w.then(() => (openAt ??= clock.now() - t0));
    for (let i = 1; i <= 30; i++) {
      clock.advance(10);
      gate.hold(`f${i}`);
      if (i >= 2) gate.release(`f${i - 2}`);
      await settled(w);
    }
    // The first wait ended when the gate was forced open, at 100 ms.
    expect(openAt).toBe(100);
    // Over the 300 ms, the gate was open for openMs after each 100 ms held: checked at each step.
    const fresh = new FlashGate(clock, { holdMs: 25, maxHeldMs: 100, openMs: 25 });
    const heldAt: boolean[] = [];
    fresh.hold('g0');
    for (let i = 1; i <= 50; i++) {
      clock.advance(5);
      fresh.hold(`g${i}`);
      fresh.release(`g${i - 1}`);
      heldAt.push(fresh.held);
    }
    // Held 100 ms (20 steps of 5 ms, the 20th opens it), open 25 ms (5 steps), held again.
    expect(heldAt.slice(0, 19).every((h) => h)).toBe(true);
    expect(heldAt.slice(19, 24).every((h) => !h)).toBe(true);
    expect(heldAt[24]).toBe(true);
    expect(fresh.counts.breaks).toBe(2);
    // 250 ms: held 0–100, 125–225, 250 on (the break at 225 just ended).
    expect(fresh.heldSeconds()).toBeCloseTo(0.2, 6);
  });

  it('a cancelled wait ends at once and leaves the gate as it was', async () => {
    const clock = new ManualClock();
    const gate = new FlashGate(clock);
    gate.hold('a');
    const w = gate.wait();
    w.cancel();
    expect(await settled(w.done)).toBe(true);
    expect(gate.held).toBe(true);
  });
});

describe('Slices: one slice of lower-rank frames per turn of the event loop, in arrival order', () => {
  /** A loop whose turns a test runs by hand, and a clock it moves. */
  function manual() {
    let t = 0;
    const turns: (() => void)[] = [];
    const slices = new Slices(2, () => t, (fn) => turns.push(fn));
    const order: string[] = [];
    return {
      slices,
      /** The order in which waiters were woken. */
      order,
      /** A waiter per name, in that order; each notes its name in `order` when woken. */
      take: (...names: string[]) =>
        names.map((name) => {
          const w = slices.take();
          void w.done.then(() => order.push(name));
          return w;
        }),
      advance: (ms: number) => (t += ms),
      /** Run the callbacks queued for the next turn (those queued meanwhile wait for the one after). */
      turn: async () => {
        for (const fn of turns.splice(0)) fn();
        for (let i = 0; i < 5; i++) await Promise.resolve();
      },
    };
  }

  it('hands one slice per turn, first come first served; a holder that used its slice waits behind the others', async () => {
    const m = manual();
    const { order } = m;
    m.take('a', 'b');
    expect(order).toEqual([]);
    await m.turn();
    expect(order).toEqual(['a']);
    expect(m.slices.left()).toBe(true);
    // a works through its slice, then queues again: b is next, then a.
    m.advance(2);
    expect(m.slices.left()).toBe(false);
    m.take('a2');
    await m.turn();
    expect(order).toEqual(['a', 'b']);
    m.advance(2);
    await m.turn();
    expect(order).toEqual(['a', 'b', 'a2']);
    expect(m.slices.waiting).toBe(0);
  });

  it('what a holder leaves goes to the next waiter in the same turn; with nobody waiting the slice ends', async () => {
    const m = manual();
    const { order } = m;
    m.take('a', 'b');
    await m.turn();
    m.advance(1);
    m.slices.release();
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(order).toEqual(['a', 'b']);
    expect(m.slices.left()).toBe(true);
    m.slices.release();
    expect(m.slices.left()).toBe(false);
  });

  it('a cancelled waiter leaves the queue at once (a FLASH came for it) and is not handed a slice', async () => {
    const m = manual();
    const { order } = m;
    const [a] = m.take('a', 'b');
    a!.cancel();
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(order).toEqual(['a']);
    expect(m.slices.waiting).toBe(1);
    await m.turn();
    expect(order).toEqual(['a', 'b']);
  });
});
