/**
 * The script of the page that test/browser/prekey-lock.test.ts opens in two tabs (bundled for the
 * browser by the test): the console's own prekey parts, a PrekeyManager on a SealedPrekeyStore over
 * this origin's IndexedDB, each tab with its own instances, as two tabs of one console have. Its
 * relay is a stub that records what is published. The test drives it through `window.prekeyRace`.
 */
import { PrekeyManager, type PrekeyMaintenance, type PrekeyStore } from '../../client/prekeys.js';
import { SealedPrekeyStore } from '../../client/storage/sealed-prekey-store.js';
import { openIndexedDb } from '../../client/storage/kv.js';
import { DataCipher } from '../../client/console/key-store.js';
import type { HeldPrekey } from '../../shared/crypto/prekey.js';
import type { Agreement, DeviceSecretFile } from '../../shared/protocol/schemas.js';

/** The console's record of cn-op-1's prekeys (`prekeys/PARTY/DEVICE`), under a fixed data key. */
const RECORD = 'prekeys/cn-mnd/cn-op-1';
const store = async () => new SealedPrekeyStore(await openIndexedDb('prekey-race'), new DataCipher(new Uint8Array(32).fill(9)), RECORD);

let openGate: () => void = () => undefined;
const gate = new Promise<void>((r) => (openGate = r));

const race = {
  /** This tab's run has read the record, or is queued behind the other tab's lock. */
  ready: false,
  result: undefined as PrekeyMaintenance | undefined,
  error: undefined as string | undefined,
  /** boxKeys this tab published. */
  published: [] as string[],
  hasWebLocks: typeof navigator.locks?.request === 'function',

  async seed(held: HeldPrekey[]): Promise<void> {
    await (await store()).save(held);
  },

  async held(): Promise<HeldPrekey[]> {
    return (await store()).load();
  },

  /**
   * One maintenance run at `now`. With `gated`, its load reads the record and then waits for
   * `open()`: the run is caught between reading and saving.
   */
  async start(device: DeviceSecretFile, agreement: Agreement, now: number, gated: boolean): Promise<void> {
    const inner = await store();
    const wrapped: PrekeyStore = {
      load: async () => {
        const held = await inner.load();
        race.ready = true;
        if (gated) await gate;
        return held;
      },
      save: (held) => inner.save(held),
      exclusive: <T>(fn: () => Promise<T>) => {
        const run = inner.exclusive(fn);
        // Queued behind the other tab's lock: that is as far as this run gets for now.
        void navigator.locks?.query().then((q) => {
          if (q.pending?.some((l) => l.name === `hotline-lock/${RECORD}`)) race.ready = true;
        });
        return run;
      },
    };
    const manager = new PrekeyManager({
      agreement,
      device,
      clock: { now: () => now, setTimeout: () => 0, clearTimeout: () => undefined },
      emit: () => undefined,
      report: () => undefined,
      running: () => false,
      store: wrapped,
      api: {
        ensureToken: async () => undefined,
        http: async (method: string, path: string, body: unknown) => {
          if (method === 'POST' && path === '/v1/prekeys') race.published.push((body as HeldPrekey['signed']).prekey.boxKey);
          return {};
        },
      },
    });
    manager.maintain().then(
      (r) => (race.result = r),
      (err: unknown) => (race.error = String(err)),
    );
  },

  open(): void {
    openGate();
  },
};

(globalThis as unknown as { prekeyRace: typeof race }).prekeyRace = race;
