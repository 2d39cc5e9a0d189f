/**
 * One live link per device across the tabs of a browser (issue 10): the server keeps one
 * connection per device, so two tabs each running a client took the link from each other, and
 * only the newer one saw what came in. A Web Lock named after the device decides which tab holds
 * the link; the others wait in the lock's queue (and get the link by themselves when that tab
 * closes), and any of them can take it over at once (`steal`).
 *
 * @example
 * const lead = leadLink('hotline-link/jp-mod/op1', { held: () => client.start(), lost: () => client.stop() });
 * takeOverButton.onclick = () => lead.takeOver();
 */
export interface LinkLead {
  /** Take the link from the tab that holds it. */
  takeOver(): void;
}

export interface LinkLeadHandlers {
  /** This tab now holds the link: connect. */
  held(): void;
  /** Another tab holds the link (from the start, or it took it over): disconnect and follow. */
  lost(): void;
}

interface LockManagerLike {
  request(name: string, options: { ifAvailable?: boolean; steal?: boolean; signal?: AbortSignal }, callback: (lock: unknown) => Promise<void> | void): Promise<void>;
}

export function leadLink(name: string, handlers: LinkLeadHandlers): LinkLead {
  const locks = (globalThis.navigator as { locks?: LockManagerLike } | undefined)?.locks;
  if (!locks) {
    // No Web Locks (a page not served over a secure context): every tab connects, as before.
    handlers.held();
    return { takeOver: () => undefined };
  }
  let queued: AbortController | undefined;
  // Held until the tab closes, or until another tab steals the lock.
  const hold = () => {
    handlers.held();
    return new Promise<void>(() => undefined);
  };
  const onBroken = (own?: AbortController) => () => {
    // Our own queued request withdrawn for a takeover: nothing was lost.
    if (own?.signal.aborted) return;
    handlers.lost();
    queue();
  };
  const queue = () => {
    const own = new AbortController();
    queued = own;
    locks.request(name, { signal: own.signal }, () => {
      if (queued === own) queued = undefined;
      return hold();
    }).catch(onBroken(own));
  };
  locks
    .request(name, { ifAvailable: true }, (lock) => {
      if (lock) return hold();
      handlers.lost();
      queue();
      return undefined;
    })
    .catch(onBroken());
  return {
    takeOver() {
      queued?.abort();
      queued = undefined;
      locks.request(name, { steal: true }, hold).catch(onBroken());
    },
  };
}
