/**
 * The audible FLASH alarm: a short two-tone beep (WebAudio) every 2 s while any FLASH message
 * waits for acknowledgement. The AudioContext is made during the unlock click, because browsers
 * only let a page start sound from a user gesture. `document.body.dataset.beeps` counts the beeps
 * played, which the browser tests read. An IMMEDIATE gets one short single-tone chime when it
 * arrives (`dataset.chimes`): heard, but not to be mistaken for the FLASH alarm.
 */
export interface Alarm {
  start(): void;
  stop(): void;
  chime(): void;
}

const PERIOD_MS = 2000;

export function startAlarm(): Alarm {
  const Ctx = (globalThis as { AudioContext?: typeof AudioContext }).AudioContext;
  const ctx = Ctx ? new Ctx() : undefined;
  let timer: ReturnType<typeof setInterval> | undefined;
  let beeps = 0;

  const tones = (parts: readonly (readonly [freq: number, at: number])[], length: number) => {
    if (!ctx) return;
    void ctx.resume();
    const t0 = ctx.currentTime;
    const gain = ctx.createGain();
    gain.gain.setValueAtTime(0.0001, t0);
    gain.gain.exponentialRampToValueAtTime(0.3, t0 + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + length);
    gain.connect(ctx.destination);
    for (const [freq, at] of parts) {
      const osc = ctx.createOscillator();
      osc.type = 'square';
      osc.frequency.setValueAtTime(freq, t0 + at);
      osc.connect(gain);
      osc.start(t0 + at);
      osc.stop(t0 + at + 0.22);
    }
  };

  const beep = () => {
    tones([[880, 0], [660, 0.25]], 0.5);
    beeps++;
    document.body.dataset.beeps = String(beeps);
  };
  let chimes = 0;

  return {
    start() {
      if (timer !== undefined) return;
      document.body.dataset.alarm = 'on';
      beep();
      timer = setInterval(beep, PERIOD_MS);
    },
    stop() {
      if (timer === undefined) return;
      clearInterval(timer);
      timer = undefined;
      document.body.dataset.alarm = 'off';
    },
    chime() {
      tones([[740, 0]], 0.25);
      chimes++;
      document.body.dataset.chimes = String(chimes);
    },
  };
}
