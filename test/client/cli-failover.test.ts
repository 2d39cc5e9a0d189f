import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { HotlineClient } from '../../client/hotline-client.js';
import { MemoryStorage } from '../../client/storage/memory-storage.js';
import { serverUrls, type Io } from '../../client/cli/common.js';
import { createAgreement, createLogKey } from '../../shared/crypto/keys.js';
import { cli, cliRun, closedUrl } from '../helpers/cli.js';
import { CN, JP, tempDir, writeAgreement } from '../helpers/deployment.js';
import { onCleanup, startTestServer, type TestServer } from '../helpers/test-server.js';

/** The CLI with several relay URLs (docs/failover.md). */

function deviceFile(s: TestServer, key: string): { agreement: string; device: string } {
  const dir = tempDir();
  onCleanup(() => dir.remove());
  const device = join(dir.path, `${key.replace('/', '-')}.secret.json`);
  writeFileSync(device, JSON.stringify(s.dep.devices[key]), { mode: 0o600 });
  return { agreement: writeAgreement(dir.path, s.dep.agreement), device };
}

/** A message from cn-mnd's operator (a library client straight at the relay); its id. */
async function sendFromChina(s: TestServer, body: string): Promise<string> {
  const cn = new HotlineClient({ serverUrl: s.url, agreement: s.dep.agreement, device: s.dep.devices[`${CN}/op1`]!, storage: new MemoryStorage(), WebSocket });
  onCleanup(() => cn.stop());
  await cn.start();
  return (await cn.send({ to: JP, precedence: 'FLASH', body })).id;
}

const io = (env: NodeJS.ProcessEnv): Io => ({ out: () => {}, err: () => {}, env, interrupted: new Promise(() => {}), readStdin: async () => '' });

describe('hotline listen with several relay URLs', () => {
  it('given a closed port first and the relay second (--server twice), reaches the second and receives', { timeout: 90_000 }, async () => {
    const s = await startTestServer({ logLevel: 'warn' });
    const f = deviceFile(s, `${JP}/op1`);
    const down = await closedUrl();
    const listen = cliRun(['listen', '--device', f.device, '--agreement', f.agreement, '--server', down, '--server', s.url]);
    onCleanup(async () => {
      listen.stop();
      await listen.exited;
    });
    await listen.line(new RegExp(`^connected as ${JP}/op1 \\(operator\\) at ${s.url}$`));
    const id = await sendFromChina(s, '至急：通过第二个地址收到');
    await listen.line(new RegExp(`^   id ${id}$`));
    await listen.line(/^ {3}至急：通过第二个地址收到$/);
    // The first URL was tried and named.
    expect(listen.text()).toContain(`HL_ERR_CLIENT_UNREACHABLE: cannot reach ${down}`);
  });

  it('status, which needs no link, asks the next URL at once when the first does not answer', { timeout: 90_000 }, async () => {
    const s = await startTestServer({ logLevel: 'warn' });
    const f = deviceFile(s, `${JP}/op1`);
    const down = await closedUrl();
    const r = await cli(['status', '--device', f.device, '--agreement', f.agreement, '--json', '--server', `${down},${s.url}`]);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ party: JP });
  });

  it('takes the list from HOTLINE_SERVER, comma-separated, and goes on to the next URL when its relay stops', { timeout: 90_000 }, async () => {
    const first = await startTestServer({ logLevel: 'warn' });
    const f = deviceFile(first, `${JP}/op1`);
    const down = await closedUrl();
    const listen = cliRun(['listen', '--device', f.device, '--agreement', f.agreement, '--json'], { HOTLINE_SERVER: `${first.url}, ${down}` });
    onCleanup(async () => {
      listen.stop();
      await listen.exited;
    });
    await listen.line(new RegExp(`"type":"connected".*"url":"${first.url}"`));
    await first.close();
    // Told to reconnect: the next attempt goes to the second URL.
    const line = await listen.line(/"type":"disconnected"/);
    expect(JSON.parse(line)).toMatchObject({ url: first.url, nextUrl: down });
    expect(JSON.parse(line).retryInMs).toBeLessThanOrEqual(500);
  });

  it('resolves the URLs: --server (repeated, comma-separated) over HOTLINE_SERVER over a version-2 agreement’s URLs for the device’s party', () => {
    const a = 'http://a.test:8080';
    const b = 'https://b.test';
    const c = 'http://c.test';
    expect(serverUrls([a, `${b}/,${c}`, a], io({ HOTLINE_SERVER: c }))).toEqual([a, b, c]);
    expect(serverUrls(undefined, io({ HOTLINE_SERVER: `${c},${a}` }))).toEqual([c, a]);
    const jp = { id: JP, name: 'Japan', rootKey: createLogKey().logKey, languages: ['ja'] };
    const cn = { id: CN, name: 'China', rootKey: createLogKey().logKey, languages: ['zh'] };
    const { agreement } = createAgreement({
      name: 'failover.test',
      parties: [jp, cn],
      now: Date.UTC(2026, 0, 1),
      relays: [
        { party: JP, urls: [a, b], logKey: createLogKey().logKey },
        { party: CN, urls: [c], logKey: createLogKey().logKey },
      ],
    });
    expect(serverUrls(undefined, io({}), agreement, JP)).toEqual([a, b]);
    expect(serverUrls(undefined, io({}), agreement, CN)).toEqual([c]);
    expect(serverUrls([c], io({}), agreement, JP)).toEqual([c]);
    expect(() => serverUrls(undefined, io({}))).toThrow(/no server given/);
    expect(() => serverUrls(['a.test'], io({}))).toThrow(/must be an http:\/\/ or https:\/\/ URL, got "a.test"/);
  });
});
