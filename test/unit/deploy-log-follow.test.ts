import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/core/api-client.js';
import { followLog } from '../../src/services/project/deploy.js';

// A real HTTP server that plays the platform behind a restarting router: the first answers break
// off mid-stream or say 502, later ones carry the whole log.
let server: Server | undefined;

afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

async function platform(answers: ((res: import('node:http').ServerResponse) => void)[]): Promise<{ client: ApiClient; requests: () => number }> {
  let count = 0;
  server = createServer((req, res) => {
    const answer = answers[Math.min(count, answers.length - 1)]!;
    count += 1;
    answer(res);
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { client: new ApiClient(`http://127.0.0.1:${port}`, 'token'), requests: () => count };
}

const cutAfter = (text: string) => (res: import('node:http').ServerResponse) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.write(text);
  setTimeout(() => res.socket?.destroy(), 20);
};
const whole = (text: string) => (res: import('node:http').ServerResponse) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(text);
};
const badGateway = (res: import('node:http').ServerResponse) => {
  res.writeHead(502, { 'content-type': 'text/html' });
  res.end('<html>502 Bad Gateway</html>');
};

describe('following a deployment log through a broken connection', () => {
  it('takes the stream up again and prints each line once, a half line only when it is whole', async () => {
    const log = 'Building\nJoining network\nRouting\nDeployed\n';
    const { client, requests } = await platform([cutAfter('Building\nJoining net'), badGateway, cutAfter('Building\nJoining network\n'), whole(log)]);
    const lines: string[] = [];
    await followLog(client, 'app', 'dep1', (line) => lines.push(line), true, { retryDelayMs: 10 });
    expect(lines).toEqual(['Building', 'Joining network', 'Routing', 'Deployed']);
    expect(requests()).toBe(4);
  });

  it('gives up with the error once the connection stays broken past the window', async () => {
    const { client } = await platform([badGateway]);
    const lines: string[] = [];
    await expect(followLog(client, 'app', 'dep1', (line) => lines.push(line), true, { retryDelayMs: 10, reconnectWindowMs: 100 })).rejects.toMatchObject({
      status: 502,
    });
    expect(lines).toEqual([]);
  });

  it('does not retry an answer that is not about the connection (404), nor without follow', async () => {
    const notFound = (res: import('node:http').ServerResponse): void => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'not_found', message: 'No deployment dep1' } }));
    };
    const missing = await platform([notFound, whole('never\n')]);
    await expect(followLog(missing.client, 'app', 'dep1', () => undefined, true, { retryDelayMs: 10 })).rejects.toMatchObject({ status: 404 });
    expect(missing.requests()).toBe(1);
    await new Promise<void>((resolve) => server!.close(() => resolve()));

    const once = await platform([badGateway, whole('never\n')]);
    await expect(followLog(once.client, 'app', 'dep1', () => undefined, false, { retryDelayMs: 10 })).rejects.toMatchObject({ status: 502 });
    expect(once.requests()).toBe(1);
  });
});
