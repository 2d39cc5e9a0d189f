/**
 * One slice of lower-rank frame handling per turn of the event loop, shared by every connection
 * (issue 9: a FLASH arriving under a ROUTINE stream is read only when the event loop comes back
 * to poll the sockets). Connections with ROUTINE frames to handle wait in one FIFO; each turn of
 * the loop (a check phase, setImmediate) hands a slice of `ms` to the first of them, and what it
 * leaves when its frames run out goes to the next one. A connection that used up its slice
 * waits at the back. So the event loop polls the sockets again at least every `ms` of ROUTINE
 * frames (plus one frame and the turn's commit), whichever number of connections are busy, where
 * with a turn per connection it was `ms` times their number: under the bench's half-capacity
 * stream a FLASH envelope waited 5.7 ms at the median to be read (docs/performance.md, eleventh
 * session). FLASH frames do not take slices.
 */
export class Slices {
  readonly #queue: (() => void)[] = [];
  /** When the slice being used ends (undefined: no slice is being used). */
  #endsAt: number | undefined;
  #scheduled = false;

  constructor(
    private readonly ms: number,
    private readonly now: () => number = () => performance.now(),
    private readonly later: (fn: () => void) => void = setImmediate,
  ) {}

  /** Whether the slice the caller was handed has time left. */
  left(): boolean {
    return this.#endsAt !== undefined && this.now() < this.#endsAt;
  }

  /** Wait for a slice (in arrival order). `cancel` stops waiting now (a FLASH came for the waiter). */
  take(): { done: Promise<void>; cancel: () => void } {
    let wake!: () => void;
    const done = new Promise<void>((resolve) => (wake = resolve));
    const waiter = () => {
      const i = this.#queue.indexOf(waiter);
      if (i >= 0) this.#queue.splice(i, 1);
      wake();
    };
    this.#queue.push(waiter);
    this.#schedule();
    return { done, cancel: waiter };
  }

  /** The slice's holder has nothing left to do: what is left of it goes to the next waiter. */
  release(): void {
    if (this.left() && this.#queue.length > 0) this.#queue[0]!();
    else this.#endsAt = undefined;
  }

  /** Waiters waiting (for tests and metrics). */
  get waiting(): number {
    return this.#queue.length;
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    this.later(() => {
      this.#scheduled = false;
      if (this.#queue.length === 0) return;
      this.#endsAt = this.now() + this.ms;
      this.#queue[0]!();
      if (this.#queue.length > 0) this.#schedule();
    });
  }
}
