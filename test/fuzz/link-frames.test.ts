import { describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { isHotlineErrorCode } from '../../shared/errors.js';
import { signReceipt } from '../../shared/crypto/receipt.js';
import { CN, JP } from '../helpers/deployment.js';
import { startTestServer } from '../helpers/test-server.js';
import { LinkClient, seal } from '../helpers/ws-client.js';
import { mutate, prng } from '../helpers/mutate.js';

// Mutated frames from an authenticated peer, over a real socket: every one is answered with an
// error frame carrying a known code (or the connection is closed with a 4xxx code for framing
// abuse), nothing mutated is delivered, and the server keeps serving. Bounded: a fixed number of
// seeded mutations.
const ROUNDS = 150;

describe('fuzzing the link', () => {
  it('answers every mutated frame with a coded refusal and keeps serving', async () => {
    const s = await startTestServer();
    const dir = await s.directory();
    const sender = s.dep.devices[`${JP}/op1`]!;
    const good = await seal({ sender, to: CN, seq: 1, directory: dir, plaintext: { body: '原本', lang: 'ja' } });
    const receipt = await signReceipt(s.dep.devices[`${CN}/op1`]!, good.header, 'delivered', Date.now());
    const cn = await s.connect(`${CN}/op1`);
    const token = await s.token(`${JP}/op1`);
    const closeCodes: number[] = [];
    let accepted = 0;

    for (let i = 0; i < ROUNDS; i++) {
      const rnd = prng(7000 + i);
      const kind = i % 3;
      const base = [{ t: 'envelope', envelope: good }, { t: 'receipt', receipt }, { t: 'ack', cursor: 1 }][kind];
      // A fresh link per round (same token: valid tokens cost no rate limit), so every answer is
      // attributable to its frame.
      const jp = await LinkClient.open(s.url, token);
      await jp.waitForType('hello');
      jp.send(mutate(base, rnd));
      const answer =
        kind === 2
          ? jp.sync().then(() => ({ t: 'synced' as const }))
          : jp.waitFor((f) => f.t === 'error' || f.t === 'accepted' || f.t === 'receipt-accepted', `answer to round ${i}`);
      const outcome = await Promise.race([answer, jp.closed.then((c) => ({ t: 'closed' as const, code: c.code }))]);
      for (const e of jp.ofType('error')) expect(isHotlineErrorCode(e.code), `round ${i}: ${e.code}`).toBe(true);
      if (outcome.t === 'closed') {
        expect(outcome.code, `round ${i}`).toBeGreaterThanOrEqual(4000);
        expect(outcome.code, `round ${i}`).toBeLessThan(5000);
        closeCodes.push(outcome.code);
        continue;
      }
      if (outcome.t === 'accepted' || outcome.t === 'receipt-accepted') accepted++;
      jp.ws.close();
      await jp.closed;
    }
    const jp = await s.connect(`${JP}/op1`);

    // Frame-level abuse (an unknown `t`, an oversized member) closed its own link with its code.
    expect(closeCodes.length).toBeGreaterThan(0);
    expect(closeCodes.every((c) => c === 4402 || c === 4413)).toBe(true);
    // Only unchanged-in-substance frames can have been accepted, and the original envelope at most once.
    expect(accepted).toBeLessThan(ROUNDS / 3);
    const delivered = cn.ofType('deliver');
    expect(delivered.every((d) => d.envelope.header.id === good.header.id)).toBe(true);

    // The server still serves: a fresh envelope goes through end to end.
    const next = await seal({ sender, to: CN, seq: 2, directory: dir, plaintext: { body: '後続', lang: 'ja' } });
    jp.send({ t: 'envelope', envelope: next });
    await jp.waitForType('accepted', (f) => f.id === next.header.id);
    await cn.waitForType('deliver', (f) => f.envelope.header.id === next.header.id);
    expect(jp.ws.readyState).toBe(WebSocket.OPEN);
  });
});
