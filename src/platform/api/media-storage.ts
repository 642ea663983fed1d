/**
 * Media storage on S3-compatible storage: one bucket per environment. On the embedded store
 * (`media.keysFile` set) each bucket also gets its own key pair, which the store reloads from the
 * keys file and confines to that bucket. On an external S3 the configured pair is the operator's
 * and reaches every bucket, so it is never handed to an app or the CLI: until the platform can
 * mint a key confined to one bucket there, asking for one is refused (MediaCredentialsUnavailable).
 */
import { randomBytes } from 'node:crypto';
import { assertValidBucketName } from './resource-names.js';
import { readFile } from 'node:fs/promises';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  HeadBucketCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { writeFileAtomic } from '../../core/fs-util.js';
import { ApiError } from './errors.js';
import { mediaKeysFileSchema, type AccessKeyPair, type MediaKeysFile } from '../media/s3-server.js';
import type { RuntimeConfig } from '../runtime-config.js';
import type { MediaGrant, MediaStorage, TemporaryMediaGrant } from './parts.js';

type MediaConfig = RuntimeConfig['media'];

/** How long the store may take to notice a changed keys file (it polls every second). */
const KEY_PROPAGATION_TIMEOUT_MS = 5000;
const KEY_PROPAGATION_POLL_MS = 100;
const MAX_FAILED_DELETE_ROUNDS = 5;

export class S3MediaStorage implements MediaStorage {
  private readonly admin: S3Client;
  /** Serialises read-modify-write cycles of the keys file within this process. */
  private keysFileLock: Promise<unknown> = Promise.resolve();

  constructor(private readonly config: MediaConfig) {
    this.admin = this.client({ accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey });
  }

  async provision({ bucket }: { bucket: string }): Promise<MediaGrant> {
    assertValidBucketName(bucket);
    const keysFile = this.keysFileOrRefuse(bucket, 'an app');
    await this.ensureBucket(bucket);
    return { ...this.location(bucket), ...(await this.grantBucketKey(keysFile, bucket)) };
  }

  /**
   * Where bucket-confined keys come from. The embedded store has the keys file; an external S3
   * has only the operator's pair, which reaches every bucket, so the request is refused there
   * (before anything is created) with what the operator has to change.
   */
  private keysFileOrRefuse(bucket: string, recipient: 'an app' | 'the CLI'): string {
    if (this.config.keysFile) return this.config.keysFile;
    throw new MediaCredentialsUnavailable(this.config.endpoint, bucket, recipient);
  }

  /** Where an environment's media is, as a grant gives it (the keys are added by the caller). */
  private location(bucket: string): { endpoint: string; publicUrl: string; region: string; bucket: string; prefix: string } {
    return { endpoint: this.config.endpoint, publicUrl: this.config.publicUrl, region: this.config.region, bucket, prefix: '' };
  }

  async deprovision({ bucket }: { bucket: string }): Promise<void> {
    assertValidBucketName(bucket);
    // The key goes first, so that the environment cannot write while its bucket is emptied.
    if (this.config.keysFile) await this.revokeBucketKey(this.config.keysFile, bucket);
    await this.emptyBucket(bucket);
    await ignoreNoSuchBucket(this.admin.send(new DeleteBucketCommand({ Bucket: bucket })));
  }

  async retire({ bucket }: { bucket: string }): Promise<void> {
    assertValidBucketName(bucket);
    if (this.config.keysFile) await this.revokeBucketKey(this.config.keysFile, bucket);
  }

  async check(): Promise<void> {
    await this.admin.send(new ListBucketsCommand({}));
  }

