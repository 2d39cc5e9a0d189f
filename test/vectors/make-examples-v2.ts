// Regenerates test/vectors/examples-v2.json, the two-relay worked examples quoted in
// shared/PROTOCOL.md ("Relays"), from the parties of examples-v1.json (test keys, published on purpose).
// Run: npx tsx test/vectors/make-examples-v2.ts
import { readFileSync, writeFileSync } from 'node:fs';
import { agreementHash, CONTEXT, createAgreement, createLogKey, enrolRelay, parsePartySecret, signingBytes } from '../../shared/crypto/keys.js';
import { ed25519Sign } from '../../shared/crypto/ed25519.js';
import { fromBase64, toBase64 } from '../../shared/encoding/base64.js';
import type { RelayAuthStatement } from '../../shared/protocol/relay-frames.js';

const v1 = JSON.parse(readFileSync(new URL('./examples-v1.json', import.meta.url), 'utf8'));
const jp = parsePartySecret(v1.partySecret.jp);
const cn = parsePartySecret(v1.partySecret.cn);
const now = v1.agreement.createdAt as number;
const logs = { jp: createLogKey(), cn: createLogKey() };
const { agreement } = createAgreement({
  name: 'jp-cn.hotline.example',
  parties: [jp.party, cn.party],
  logKey: logs.jp.logKey,
  relays: [
    { party: 'jp-mod', urls: ['https://hotline.mod.go.jp.example'], logKey: logs.jp.logKey },
    { party: 'cn-mnd', urls: ['https://hotline.mod.gov.cn.example'], logKey: logs.cn.logKey },
  ],
  now,
});
const relays = {
  jp: await enrolRelay(jp, { relay: 'jp-relay', logKey: logs.jp.logKey, now, validForMs: 365 * 86_400_000 }),
  cn: await enrolRelay(cn, { relay: 'cn-relay', logKey: logs.cn.logKey, now, validForMs: 365 * 86_400_000 }),
};
// One handshake: the challenges each relay sent in its relay-hello, and jp-relay's relay-auth.
const challenges = { jp: toBase64(new Uint8Array(32).fill(1)), cn: toBase64(new Uint8Array(32).fill(2)) };
const statement: RelayAuthStatement = {
  v: 1,
  agreement: agreementHash(agreement),
  party: 'jp-mod',
  relay: 'jp-relay',
  peer: 'cn-mnd',
  challenge: challenges.cn,
  ownChallenge: challenges.jp,
};
const signature = toBase64(await ed25519Sign(fromBase64(relays.jp.signSecret, 32), signingBytes(CONTEXT.relayLink, statement)));
writeFileSync(
  new URL('./examples-v2.json', import.meta.url),
  JSON.stringify({ source: 'test/vectors/make-examples-v2.ts', logSecrets: logs, agreement, agreementHash: agreementHash(agreement), relays, handshake: { challenges, statement, signature } }, null, 2) + '\n',
);
