/**
 * The console phase of the bench (issue 9): headless Chromium, a console flooded with 1,000
 * ROUTINE messages and then sent a FLASH; goals: the FLASH banner within 2 s of the relay's
 * acceptance, key-press-to-paint in the compose box ≤ 100 ms throughout.
 *
 * This is a slot: the phase is written by the console's owner. Until then it returns `undefined`
 * and the bench prints "not measured". Fill in `consolePhase` and keep its result shape.
 */
export interface ConsoleResult {
  /** ROUTINE messages flooded before the FLASH. */
  routine: number;
  /** Milliseconds from the relay's `accepted` of the FLASH to its banner on the addressee's console. */
  flashBannerMs: number;
  /** Largest key-press-to-paint in the compose box during the flood, milliseconds. */
  maxKeyToPaintMs: number;
}

export interface ConsolePhaseOptions {
  smoke: boolean;
  maxSeconds: number;
  /** A scratch directory of this run, removed afterwards. */
  dir: string;
}

export async function consolePhase(options: ConsolePhaseOptions): Promise<ConsoleResult | undefined> {
  void options;
  return undefined;
}
