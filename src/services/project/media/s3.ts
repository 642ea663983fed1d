/**
 * The S3 connection a sync uses: one keep-alive agent sized to the concurrency, credentials that
 * refresh themselves, and one retry policy for every request (the SDK's own retries are off: it
 * cannot replay a streamed body, and it does not refresh credentials on ExpiredToken).
 *
 * Listing and GetObject go through ObjectHttp; the AWS SDK's client, needed for multipart
 * uploads and deletes, is loaded on first use: a pull never loads it (about 80 ms of a CLI's
 * start on a small machine, before the first byte moves).
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { S3Client } from '@aws-sdk/client-s3';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import { localhostLookup } from '../../../core/localhost-lookup.js';
import { ObjectHttp } from './object-http.js';

export interface MediaRemote {
  /** e.g. http://s3.divio.localhost:8080 or http://127.0.0.1:PORT */
  endpoint: string;
  region: string;
  bucket: string;
  /** '' or 'some/prefix/': keys under the prefix map to local paths without it. */
  prefix: string;
  credentials: AwsCredentialIdentityProvider;
}

export interface MediaS3 {
  readonly bucket: string;
  readonly prefix: string;
  /** The SDK's clients, on the sync's connections (loaded on first call). */
  sdk(): Promise<SdkClients>;
  /** ListObjectsV2, GetObject and small PutObject without the SDK's per-request machinery (see object-http.ts). */
  readonly objects: ObjectHttp;
  /**
   * Runs one request (`attempt` is called again for each retry, so it can make a fresh body) in
   * one of the `concurrency` request slots; a download's slot is held until its body is read.
   */
  request<T>(attempt: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** A request that sends or receives nothing for this long is given up (and retried). */
  readonly idleTimeoutMs: number;
  /** How often the credentials provider was called. */
  readonly credentialRefreshes: number;
  destroy(): void;
}

export interface SdkClients {
  /**
   * For requests sent WITHOUT per-request options: the SDK then reuses one resolved middleware
   * stack per command (its per-request cost halves; a call with options would clear that cache).
   * The sync's signal still aborts them: an abort destroys the connections.
   */
  fast: S3Client;
  /** For requests that need their own abort signal (streamed bodies: a read error must end the request). */
  client: S3Client;
}

const MAX_ATTEMPTS = 4;
const FIRST_BACKOFF_MS = 150;
const CONNECT_TIMEOUT_MS = 10_000;
/** A request that sends or receives nothing for this long is given up (and retried). */
const IDLE_TIMEOUT_MS = 120_000;
/** Refresh this long before expiry, or after three quarters of a shorter lifetime. */
const REFRESH_MARGIN_MS = 30_000;

const ignore = () => undefined;
const SILENT = { trace: ignore, debug: ignore, info: ignore, warn: ignore, error: ignore };

export function connectMediaS3(remote: MediaRemote, concurrency: number, signal?: AbortSignal): MediaS3 {
  // The SDK warns once per process that Node 20 support ends in 2027; a CLI user can do nothing about it.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const agentOptions = { keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency, lookup: localhostLookup };
  const httpAgent = new HttpAgent(agentOptions);
  const httpsAgent = new HttpsAgent(agentOptions);
  const credentials = new RefreshingCredentials(remote.credentials);
  let clients: Promise<SdkClients> | undefined;
  const loadSdk = async (): Promise<SdkClients> => {
    const [{ S3Client }, { NodeHttpHandler }] = await Promise.all([import('@aws-sdk/client-s3'), import('@smithy/node-http-handler')]);
    const requestHandler = new NodeHttpHandler({
      httpAgent,
      httpsAgent,
      connectionTimeout: CONNECT_TIMEOUT_MS,
      socketTimeout: IDLE_TIMEOUT_MS,
    });
    const clientFor = (cacheMiddleware: boolean) => {
      const client = new S3Client({
        endpoint: remote.endpoint,
        region: remote.region,
        credentials: credentials.provider,
        forcePathStyle: true,
        // The embedded store refuses aws-chunked bodies, which the SDK's default checksum mode sends;
        // integrity is checked with this engine's own digests instead.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        maxAttempts: 1,
        cacheMiddleware,
        // Without a logger the SDK writes some warnings to the console; failures are reported by the sync.
        logger: SILENT,
        requestHandler,
      });
      // It would copy every request's input and output for the (silent) logger.
      client.middlewareStack.remove('loggerMiddleware');
      return client;
    };
    // Two clients on one connection pool: any call with options clears the SDK's middleware cache.
    return { fast: clientFor(true), client: clientFor(false) };
  };
  const objects = new ObjectHttp({
    endpoint: remote.endpoint,
    region: remote.region,
    bucket: remote.bucket,
    credentials: credentials.provider,
    httpAgent,
    httpsAgent,
    idleTimeoutMs: IDLE_TIMEOUT_MS,
    signal,
  });
  const slots = new Semaphore(concurrency);
  const abort = () => {
    httpAgent.destroy();
    httpsAgent.destroy();
  };
  signal?.addEventListener('abort', abort, { once: true });

  return {
    bucket: remote.bucket,
    prefix: remote.prefix,
    sdk: () => (clients ??= loadSdk()),
    objects,
    idleTimeoutMs: IDLE_TIMEOUT_MS,
    get credentialRefreshes() {
      return credentials.calls;
    },
    async request<T>(attempt: () => Promise<T>, requestSignal?: AbortSignal): Promise<T> {
      await slots.acquire(requestSignal);
      try {
        return await withRetries(attempt, credentials, requestSignal);
      } finally {
        slots.release();
      }
    },
    destroy() {
      signal?.removeEventListener('abort', abort);
      clients?.then(
        ({ fast, client }) => {
          fast.destroy();
          client.destroy();
        },
        () => undefined,
      );
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}

async function withRetries<T>(attempt: () => Promise<T>, credentials: RefreshingCredentials, signal?: AbortSignal): Promise<T> {
  let refreshedForThisRequest = false;
  for (let attemptNumber = 1; ; attemptNumber++) {
    signal?.throwIfAborted();
    const generation = credentials.generation;
    try {
      return await attempt();
    } catch (error) {
      if (signal?.aborted) throw error;
      // Refused credentials are refreshed and tried once more: they may have expired on the
      // server's clock before ours, or been replaced by newer ones.
      if (isCredentialRefusal(error) && !refreshedForThisRequest) {
        refreshedForThisRequest = true;
        credentials.invalidate(generation);
        continue;
      }
      if (attemptNumber >= MAX_ATTEMPTS || !isTransient(error)) throw error;
      const backoff = FIRST_BACKOFF_MS * 4 ** (attemptNumber - 1) * (0.5 + Math.random() / 2);
      await sleep(backoff, signal);
    }
  }
}

export function s3ErrorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { name, Code, code } = error as { name?: unknown; Code?: unknown; code?: unknown };
  for (const candidate of [Code, name, code]) if (typeof candidate === 'string' && candidate !== 'Error') return candidate;
  return undefined;
}

export function httpStatusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

function isCredentialRefusal(error: unknown): boolean {
  return ['ExpiredToken', 'TokenRefreshRequired', 'InvalidAccessKeyId', 'InvalidToken'].includes(s3ErrorCode(error) ?? '');
}

const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'SlowDown',
  'InternalError',
  'ServiceUnavailable',
  'ThrottlingException',
  // Our own: a transfer that arrived different from what was sent (see transfer.ts).
  'DigestMismatch',
]);

