import { toBase64, utf8 } from '../shared/encoding/base64.js';
import { CHECKPOINT_ATTACHMENT } from './witness.js';
import type { SendInput } from './outbox.js';
import { otherParties, toHotlineError, type DeviceScope } from './scope.js';
import type { TimerHandle } from '../shared/clock.js';

export interface LinkTestAgentOptions extends Pick<DeviceScope, 'agreement' | 'me' | 'key' | 'storage' | 'clock' | 'emit' | 'report' | 'running'> {
  /** On at start (see HotlineClientOptions.testAgent). */
  on: boolean;
  connected: () => boolean;
  send: (input: SendInput) => Promise<{ id: string }>;
  /** This connection's first cosign round: the first test waits for it. */
  firstRound: () => Promise<unknown>;
}

/**
 * This party's link-test agent (docs/design.md "Link test"): while connected, a signed test message to
 * each other party every `agreement.linkTest.intervalMs`, carrying the newest checkpoint this
 * device verified (checkpoint gossip). The server judges the round trip.
 */
export class LinkTestAgent {
  readonly #o: LinkTestAgentOptions;
  #on: boolean;
  #running = false;
  #timer: TimerHandle | undefined;

  constructor(options: LinkTestAgentOptions) {
    this.#o = options;
    this.#on = options.on;
  }

  /** No more tests until the next connection (the switch stays as it is). */
  stop(): void {
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    this.#running = false;
  }

  /** Once per connection: a test now, then one every interval while running (when on). */
  start(): void {
    if (!this.#on || this.#running || this.#o.me.role !== 'operator') return;
    this.#running = true;
    const round = () => {
      if (!this.#o.running() || !this.#running) return;
      void this.sendLinkTests().catch((err: unknown) => this.#o.report(toHotlineError(err)));
      this.#timer = this.#o.clock.setTimeout(round, this.#o.agreement.linkTest.intervalMs);
    };
    // The first test goes after this connection's first cosign round, so that the checkpoint it
    // gossips to the other party is the one just verified, not one from an earlier run.
    void this.#o.firstRound().then(round, round);
  }

  /** Turn the agent on or off (see HotlineClient.setTestAgent). */
  set(on: boolean): void {
    this.#on = on;
    if (!on) {
      this.stop();
    } else if (this.#o.connected()) {
      this.start();
    }
  }

  /** One link test to each other party now, none while disconnected (see HotlineClient.sendLinkTests). */
  async sendLinkTests(): Promise<{ id: string; to: string }[]> {
    if (!this.#o.connected()) return [];
    const sent: { id: string; to: string }[] = [];
    // Checkpoint gossip: the newest checkpoint this device verified rides along, end to end.
    const note = (await this.#o.storage.read(this.#o.key)).audit?.note;
    const attachments = note === undefined ? undefined : [{ ...CHECKPOINT_ATTACHMENT, data: toBase64(utf8(note)) }];
    for (const to of otherParties(this.#o)) {
      const { id } = await this.#o.send({ to, precedence: 'ROUTINE', body: 'link test', lang: 'en', linkTest: true, ...(attachments ? { attachments } : {}) });
      sent.push({ id, to });
      this.#o.emit('link-test-sent', { id, to, at: this.#o.clock.now() });
    }
    return sent;
  }
}
