/**
 * The embedded media store (s3rver behind the SigV4 gate) and S3MediaStorage, end to end: a real
 * server in-process on 127.0.0.1, the real AWS SDK, and real rclone/AWS CLI when installed.
 */
import { execFile } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetBucketCorsCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  PutBucketCorsCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  S3Client,
  UploadPartCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import type { SourceData } from '@smithy/types';
import { request as httpRequest } from 'node:http';
import { readdir, rename } from 'node:fs/promises';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3MediaStorage, isValidBucketName, mediaBucketName } from '../../src/platform/api/media-storage.js';
import type { MediaGrant } from '../../src/platform/api/parts.js';
import { startMediaServer, type AccessKeyPair, type MediaServer } from '../../src/platform/media/s3-server.js';

const execFileAsync = promisify(execFile);
const REGION = 'us-east-1';
const ADMIN: AccessKeyPair = { accessKeyId: 'PLATFORMADMIN', secretAccessKey: randomBytes(24).toString('base64url') };

let workDir: string;
let keysFile: string;
let server: MediaServer;
let endpoint: string;
let storage: S3MediaStorage;
const serverLog: string[] = [];

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'divio-media-'));
  keysFile = join(workDir, 'secrets', 'media-keys.json');
  server = await startMediaServer({
    directory: join(workDir, 'objects'),
    address: '127.0.0.1',
    port: 0,
    adminKey: ADMIN,
    keysFile,
    log: (line) => serverLog.push(line),
  });
  endpoint = `http://127.0.0.1:${server.port}`;
  storage = new S3MediaStorage({ endpoint, publicUrl: endpoint, region: REGION, keysFile, ...ADMIN });
});

afterAll(async () => {
  await server?.close();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

function clientFor(key: AccessKeyPair, extra: Partial<S3ClientConfig> = {}): S3Client {
  return new S3Client({
    endpoint,
    region: REGION,
    credentials: key,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // A refusal must surface as is, not be retried (or clock-corrected) away by the SDK.
    maxAttempts: 1,
    ...extra,
  });
}

function keyOf(grant: MediaGrant): AccessKeyPair {
  return { accessKeyId: grant.accessKeyId, secretAccessKey: grant.secretAccessKey };
}

function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

async function readObject(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await response.Body!.transformToByteArray());
}

/** SigV4 query signing written out from AWS's documentation, independent of the server's code. */
function presignedGetUrl(bucket: string, key: string, credentials: AccessKeyPair, expiresSeconds = 300): string {
  const escape = (value: string) =>
    encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const longDate = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '');
  const shortDate = longDate.slice(0, 8);
  const scope = `${shortDate}/${REGION}/s3/aws4_request`;
  const url = new URL(`${endpoint}/${bucket}/${key.split('/').map(escape).join('/')}`);
  const query = [
    ['X-Amz-Algorithm', 'AWS4-HMAC-SHA256'],
    ['X-Amz-Credential', `${credentials.accessKeyId}/${scope}`],
    ['X-Amz-Date', longDate],
    ['X-Amz-Expires', String(expiresSeconds)],
    ['X-Amz-SignedHeaders', 'host'],
  ]
    .map(([name, value]) => `${escape(name!)}=${escape(value!)}`)
    .sort()
    .join('&');
  const canonicalRequest = ['GET', url.pathname, query, `host:${url.host}`, '', 'host', 'UNSIGNED-PAYLOAD'].join('\n');
  const stringToSign = ['AWS4-HMAC-SHA256', longDate, scope, sha256(canonicalRequest)].join('\n');
  let signingKey: Buffer | string = `AWS4${credentials.secretAccessKey}`;
  for (const part of [shortDate, REGION, 's3', 'aws4_request']) signingKey = createHmac('sha256', signingKey).update(part).digest();
  const signature = createHmac('sha256', signingKey).update(stringToSign).digest('hex');
  return `${url.origin}${url.pathname}?${query}&X-Amz-Signature=${signature}`;
}

async function s3ErrorCode(response: Response): Promise<string | undefined> {
  return /<Code>([^<]+)<\/Code>/.exec(await response.text())?.[1];
}

