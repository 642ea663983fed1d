import { createServer } from 'node:net';

export function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

async function ephemeralPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port: 0, host }, () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * A free TCP port on the host: `preferred` if free, else the first free one in a friendly range
 * (so URLs stay short and memorable), else any the kernel hands out.
 */
export async function findFreePort(options: { preferred?: number; range?: [number, number]; avoid?: number[]; host?: string } = {}): Promise<number> {
  const host = options.host ?? '127.0.0.1';
  const avoid = new Set(options.avoid ?? []);
  if (options.preferred && !avoid.has(options.preferred) && (await isPortFree(options.preferred, host))) return options.preferred;
  const [from, to] = options.range ?? [8000, 8099];
  for (let port = from; port <= to; port++) {
    if (!avoid.has(port) && (await isPortFree(port, host))) return port;
  }
  return ephemeralPort(host);
}
