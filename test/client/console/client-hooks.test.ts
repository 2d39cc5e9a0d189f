import { afterEach, describe, expect, it } from 'vitest';
import { HotlineClient } from '../../../client/hotline-client.js';
import { MemoryStorage } from '../../../client/storage/memory-storage.js';
import { HotlineError } from '../../../shared/errors.js';
import { enrollDevice } from '../../../shared/crypto/keys.js';
import type { DeviceCertBody } from '../../../shared/protocol/schemas.js';
import { makeDeployment, type TestDeployment } from '../../helpers/fixtures.js';
import { ManualClock } from '../../helpers/manual-clock.js';
import { FakeRelay, type FakeSocket } from '../fake-relay.js';
import { next } from '../../helpers/events.js';

/**
 * The HotlineClient hooks the operator console is built on: the test-agent switch at run time,
 * the `directory` event, and `approveRecipients` (no seal, nor reseal, to unconfirmed peer keys).
 */

const clients: HotlineClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
});


async function setup(approveRecipients?: (r: readonly DeviceCertBody[]) => void): Promise<{ d: TestDeployment; clock: ManualClock; relay: FakeRelay; client: HotlineClient; connect: () => Promise<FakeSocket> }> {
  const d = await makeDeployment();
  const clock = new ManualClock(d.now + 1000);
  const relay = new FakeRelay(d.agreement, Object.values(d.devices).map((x) => x.certificate), () => clock.now());
  const client = new HotlineClient({
    serverUrl: 'http://relay.test',
    agreement: d.agreement,
    device: d.devices.jpOp,
    storage: new MemoryStorage(),
    WebSocket: relay.WebSocket,
    fetch: relay.fetch,
    clock,
    random: () => 0.5,
    ...(approveRecipients ? { approveRecipients } : {}),
  });
  clients.push(client);
  const connect = async () => {
    const started = client.start();
    const sock = await relay.socket(relay.sockets.length);
    sock.accept(client.me.party, client.me.device, clock.now());
    await started;
    return sock;
  };
  return { d, clock, relay, client, connect };
}

describe('HotlineClient.setTestAgent', () => {
  it('starts sending link tests when switched on (one now, then one per interval) and stops when switched off', async () => {
    const { d, clock, client, connect } = await setup();
    const sock = await connect();
    expect(sock.count('envelope')).toBe(0);

    const first = next(client, 'link-test-sent');
    client.setTestAgent(true);
    expect((await first).to).toBe('cn-mnd');
    const env = await sock.waitFor('envelope');
    expect(env.envelope.header.linkTest).toBe(true);

    const second = next(client, 'link-test-sent');
    clock.advance(d.agreement.linkTest.intervalMs);
    await second;
    await sock.waitFor('envelope', (f) => f.envelope.header.id !== env.envelope.header.id);
    expect(sock.count('envelope')).toBe(2);

    client.setTestAgent(false);
    clock.advance(3 * d.agreement.linkTest.intervalMs);
    // The compose chain has run everything queued: nothing more was sent.
    await client.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'marker' });
    expect(sock.sent.filter((f) => f.t === 'envelope' && f.envelope.header.linkTest).length).toBe(2);
  });
});

describe('HotlineClient directory event', () => {
  it('reports the verified certificates at each fetch, a newly enrolled device among them', async () => {
    const { d, relay, client, connect } = await setup();
    const first = next(client, 'directory');
    await connect();
    const seen = (await first).certificates.map((c) => `${c.party}/${c.device}`);
    expect(seen).toContain('cn-mnd/cn-op-1');

    const extra = await enrollDevice(d.cn, { device: 'cn-op-9', role: 'operator', now: d.now });
    relay.certificates.push(extra.certificate);
    const again = next(client, 'directory');
    await client.refreshDirectory();
    expect((await again).certificates.map((c) => `${c.party}/${c.device}`)).toContain('cn-mnd/cn-op-9');
  });
});

describe('HotlineClient approveRecipients', () => {
  it('refuses to seal when the hook throws, and drops a message whose reseal (after HL_ERR_ENVELOPE_RECIPIENTS) it refuses', async () => {
    let allowed = new Set<string>();
    const approve = (recipients: readonly DeviceCertBody[]) => {
      const bad = recipients.filter((c) => c.party === 'cn-mnd' && !allowed.has(`${c.party}/${c.device}`));
      if (bad.length > 0) throw new HotlineError('HL_ERR_ENVELOPE_RECIPIENTS', `unconfirmed: ${bad.map((c) => c.device).join(', ')}`);
    };
    const { d, relay, client, connect } = await setup(approve);
    const sock = await connect();
    await expect(client.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'x' })).rejects.toMatchObject({ code: 'HL_ERR_ENVELOPE_RECIPIENTS' });
    expect(sock.count('envelope')).toBe(0);

    allowed = new Set(client.directory().filter((c) => c.party === 'cn-mnd').map((c) => `${c.party}/${c.device}`));
    const { id } = await client.send({ to: 'cn-mnd', precedence: 'ROUTINE', body: 'sealed for the confirmed keys' });
    await sock.waitFor('envelope', (f) => f.envelope.header.id === id);

    // A device enrolled meanwhile: the server refuses, the client refetches the directory and
    // would reseal for the new key; the hook refuses and the message is dropped, not resealed.
    const extra = await enrollDevice(d.cn, { device: 'cn-op-9', role: 'operator', now: d.now });
    relay.certificates.push(extra.certificate);
    const refused = next(client, 'refused');
    const dirEvent = next(client, 'directory');
    sock.push({ t: 'error', code: 'HL_ERR_ENVELOPE_RECIPIENTS', message: 'recipients differ', ref: id });
    expect((await refused).ref).toBe(id);
    expect((await dirEvent).certificates.some((c) => c.device === 'cn-op-9')).toBe(true);
    expect(sock.count('envelope')).toBe(1);
  });
});