async function waitFor(condition: () => Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function reachesBucket(key: AccessKeyPair, bucket: string): Promise<boolean> {
  try {
    await clientFor(key).send(new HeadBucketCommand({ Bucket: bucket }));
    return true;
  } catch {
    return false;
  }
}

async function onPath(command: string): Promise<boolean> {
  try {
    await execFileAsync('which', [command]);
    return true;
  } catch {
    return false;
  }
}

describe('mediaBucketName', () => {
  it('is SLUG-ENV when that is a valid bucket name', () => {
    expect(mediaBucketName('shop', 'test')).toBe('shop-test');
    expect(mediaBucketName('shop', 'live')).toBe('shop-live');
  });

  it('shortens and hashes long or unusual slugs, always valid, within 63 characters and deterministic', () => {
    const long = 'a'.repeat(70);
    expect(mediaBucketName(long, 'live')).toMatch(/^a+-[0-9a-f]{8}-live$/);
    expect(mediaBucketName(long, 'live').length).toBeLessThanOrEqual(63);
    expect(mediaBucketName(long, 'test')).not.toBe(mediaBucketName(`${long}b`, 'test'));
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), fc.constantFrom('test' as const, 'live' as const), (slug, env) => {
        const name = mediaBucketName(slug, env);
        return isValidBucketName(name) && name.length <= 63 && name === mediaBucketName(slug, env);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('embedded media store', () => {
  it('provisions idempotently: the same bucket, the same key pair, a keys file only its owner reads', async () => {
    const first = await storage.provision({ bucket: 'idem-test' });
    const second = await storage.provision({ bucket: 'idem-test' });
    expect(second).toEqual(first);
    expect(first).toMatchObject({ endpoint, publicUrl: endpoint, region: REGION, bucket: 'idem-test', prefix: '' });
    expect(first.accessKeyId).not.toBe(ADMIN.accessKeyId);
    expect((await stat(keysFile)).mode & 0o777).toBe(0o600);
    const file = JSON.parse(await readFile(keysFile, 'utf8')) as { keys: Record<string, { bucket: string }> };
    expect(Object.values(file.keys).filter((entry) => entry.bucket === 'idem-test')).toHaveLength(1);
    await expect(storage.check()).resolves.toBeUndefined();
  });

  it('refuses an invalid bucket name', async () => {
    await expect(storage.provision({ bucket: 'Not_Valid' })).rejects.toThrow(/invalid bucket name/);
  });

  it('lets an environment key put, get, list and delete in its own bucket', async () => {
    const grant = await storage.provision({ bucket: 'own-test' });
    const client = clientFor(keyOf(grant));
    await client.send(new PutObjectCommand({ Bucket: 'own-test', Key: 'images/a b+(1).txt', Body: 'hello' }));
    expect((await readObject(client, 'own-test', 'images/a b+(1).txt')).toString()).toBe('hello');
    await client.send(new PutObjectCommand({ Bucket: 'own-test', Key: 'original.txt', Body: 'original' }));
    await client.send(new CopyObjectCommand({ Bucket: 'own-test', Key: 'copy.txt', CopySource: 'own-test/original.txt' }));
    expect((await readObject(client, 'own-test', 'copy.txt')).toString()).toBe('original');
    const listed = await client.send(new ListObjectsV2Command({ Bucket: 'own-test' }));
    expect(listed.Contents?.map((object) => object.Key).sort()).toEqual(['copy.txt', 'images/a b+(1).txt', 'original.txt']);
    await client.send(new DeleteObjectCommand({ Bucket: 'own-test', Key: 'images/a b+(1).txt' }));
    const after = await client.send(new ListObjectsV2Command({ Bucket: 'own-test' }));
    expect(after.Contents?.map((object) => object.Key).sort()).toEqual(['copy.txt', 'original.txt']);
  });

  it("denies an environment key other environments' buckets, ListBuckets, CreateBucket and DeleteBucket", async () => {
    const test = await storage.provision({ bucket: 'shop-test' });
    const live = await storage.provision({ bucket: 'shop-live' });
    await clientFor(keyOf(live)).send(new PutObjectCommand({ Bucket: 'shop-live', Key: 'secret.txt', Body: 'live data' }));
    const intruder = clientFor(keyOf(test));
    const denied = { name: 'AccessDenied' };
    await expect(intruder.send(new GetObjectCommand({ Bucket: 'shop-live', Key: 'secret.txt' }))).rejects.toMatchObject(denied);
    await expect(intruder.send(new PutObjectCommand({ Bucket: 'shop-live', Key: 'x', Body: 'x' }))).rejects.toMatchObject(denied);
    await expect(intruder.send(new ListObjectsV2Command({ Bucket: 'shop-live' }))).rejects.toMatchObject(denied);
    await expect(
      intruder.send(new CopyObjectCommand({ Bucket: 'shop-test', Key: 'stolen.txt', CopySource: 'shop-live/secret.txt' })),
    ).rejects.toMatchObject(denied);
    await expect(intruder.send(new ListBucketsCommand({}))).rejects.toMatchObject(denied);
    await expect(intruder.send(new CreateBucketCommand({ Bucket: 'brand-new' }))).rejects.toMatchObject(denied);
    await expect(intruder.send(new DeleteBucketCommand({ Bucket: 'shop-test' }))).rejects.toMatchObject(denied);
    // s3rver would read the bucket from a virtual-host style Host header; the store serves path style only.
    const viaHost = await fetch(`${endpoint}/secret.txt`, { headers: { host: `shop-live.s3.amazonaws.com:${server.port}` } });
    expect(viaHost.status).toBe(403);
  });

  it('answers a wrong secret for a valid access key id with SignatureDoesNotMatch, an unknown id with InvalidAccessKeyId', async () => {
    const grant = await storage.provision({ bucket: 'sig-test' });
    const forged = clientFor({ accessKeyId: grant.accessKeyId, secretAccessKey: 'not-the-secret' });
    await expect(forged.send(new PutObjectCommand({ Bucket: 'sig-test', Key: 'x', Body: 'x' }))).rejects.toMatchObject({
      name: 'SignatureDoesNotMatch',
    });
    const forgedAdmin = clientFor({ accessKeyId: ADMIN.accessKeyId, secretAccessKey: 'guess' });
    await expect(forgedAdmin.send(new ListBucketsCommand({}))).rejects.toMatchObject({ name: 'SignatureDoesNotMatch' });
    const stranger = clientFor({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });
    await expect(stranger.send(new ListBucketsCommand({}))).rejects.toMatchObject({ name: 'InvalidAccessKeyId' });
  });

  it('refuses a request signed 20 minutes ago', async () => {
    const grant = await storage.provision({ bucket: 'skew-test' });
    const late = clientFor(keyOf(grant), { systemClockOffset: -20 * 60 * 1000 });
    await expect(late.send(new ListObjectsV2Command({ Bucket: 'skew-test' }))).rejects.toMatchObject({ name: 'RequestTimeTooSkewed' });
  });

  it('serves a presigned GET URL and refuses a tampered or expired one', async () => {
    const grant = await storage.provision({ bucket: 'presign-test' });
    const client = clientFor(keyOf(grant));
    await client.send(new PutObjectCommand({ Bucket: 'presign-test', Key: 'docs/report.pdf', Body: 'report' }));
    await client.send(new PutObjectCommand({ Bucket: 'presign-test', Key: 'docs/other.pdf', Body: 'other' }));
    const url = presignedGetUrl('presign-test', 'docs/report.pdf', keyOf(grant));

    const good = await fetch(url);
    expect(good.status).toBe(200);
    expect(await good.text()).toBe('report');

    const otherObject = await fetch(url.replace('report.pdf', 'other.pdf'));
    expect([otherObject.status, await s3ErrorCode(otherObject)]).toEqual([403, 'SignatureDoesNotMatch']);
    const longerLife = await fetch(url.replace('X-Amz-Expires=300', 'X-Amz-Expires=3600'));
    expect([longerLife.status, await s3ErrorCode(longerLife)]).toEqual([403, 'SignatureDoesNotMatch']);
    const expired = await fetch(presignedGetUrl('presign-test', 'docs/report.pdf', keyOf(grant), 0).replace(/X-Amz-Date=\d{8}T/, 'X-Amz-Date=20200101T'));
    expect(expired.status).toBe(403);
  });

  it('serves objects to anonymous GET and HEAD, and refuses anonymous writes and listings', async () => {
    const grant = await storage.provision({ bucket: 'public-test' });
    await clientFor(keyOf(grant)).send(new PutObjectCommand({ Bucket: 'public-test', Key: 'logo.svg', Body: '<svg/>', ContentType: 'image/svg+xml' }));

    const get = await fetch(`${endpoint}/public-test/logo.svg`);
    expect([get.status, get.headers.get('content-type'), await get.text()]).toEqual([200, 'image/svg+xml', '<svg/>']);
    expect((await fetch(`${endpoint}/public-test/logo.svg`, { method: 'HEAD' })).status).toBe(200);

    const put = await fetch(`${endpoint}/public-test/evil.svg`, { method: 'PUT', body: 'x' });
    expect([put.status, await s3ErrorCode(put)]).toEqual([403, 'AccessDenied']);
    const remove = await fetch(`${endpoint}/public-test/logo.svg`, { method: 'DELETE' });
    expect([remove.status, await s3ErrorCode(remove)]).toEqual([403, 'AccessDenied']);
    const list = await fetch(`${endpoint}/public-test`);
    expect([list.status, await s3ErrorCode(list)]).toEqual([403, 'AccessDenied']);
    const buckets = await fetch(`${endpoint}/`);
    expect([buckets.status, await s3ErrorCode(buckets)]).toEqual([403, 'AccessDenied']);
  });

  it('stores a 10 MB object byte for byte', async () => {
    // @aws-sdk/lib-storage (multipart Upload) is not installed: one large PutObject instead.
    const grant = await storage.provision({ bucket: 'large-test' });
    const client = clientFor(keyOf(grant));
    const body = randomBytes(10 * 1024 * 1024);
    await client.send(new PutObjectCommand({ Bucket: 'large-test', Key: 'video.bin', Body: body }));
    expect(sha256(await readObject(client, 'large-test', 'video.bin'))).toBe(sha256(body));
  });

  it('refuses aws-chunked uploads (the SDK default checksum mode) instead of storing their framing', async () => {
    const grant = await storage.provision({ bucket: 'chunked-test' });
    const defaults = new S3Client({ endpoint, region: REGION, credentials: keyOf(grant), forcePathStyle: true, maxAttempts: 1 });
    await expect(
      defaults.send(new PutObjectCommand({ Bucket: 'chunked-test', Key: 'x', Body: Readable.from([Buffer.from('hello')]), ContentLength: 5 })),
    ).rejects.toMatchObject({ name: 'NotImplemented' });
    defaults.destroy();
  });

  it('deprovisions objects, bucket and key, and again without complaint', async () => {
    const grant = await storage.provision({ bucket: 'gone-test' });
    const client = clientFor(keyOf(grant));
    await Promise.all(
      Array.from({ length: 120 }, (_, i) => client.send(new PutObjectCommand({ Bucket: 'gone-test', Key: `f/${i}.txt`, Body: `${i}` }))),
    );
    await storage.deprovision({ bucket: 'gone-test' });

    const admin = clientFor(ADMIN);
    const buckets = await admin.send(new ListBucketsCommand({}));
    expect(buckets.Buckets?.map((bucket) => bucket.Name)).not.toContain('gone-test');
    const file = JSON.parse(await readFile(keysFile, 'utf8')) as { keys: Record<string, unknown> };
    expect(file.keys[grant.accessKeyId]).toBeUndefined();
    await expect(client.send(new ListObjectsV2Command({ Bucket: 'gone-test' }))).rejects.toMatchObject({ name: 'InvalidAccessKeyId' });
    await expect(storage.deprovision({ bucket: 'gone-test' })).resolves.toBeUndefined();

    const again = await storage.provision({ bucket: 'gone-test' });
    expect(again.accessKeyId).not.toBe(grant.accessKeyId);
    expect((await clientFor(keyOf(again)).send(new ListObjectsV2Command({ Bucket: 'gone-test' }))).KeyCount).toBe(0);
  });

  it('survives a damaged keys file: environment keys stop working, the admin key does not, repair restores them', async () => {
    const grant = await storage.provision({ bucket: 'damage-test' });
    const intact = await readFile(keysFile, 'utf8');
    await writeFile(keysFile, '{"keys": {"half', { mode: 0o600 });
    await waitFor(async () => !(await reachesBucket(keyOf(grant), 'damage-test')), 'the damaged file is noticed');
    expect(serverLog.some((line) => /damaged/.test(line))).toBe(true);
    await expect(clientFor(ADMIN).send(new HeadBucketCommand({ Bucket: 'damage-test' }))).resolves.toBeDefined();

    await writeFile(keysFile, intact, { mode: 0o600 });
    await waitFor(() => reachesBucket(keyOf(grant), 'damage-test'), 'the repaired file is loaded');
  });

  it('never logs a secret', async () => {
    const file = JSON.parse(await readFile(keysFile, 'utf8')) as { keys: Record<string, { secretAccessKey: string }> };
    const secrets = [ADMIN.secretAccessKey, ...Object.values(file.keys).map((entry) => entry.secretAccessKey)];
    expect(secrets.length).toBeGreaterThan(5);
    expect(serverLog.length).toBeGreaterThan(0);
    for (const line of serverLog) for (const secret of secrets) expect(line).not.toContain(secret);
  });
});

describe('embedded media store with real S3 clients', async () => {
  const rclone = await onPath('rclone');
  const awsCli = await onPath('aws');

  it.skipIf(!rclone)(`rclone copy with an environment key lands in its bucket${rclone ? '' : ' (skipped: rclone is not on PATH)'}`, async () => {
    const grant = await storage.provision({ bucket: 'rclone-test' });
    const source = join(workDir, 'rclone-source');
    await mkdir(source, { recursive: true });
    await writeFile(join(source, 'photo.jpg'), randomBytes(256 * 1024));
    const env = {
      ...withoutAwsSettings(process.env),
      RCLONE_CONFIG_MEDIA_TYPE: 's3',
      RCLONE_CONFIG_MEDIA_PROVIDER: 'Other',
      RCLONE_CONFIG_MEDIA_ENDPOINT: endpoint,
      RCLONE_CONFIG_MEDIA_ACCESS_KEY_ID: grant.accessKeyId,
      RCLONE_CONFIG_MEDIA_SECRET_ACCESS_KEY: grant.secretAccessKey,
      RCLONE_CONFIG_MEDIA_FORCE_PATH_STYLE: 'true',
      RCLONE_CONFIG_MEDIA_REGION: REGION,
    };
    await execFileAsync('rclone', ['copy', source, 'media:rclone-test/uploads'], { env });
    const stored = await readObject(clientFor(keyOf(grant)), 'rclone-test', 'uploads/photo.jpg');
    expect(sha256(stored)).toBe(sha256(await readFile(join(source, 'photo.jpg'))));
    await expect(execFileAsync('rclone', ['lsf', 'media:someone-else'], { env })).rejects.toThrow();
  });

  it.skipIf(!awsCli)(`the AWS CLI (an independent SigV4 signer) uploads, lists and presigns${awsCli ? '' : ' (skipped: aws is not on PATH)'}`, async () => {
    const grant = await storage.provision({ bucket: 'awscli-test' });
    const configFile = join(workDir, 'aws-config');
    await writeFile(configFile, `[default]\nregion = ${REGION}\ns3 =\n  addressing_style = path\n  signature_version = s3v4\n`);
    const env = {
      ...withoutAwsSettings(process.env),
      AWS_CONFIG_FILE: configFile,
      AWS_SHARED_CREDENTIALS_FILE: join(workDir, 'no-credentials'),
      AWS_ACCESS_KEY_ID: grant.accessKeyId,
      AWS_SECRET_ACCESS_KEY: grant.secretAccessKey,
      AWS_REQUEST_CHECKSUM_CALCULATION: 'when_required',
      AWS_RESPONSE_CHECKSUM_VALIDATION: 'when_required',
    };
    const aws = (...args: string[]) => execFileAsync('aws', ['--endpoint-url', endpoint, ...args], { env });
    const file = join(workDir, 'notes (draft).txt');
    await writeFile(file, 'from the aws cli');
    await aws('s3', 'cp', file, 's3://awscli-test/docs/notes (draft).txt');
    expect((await aws('s3', 'ls', 's3://awscli-test/docs/')).stdout).toContain('notes (draft).txt');
    const { stdout: url } = await aws('s3', 'presign', 's3://awscli-test/docs/notes (draft).txt', '--expires-in', '60');
    const fetched = await fetch(url.trim());
    expect([fetched.status, await fetched.text()]).toEqual([200, 'from the aws cli']);
    await expect(aws('s3', 'ls', 's3://someone-else/')).rejects.toThrow(/AccessDenied/);
  });
});

/** A developer's own AWS settings (profile, CA bundle) must not leak into the test's clients. */
function withoutAwsSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith('AWS_') && !name.startsWith('RCLONE_')));
}

describe('embedded media store: short-lived and read-only keys', () => {
  it('refuses a key past its expiresAt with 403 ExpiredToken, even before the keys file is reloaded', async () => {
    await storage.provision({ bucket: 'expiry-test' });
    const expired = newPair();
    const soon = newPair();
    const soonExpiresAt = Date.now() + 2500;
    await addKeys({
      [expired.accessKeyId]: { secretAccessKey: expired.secretAccessKey, bucket: 'expiry-test', expiresAt: new Date(Date.now() - 1000).toISOString() },
      [soon.accessKeyId]: { secretAccessKey: soon.secretAccessKey, bucket: 'expiry-test', expiresAt: new Date(soonExpiresAt).toISOString() },
    });
    await waitFor(() => reachesBucket(soon, 'expiry-test'), 'the short-lived key is accepted');
    const refusedAs = (key: AccessKeyPair) =>
      clientFor(key)
        .send(new ListObjectsV2Command({ Bucket: 'expiry-test' }))
        .then(
          () => undefined,
          (error: { name?: string; $metadata?: { httpStatusCode?: number } }) => [error.name, error.$metadata?.httpStatusCode],
        );
    expect(await refusedAs(expired)).toEqual(['ExpiredToken', 403]);
    await new Promise((resolve) => setTimeout(resolve, soonExpiresAt - Date.now() + 50));
    // The file has not changed since: the expiry alone refuses the key.
    expect(await refusedAs(soon)).toEqual(['ExpiredToken', 403]);
  });

  it('lets a readOnly key read and list its bucket, and nothing else', async () => {
    await storage.provision({ bucket: 'readonly-test' });
    await clientFor(ADMIN).send(new PutObjectCommand({ Bucket: 'readonly-test', Key: 'a.txt', Body: 'a' }));
    const reader = newPair();
    await addKeys({ [reader.accessKeyId]: { secretAccessKey: reader.secretAccessKey, bucket: 'readonly-test', readOnly: true } });
    await waitFor(() => reachesBucket(reader, 'readonly-test'), 'the read-only key is accepted');
    const client = clientFor(reader);
    expect((await readObject(client, 'readonly-test', 'a.txt')).toString()).toBe('a');
    expect((await client.send(new ListObjectsV2Command({ Bucket: 'readonly-test' }))).KeyCount).toBe(1);
    const denied = { name: 'AccessDenied' };
    await expect(client.send(new PutObjectCommand({ Bucket: 'readonly-test', Key: 'b.txt', Body: 'b' }))).rejects.toMatchObject(denied);
    await expect(client.send(new DeleteObjectCommand({ Bucket: 'readonly-test', Key: 'a.txt' }))).rejects.toMatchObject(denied);
    await expect(client.send(new CreateMultipartUploadCommand({ Bucket: 'readonly-test', Key: 'c.txt' }))).rejects.toMatchObject(denied);
  });
});

describe('embedded media store: keys and writes s3rver alone would get wrong', () => {
  it('refuses keys that would leave the bucket or name another key on disk', async () => {
    const mine = await storage.provision({ bucket: 'escape-test' });
    await storage.provision({ bucket: 'escape-victim' });
    const client = clientFor(keyOf(mine));
    for (const key of ['../escape-victim/planted', 'a/../../escape-victim/planted', 'a//b', 'x/./y', '/abs', `${'n'.repeat(240)}.txt`, 'x._S3rver_object']) {
      await expect(client.send(new PutObjectCommand({ Bucket: 'escape-test', Key: key, Body: 'x' }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 400 } });
    }
    expect((await clientFor(ADMIN).send(new ListObjectsV2Command({ Bucket: 'escape-victim' }))).KeyCount).toBe(0);
    expect((await client.send(new ListObjectsV2Command({ Bucket: 'escape-test' }))).KeyCount).toBe(0);
    // Raw paths (fetch would resolve the dot segments before sending).
    for (const path of ['/%2E%2E/escape-victim/x', '/escape-test%2F..%2Fescape-victim/x']) {
      expect(await rawGet(path)).toEqual([400, 'InvalidBucketName']);
    }
  });

  it('never shows an object whose upload was cut off, and leaves no temporary file', async () => {
    await storage.provision({ bucket: 'cutoff-test' });
    const signer = new SignatureV4({ service: 's3', region: REGION, credentials: ADMIN, sha256: NodeHash, uriEscapePath: false, applyChecksum: false });
    const url = new URL(`${endpoint}/cutoff-test/half.bin`);
    const signed = await signer.sign({
      method: 'PUT',
      protocol: 'http:',
      hostname: url.hostname,
      port: Number(url.port),
      path: url.pathname,
      query: {},
      headers: { host: url.host, 'content-length': String(2 * 1024 * 1024), 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    });
    await new Promise<void>((resolve) => {
      const request = httpRequest({ host: url.hostname, port: url.port, path: url.pathname, method: 'PUT', headers: signed.headers });
      request.on('error', () => resolve());
      request.write(randomBytes(1024 * 1024), () => setTimeout(() => request.destroy(), 100));
      request.on('close', () => resolve());
    });
    const bucketDirectory = join(workDir, 'objects', 'cutoff-test');
    await waitFor(async () => (await readdir(bucketDirectory)).length === 0, 'the partial upload is cleaned up');
    await expect(clientFor(ADMIN).send(new HeadObjectCommand({ Bucket: 'cutoff-test', Key: 'half.bin' }))).rejects.toMatchObject({ name: 'NotFound' });
  });
});

describe('embedded media store: multipart uploads', () => {
  const MIB = 1024 * 1024;

  async function start(client: S3Client, bucket: string, key: string) {
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, Metadata: { sha256: 'abc' } }));
    return UploadId as string;
  }

  async function part(client: S3Client, bucket: string, key: string, uploadId: string, partNumber: number, body: Buffer) {
    return (await client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, Body: body }))).ETag as string;
  }

  it('assembles parts only at CompleteMultipartUpload, under S3\'s composite ETag', async () => {
    const grant = await storage.provision({ bucket: 'multipart-test' });
    const client = clientFor(keyOf(grant));
    const parts = [randomBytes(5 * MIB), randomBytes(5 * MIB), randomBytes(1234)];
    const uploadId = await start(client, 'multipart-test', 'video.bin');
    const etags = [];
    for (const [index, body] of parts.entries()) {
      const etag = await part(client, 'multipart-test', 'video.bin', uploadId, index + 1, body);
      expect(etag.replace(/"/g, '')).toBe(createHash('md5').update(body).digest('hex'));
      etags.push(etag);
    }
    expect((await client.send(new ListObjectsV2Command({ Bucket: 'multipart-test' }))).KeyCount).toBe(0);
    const completed = await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: 'multipart-test',
        Key: 'video.bin',
        UploadId: uploadId,
        MultipartUpload: { Parts: etags.map((ETag, index) => ({ ETag, PartNumber: index + 1 })) },
      }),
    );
    const composite = `${createHash('md5').update(Buffer.concat(parts.map((body) => createHash('md5').update(body).digest()))).digest('hex')}-3`;
    expect(completed.ETag).toBe(`"${composite}"`);
    const listed = await client.send(new ListObjectsV2Command({ Bucket: 'multipart-test' }));
    expect(listed.Contents?.map((object) => [object.Key, object.ETag, object.Size])).toEqual([['video.bin', `"${composite}"`, 5 * MIB * 2 + 1234]]);
    expect(sha256(await readObject(client, 'multipart-test', 'video.bin'))).toBe(sha256(Buffer.concat(parts)));
    expect((await client.send(new HeadObjectCommand({ Bucket: 'multipart-test', Key: 'video.bin' }))).Metadata).toEqual({ sha256: 'abc' });
  });

  it('checks the parts like S3: wrong ETag, wrong order, a small part before the last', async () => {
    const client = clientFor(keyOf(await storage.provision({ bucket: 'multipart-checks' })));
    const uploadId = await start(client, 'multipart-checks', 'x.bin');
    const first = await part(client, 'multipart-checks', 'x.bin', uploadId, 1, randomBytes(MIB));
    const second = await part(client, 'multipart-checks', 'x.bin', uploadId, 2, randomBytes(MIB));
    const complete = (parts: { ETag: string; PartNumber: number }[]) =>
      client.send(new CompleteMultipartUploadCommand({ Bucket: 'multipart-checks', Key: 'x.bin', UploadId: uploadId, MultipartUpload: { Parts: parts } }));
    await expect(complete([{ ETag: `"${'0'.repeat(32)}"`, PartNumber: 1 }])).rejects.toMatchObject({ name: 'InvalidPart' });
    await expect(complete([{ ETag: second, PartNumber: 2 }, { ETag: first, PartNumber: 1 }])).rejects.toMatchObject({ name: 'InvalidPartOrder' });
    await expect(complete([{ ETag: first, PartNumber: 1 }, { ETag: second, PartNumber: 2 }])).rejects.toMatchObject({ name: 'EntityTooSmall' });
    expect((await client.send(new ListObjectsV2Command({ Bucket: 'multipart-checks' }))).KeyCount).toBe(0);
  });

  it('aborts an upload (s3rver alone answers 405), and refuses upload ids and part numbers that are not its own', async () => {
    const client = clientFor(keyOf(await storage.provision({ bucket: 'multipart-abort' })));
    const uploadId = await start(client, 'multipart-abort', 'x.bin');
    await part(client, 'multipart-abort', 'x.bin', uploadId, 1, randomBytes(MIB));
    const uploads = join(workDir, 'objects', 'multipart-abort', '._S3rver_uploads');
    expect(await readdir(uploads)).toEqual([uploadId]);
    await client.send(new AbortMultipartUploadCommand({ Bucket: 'multipart-abort', Key: 'x.bin', UploadId: uploadId }));
    expect(await readdir(uploads)).toEqual([]);
    await expect(part(client, 'multipart-abort', 'x.bin', uploadId, 2, randomBytes(10))).rejects.toMatchObject({ name: 'NoSuchUpload' });
    const another = await start(client, 'multipart-abort', 'y.bin');
    await expect(part(client, 'multipart-abort', 'x.bin', another, 1, randomBytes(10))).rejects.toMatchObject({ name: 'NoSuchUpload' });
    await expect(part(client, 'multipart-abort', 'y.bin', '../../escape', 1, randomBytes(10))).rejects.toMatchObject({ name: 'NoSuchUpload' });
    await expect(part(client, 'multipart-abort', 'y.bin', another, 0, randomBytes(10))).rejects.toMatchObject({ $metadata: { httpStatusCode: 400 } });
  });
});

