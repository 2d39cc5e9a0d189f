import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { duration, statusText } from '../../client/cli/status.js';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import type { StatusResponse } from '../../shared/protocol/status.js';
import { cliRun } from '../helpers/cli.js';
import { CN, JP, tempDir, writeAgreement } from '../helpers/deployment.js';
import { onCleanup, startTestServer, type TestServer } from '../helpers/test-server.js';
import { fetchDirectory, fetchWrapKeys, login, seal } from '../helpers/ws-client.js';

function files(s: TestServer): { agreement: string; device: (key: string) => string } {
  const dir = tempDir();
  onCleanup(() => dir.remove());
  const agreement = writeAgreement(dir.path, s.dep.agreement);
  return {
    agreement,
    device: (key) => {
      const path = join(dir.path, `${key.replace('/', '-')}.secret.json`);
      writeFileSync(path, JSON.stringify(s.dep.devices[key]), { mode: 0o600 });
      return path;
    },
  };
}

describe('hotline status and listen --test-agent', () => {
  it('the test agent brings the link up; status shows it, and what waits and is overdue', async () => {
    const s = await startTestServer();
    const f = files(s);
    const flags = (key: string) => ['--device', f.device(key), '--agreement', f.agreement, '--server', s.url];

    // cn-mnd's console answers link tests by itself.
    const cn = new HotlineClient({ serverUrl: s.url, agreement: s.dep.agreement, device: s.dep.devices[`${CN}/op1`]!, storage: new MemoryStorage(), WebSocket });
    onCleanup(() => cn.stop());
    await cn.start();

    const agent = cliRun(['listen', ...flags(`${JP}/op1`), '--json', '--test-agent']);
    onCleanup(async () => {
      agent.stop();
      await agent.exited;
    });
    const sent = JSON.parse(await agent.line(/"type":"link-test-sent"/)) as { id: string; to: string };
    expect(sent.to).toBe(CN);
    const up = JSON.parse(await agent.line(/"type":"link.up"/)) as { event: { roundTripMs: number; messageId: string } };
    expect(up.event.messageId).toBe(sent.id);

    // A FLASH from cn-mnd to jp-mod, delivered (jp's listener answers) but not acknowledged. The
    // listener has published its prekey: the relay takes only an envelope wrapped to it.
    await agent.line(/"type":"prekeys"/);
    const cnRaw = await s.connect(`${CN}/op1`);
    const cnToken = await login(s.url, s.dep.devices[`${CN}/op1`]!, s.dep.agreement);
    const dir = await fetchDirectory(s.url, cnToken);
    const wrapKeys = await fetchWrapKeys(s.url, cnToken);
    expect([...wrapKeys.keys()]).toContain(`${JP}/op1`);
    const env = await seal({ sender: s.dep.devices[`${CN}/op1`]!, to: JP, seq: 1000, directory: dir, wrapKeys, precedence: 'FLASH', plaintext: { body: '紧急', lang: 'zh' } });
    cnRaw.send({ t: 'envelope', envelope: env });
    await cnRaw.waitForType('accepted');
    await agent.line(new RegExp(`"type":"message".*"${env.header.id}"`));
    await cnRaw.waitForType('receipt', (r) => r.receipt.receipt.messageId === env.header.id && r.receipt.receipt.kind === 'delivered');

    const jpStatus = cliRun(['status', ...flags(`${JP}/op2`)]);
    expect(await jpStatus.exited).toBe(0);
    const text = jpStatus.lines.join('\n');
    expect(text).toContain(`Waiting for ${JP} (1 message):`);
    expect(text).toMatch(new RegExp(`FLASH +${env.header.id} +from ${CN} +acknowledged +(9|10) min \\d\\d s left`));
    expect(text).toMatch(new RegExp(`${JP} → ${CN} +UP since .*round trip ${up.event.roundTripMs} ms`));
    expect(text).toMatch(new RegExp(`${CN} → ${JP} +no test recorded`));

    const cnStatus = cliRun(['status', ...flags(`${CN}/op1`), '--json']);
    expect(await cnStatus.exited).toBe(0);
    const st = JSON.parse(cnStatus.lines[0]!) as StatusResponse;
    expect(st.party).toBe(CN);
    expect(st.sent).toEqual([expect.objectContaining({ messageId: env.header.id, rung: 'acknowledged', overdue: false, level: 0 })]);
    expect(st.links).toEqual([expect.objectContaining({ from: JP, to: CN, status: 'up' })]);
  });

  it('an archive device may not read the status', async () => {
    const s = await startTestServer();
    const f = files(s);
    const r = cliRun(['status', '--device', f.device(`${JP}/archive1`), '--agreement', f.agreement, '--server', s.url]);
    expect(await r.exited).toBe(1);
    expect(r.lines.join('\n')).toContain('HL_ERR_AUTH_FORBIDDEN');
  });
});

describe('statusText', () => {
  it('says overdue with the level, time left, and a failed link test with its reason', () => {
    const now = Date.UTC(2026, 0, 1, 12);
    const text = statusText(
      {
        party: CN,
        now,
        waiting: [{ messageId: 'a'.repeat(32), from: JP, to: CN, precedence: 'FLASH', rung: 'acknowledged', acceptedAt: now - 17 * 60_000, dueAt: now - 7 * 60_000, remainingMs: -7 * 60_000, overdue: true, level: 2 }],
        sent: [{ messageId: 'b'.repeat(32), from: CN, to: JP, precedence: 'ROUTINE', rung: 'delivered', acceptedAt: now, dueAt: now + 3_600_000, remainingMs: 3_600_000, overdue: false, level: 0 }],
        links: [{ from: CN, to: JP, status: 'down', since: now - 60_000, last: { messageId: 'c'.repeat(32), sentAt: now - 60_000, ok: false, reason: `no device of ${JP} online`, at: now - 60_000 } }],
      },
      [JP, CN],
    );
    expect(text).toContain(`! FLASH     ${'a'.repeat(32)}  from ${JP}    acknowledged OVERDUE 7 min 00 s (level 2)`);
    expect(text).toContain(`ROUTINE   ${'b'.repeat(32)}  to ${JP}      delivered    1 h 00 min left`);
    expect(text).toMatch(new RegExp(`! ${CN} → ${JP} +DOWN since .* FAILED: no device of ${JP} online \\(1 min 00 s ago\\)`));
    expect(duration(-12_345)).toBe('12 s');
  });

  it('counts messages, not rungs: a message waiting for delivery and acknowledgement is one line', () => {
    const now = Date.UTC(2026, 0, 1, 12);
    const id = 'd'.repeat(32);
    const rung = (r: 'delivered' | 'acknowledged', remainingMs: number, level: number) => ({
      messageId: id, from: JP, to: CN, precedence: 'FLASH' as const, rung: r, acceptedAt: now - 60_000, dueAt: now + remainingMs, remainingMs, overdue: remainingMs < 0, level,
    });
    const text = statusText({ party: JP, now, waiting: [], sent: [rung('delivered', -30_000, 1), rung('acknowledged', 540_000, 0)], links: [] }, [JP, CN]);
    expect(text).toContain(`Sent by ${JP}, not yet delivered/acknowledged (1 message):`);
    expect(text).toContain(`! FLASH     ${id}  to ${CN}      delivered    OVERDUE 30 s (level 1); acknowledged 9 min 00 s left`);
    expect(text.split('\n').filter((l) => l.includes(id))).toHaveLength(1);
    expect(text).toContain(`Waiting for ${JP} (0 messages):`);
  });
});