  /**
   * On the embedded store: a fresh pair in the keys file with its expiry (the store refuses it
   * after that) and, for read access, no right to change anything; expired pairs are pruned on
   * the way. On an external S3: refused (see keysFileOrRefuse).
   */
  async issueTemporaryCredentials({ bucket, access, ttlSeconds }: { bucket: string; access: 'read' | 'write'; ttlSeconds: number }): Promise<TemporaryMediaGrant> {
    assertValidBucketName(bucket);
    const keysFile = this.keysFileOrRefuse(bucket, 'the CLI');
    const expiresAt = new Date(Date.now() + ttlSeconds * 1000);
    const key = await this.withKeysFile(keysFile, (file) => {
      const now = Date.now();
      for (const [id, entry] of Object.entries(file.keys)) {
        if (entry.expiresAt !== undefined && Date.parse(entry.expiresAt) <= now) delete file.keys[id];
      }
      const created = newKeyPair();
      file.keys[created.accessKeyId] = {
        secretAccessKey: created.secretAccessKey,
        bucket,
        expiresAt: expiresAt.toISOString(),
        ...(access === 'read' ? { readOnly: true } : {}),
      };
      return { key: created, changed: true };
    });
    await this.waitUntil(key, bucket, 'accepted');
    return {
      ...this.location(bucket),
      access,
      expiresAt,
      ...key,
    };
  }

  private client(credentials: AccessKeyPair): S3Client {
    return new S3Client({
      endpoint: this.config.endpoint,
      region: this.config.region,
      credentials,
      forcePathStyle: true,
      // s3rver mis-stores the aws-chunked bodies the SDK's default checksum mode sends.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  private async ensureBucket(bucket: string): Promise<void> {
    if (await this.bucketExists(bucket)) return;
    try {
      await this.admin.send(new CreateBucketCommand({ Bucket: bucket }));
    } catch (error) {
      // Created meanwhile by a concurrent provision: just as good.
      if (!(error instanceof S3ServiceException && ['BucketAlreadyOwnedByYou', 'BucketAlreadyExists'].includes(error.name))) {
        throw error;
      }
    }
  }

  private async bucketExists(bucket: string): Promise<boolean> {
    try {
      await this.admin.send(new HeadBucketCommand({ Bucket: bucket }));
      return true;
    } catch (error) {
      if (httpStatus(error) === 404) return false;
      throw error;
    }
  }

  /** Reuses the bucket's pair when it has one, so provisioning twice hands out the same credentials. */
  private async grantBucketKey(keysFile: string, bucket: string): Promise<AccessKeyPair> {
    const key = await this.withKeysFile(keysFile, (file) => {
      // Temporary pairs (with an expiry) handed to the CLI are never the environment's own.
      const existing = Object.entries(file.keys).find(([, entry]) => entry.bucket === bucket && entry.expiresAt === undefined);
      if (existing) return { key: { accessKeyId: existing[0], secretAccessKey: existing[1].secretAccessKey } };
      const created = newKeyPair();
      file.keys[created.accessKeyId] = { secretAccessKey: created.secretAccessKey, bucket };
      return { key: created, changed: true };
    });
    await this.waitUntil(key, bucket, 'accepted');
    return key;
  }

  private async revokeBucketKey(keysFile: string, bucket: string): Promise<void> {
    const revoked = await this.withKeysFile(keysFile, (file) => {
      const ids = Object.keys(file.keys).filter((id) => file.keys[id]?.bucket === bucket);
      const key = ids[0] ? { accessKeyId: ids[0], secretAccessKey: file.keys[ids[0]]?.secretAccessKey ?? '' } : undefined;
      for (const id of ids) delete file.keys[id];
      return { key, changed: ids.length > 0 };
    });
    if (revoked) await this.waitUntil(revoked, bucket, 'refused');
  }

  /** Read the keys file, let `change` edit it, write it back atomically (0600: it holds secrets) if changed. */
  private withKeysFile<T>(keysFile: string, change: (file: MediaKeysFile) => { key: T; changed?: boolean }): Promise<T> {
    const run = async () => {
      const file = await readKeysFile(keysFile);
      const { key, changed } = change(file);
      if (changed) await writeFileAtomic(keysFile, `${JSON.stringify(file, null, 2)}\n`, 0o600);
      return key;
    };
    const result = this.keysFileLock.then(run, run);
    this.keysFileLock = result.catch(() => undefined);
    return result;
  }

  /** The store reloads the keys file on its own schedule; a grant is only useful once it is in force. */
  private async waitUntil(key: AccessKeyPair, bucket: string, state: 'accepted' | 'refused'): Promise<void> {
    const probe = this.client(key);
    try {
      const deadline = Date.now() + KEY_PROPAGATION_TIMEOUT_MS;
      while ((await keyState(probe, bucket)) !== state) {
        if (Date.now() > deadline) {
          throw new Error(`the media store has not ${state} the key for bucket ${bucket} after ${KEY_PROPAGATION_TIMEOUT_MS / 1000} s`);
        }
        await sleep(KEY_PROPAGATION_POLL_MS);
      }
    } finally {
      probe.destroy();
    }
  }

  /**
   * Restarts from the first page after every batch: deleting under a continuation token may skip
   * keys. A batch that fails with a 5xx (an external S3's hiccup; s3rver's own parallel deletes
   * used to race their directory clean-up) is listed and tried again.
   */
  private async emptyBucket(bucket: string): Promise<void> {
    for (let failedRounds = 0; ; ) {
      const page = await ignoreNoSuchBucket(this.admin.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 1000 })));
      const objects = (page?.Contents ?? []).flatMap((object) => (object.Key === undefined ? [] : [{ Key: object.Key }]));
      if (objects.length === 0) return;
      try {
        const result = await this.admin.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objects, Quiet: true } }));
        const failed = result.Errors ?? [];
        if (failed.length) throw new Error(`could not delete ${failed.length} object(s) from ${bucket}: ${failed[0]?.Code ?? 'unknown error'}`);
        failedRounds = 0;
      } catch (error) {
        if (++failedRounds > MAX_FAILED_DELETE_ROUNDS || (httpStatus(error) ?? 0) < 500) throw error;
      }
    }
  }
}

