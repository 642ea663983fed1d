import { request } from 'node:http';

export interface ProbeResult {
  status: number;
  body: string;
}

/**
 * One GET to 127.0.0.1 with an explicit Host header: `.localhost` names do not resolve through
 * Node's resolver, and apps check the Host header (ALLOWED_HOSTS).
 */
export function probeHttp(port: number, path: string, host: string, timeoutMs = 5000): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', headers: { host, accept: 'application/json' }, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        if (size < 64 * 1024) chunks.push(chunk);
        size += chunk.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}