function isTransient(error: unknown): boolean {
  const status = httpStatusOf(error);
  if (status !== undefined && (status >= 500 || status === 429)) return true;
  const code = s3ErrorCode(error);
  if (code && TRANSIENT_CODES.has(code)) return true;
  return /socket hang up|premature close/i.test(error instanceof Error ? error.message : '');
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener('abort', aborted);
      resolve();
    }
    function aborted() {
      clearTimeout(timer);
      reject(signal?.reason);
    }
    signal?.addEventListener('abort', aborted, { once: true });
  });
}

/**
 * Wraps the caller's provider: one call at a time, the identity reused until shortly before it
 * expires, and thrown away when the server refuses it. Marked `memoized` so that the SDK calls it
 * on every request instead of applying its own five-minute margin (which would call a provider of
 * short-lived keys on every request).
 */
class RefreshingCredentials {
  calls = 0;
  generation = 0;
  private current: Promise<{ identity: AwsCredentialIdentity; refreshAt: number }> | undefined;
  readonly provider: AwsCredentialIdentityProvider & { memoized: true };

  constructor(private readonly source: AwsCredentialIdentityProvider) {
    const provider = async () => {
      const cached = this.current;
      if (cached) {
        const result = await cached.catch(() => undefined);
        if (result && Date.now() < result.refreshAt) return result.identity;
        if (this.current === cached) this.current = undefined;
      }
      const pending = (this.current ??= this.fetch());
      try {
        return (await pending).identity;
      } catch (error) {
        // A failed call is not remembered: the next request asks again.
        if (this.current === pending) this.current = undefined;
        throw error;
      }
    };
    this.provider = Object.assign(provider, { memoized: true as const });
  }

  invalidate(generation: number): void {
    if (generation !== this.generation) return;
    this.generation++;
    this.current = undefined;
  }

  private async fetch(): Promise<{ identity: AwsCredentialIdentity; refreshAt: number }> {
    this.calls++;
    const obtainedAt = Date.now();
    const identity = await this.source();
    const expiresAt = identity.expiration?.getTime() ?? Infinity;
    const margin = Math.min(REFRESH_MARGIN_MS, (expiresAt - obtainedAt) / 4);
    return { identity, refreshAt: expiresAt - Math.max(margin, 0) };
  }
}

/** Counts requests in flight; waiters are served in order. */
class Semaphore {
  private waiting: (() => void)[] = [];

  constructor(private available: number) {}

  async acquire(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (this.available > 0) {
      this.available--;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', aborted);
        resolve();
      };
      const aborted = () => {
        this.waiting = this.waiting.filter((waiter) => waiter !== grant);
        reject(signal?.reason);
      };
      this.waiting.push(grant);
      signal?.addEventListener('abort', aborted, { once: true });
    });
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.available++;
  }
}
