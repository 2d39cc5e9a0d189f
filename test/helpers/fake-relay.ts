import WebSocket from 'ws';
import { relayLinkUrl } from '../../server/federation/relay-link.js';
import { agreementHash, CONTEXT, signingBytes } from '../../shared/crypto/keys.js';
import { ed25519Sign } from '../../shared/crypto/ed25519.js';
import { randomBytes } from '../../shared/crypto/random.js';
import { fromBase64, toBase64 } from '../../shared/encoding/base64.js';
import { RELAY_LINK_PROTOCOL, type RelayAuthStatement } from '../../shared/protocol/relay-frames.js';
import type { Agreement, RelaySecretFile } from '../../shared/protocol/schemas.js';

export interface Frame {
  t: string;
  [k: string]: unknown;
}

/**
 * The test standing in for a peer relay (`identity`) on its link to the relay at `url` (of party
 * `peer`): the handshake as PROTOCOL.md specifies it, then raw frames both ways.
 */
export async function fakeRelay(agreement: Agreement, url: string, identity: RelaySecretFile, peer: string) {
  const hash = agreementHash(agreement);
  const ws = new WebSocket(relayLinkUrl(url), RELAY_LINK_PROTOCOL);
  const frames: Frame[] = [];
  let wake = () => {};
  ws.on('message', (d) => {
    frames.push(JSON.parse(d.toString()) as Frame);
    wake();
  });
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  /** The next frame of type `t` received (bounded: 200 frames or the close). */
  const nextFrame = async (t: string): Promise<Frame> => {
    for (let i = 0; i < 200; i++) {
      const k = frames.findIndex((f) => f.t === t);
      if (k >= 0) return frames.splice(k, 1)[0]!;
      await Promise.race([new Promise<void>((r) => (wake = r)), closed]);
      if (ws.readyState === WebSocket.CLOSED && !frames.some((f) => f.t === t)) throw new Error(`closed before ${t}`);
    }
    throw new Error(`no ${t}`);
  };
  const send = (f: Frame) => ws.send(JSON.stringify(f));
  const challenge = toBase64(randomBytes(32));
  send({ t: 'relay-hello', v: 1, agreement: hash, certificate: identity.certificate, challenge });
  const hello = await nextFrame('relay-hello');
  await nextFrame('relay-auth');
  const me = identity.certificate.cert;
  const statement: RelayAuthStatement = { v: 1, agreement: hash, party: me.party, relay: me.relay, peer, challenge: hello.challenge as string, ownChallenge: challenge };
  send({ t: 'relay-auth', signature: toBase64(await ed25519Sign(fromBase64(identity.signSecret, 32), signingBytes(CONTEXT.relayLink, statement))) });
  let n = 0;
  return { ws, frames, nextFrame, sendNumbered: (f: Frame) => send({ ...f, n: ++n }) };
}
