/**
 * The audible FLASH alarm: a short two-tone beep (WebAudio) every 2 s while any FLASH message
 * waits for acknowledgement. The AudioContext is made during the unlock click, because browsers
 * only let a page start sound from a user gesture. `document.body.dataset.beeps` counts the beeps
 * played, which the browser tests read.
 */
export interface Alarm {
  start(): void;
  stop(): void;
}

const PERIOD_MS = 2000;

export function startAlarm(): Alarm {
  const Ctx = (globalThis as { AudioContext?: typeof AudioContext }).AudioContext;
  const ctx = Ctx ? new Ctx() : undefined;
  let timer: ReturnType<typeof setInterval> | undefined;
  let beeps = 0;

  const beep = () => {
    if (ctx) {
      void ctx.resume();
      const t0 = ctx.currentTime;
      const gain = ctx.createGain();
      gain.gain.setValueAtTime(0.0001, t0);
      gain.gain.exponentialRampToValueAtTime(0.3, t0 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.5);
      gain.connect(ctx.destination);
      for (const [freq, at] of [[880, 0], [660, 0.25]] as const) {
        const osc = ctx.createOscillator();
        osc.type = 'square';
        osc.frequency.setValueAtTime(freq, t0 + at);
        osc.connect(gain);
        osc.start(t0 + at);
        osc.stop(t0 + at + 0.22);
      }
    }
    beeps++;
    document.body.dataset.beeps = String(beeps);
  };

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
  };
}
