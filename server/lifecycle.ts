/**
 * The app's shutdown state: set and awaited by the link plugin's preClose, read by every route
 * that takes work in. One small object rather than a shared context, so that each plugin is given
 * only what it uses (buildApp builds the rest and passes it as plugin options).
 */
export class Lifecycle {
  /** Set at shutdown: new work is refused with HL_ERR_SERVER_SHUTTING_DOWN. */
  shuttingDown = false;
  /** Work started and not finished (frame handling, writes): shutdown waits for it. */
  readonly inFlight = new Set<Promise<unknown>>();

  /** Track a promise in `inFlight` until it settles. */
  track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    const done = () => this.inFlight.delete(p);
    p.then(done, done);
    return p;
  }
}
