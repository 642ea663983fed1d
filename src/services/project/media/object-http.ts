/**
 * ListObjectsV2, GetObject and small PutObject, signed with the SDK's own SigV4 signer
 * (@smithy/signature-v4), read with the SDK's own XML parser (@aws-sdk/xml-builder) and sent on
 * the sync's agent, without the client's middleware stack: a sync of thousands of small files
 * spends most of its client CPU in that stack (endpoint rules, schema serde, retry and checksum
 * middleware), about half a millisecond per request, which on a two-core machine is time taken
 * from the store; and a pull then never loads the client at all. Multipart uploads and deletes
 * go through the S3Client. Errors carry the S3 error code as `name` and the HTTP status in
 * `$metadata`, as the SDK's do, so retries treat both alike.
 */
import { request as httpRequest, type Agent as HttpAgent, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';
import { parseXML } from '@aws-sdk/xml-builder';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import { NodeSha256 } from '../../../shared/node-sha256.js';
import { errorBodyOf } from './download-check.js';

export interface ObjectResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** Must be consumed (or destroyed) by the caller. */
  body: IncomingMessage;
}

export interface ObjectHttpOptions {
  endpoint: string;
  region: string;
  bucket: string;
  credentials: AwsCredentialIdentityProvider;
  httpAgent: HttpAgent;
  httpsAgent: HttpsAgent;
  idleTimeoutMs: number;
  signal?: AbortSignal;
}

const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';

export interface ListedObject {
  /** The whole key, prefix included. */
  key: string;
  size: number;
  etag: string;
}

export interface ListingPage {
  objects: ListedObject[];
  /** Where the next page starts; undefined on the last page. */
  continuationToken: string | undefined;
}

/** A signed request, ready for http(s).request: what a download worker is handed. */
export interface SignedObjectRequest {
  protocol: string;
  hostname: string;
  port: string | undefined;
  method: string;
  path: string;
  headers: Record<string, string>;
}

export class ObjectHttp {
  private readonly signer: SignatureV4;
  private readonly url: URL;

  constructor(private readonly options: ObjectHttpOptions) {
    this.url = new URL(options.endpoint);
    this.signer = new SignatureV4({
      service: 's3',
      region: options.region,
      credentials: options.credentials,
      sha256: NodeSha256,
      // S3 signs the path exactly as sent (already escaped below).
      uriEscapePath: false,
      applyChecksum: false,
    });
  }

  /** Resolves with the response once its headers arrive (2xx only; anything else throws). */
  async get(key: string): Promise<ObjectResponse> {
    return this.send('GET', key, { 'x-amz-content-sha256': UNSIGNED_PAYLOAD });
  }

  /** One page (up to 1,000 keys) of ListObjectsV2 under `prefix`. */
  async list(prefix: string, continuationToken: string | undefined): Promise<ListingPage> {
    const query: Record<string, string> = { 'list-type': '2' };
    if (prefix) query.prefix = prefix;
    if (continuationToken) query['continuation-token'] = continuationToken;
    const response = await this.send('GET', '', { 'x-amz-content-sha256': UNSIGNED_PAYLOAD }, undefined, query);
    const chunks: Buffer[] = [];
    for await (const chunk of response.body) chunks.push(chunk as Buffer);
    return parseListing(Buffer.concat(chunks).toString('utf8'));
  }

  /** A GetObject to be sent elsewhere (a download worker); its signature is good for a few minutes. */
  async signGet(key: string): Promise<SignedObjectRequest> {
    return this.sign('GET', key, { 'x-amz-content-sha256': UNSIGNED_PAYLOAD });
  }

  async put(key: string, body: Buffer, headers: Record<string, string>, sha256: string): Promise<ObjectResponse> {
    // The body's digest is known already: giving it saves the signer hashing the body again.
    return this.send('PUT', key, { ...headers, 'content-length': String(body.length), 'x-amz-content-sha256': sha256 }, body);
  }

  /** `key` '' addresses the bucket itself. */
  private async sign(method: string, key: string, headers: Record<string, string>, query: Record<string, string> = {}): Promise<SignedObjectRequest> {
    const basePath = this.url.pathname.replace(/\/$/, '');
    const path = `${basePath}/${escapeSegment(this.options.bucket)}/${key.split('/').map(escapeSegment).join('/')}`;
    const signed = await this.signer.sign({
      method,
      protocol: this.url.protocol,
      hostname: this.url.hostname,
      port: this.url.port ? Number(this.url.port) : undefined,
      path,
      query,
      headers: { ...headers, host: this.url.host },
    });
    // Escaped as the signer escapes them for the canonical request.
    const search = Object.entries(query)
      .map(([name, value]) => `${escapeSegment(name)}=${escapeSegment(value)}`)
      .join('&');
    return {
      protocol: this.url.protocol,
      hostname: this.url.hostname,
      port: this.url.port || undefined,
      method,
      path: search ? `${path}?${search}` : path,
      headers: signed.headers,
    };
  }

  private async send(method: string, key: string, headers: Record<string, string>, body?: Buffer, query?: Record<string, string>): Promise<ObjectResponse> {
    const signed = await this.sign(method, key, headers, query);
    const https = signed.protocol === 'https:';
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const outgoing = (https ? httpsRequest : httpRequest)({
        ...signed,
        agent: https ? this.options.httpsAgent : this.options.httpAgent,
        signal: this.options.signal,
      });
      outgoing.setTimeout(this.options.idleTimeoutMs, () => outgoing.destroy(Object.assign(new Error('the request timed out'), { name: 'TimeoutError' })));
      outgoing.once('response', resolve);
      outgoing.once('error', reject);
      outgoing.end(body);
    });
    const status = response.statusCode ?? 0;
    if (status >= 200 && status < 300) return { status, headers: response.headers, body: response };
    throw await s3ErrorFrom(response, status);
  }
}

/** A ListBucketResult document, as the SDK reads it (entities decoded, nothing trimmed). */
export function parseListing(xml: string): ListingPage {
  const result = (parseXML(xml) as { ListBucketResult?: Record<string, unknown> }).ListBucketResult;
  if (!result || typeof result !== 'object') throw new Error('the store answered a listing that is not a ListBucketResult');
  const text = (value: unknown) => (typeof value === 'string' ? value : '');
  const contents = result.Contents === undefined ? [] : Array.isArray(result.Contents) ? result.Contents : [result.Contents];
  const objects = (contents as Record<string, unknown>[]).map((entry) => ({ key: text(entry.Key), size: Number(text(entry.Size) || 0), etag: text(entry.ETag) }));
  const truncated = text(result.IsTruncated) === 'true';
  return { objects, continuationToken: truncated ? text(result.NextContinuationToken) || undefined : undefined };
}

/** S3's RFC 3986 escaping of one path segment. */
function escapeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

async function s3ErrorFrom(response: IncomingMessage, status: number): Promise<Error> {
  return s3ErrorFromBody(status, await errorBodyOf(response));
}

/** An S3 error answer as the SDK would throw it: the error code as `name`, the status in `$metadata`. */
export function s3ErrorFromBody(status: number, text: string): Error {
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? (status === 404 ? 'NotFound' : `HTTP${status}`);
  const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? `HTTP ${status}`;
  return Object.assign(new Error(message), { name: code, Code: code, $metadata: { httpStatusCode: status } });
}

