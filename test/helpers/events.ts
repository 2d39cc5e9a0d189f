import type { HotlineClient, HotlineClientEvents } from '../../client/hotline-client.js';

/** The next `event` of a client that satisfies `pred`: tests wait on events, never on sleeps. */
export function next<K extends keyof HotlineClientEvents>(c: HotlineClient, event: K, pred: (p: HotlineClientEvents[K]) => boolean = () => true): Promise<HotlineClientEvents[K]> {
  return new Promise((resolve) => {
    const off = c.on(event, (p) => {
      if (pred(p)) {
        off();
        resolve(p);
      }
    });
  });
}

/** The error code `p` rejects with, or 'resolved'. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as { code: string }).code;
  }
  return 'resolved';
}
