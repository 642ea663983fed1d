/**
 * The platform's embedded S3 store (runs as the `NAME-media` Swarm service): s3rver behind a gate
 * that verifies AWS Signature V4 for real and confines each environment's key pair to its own bucket.
 *
 * The gate also answers listings (listing.ts) and DeleteObjects (delete-objects.ts) itself and
 * replaces s3rver's write paths (s3rver-store.ts): s3rver's own lose keys, leave half-written
 * objects visible and let a key escape its bucket. Every key, whether in the path, a
 * DeleteObjects body or `x-amz-copy-source`, is checked (object-keys.ts) and confined to the
 * credential's bucket here, before s3rver sees the request; bodies are held to the Content-MD5
 * and x-amz-content-sha256 they promise (body-digests.ts). Browser form uploads (POST Object) are
 * refused outright: see the README's security model. Listings no longer use s3rver's DES
 * continuation tokens, so `--openssl-legacy-provider` is no longer needed (it does no harm).
 *
 * Environment: DIVIO_PLATFORM_CONFIG (runtime config: the admin key pair and `media.keysFile`),
 * DIVIO_S3_DIRECTORY (where objects live), DIVIO_S3_ADDRESS (default 0.0.0.0), DIVIO_S3_PORT (default 4568).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { basename, dirname } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { ALGORITHM_IDENTIFIER, SignatureV4, getCanonicalHeaders, getSigningKey } from '@smithy/signature-v4';
import type { HttpRequest } from '@smithy/types';
import { z } from 'zod';
import { readRuntimeConfig } from '../runtime-config.js';
import { isListObjects, listBucket, ListingArgumentError, parseListingRequest, renderListing } from './listing.js';
import { NodeSha256 } from '../../shared/node-sha256.js';
import { abortUpload, hardenFilesystemStore, uploadKey, uploadParameterProblem, type FilesystemStore } from './s3rver-store.js';
import { DigestError, expectedDigests, promiseDigests, readCheckedBody, type ExpectedDigests } from './body-digests.js';
import { DeleteRequestError, MAX_DELETE_BODY_BYTES, parseDeleteRequest, renderDeleteResult } from './delete-objects.js';
import { MAX_KEY_BYTES, copySourceForS3rver, isStorableBucketName, objectKeyProblem, parseCopySource, tenantKeyProblem } from './object-keys.js';

/**
 * The per-environment key pairs the platform API writes and this server reloads. A pair with
 * `expiresAt` is short-lived: refused from that instant on, whether or not the file was reloaded.
 * A `readOnly` pair may only read (GET and HEAD: objects and listings).
 */
export const mediaKeysFileSchema = z.object({
  keys: z.record(
    z.string().min(1),
    z.object({
      secretAccessKey: z.string().min(1),
      bucket: z.string().min(1),
      expiresAt: z.iso.datetime({ offset: true }).optional(),
      readOnly: z.boolean().optional(),
    }),
  ),
});
export type MediaKeysFile = z.output<typeof mediaKeysFileSchema>;

