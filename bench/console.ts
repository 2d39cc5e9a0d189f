/**
 * The console phase of `npm run bench` (issue 9): headless Chromium opens an operator console,
 * a Node HotlineClient of the other party floods it with `count` ROUTINE messages and then sends
 * one FLASH. Measured in the page:
 * - FLASH: from the relay's acceptance (the sender's `accepted`, stamped by the server on this
 *   machine's clock) to the frame after the banner entered the page; goal ≤ 2 s.
 * - Key press to paint: a key is pressed in the compose box every `typeEveryMs` through the flood
 *   (real input through the DevTools protocol); each sample runs from the event's timeStamp (when
 *   the browser took the input) to the next animation frame after it was handled; goal ≤ 100 ms
 *   at p99 and max.
 * Runs on its own (`node --import tsx bench/console.ts [count]`) or from bench/run.ts.
 */
import { pathToFileURL } from 'node:url';
import type { Page } from 'playwright-core';
import { connectConsole, enrolDevice, startHarness, startNodeClient, type Harness } from '../test/browser/harness.js';
import { percentile } from './raw-ws.js';
import { useNodeCrypto } from '../server/node-crypto.js';

export interface ConsolePhaseOptions {
  /** ROUTINE messages sent before the FLASH (1,000 at full size). */
  count: number;
  /** A running harness (server, deployment, Chromium) to use; without one, one is started and closed here. */
  harness?: Harness;
  /** How often a key is pressed in the compose box during the flood. */
  typeEveryMs?: number;
  /** Bound on the whole phase. */
  maxSeconds?: number;
}

export interface ConsolePhaseResult {
  count: number;
  /** Relay acceptance of the FLASH → its banner painted on the receiving console (undefined: never shown in time). */
  flashBannerMs: number | undefined;
  /** Flood start → every message's row on the receiving console. */
  drainSeconds: number | undefined;
  rowsShown: number;
  keyToPaint: { samples: number; p50Ms: number; p99Ms: number; maxMs: number };
  goals: { flashBannerMs: number; keyToPaintMs: number };
}

/** In-page probes: key-press-to-paint samples and the wall time of the first FLASH banner's frame. */
function instrument(page: Page): Promise<void> {
  return page.evaluate(() => {
    const probe = { keys: [] as number[], banner: undefined as number | undefined };
    (window as unknown as { __bench: typeof probe }).__bench = probe;
    document.addEventListener(
      'keydown',
      (ev) => {
        const t0 = ev.timeStamp;
        requestAnimationFrame(() => probe.keys.push(performance.now() - t0));
      },
      true,
    );
    // The banner goes into a slot of its own inside #alert-slot (FLASH and IMMEDIATE slots): watch the subtree.
    const slot = document.getElementById('alert-slot')!;
    new MutationObserver((_, obs) => {
      if (!slot.querySelector('.flash-banner')) return;
      obs.disconnect();
      requestAnimationFrame(() => (probe.banner = performance.timeOrigin + performance.now()));
    }).observe(slot, { childList: true, subtree: true });
  });
}

function readProbe(page: Page): Promise<{ keys: number[]; banner: number | undefined; rows: number }> {
  return page.evaluate(() => {
    const probe = (window as unknown as { __bench: { keys: number[]; banner: number | undefined } }).__bench;
    // Every message the console has a row for, in the page or past the list's window (data-rows).
    return { keys: probe.keys, banner: probe.banner, rows: Number(document.getElementById('inbox')?.dataset.rows ?? 0) };
  });
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function consolePhase(options: ConsolePhaseOptions): Promise<ConsolePhaseResult> {
  const { count, typeEveryMs = 100, maxSeconds = 300 } = options;
  const hx = options.harness ?? (await startHarness());
  try {
    // Devices of their own, so that the phase can share a harness with others.
    const tag = `bench${Date.now() % 1_000_000}`;
    const cnKey = await enrolDevice(hx, 'cn-mnd', tag);
    await enrolDevice(hx, 'jp-mod', tag);
    const cn = await connectConsole(hx, 'en-US', cnKey, 'bench console passphrase');
    const jp = await startNodeClient(hx, `jp-mod/${tag}`);
    await instrument(cn.page);
    await cn.page.click('#body');

    let flashAcceptedAt: number | undefined;
    let flashId: string | undefined;
    jp.on('accepted', (a) => {
      if (a.id === flashId) flashAcceptedAt = a.at;
    });
    const started = Date.now();
    const deadline = started + maxSeconds * 1000;
    const flood = (async () => {
      for (let i = 0; i < count; i++) await jp.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: `routine ${i} ${'演習区域を変更する。'.repeat(8)}`, lang: 'ja' });
      flashId = (await jp.send({ to: 'cn-mnd', precedence: 'FLASH', subject: 'FLASH', body: 'the one that matters', lang: 'en' })).id;
    })();

    let probe = await readProbe(cn.page);
    let drainedAt: number | undefined;
    while (Date.now() < deadline) {
      await cn.page.keyboard.press('a');
      await delay(typeEveryMs);
      probe = await readProbe(cn.page);
      if (probe.rows === count + 1 && drainedAt === undefined) drainedAt = Date.now();
      if (drainedAt !== undefined && probe.banner !== undefined && flashAcceptedAt !== undefined) break;
    }
    await flood;
    const keys = [...probe.keys].sort((a, b) => a - b);
    await jp.stop();
    await cn.context.close();
    return {
      count,
      flashBannerMs: probe.banner !== undefined && flashAcceptedAt !== undefined ? Math.round(probe.banner - flashAcceptedAt) : undefined,
      drainSeconds: drainedAt === undefined ? undefined : (drainedAt - started) / 1000,
      rowsShown: probe.rows,
      keyToPaint: { samples: keys.length, p50Ms: round(percentile(keys, 50)), p99Ms: round(percentile(keys, 99)), maxMs: round(keys.at(-1) ?? 0) },
      goals: { flashBannerMs: 2000, keyToPaintMs: 100 },
    };
  } finally {
    if (!options.harness) await hx.close();
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  useNodeCrypto();
  const result = await consolePhase({ count: Number(process.argv[2] ?? 1000) });
  console.log(JSON.stringify(result, null, 2));
}
