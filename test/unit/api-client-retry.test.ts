import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/core/api-client.js';
import * as routes from '../../src/shared/api/routes.js';

// A real HTTP server standing in for the platform behind a restarting router: the first request
// has its connection closed without an answer, the next ones are answered.
let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

async function cutFirst(): Promise<{ client: ApiClient; requests: () => number }> {
  let count = 0;
  server = createServer((req, res) => {
    count += 1;
    if (count === 1) {
      req.socket.destroy();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ apps: [] }));
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { client: new ApiClient(`http://127.0.0.1:${port}`, 'token'), requests: () => count };
}

describe('the API client through a restarting router', () => {
  it('asks a read again when its connection was closed before the answer', async () => {
    const { client, requests } = await cutFirst();
    expect(await client.call(routes.listApps)).toEqual({ apps: [] });
    expect(requests()).toBe(2);
  });

  it('never sends a change twice: a cut-off write fails and says the platform could not be reached', async () => {
    const { client, requests } = await cutFirst();
    await expect(client.call(routes.createApp, { body: { slug: 'shop' } })).rejects.toThrow(/Cannot reach the divio platform/);
    expect(requests()).toBe(1);
  });
});
