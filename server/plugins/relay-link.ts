import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import { WebSocketServer, type WebSocket } from 'ws';
import { HotlineError } from '../../shared/errors.js';
import { MAX_RELAY_FRAME_BYTES, RELAY_LINK_PATH, RELAY_LINK_PROTOCOL } from '../../shared/protocol/relay-frames.js';
import type { RelayLink } from '../federation/relay-link.js';
import type { Lifecycle } from '../lifecycle.js';

export interface RelayLinkPluginOptions {
  /** One per peer relay (two parties: one). */
  links: readonly RelayLink[];
  lifecycle: Lifecycle;
}

/**
 * The relay-to-relay link's endpoint (`GET /v1/relay-link`, PROTOCOL.md "The relay-to-relay
 * link"): a WebSocket with the subprotocol `hotline.relay.v1`, authenticated inside by the relays'
 * certificates (so the upgrade itself needs no token). It starts the links' dialling when the app
 * is ready and stops them before the app closes.
 */
export const relayLinkPlugin: FastifyPluginAsync<RelayLinkPluginOptions> = async (app, options) => {
  const { links, lifecycle } = options;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_RELAY_FRAME_BYTES,
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: (protocols) => (protocols.has(RELAY_LINK_PROTOCOL) ? RELAY_LINK_PROTOCOL : false),
  });

  function refuse(socket: Duplex, error: HotlineError): void {
    const body = JSON.stringify({ error: { code: error.code, message: error.message } });
    socket.end(
      `HTTP/1.1 ${error.httpStatus} ${STATUS_CODES[error.httpStatus] ?? ''}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }

  function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if ((req.url ?? '').split('?')[0] !== RELAY_LINK_PATH) return;
    socket.on('error', () => socket.destroy());
    if (lifecycle.shuttingDown) return refuse(socket, new HotlineError('HL_ERR_SERVER_SHUTTING_DOWN', 'the relay is stopping'));
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
    if (!offered.includes(RELAY_LINK_PROTOCOL)) return refuse(socket, new HotlineError('HL_ERR_INPUT_SCHEMA', `offer the "${RELAY_LINK_PROTOCOL}" subprotocol`));
    // Which peer it is, the handshake says; with two parties there is one link to hand it to.
    // With more, each link refuses a certificate of another party, so the handshake is tried on
    // the link its hello names (see RelayLinks.accept).
    wss.handleUpgrade(req, socket, head, (ws) => acceptOn(links, ws));
  }
  app.server.on('upgrade', onUpgrade);

  app.addHook('onReady', async () => {
    for (const l of links) l.start();
  });
  app.addHook('preClose', async () => {
    app.server.off('upgrade', onUpgrade);
    await Promise.all(links.map((l) => l.stop()));
    wss.close();
  });
};

/** Hand an inbound connection to its link: the one of the party its first frame names. */
function acceptOn(links: readonly RelayLink[], ws: WebSocket): void {
  if (links.length === 1) return links[0]!.accept(ws);
  ws.once('message', (data) => {
    let party: string | undefined;
    try {
      party = (JSON.parse(data.toString()) as { certificate?: { cert?: { party?: string } } }).certificate?.cert?.party;
    } catch {
      party = undefined;
    }
    const link = links.find((l) => l.peer === party) ?? links[0]!;
    link.accept(ws, data);
  });
}