describe('embedded media store: documents s3rver parses itself', () => {
  it('still hands tagging and CORS documents to s3rver once the gate has checked them against their digests', async () => {
    const grant = await storage.provision({ bucket: 'documents-test' });
    const client = clientFor(keyOf(grant));
    await client.send(new PutObjectCommand({ Bucket: 'documents-test', Key: 'x.txt', Body: 'x' }));
    await client.send(new PutObjectTaggingCommand({ Bucket: 'documents-test', Key: 'x.txt', Tagging: { TagSet: [{ Key: 'kind', Value: 'photo' }] } }));
    expect((await client.send(new GetObjectTaggingCommand({ Bucket: 'documents-test', Key: 'x.txt' }))).TagSet).toEqual([{ Key: 'kind', Value: 'photo' }]);
    const rules = [{ AllowedMethods: ['GET'], AllowedOrigins: ['https://example.test'] }];
    await clientFor(ADMIN).send(new PutBucketCorsCommand({ Bucket: 'documents-test', CORSConfiguration: { CORSRules: rules } }));
    expect((await clientFor(ADMIN).send(new GetBucketCorsCommand({ Bucket: 'documents-test' }))).CORSRules).toMatchObject(rules);
  });
});

describe('media on an external S3 endpoint', () => {
  // The in-process store stands in for the external endpoint: configured without a keys file, the
  // platform holds only the operator's pair for it, which reaches every bucket.
  const external = () => new S3MediaStorage({ endpoint, publicUrl: endpoint, region: REGION, ...ADMIN });

  it("refuses to give an app or the CLI the operator's key pair, says what the operator must do, and creates nothing", async () => {
    const refusal = {
      name: 'MediaCredentialsUnavailable',
      status: 503,
      code: 'media_credentials_unavailable',
      message: expect.stringMatching(/external S3 endpoint .*cannot create a key confined to bucket ext-refused/),
      extra: { hint: expect.stringMatching(/embedded media store/) },
    };
    await expect(external().provision({ bucket: 'ext-refused' })).rejects.toMatchObject(refusal);
    for (const access of ['read', 'write'] as const) {
      await expect(external().issueTemporaryCredentials({ bucket: 'ext-refused', access, ttlSeconds: 600 })).rejects.toMatchObject(refusal);
    }
    const error = await external().provision({ bucket: 'ext-refused' }).catch((caught: Error & { extra?: unknown }) => caught);
    expect(JSON.stringify([String(error), (error as { extra?: unknown }).extra])).not.toContain(ADMIN.secretAccessKey);
    // Refused before anything was made: no bucket for a grant that was never given.
    await expect(clientFor(ADMIN).send(new HeadBucketCommand({ Bucket: 'ext-refused' }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
  });
});

describe('embedded media store: listings', () => {
  it('lists in key order across pages, with delimiters at any depth, V1 and V2', async () => {
    const client = clientFor(keyOf(await storage.provision({ bucket: 'listing-test' })));
    // Directory order on disk puts a/x before a-b; key order does not.
    const keys = ['a', 'a-b', 'a/x', 'a/y/z', 'b', 'deep/x/y/z/f.txt', 'deep/x/y/g.txt', 'deep/w.txt', 'sp ace&amp.txt', 'é', 'z'];
    for (const key of keys) await client.send(new PutObjectCommand({ Bucket: 'listing-test', Key: key, Body: key }));
    const sorted = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));

    const paged: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: 'listing-test', MaxKeys: 3, ContinuationToken: token }));
      paged.push(...(page.Contents ?? []).map((object) => object.Key as string));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    expect(paged).toEqual(sorted);

    const top = await client.send(new ListObjectsV2Command({ Bucket: 'listing-test', Delimiter: '/' }));
    expect(top.Contents?.map((object) => object.Key)).toEqual(['a', 'a-b', 'b', 'sp ace&amp.txt', 'z', 'é']);
    expect(top.CommonPrefixes?.map((prefix) => prefix.Prefix)).toEqual(['a/', 'deep/']);
    const deep = await client.send(new ListObjectsV2Command({ Bucket: 'listing-test', Delimiter: '/', Prefix: 'deep/' }));
    expect([deep.Contents?.map((object) => object.Key), deep.CommonPrefixes?.map((prefix) => prefix.Prefix)]).toEqual([['deep/w.txt'], ['deep/x/']]);

    // Paging through common prefixes returns each once.
    const entries: string[] = [];
    let marker: string | undefined;
    do {
      const page = await client.send(new ListObjectsCommand({ Bucket: 'listing-test', Delimiter: '/', MaxKeys: 2, Marker: marker }));
      entries.push(...(page.Contents ?? []).map((object) => object.Key as string), ...(page.CommonPrefixes ?? []).map((prefix) => prefix.Prefix as string));
      marker = page.IsTruncated ? page.NextMarker : undefined;
    } while (marker);
    expect(entries.sort()).toEqual(['a', 'a-b', 'a/', 'b', 'deep/', 'sp ace&amp.txt', 'z', 'é'].sort());

    // encoding-type=url (which rclone asks for) percent-encodes keys; the SDK leaves decoding to its caller.
    const encoded = await client.send(new ListObjectsV2Command({ Bucket: 'listing-test', Prefix: 'sp', EncodingType: 'url' }));
    expect(encoded.Contents?.map((object) => object.Key)).toEqual(['sp%20ace%26amp.txt']);
  });
});