/**
 * Asked for credentials an external S3 cannot confine to one bucket. A 503 with the operator's
 * remedy: the caller did nothing wrong, the platform is configured in a way that cannot serve it.
 */
export class MediaCredentialsUnavailable extends ApiError {
  constructor(endpoint: string, bucket: string, recipient: 'an app' | 'the CLI') {
    super(
      503,
      'media_credentials_unavailable',
      `The platform's media is on an external S3 endpoint (${withoutUserInfo(endpoint)}), where it cannot create a key confined to bucket ${bucket}; ` +
        `it will not give ${recipient} the operator's key pair, which reaches every bucket`,
      {
        hint:
          'The operator must use the embedded media store (remove external.media from platform.json and run `divio platform start`): ' +
          'it gives each environment a key of its own. Minting bucket-scoped keys on an external S3 (STS AssumeRole with a session policy) is not supported yet.',
      },
    );
    this.name = 'MediaCredentialsUnavailable';
  }
}

function withoutUserInfo(endpoint: string): string {
  try {
    return new URL(endpoint).origin;
  } catch {
    return 'not a URL';
  }
}

// Bucket names are derived and checked in resource-names.ts with every other name an app has.
export { assertValidBucketName, isValidBucketName, mediaBucketName } from './resource-names.js';

/** A missing file is an empty one; a damaged one stops provisioning rather than dropping every other environment's key. */
async function readKeysFile(path: string): Promise<MediaKeysFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { keys: {} };
    throw error;
  }
  try {
    return mediaKeysFileSchema.parse(JSON.parse(text));
  } catch {
    throw new Error(`the media keys file ${path} is damaged; fix or remove it (environments then need re-provisioning)`);
  }
}

function newKeyPair(): AccessKeyPair {
  return {
    accessKeyId: `DM${randomBytes(9).toString('hex').toUpperCase()}`,
    secretAccessKey: randomBytes(30).toString('base64url'),
  };
}

/** Accepted: the key reaches the bucket (or finds it gone, 404). Refused: the store does not know the key (403). */
async function keyState(probe: S3Client, bucket: string): Promise<'accepted' | 'refused'> {
  try {
    await probe.send(new HeadBucketCommand({ Bucket: bucket }));
    return 'accepted';
  } catch (error) {
    const status = httpStatus(error);
    if (status === 403) return 'refused';
    if (status === 404) return 'accepted';
    throw error;
  }
}

function httpStatus(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

async function ignoreNoSuchBucket<T>(request: Promise<T>): Promise<T | undefined> {
  try {
    return await request;
  } catch (error) {
    if (error instanceof S3ServiceException && error.name === 'NoSuchBucket') return undefined;
    throw error;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