export interface AccessKeyPair {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface MediaServerOptions {
  directory: string;
  address: string;
  /** 0 picks a free port (tests). */
  port: number;
  /** May do everything, on every bucket. */
  adminKey: AccessKeyPair;
  /** JSON file of environment key pairs (see `mediaKeysFileSchema`); absent: admin key only. */
  keysFile?: string;
  /** One line per event worth an operator's attention; never given a secret. */
  log?: (line: string) => void;
}

export interface MediaServer {
  port: number;
  close(): Promise<void>;
}

const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;
const MAX_PRESIGNED_EXPIRY_SECONDS = 7 * 24 * 60 * 60;
const KEYS_FILE_POLL_MS = 1000;
const AUTHORISED_PATH = 'divioAuthorisedPath';
/** The XML documents s3rver parses itself (CompleteMultipartUpload, tagging, CORS…) are read whole. */
const MAX_DOCUMENT_BODY_BYTES = 4 * 1024 * 1024;

export async function startMediaServer(options: MediaServerOptions): Promise<MediaServer> {
  const s3rver = loadS3rver();
  const log = options.log ?? ((line: string) => console.log(`${new Date().toISOString()} ${line}`));
  const keys = new KeyDirectory(options.adminKey, s3rver);
  const watcher = options.keysFile ? new KeysFileWatcher(options.keysFile, keys, log) : undefined;
  await watcher?.refresh();

  const app = new s3rver.S3rver({
    directory: options.directory,
    address: options.address,
    port: options.port,
    // Per-request logs would drown the few lines that matter; this module logs refusals itself.
    silent: true,
    vhostBuckets: false,
    configureBuckets: [],
  });
  const refusals = new WeakSet<object>();
  app.on('error', (error) => {
    if ((error.status ?? 500) >= 500 && !refusals.has(error)) log(`media store error: ${error.message}`);
  });
  hardenFilesystemStore(app.store, (code, message, status) => s3Error(s3rver, code, message, status), s3rver.allowedMetadata);
  app.middleware.unshift(gate(keys, s3rver, log, refusals, app.store));
  insertBeforeRouter(app, pathGuard(s3rver));

  let address: AddressInfo;
  try {
    address = await app.run();
  } catch (error) {
    keys.forgetAll();
    throw error;
  }
  watcher?.start();
  return {
    port: address.port,
    async close() {
      watcher?.stop();
      keys.forgetAll();
      await app.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// s3rver, as far as this module touches it (it ships no types)

interface KoaContext {
  method: string;
  /** Raw (still percent-encoded) path; s3rver's vhost middleware may rewrite it. */
  path: string;
  /** Raw query string, without '?'. */
  querystring: string;
  /** The query as s3rver's routes see it. */
  query: Record<string, string | string[] | undefined>;
  req: IncomingMessage;
  state: Record<string, unknown>;
  status: number;
  type: string;
  body: unknown;
}
type Middleware = (ctx: KoaContext, next: () => Promise<unknown>) => unknown;
interface S3rverApp {
  middleware: Middleware[];
  store: FilesystemStore;
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  on(event: 'error', listener: (error: Error & { status?: number }) => void): unknown;
}
interface S3rverModules {
  S3rver: new (options: Record<string, unknown>) => S3rverApp;
  S3Error: new (code: string, message: string, detail?: Record<string, string>) => Error;
  allowedMetadata: readonly string[];
  accounts: { registry: Map<string, unknown>; DUMMY_ACCOUNT: { revokeAccessKey(accessKeyId: string): void } };
  platformAccount: unknown;
  bucketSubresources: Set<string>;
  objectSubresources: Set<string>;
}

let s3rverModules: S3rverModules | undefined;

/** Loaded on first use: the platform API imports this module for the keys file format only. */
function loadS3rver(): S3rverModules {
  if (s3rverModules) return s3rverModules;
  const require = createRequire(import.meta.url);
  const accounts = require('s3rver/lib/models/account') as S3rverModules['accounts'] &
    (new (id: number, displayName: string) => unknown);
  // The built-in S3RVER/S3RVER pair would open the store to anyone who has read s3rver's README.
  accounts.DUMMY_ACCOUNT.revokeAccessKey('S3RVER');
  const bucketMethods = (require('s3rver/lib/controllers/bucket') as { METHODS: string[] }).METHODS;
  const objectController = require('s3rver/lib/controllers/object') as { METHODS: string[] } & Record<string, unknown>;
  const objectMethods = objectController.METHODS;
  const S3Error = require('s3rver/lib/models/error') as S3rverModules['S3Error'];
  // Both took object keys from the request body unchecked. The gate answers DeleteObjects and
  // refuses form uploads before the router runs; should a request still get here, it is refused.
  objectController.deleteMultipleObjects = () => {
    throw Object.assign(new S3Error('AccessDenied', 'Access Denied'), { status: 403 });
  };
  objectController.postObject = () => {
    throw Object.assign(new S3Error('AccessDenied', FORM_UPLOADS_REFUSED), { status: 403 });
  };
  s3rverModules = {
    S3rver: require('s3rver') as S3rverModules['S3rver'],
    S3Error,
    allowedMetadata: (require('s3rver/lib/models/object') as { ALLOWED_METADATA: string[] }).ALLOWED_METADATA,
    accounts,
    platformAccount: new accounts(123456789000, 'divio'),
    bucketSubresources: new Set(bucketMethods),
    objectSubresources: new Set([...bucketMethods, ...objectMethods]),
  };
  return s3rverModules;
}

/** s3rver's router is its last middleware; the guard must see the path exactly as the router will. */
function insertBeforeRouter(app: S3rverApp, middleware: Middleware): void {
  const router = app.middleware.at(-1);
  if (router?.name !== 'dispatch') throw new Error('unexpected s3rver middleware layout: the router is not last');
  app.middleware.splice(app.middleware.length - 1, 0, middleware);
}

// ---------------------------------------------------------------------------------------------
// Who may sign: the admin pair and the environment pairs from the keys file

type Principal = { kind: 'admin' } | { kind: 'environment'; bucket: string; readOnly: boolean } | { kind: 'anonymous' };

interface KnownKey {
  secretAccessKey: string;
  principal: Principal;
  /** Epoch ms; absent: the pair does not expire. */
  expiresAt?: number;
}

/**
 * The key pairs this server accepts. s3rver's own (non-verifying) authentication still runs after
 * the gate and insists on finding each access key id in its registry, so the registry mirrors
 * this directory; it never holds a secret.
 */
class KeyDirectory {
  private environmentKeys = new Map<string, KnownKey>();

  constructor(
    private readonly admin: AccessKeyPair,
    private readonly s3rver: S3rverModules,
  ) {
    registerWithS3rver(s3rver, [admin.accessKeyId]);
  }

  lookup(accessKeyId: string): KnownKey | undefined {
    if (accessKeyId === this.admin.accessKeyId) {
      return { secretAccessKey: this.admin.secretAccessKey, principal: { kind: 'admin' } };
    }
    return this.environmentKeys.get(accessKeyId);
  }

  replaceEnvironmentKeys(file: MediaKeysFile): void {
    const next = new Map<string, KnownKey>();
    for (const [accessKeyId, { secretAccessKey, bucket, expiresAt, readOnly }] of Object.entries(file.keys)) {
      if (accessKeyId === this.admin.accessKeyId) continue;
      const known: KnownKey = { secretAccessKey, principal: { kind: 'environment', bucket, readOnly: readOnly === true } };
      if (expiresAt !== undefined) known.expiresAt = Date.parse(expiresAt);
      next.set(accessKeyId, known);
    }
    registerWithS3rver(this.s3rver, [...next.keys()].filter((id) => !this.environmentKeys.has(id)));
    unregisterFromS3rver(this.s3rver, [...this.environmentKeys.keys()].filter((id) => !next.has(id)));
    this.environmentKeys = next;
  }

  get environmentKeyCount(): number {
    return this.environmentKeys.size;
  }

  forgetAll(): void {
    unregisterFromS3rver(this.s3rver, [this.admin.accessKeyId, ...this.environmentKeys.keys()]);
    this.environmentKeys.clear();
  }
}

/** s3rver's registry is process-wide; counting lets servers that share a key id (tests) come and go. */
const s3rverRegistrations = new Map<string, number>();

function registerWithS3rver(s3rver: S3rverModules, accessKeyIds: Iterable<string>): void {
  for (const id of accessKeyIds) {
    s3rverRegistrations.set(id, (s3rverRegistrations.get(id) ?? 0) + 1);
    s3rver.accounts.registry.set(id, s3rver.platformAccount);
  }
}

function unregisterFromS3rver(s3rver: S3rverModules, accessKeyIds: Iterable<string>): void {
  for (const id of accessKeyIds) {
    const remaining = (s3rverRegistrations.get(id) ?? 1) - 1;
    if (remaining > 0) {
      s3rverRegistrations.set(id, remaining);
    } else {
      s3rverRegistrations.delete(id);
      s3rver.accounts.registry.delete(id);
    }
  }
}

/**
 * Keeps the directory in step with the keys file. The API replaces the file by rename, so the
 * directory is watched rather than the file; the mtime poll catches what inotify misses
 * (network filesystems, a directory created after start).
 */
class KeysFileWatcher {
  private fingerprint: string | undefined;
  private pending: Promise<void> = Promise.resolve();
  private poll: NodeJS.Timeout | undefined;
  private fsWatcher: FSWatcher | undefined;

  constructor(
    private readonly file: string,
    private readonly keys: KeyDirectory,
    private readonly log: (line: string) => void,
  ) {}

  /** Serialised so that two change events cannot apply an older read after a newer one. */
  refresh(): Promise<void> {
    this.pending = this.pending.then(() => this.refreshNow());
    return this.pending;
  }

  start(): void {
    this.poll = setInterval(() => {
      if (!this.fsWatcher) this.watchDirectory();
      void this.refresh();
    }, KEYS_FILE_POLL_MS);
    this.poll.unref();
    this.watchDirectory();
  }

  private watchDirectory(): void {
    try {
      this.fsWatcher = watch(dirname(this.file), (_event, name) => {
        if (name === null || name === basename(this.file)) void this.refresh();
      });
      this.fsWatcher.on('error', () => this.stopWatching());
    } catch {
      // No directory yet (the API creates it with the first key), or no inotify: the poll covers it.
    }
  }

  stop(): void {
    clearInterval(this.poll);
    this.stopWatching();
  }

  private stopWatching(): void {
    this.fsWatcher?.close();
    this.fsWatcher = undefined;
  }

  private async refreshNow(): Promise<void> {
    const fingerprint = await fileFingerprint(this.file);
    if (fingerprint === this.fingerprint) return;
    this.fingerprint = fingerprint;
    const loaded = await this.load();
    this.keys.replaceEnvironmentKeys(loaded);
    this.log(`media keys: ${this.keys.environmentKeyCount} environment key(s) loaded`);
  }

  /** A missing or damaged file grants nothing: environments lose access, the server stays up. */
  private async load(): Promise<MediaKeysFile> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch {
      return { keys: {} };
    }
    try {
      return mediaKeysFileSchema.parse(JSON.parse(text));
    } catch {
      this.log(`media keys: ${this.file} is damaged; no environment keys are accepted until it is fixed`);
      return { keys: {} };
    }
  }
}

async function fileFingerprint(file: string): Promise<string> {
  try {
    const info = await stat(file);
    return `${info.ino}:${info.size}:${info.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

// ---------------------------------------------------------------------------------------------
// The gate: authenticate (SigV4), then authorise, before any s3rver route runs

interface Target {
  /** Undefined for service-level requests (ListBuckets). */
  bucket: string | undefined;
  /** '' for bucket-level requests. */
  key: string;
}

/** Refusals are logged here, so the app's error listener can skip the ones it also hears about. */
function gate(
  keys: KeyDirectory,
  s3rver: S3rverModules,
  log: (line: string) => void,
  refusals: WeakSet<object>,
  store: FilesystemStore,
): Middleware {
  const verifier = new SignatureV4Verifier();
  return async (ctx, next) => {
    try {
      const target = parseTarget(ctx.path, s3rver);
      const principal = await authenticate(ctx, keys, verifier, s3rver);
      authorise(principal, target, ctx, s3rver);
      refuseFormUploads(target, ctx, s3rver);
      refuseUnsafeQueryHeaders(ctx, s3rver);
      confineCopySource(principal, ctx, s3rver);
      refuseChunkedUploads(ctx, s3rver);
      refuseUnstorableKeys(target, principal, s3rver);
      await checkUpload(target, ctx, s3rver, store);
      const digests = digestsPromisedBy(ctx, s3rver);
      if (isAbortMultipartUpload(target, ctx)) {
        await abortUpload(store, target.bucket ?? '', String(ctx.query.uploadId));
        ctx.status = 204;
        return undefined;
      }
      if (target.bucket !== undefined && isListObjects(ctx.method, target.key, ctx.query, s3rver.bucketSubresources)) {
        await respondWithListing(ctx, store, target.bucket, s3rver);
        return undefined;
      }
      if (target.bucket !== undefined && isDeleteObjects(target, ctx, s3rver)) {
        await respondToDeleteObjects(ctx, store, target.bucket, principal, digests, s3rver);
        return undefined;
      }
      await holdBodyToDigests(target, ctx, digests, s3rver);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      log(`refused ${ctx.method} ${ctx.path}: ${typeof code === 'string' ? code : 'error'}`);
      if (typeof error === 'object' && error !== null) refusals.add(error);
      throw error;
    }
    ctx.state[AUTHORISED_PATH] = ctx.path;
    return next();
  };
}

/** s3rver rewrites paths for virtual-host-style Host headers; what was authorised must be what is served. */
function pathGuard(s3rver: S3rverModules): Middleware {
  return (ctx, next) => {
    if (ctx.state[AUTHORISED_PATH] !== ctx.path) throw s3Error(s3rver, 'AccessDenied', 'Access Denied');
    return next();
  };
}

function parseTarget(path: string, s3rver: S3rverModules): Target {
  if (path === '/') return { bucket: undefined, key: '' };
  const match = /^\/([^/]+)(?:\/(.*))?$/s.exec(path);
  if (!match) throw s3Error(s3rver, 'InvalidURI', "Couldn't parse the specified URI.");
  let bucket: string;
  try {
    bucket = decodeURIComponent(match[1] ?? '');
  } catch {
    throw s3Error(s3rver, 'InvalidURI', "Couldn't parse the specified URI.");
  }
  // s3rver joins the name into a path: `..` or an encoded slash would leave the store's directory.
  if (!isStorableBucketName(bucket)) {
    throw s3Error(s3rver, 'InvalidBucketName', 'The specified bucket is not valid.');
  }
  return { bucket, key: match[2] ?? '' };
}

/** `status` for codes s3rver's table lacks (it would answer them with 500). */
function s3Error(s3rver: S3rverModules, code: string, message: string, status?: number): Error {
  const error = new s3rver.S3Error(code, message);
  return status === undefined ? error : Object.assign(error, { status, expose: status < 500 });
}

// --- authentication

/** What a SigV4 request claims; verified against the key's secret. */
interface SignatureClaim {
  accessKeyId: string;
  scope: CredentialScope;
  /** yyyymmddThhmmssZ */
  longDate: string;
  signedHeaders: string[];
  signature: string;
  payloadHash: string;
}

interface CredentialScope {
  shortDate: string;
  region: string;
  service: string;
}

type RawQuery = Record<string, string[]>;

const ANONYMOUS: Principal = { kind: 'anonymous' };

async function authenticate(
  ctx: KoaContext,
  keys: KeyDirectory,
  verifier: SignatureV4Verifier,
  s3rver: S3rverModules,
): Promise<Principal> {
  const authorization = ctx.req.headers.authorization;
  // Detected exactly as s3rver's own authentication does, so both agree on who is anonymous.
  const presigned = 'X-Amz-Algorithm' in ctx.query || 'X-Amz-Signature' in ctx.query || 'X-Amz-Credential' in ctx.query;
  if ('Signature' in ctx.query || 'AWSAccessKeyId' in ctx.query) {
    throw s3Error(s3rver, 'InvalidRequest', 'The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.');
  }
  if (authorization !== undefined && presigned) {
    throw s3Error(s3rver, 'InvalidArgument', 'Only one auth mechanism allowed: the X-Amz-Algorithm query parameter or the Authorization header');
  }
  if (authorization === undefined && !presigned) return ANONYMOUS;

  const query = parseRawQuery(ctx.querystring, s3rver);
  const claim =
    authorization !== undefined
      ? claimFromHeaders(authorization, ctx.req.headers, s3rver)
      : claimFromPresignedQuery(query, s3rver);
  const known = keys.lookup(claim.accessKeyId);
  if (!known) {
    throw s3Error(s3rver, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
  }
  const signedHeaders = pickHeaders(ctx.req.headers, claim.signedHeaders);
  for (const path of canonicalPathCandidates(ctx.path)) {
    const request: HttpRequest = { method: ctx.method, protocol: 'http:', hostname: '', path, query, headers: signedHeaders };
    const expected = await verifier.signatureOf(request, claim, known.secretAccessKey);
    if (!signaturesMatch(expected, claim.signature)) continue;
    // Checked once the signature holds, so that only the key's owner learns that it has expired.
    if (known.expiresAt !== undefined && Date.now() >= known.expiresAt) {
      // AWS answers an expired session token with ExpiredToken; clients refresh their credentials on it.
      throw Object.assign(s3Error(s3rver, 'ExpiredToken', 'The provided token has expired.'), { status: 403 });
    }
    return known.principal;
  }
  throw s3Error(
    s3rver,
    'SignatureDoesNotMatch',
    'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
  );
}

function claimFromHeaders(authorization: string, headers: IncomingHttpHeaders, s3rver: S3rverModules): SignatureClaim {
  const malformed = (why: string) => s3Error(s3rver, 'AuthorizationHeaderMalformed', `The authorization header is malformed; ${why}`);
  const match = /^AWS4-HMAC-SHA256\s+(.*)$/s.exec(authorization);
  if (!match) {
    if (/^AWS\s/.test(authorization)) {
      throw s3Error(s3rver, 'InvalidRequest', 'The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.');
    }
    throw s3Error(s3rver, 'InvalidArgument', 'Unsupported Authorization Type');
  }
  const fields = parseAuthorizationFields(match[1] ?? '');
  const credential = fields.get('Credential');
  const signedHeaders = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  if (!credential || !signedHeaders || !signature) throw malformed('it requires Credential, SignedHeaders and Signature.');

  const longDate = singleHeader(headers['x-amz-date']);
  if (!longDate || Number.isNaN(parseAmzDate(longDate))) {
    throw s3Error(s3rver, 'AccessDenied', 'AWS authentication requires a valid x-amz-date header');
  }
  assertWithinClockSkew(parseAmzDate(longDate), s3rver);
  const payloadHash = singleHeader(headers['x-amz-content-sha256']);
  if (!payloadHash) throw s3Error(s3rver, 'InvalidRequest', 'Missing required header for this request: x-amz-content-sha256');
  if (!/^(UNSIGNED-PAYLOAD|STREAMING-[A-Z0-9-]+|[0-9a-fA-F]{64})$/.test(payloadHash)) {
    throw s3Error(s3rver, 'InvalidArgument', 'x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-*, or a valid sha256 value.');
  }

  const { accessKeyId, scope } = parseCredential(credential, longDate, malformed);
  const headerNames = parseSignedHeaderNames(signedHeaders, malformed);
  if (!headerNames.includes('x-amz-date')) throw malformed('x-amz-date must be signed.');
  return { accessKeyId, scope, longDate, signedHeaders: headerNames, signature, payloadHash };
}

function claimFromPresignedQuery(query: RawQuery, s3rver: S3rverModules): SignatureClaim {
  const malformed = (why: string) => s3Error(s3rver, 'AuthorizationQueryParametersError', why);
  const param = (name: string) => {
    const values = query[name];
    if (!values || values.length !== 1) {
      throw malformed(
        'Query-string authentication version 4 requires exactly one each of the X-Amz-Algorithm, X-Amz-Credential, ' +
          'X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.',
      );
    }
    return values[0] ?? '';
  };
  if (param('X-Amz-Algorithm') !== ALGORITHM_IDENTIFIER) throw malformed('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"');
  const longDate = param('X-Amz-Date');
  const signedAt = parseAmzDate(longDate);
  if (Number.isNaN(signedAt)) throw malformed('X-Amz-Date must be in the ISO8601 Long Format "yyyyMMdd\'T\'HHmmss\'Z\'"');
  const expires = Number(param('X-Amz-Expires'));
  if (!Number.isInteger(expires) || expires < 0 || expires > MAX_PRESIGNED_EXPIRY_SECONDS) {
    throw malformed('X-Amz-Expires must be a whole number of seconds from 0 to 604800');
  }
  assertPresignedWindow(signedAt, expires, s3rver);

  const { accessKeyId, scope } = parseCredential(param('X-Amz-Credential'), longDate, malformed);
  const signedHeaders = parseSignedHeaderNames(param('X-Amz-SignedHeaders'), malformed);
  return {
    accessKeyId,
    scope,
    longDate,
    signedHeaders,
    signature: param('X-Amz-Signature'),
    payloadHash: presignedPayloadHash(query),
  };
}

/** S3's presigned URLs carry no body digest unless the signer put one in the query. */
function presignedPayloadHash(query: RawQuery): string {
  const name = Object.keys(query).find((key) => key.toLowerCase() === 'x-amz-content-sha256');
  return (name && query[name]?.[0]) || 'UNSIGNED-PAYLOAD';
}

function parseAuthorizationFields(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const part of text.split(',')) {
    const equals = part.indexOf('=');
    if (equals > 0) fields.set(part.slice(0, equals).trim(), part.slice(equals + 1).trim());
  }
  return fields;
}

function parseCredential(
  credential: string,
  longDate: string,
  malformed: (why: string) => Error,
): { accessKeyId: string; scope: CredentialScope } {
  const [accessKeyId, shortDate, region, service, terminator, ...rest] = credential.split('/');
  if (!accessKeyId || !shortDate || !region || !service || terminator !== 'aws4_request' || rest.length) {
    throw malformed('the Credential must be ACCESS_KEY_ID/yyyymmdd/REGION/s3/aws4_request.');
  }
  if (service !== 's3') throw malformed(`incorrect service "${service}"; expecting "s3".`);
  if (shortDate !== longDate.slice(0, 8)) throw malformed('the credential date does not match the request date.');
  return { accessKeyId, scope: { shortDate, region, service } };
}

function parseSignedHeaderNames(value: string, malformed: (why: string) => Error): string[] {
  const names = value.split(';');
  if (names.some((name) => !/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(name))) throw malformed('SignedHeaders is not a list of lower-case header names.');
  if (!names.includes('host')) throw malformed('the host header must be signed.');
  return names;
}

function parseAmzDate(value: string): number {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!match) return NaN;
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [number, number, number, number, number, number];
  return Date.UTC(year, month - 1, day, hour, minute, second);
}

function assertWithinClockSkew(signedAt: number, s3rver: S3rverModules): void {
  if (Math.abs(Date.now() - signedAt) > MAX_CLOCK_SKEW_MS) {
    throw s3Error(s3rver, 'RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.');
  }
}

function assertPresignedWindow(signedAt: number, expiresSeconds: number, s3rver: S3rverModules): void {
  const now = Date.now();
  if (signedAt - now > MAX_CLOCK_SKEW_MS) throw s3Error(s3rver, 'AccessDenied', 'Request is not valid yet');
  if (now > signedAt + expiresSeconds * 1000) throw s3Error(s3rver, 'AccessDenied', 'Request has expired');
}

function singleHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value;
}

function pickHeaders(headers: IncomingHttpHeaders, names: string[]): Record<string, string> {
  const picked: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const name of names) {
    const value = singleHeader(headers[name]);
    if (value !== undefined) picked[name] = value;
  }
  return picked;
}

/**
 * Query values exactly as sent, percent-decoded but with '+' kept literal: SigV4 signers encode a
 * space as %20, so a '+' on the wire was signed as %2B.
 */
function parseRawQuery(querystring: string, s3rver: S3rverModules): RawQuery {
  const query: RawQuery = Object.create(null) as RawQuery;
  if (!querystring) return query;
  for (const pair of querystring.split('&')) {
    if (!pair) continue;
    const equals = pair.indexOf('=');
    const [rawName, rawValue] = equals < 0 ? [pair, ''] : [pair.slice(0, equals), pair.slice(equals + 1)];
    try {
      const name = decodeURIComponent(rawName);
      (query[name] ??= []).push(decodeURIComponent(rawValue));
    } catch {
      throw s3Error(s3rver, 'InvalidArgument', 'The query string is not properly percent-encoded.');
    }
  }
  return query;
}

/**
 * S3 signers sign the path they send, but not all escape the same characters (some leave `!*'()`
 * or `~` raw): try the path as received, then in AWS's canonical escaping. Both name the same
 * object to s3rver, which routes on the decoded path.
 */
function canonicalPathCandidates(rawPath: string): string[] {
  try {
    const reencoded = rawPath
      .split('/')
      .map((segment) => awsUriEscape(decodeURIComponent(segment)))
      .join('/');
    return reencoded === rawPath ? [rawPath] : [rawPath, reencoded];
  } catch {
    return [rawPath];
  }
}

function awsUriEscape(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function signaturesMatch(expected: string, provided: string): boolean {
  if (!/^[0-9a-fA-F]{64}$/.test(provided)) return false;
  return timingSafeEqual(Buffer.from(expected, 'hex'), Buffer.from(provided, 'hex'));
}



/**
 * Recomputes a request's signature with the same canonicalisation the AWS SDKs sign with. Only the
 * protected canonical-request and string-to-sign steps are borrowed: the received request is
 * already canonical input (its own path, query and signed headers), nothing is added to it.
 */
class SignatureV4Verifier extends SignatureV4 {
  constructor() {
    super({
      service: 's3',
      // Region and credentials come from each request's claim, not from here.
      region: 'unused',
      credentials: { accessKeyId: 'unused', secretAccessKey: 'unused' },
      sha256: NodeSha256,
      // S3 signs the path as sent: no second escaping, no dot-segment normalisation.
      uriEscapePath: false,
      applyChecksum: false,
    });
  }

  async signatureOf(request: HttpRequest, claim: SignatureClaim, secretAccessKey: string): Promise<string> {
    const canonicalHeaders = getCanonicalHeaders(request, undefined, new Set(claim.signedHeaders));
    const canonicalRequest = this.createCanonicalRequest(request, canonicalHeaders, claim.payloadHash);
    const { shortDate, region, service } = claim.scope;
    const scope = `${shortDate}/${region}/${service}/aws4_request`;
    const stringToSign = await this.createStringToSign(claim.longDate, scope, canonicalRequest, ALGORITHM_IDENTIFIER);
    const credentials = { accessKeyId: claim.accessKeyId, secretAccessKey };
    const signingKey = await getSigningKey(NodeSha256, credentials, shortDate, region, service);
    return createHmac('sha256', signingKey).update(stringToSign).digest('hex');
  }
}

// --- authorisation

function authorise(principal: Principal, target: Target, ctx: KoaContext, s3rver: S3rverModules): void {
  const denied = () => s3Error(s3rver, 'AccessDenied', 'Access Denied');
  switch (principal.kind) {
    case 'admin':
      return;
    case 'anonymous':
      if (!isPublicRead(target, ctx, s3rver)) throw denied();
      return;
    case 'environment':
      if (target.bucket !== principal.bucket) throw denied();
      if (principal.readOnly && ctx.method !== 'GET' && ctx.method !== 'HEAD') throw denied();
      if (isBucketCreateOrDelete(target, ctx, s3rver)) throw denied();
      return;
  }
}

/** Browsers fetch media straight from the store: plain object reads, no subresources (ACLs, uploads). */
function isPublicRead(target: Target, ctx: KoaContext, s3rver: S3rverModules): boolean {
  if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return false;
  if (target.bucket === undefined || target.key === '') return false;
  return !Object.keys(ctx.query).some((name) => s3rver.objectSubresources.has(name));
}

/** PUT or DELETE on a bucket without a subresource (cors, website…) creates or deletes the bucket itself. */
function isBucketCreateOrDelete(target: Target, ctx: KoaContext, s3rver: S3rverModules): boolean {
  if (target.key !== '' || (ctx.method !== 'PUT' && ctx.method !== 'DELETE')) return false;
  return !Object.keys(ctx.query).some((name) => s3rver.bucketSubresources.has(name));
}

const FORM_UPLOADS_REFUSED =
  'Browser form uploads (POST to a bucket) are not accepted by this store: upload with PUT (from a browser, with a presigned PUT URL)';

/**
 * POST Object takes its key from a form field and its authority from a policy document; this
 * store accepts neither, so no body can name where an object goes.
 */
function refuseFormUploads(target: Target, ctx: KoaContext, s3rver: S3rverModules): void {
  if (ctx.method !== 'POST' || target.bucket === undefined || target.key !== '') return;
  if (Object.keys(ctx.query).some((name) => s3rver.bucketSubresources.has(name))) return;
  throw s3Error(s3rver, 'AccessDenied', FORM_UPLOADS_REFUSED, 403);
}

/**
 * The copy source is parsed the way S3 does (decoded once), confined to the credential's bucket,
 * its key checked like any other, and then rewritten so that s3rver's own parsing (decodeURI,
 * split at the first slash) reads back exactly the bucket and key that were checked.
 */
function confineCopySource(principal: Principal, ctx: KoaContext, s3rver: S3rverModules): void {
  // s3rver takes x-amz-* query parameters over headers; a copy source is only accepted as a header.
  if (Object.keys(ctx.query).some((name) => name.toLowerCase() === 'x-amz-copy-source')) {
    throw s3Error(s3rver, 'InvalidArgument', 'x-amz-copy-source must be sent as a header, not in the query string', 400);
  }
  const header = ctx.req.headers['x-amz-copy-source'];
  if (header === undefined) return;
  const source = parseCopySource(Array.isArray(header) ? header.join(',') : header);
  if ('problem' in source) throw s3Error(s3rver, 'InvalidArgument', source.problem, 400);
  if (principal.kind === 'environment' && source.bucket !== principal.bucket) throw s3Error(s3rver, 'AccessDenied', 'Access Denied', 403);
  if (!isStorableBucketName(source.bucket)) throw s3Error(s3rver, 'InvalidArgument', 'x-amz-copy-source names an invalid bucket', 400);
  const problem = keyProblemFor(principal)(source.key);
  if (problem) throw s3Error(s3rver, 'InvalidArgument', `Copy source key not supported by this store: ${problem}`, 400);
  ctx.req.headers['x-amz-copy-source'] = copySourceForS3rver(source.bucket, source.key);
}

/**
 * s3rver turns `response-*` query parameters into response headers and `x-amz-*` ones into request
 * headers (metadata it stores and later answers with). A value no header may carry (a line
 * break) made Node throw: a 500, and for stored metadata a 500 on every later read of the object.
 */
function refuseUnsafeQueryHeaders(ctx: KoaContext, s3rver: S3rverModules): void {
  for (const [name, value] of Object.entries(ctx.query)) {
    const lower = name.toLowerCase();
    if (!lower.startsWith('response-') && !lower.startsWith('x-amz-')) continue;
    if ([value ?? ''].flat().some((text) => /[^\t\x20-\x7e\x80-\xff]/.test(text))) {
      throw s3Error(s3rver, 'InvalidArgument', `The query parameter ${name} holds characters no HTTP header may carry`, 400);
    }
  }
}

function keyProblemFor(principal: Principal): (key: string) => string | undefined {
  return principal.kind === 'admin' ? objectKeyProblem : tenantKeyProblem;
}

/** s3rver maps keys to file paths: keys that would not map back to themselves never reach it. */
function refuseUnstorableKeys(target: Target, principal: Principal, s3rver: S3rverModules): void {
  if (target.key === '') return;
  let key: string;
  try {
    key = decodeURIComponent(target.key);
  } catch {
    throw s3Error(s3rver, 'InvalidURI', "Couldn't parse the specified URI.");
  }
  const problem = keyProblemFor(principal)(key);
  if (problem) {
    throw s3Error(s3rver, Buffer.byteLength(key) > MAX_KEY_BYTES ? 'KeyTooLongError' : 'InvalidArgument', `Object key not supported by this store: ${problem}`);
  }
}

/** Upload ids and part numbers become file names in s3rver; an upload also belongs to one key. */
async function checkUpload(target: Target, ctx: KoaContext, s3rver: S3rverModules, store: FilesystemStore): Promise<void> {
  if (target.key === '' || target.bucket === undefined) return;
  const problem = uploadParameterProblem(ctx.query);
  if (problem) throw s3Error(s3rver, problem.code, problem.message);
  if (typeof ctx.query.uploadId !== 'string') return;
  if ((await uploadKey(store, target.bucket, ctx.query.uploadId)) !== decodeURIComponent(target.key)) {
    throw s3Error(s3rver, 'NoSuchUpload', 'The specified upload does not exist.');
  }
}

/** s3rver's own listing loses keys and needs DES (see listing.ts): the gate answers listings itself. */
async function respondWithListing(ctx: KoaContext, store: FilesystemStore, bucket: string, s3rver: S3rverModules): Promise<void> {
  const bucketPath = await existingBucketPath(store, bucket, s3rver);
  let request;
  try {
    request = parseListingRequest(ctx.query);
  } catch (error) {
    if (error instanceof ListingArgumentError) throw s3Error(s3rver, 'InvalidArgument', error.message);
    throw error;
  }
  const listing = await listBucket(bucketPath, request);
  ctx.type = 'application/xml';
  ctx.body = renderListing(bucket, request, listing);
}

async function existingBucketPath(store: FilesystemStore, bucket: string, s3rver: S3rverModules): Promise<string> {
  const bucketPath = store.getBucketPath(bucket);
  const isBucket = await stat(bucketPath).then(
    (info) => info.isDirectory(),
    () => false,
  );
  if (!isBucket) throw s3Error(s3rver, 'NoSuchBucket', 'The specified bucket does not exist');
  return bucketPath;
}

/** Routed by s3rver to its DeleteObjects handler: POST on the bucket with `delete` as its one subresource. */
function isDeleteObjects(target: Target, ctx: KoaContext, s3rver: S3rverModules): boolean {
  if (ctx.method !== 'POST' || target.key !== '') return false;
  const subresources = Object.keys(ctx.query).filter((name) => s3rver.bucketSubresources.has(name));
  return subresources.length === 1 && subresources[0] === 'delete';
}

/** Every key is checked before any is deleted; deletes run one by one (s3rver's directory clean-up races with itself). */
async function respondToDeleteObjects(
  ctx: KoaContext,
  store: FilesystemStore,
  bucket: string,
  principal: Principal,
  digests: ExpectedDigests,
  s3rver: S3rverModules,
): Promise<void> {
  await existingBucketPath(store, bucket, s3rver);
  let keys: string[];
  let quiet: boolean;
  try {
    const body = await readCheckedBody(ctx.req, digests, MAX_DELETE_BODY_BYTES);
    ({ keys, quiet } = parseDeleteRequest(body.toString('utf8'), keyProblemFor(principal)));
  } catch (error) {
    if (error instanceof DigestError) throw s3Error(s3rver, error.refusal.code, error.refusal.message, error.refusal.status);
    if (error instanceof DeleteRequestError) throw s3Error(s3rver, error.code, error.message, error.code === 'NotImplemented' ? 501 : 400);
    throw error;
  }
  const deleted: string[] = [];
  for (const key of new Set(keys)) {
    if (await store.existsObject(bucket, key)) await store.deleteObject(bucket, key);
    deleted.push(key);
  }
  ctx.type = 'application/xml';
  ctx.body = renderDeleteResult(deleted, quiet);
}

function digestsPromisedBy(ctx: KoaContext, s3rver: S3rverModules): ExpectedDigests {
  const queryName = Object.keys(ctx.query).find((name) => name.toLowerCase() === 'x-amz-content-sha256');
  const queryValue = queryName === undefined ? undefined : ctx.query[queryName];
  try {
    return expectedDigests(ctx.req.headers, typeof queryValue === 'string' ? queryValue : undefined);
  } catch (error) {
    if (error instanceof DigestError) throw s3Error(s3rver, error.refusal.code, error.refusal.message, error.refusal.status);
    throw error;
  }
}

/**
 * Object and part bodies stream into the store, which checks them before they become visible
 * (s3rver-store.ts). Every other body s3rver reads is a small XML document: read and checked here,
 * then handed on as the same bytes.
 */
async function holdBodyToDigests(target: Target, ctx: KoaContext, digests: ExpectedDigests, s3rver: S3rverModules): Promise<void> {
  if (ctx.method !== 'PUT' && ctx.method !== 'POST') return;
  const isPartUpload = typeof ctx.query.uploadId === 'string' && 'partNumber' in ctx.query;
  const hasObjectSubresource = Object.keys(ctx.query).some((name) => s3rver.objectSubresources.has(name));
  if (ctx.method === 'PUT' && target.key !== '' && (isPartUpload || !hasObjectSubresource)) {
    promiseDigests(ctx.req, digests);
    return;
  }
  let body: Buffer;
  try {
    body = await readCheckedBody(ctx.req, digests, MAX_DOCUMENT_BODY_BYTES);
  } catch (error) {
    if (error instanceof DigestError) throw s3Error(s3rver, error.refusal.code, error.refusal.message, error.refusal.status);
    throw error;
  }
  ctx.req = Object.assign(Readable.from([body]), { headers: ctx.req.headers }) as unknown as IncomingMessage;
}

/** s3rver does not implement AbortMultipartUpload; the gate does, after the checks above. */
function isAbortMultipartUpload(target: Target, ctx: KoaContext): boolean {
  return ctx.method === 'DELETE' && target.key !== '' && typeof ctx.query.uploadId === 'string';
}

/**
 * s3rver stores aws-chunked bodies (STREAMING-* payloads, the current AWS SDKs' default checksum
 * mode) with the chunk framing inside the object; refusing them is better than corrupting media.
 */
function refuseChunkedUploads(ctx: KoaContext, s3rver: S3rverModules): void {
  const payloadHash = singleHeader(ctx.req.headers['x-amz-content-sha256']) ?? '';
  const encoding = singleHeader(ctx.req.headers['content-encoding']) ?? '';
  if (payloadHash.startsWith('STREAMING-') || /\baws-chunked\b/i.test(encoding)) {
    throw s3Error(
      s3rver,
      'NotImplemented',
      'aws-chunked uploads are not supported by this store; configure the client to compute checksums only when required',
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Entry point

function listenPort(value: string | undefined): number {
  const port = Number(value ?? 4568);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`DIVIO_S3_PORT is not a port number: ${value}`);
  return port;
}

async function main(): Promise<void> {
  const log = (line: string) => console.log(`${new Date().toISOString()} ${line}`);
  const directory = process.env.DIVIO_S3_DIRECTORY;
  if (!directory) throw new Error('DIVIO_S3_DIRECTORY is not set: it names the directory objects are stored in');
  const config = await readRuntimeConfig();
  const address = process.env.DIVIO_S3_ADDRESS || '0.0.0.0';
  const server = await startMediaServer({
    directory,
    address,
    port: listenPort(process.env.DIVIO_S3_PORT),
    adminKey: { accessKeyId: config.media.accessKeyId, secretAccessKey: config.media.secretAccessKey },
    keysFile: config.media.keysFile,
    log,
  });
  log(`divio media store ${config.version} listening on ${address}:${server.port}`);
  const shutdown = () => {
    log('shutting down');
    void server.close().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 10_000).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(`media store failed to start: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
}
