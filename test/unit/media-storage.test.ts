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
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
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
