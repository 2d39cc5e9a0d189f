import WebSocket from 'ws';
import type { Agreement, DeviceSecretFile } from '../shared/protocol/schemas.js';
import type { ErrorFrame, ServerFrame } from '../shared/protocol/frames.js';
import { FRAME_BATCH } from '../client/inbox.js';
import { login } from '../test/helpers/ws-client.js';

/**
 * A device's link driven over raw `ws` with the wire protocol of shared/PROTOCOL.md, and nothing
 * else: challenge–response login over HTTP, the link with the `hotline.v1` and `bearer.<token>`
 * subprotocols, `hello`, then frames. Every delivered item is acknowledged on arrival, the items
 * of one socket read together in `{t:"ack", cursors}` frames of at most FRAME_BATCH (16), as the
 * client library acknowledges the items it handled in one batch (client/inbox.ts). Unlike test/helpers' LinkClient it keeps
 * no frame history, so that a long run costs the driver O(1) per frame.
 */
export class BenchLink {
  /** Error frames the server sent (a bench run with any is reported as failed). */
  readonly errors: ErrorFrame[] = [];
  /** When `hello` arrived (process.hrtime). */
  helloAt = 0n;
  readonly closed: Promise<void>;

  private constructor(
    readonly ws: WebSocket,
    readonly name: string,
    private readonly onFrame: (link: BenchLink, frame: ServerFrame) => void,
  ) {
    this.closed = new Promise((resolve) => ws.once('close', () => resolve()));
  }

  /**
   * Log in as `device` and open its link; resolves once `hello` has arrived. `onFrame` is given
   * here, not later: a backlog follows `hello` in the same read and must not go unheard.
   */
  static async open(url: string, device: DeviceSecretFile, agreement: Agreement, onFrame: (link: BenchLink, frame: ServerFrame) => void = () => {}): Promise<BenchLink> {
    const token = await login(url, device, agreement);
    const ws = new WebSocket(url.replace(/^http/, 'ws') + '/v1/link', ['hotline.v1', `bearer.${token}`], { perMessageDeflate: false });
    const c = device.certificate.cert;
    const link = new BenchLink(ws, `${c.party}/${c.device}`, onFrame);
    return new Promise((resolve, reject) => {
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`link upgrade refused for ${link.name}: ${res.statusCode}`)));
      let helloSeen = false;
      ws.on('message', (data) => {
        const frame = JSON.parse(data.toString()) as ServerFrame;
        if (!helloSeen) {
          if (frame.t !== 'hello') return reject(new Error(`${link.name}: expected hello first, got ${frame.t}`));
          helloSeen = true;
          link.helloAt = process.hrtime.bigint();
          resolve(link);
          return;
        }
        link.handle(frame);
      });
    });
  }

  /** Cursors of this read not acknowledged yet: ws hands over every message of a read synchronously. */
  private acks: number[] = [];

  private handle(frame: ServerFrame): void {
    if (frame.t === 'error') this.errors.push(frame);
    if (frame.t === 'deliver' || frame.t === 'receipt' || frame.t === 'event') {
      if (this.acks.length === 0) queueMicrotask(() => this.flushAcks());
      this.acks.push(frame.cursor);
    }
    this.onFrame(this, frame);
  }

  private flushAcks(): void {
    for (let i = 0; i < this.acks.length; i += FRAME_BATCH) {
      const part = this.acks.slice(i, i + FRAME_BATCH);
      this.send(part.length === 1 ? `{"t":"ack","cursor":${part[0]}}` : `{"t":"ack","cursors":[${part.join(',')}]}`);
    }
    this.acks = [];
  }

  send(text: string): void {
    this.ws.send(text);
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
    return this.closed;
  }
}
