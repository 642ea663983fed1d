/** Raw HTTP against the test platform's API, and users/apps made for one test file. */
export interface RawResponse {
  status: number;
  body: any;
  headers: Headers;
}

export interface RawRequest {
  method?: string;
  token?: string;
  /** Sent as JSON unless `raw` is given. */
  body?: unknown;
  raw?: string | Uint8Array;
  contentType?: string;
  headers?: Record<string, string>;
}

/**
 * Refused connections are tried again for a while, as the CLI does (src/core/api-client.ts): the
 * router restarts when an environment's first deploy has it join that network, and a refused
 * connection never reached the platform.
 */
async function untilAccepted<T>(attempt: () => Promise<T>, idempotent: boolean, windowMs = 20_000): Promise<T> {
  const deadline = Date.now() + windowMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      const code = (error as { cause?: { code?: string } }).cause?.code;
      // A read cut off by the restart is asked again too; a change might have happened, so not that.
      const retryable = code === 'ECONNREFUSED' || (idempotent && (code === 'UND_ERR_SOCKET' || code === 'ECONNRESET'));
      if (!retryable || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

export async function request(endpoint: string, path: string, options: RawRequest = {}): Promise<RawResponse> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  let body: string | Uint8Array | undefined;
  if (options.raw !== undefined) body = options.raw;
  else if (options.body !== undefined) body = JSON.stringify(options.body);
  if (body !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
  const method = options.method ?? 'GET';
  const response = await untilAccepted(() => fetch(endpoint + path, { method, headers, body }), method === 'GET');
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

export interface TestUser {
  name: string;
  token: string;
}

export async function createUser(endpoint: string, operatorToken: string, prefix: string): Promise<TestUser> {
  const name = `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
  const res = await request(endpoint, '/v1/users', { method: 'POST', token: operatorToken, body: { name } });
  if (res.status !== 201) throw new Error(`creating user ${name}: ${res.status} ${JSON.stringify(res.body)}`);
  return { name, token: res.body.token };
}

export async function createApp(endpoint: string, token: string, prefix: string): Promise<string> {
  const slug = `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
  const res = await request(endpoint, '/v1/apps', { method: 'POST', token, body: { slug } });
  if (res.status !== 201) throw new Error(`creating app ${slug}: ${res.status} ${JSON.stringify(res.body)}`);
  return slug;
}

/**
 * GET through the router with an environment's Host header. Not fetch: it sends its own Host
 * whatever the caller gives, and Node cannot resolve `.localhost` names.
 */
export async function viaRouter(port: number, host: string, path: string): Promise<{ status: number; body: string }> {
  const { request: httpRequest } = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: { host: `${host}:${port}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}
