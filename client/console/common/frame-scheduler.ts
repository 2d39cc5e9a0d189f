/**
 * Coalesces a console's drawing into animation frames: any number of `schedule()` calls between
 * two frames cost one `run`, and one `run` stops at its time budget so that a key press waiting
 * behind it is painted in the same frame (issue 9: typing stayed slow while 1,000 messages came
 * in because every event redrew the page). `run` returns true while work is left; the rest goes
 * in the next frame. A timer backs the frame up because a hidden tab gets no frames at all and
 * its rows must still be current when it is shown again.
 *
 * @example
 * const frames = new FrameScheduler((deadline) => drawSome(deadline));
 * client.on('message', (m) => { dirty.add(m.header.id); frames.schedule(); });
 */
export class FrameScheduler {
  readonly #run: (deadline: number) => boolean | Promise<boolean>;
  readonly #budgetMs: number;
  readonly #fallbackMs: number;
  #frame: number | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running = false;
  #again = false;

  constructor(run: (deadline: number) => boolean | Promise<boolean>, options: FrameSchedulerOptions = {}) {
    this.#run = run;
    this.#budgetMs = options.budgetMs ?? 8;
    this.#fallbackMs = options.fallbackMs ?? 250;
  }

  schedule(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    if (this.#frame !== undefined) return;
    this.#frame = requestAnimationFrame(() => void this.#tick());
    this.#timer = setTimeout(() => void this.#tick(), this.#fallbackMs);
  }

  async #tick(): Promise<void> {
    if (this.#frame !== undefined) cancelAnimationFrame(this.#frame);
    clearTimeout(this.#timer);
    this.#frame = undefined;
    this.#timer = undefined;
    this.#running = true;
    let more: boolean;
    try {
      more = await this.#run(performance.now() + this.#budgetMs);
    } finally {
      this.#running = false;
    }
    if (more || this.#again) {
      this.#again = false;
      this.schedule();
    }
  }
}

export interface FrameSchedulerOptions {
  /** Milliseconds of drawing per frame before the rest waits for the next one. */
  budgetMs?: number;
  /** Run anyway after this long without a frame (a hidden tab). */
  fallbackMs?: number;
}