class NodeHash {
  private hash;

  constructor(secret?: SourceData) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', typeof secret === 'string' ? secret : Buffer.from(secret as Uint8Array));
  }

  update(data: Uint8Array): void {
    this.hash.update(data);
  }

  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }

  reset(): void {}
}

/** An anonymous GET of a path exactly as given: [status, S3 error code]. */
function rawGet(path: string): Promise<[number, string | undefined]> {
  const url = new URL(endpoint);
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: url.hostname, port: url.port, path }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve([response.statusCode ?? 0, /<Code>([^<]+)<\/Code>/.exec(body)?.[1]]));
    });
    request.on('error', reject);
    request.end();
  });
}

function newPair(): AccessKeyPair {
  return { accessKeyId: `TEMP${randomBytes(8).toString('hex').toUpperCase()}`, secretAccessKey: randomBytes(24).toString('base64url') };
}

/** Adds entries to the keys file as the platform API does: the whole file, replaced by rename. */
async function addKeys(entries: Record<string, { secretAccessKey: string; bucket: string; expiresAt?: string; readOnly?: boolean }>): Promise<void> {
  const file = JSON.parse(await readFile(keysFile, 'utf8')) as { keys: Record<string, unknown> };
  Object.assign(file.keys, entries);
  const temporary = `${keysFile}.test-${process.pid}`;
  await writeFile(temporary, JSON.stringify(file, null, 2), { mode: 0o600 });
  await rename(temporary, keysFile);
}
