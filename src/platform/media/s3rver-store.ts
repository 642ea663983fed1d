/**
 * s3rver's filesystem store, made fit to hold media (s3rver 3.7.1 is a test double, and it shows):
 *
 * - PutObject streamed the body straight into the object's file: an interrupted upload left a
 *   truncated object visible under its key (with the previous version's ETag), and a concurrent GET
 *   read a half-written file. Objects and parts are now written to a hidden temporary file and
 *   renamed into place once complete; an aborted request removes it.
 * - CompleteMultipartUpload ignored the part ETags it was given, checked no part order or size, and
 *   gave the object the MD5 of its whole content instead of S3's composite ETag
 *   (md5(part md5s)-N), which clients use to verify multipart uploads. It now checks like S3
 *   (InvalidPart, InvalidPartOrder, EntityTooSmall) and answers the composite ETag; the parts are
 *   concatenated without hashing the object again.
 * - AbortMultipartUpload was not implemented (405), so abandoned parts stayed on disk forever.
 * - Keys and upload ids were joined into filesystem paths unchecked: a key such as `../other/x`
 *   wrote into another bucket (around the gate's per-bucket confinement), `a//b` and `x/./y` were
 *   stored under a different key, and an uploadId or partNumber with `..` wrote anywhere.
 *   `objectKeyProblem` (object-keys.ts) and `uploadParameterProblem` say which requests the gate
 *   must refuse; the store itself refuses to name a file for any key or bucket they would refuse.
 * - Nothing checked a body against its Content-MD5 or x-amz-content-sha256: a corrupted upload
 *   replaced the object. Both are now checked before the object or part is renamed into place
 *   (and before its metadata is written), so a mismatch leaves the previous object as it was.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { bodyHasher, digestMismatch, promisedDigestsOf } from './body-digests.js';
import { isStorableBucketName, objectKeyProblem } from './object-keys.js';

/** s3rver's FilesystemStore, as far as this module uses it. */
export interface FilesystemStore {
  getBucketPath(bucket: string): string;
  getResourcePath(bucket: string, key: string | undefined, resource: string): string;
  putObject(object: StoredObject): Promise<{ size: number; md5: string }>;
  putPart(bucket: string, uploadId: string, partNumber: string | number, content: Readable): Promise<{ size: number; md5: string }>;
  putObjectMultipart(bucket: string, uploadId: string, parts: { number: number; etag: string }[]): Promise<{ size: number; md5: string }>;
  existsObject(bucket: string, key: string): Promise<boolean>;
  deleteObject(bucket: string, key: string): Promise<void>;
}

interface StoredObject {
  bucket: string;
  key: string;
  content: Readable | Buffer;
  metadata: Record<string, unknown>;
}

type S3ErrorFactory = (code: string, message: string, status?: number) => Error;

/** S3's smallest part, except the last one. */
const MIN_PART_SIZE = 5 * 1024 * 1024;
const MAX_PART_NUMBER = 10_000;
/** Written next to the final file; never ends in `._S3rver_object`, so listings never show it. */
const TEMPORARY_PREFIX = '.divio-tmp-';
const COPY_CHUNK = 1024 * 1024;

/** Upload ids are the 32 hex digits s3rver hands out; part numbers 1 to 10,000, as on S3. */
export function uploadParameterProblem(query: Record<string, string | string[] | undefined>): { code: string; message: string } | undefined {
  if ('uploadId' in query && !(typeof query.uploadId === 'string' && /^[0-9a-f]{32}$/.test(query.uploadId))) {
    return { code: 'NoSuchUpload', message: 'The specified upload does not exist.' };
  }
  if ('partNumber' in query) {
    const partNumber = Number(query.partNumber);
    if (typeof query.partNumber !== 'string' || !/^\d+$/.test(query.partNumber) || partNumber < 1 || partNumber > MAX_PART_NUMBER) {
      return { code: 'InvalidArgument', message: `Part number must be an integer between 1 and ${MAX_PART_NUMBER}, inclusive` };
    }
  }
  return undefined;
}

function uploadDirectory(store: FilesystemStore, bucket: string, uploadId: string): string {
  return join(store.getResourcePath(bucket, undefined, 'uploads'), uploadId);
}

/** The key an upload was initiated for, or undefined when there is no such upload. */
export async function uploadKey(store: FilesystemStore, bucket: string, uploadId: string): Promise<string | undefined> {
  try {
    return await readFile(join(uploadDirectory(store, bucket, uploadId), 'key'), 'utf8');
  } catch {
    return undefined;
  }
}

/** AbortMultipartUpload: the parts go; the object (if any) stays as it was. */
export async function abortUpload(store: FilesystemStore, bucket: string, uploadId: string): Promise<void> {
  await rm(uploadDirectory(store, bucket, uploadId), { recursive: true, force: true });
}

/** Replaces the store's write paths with the safe ones described above. */
export function hardenFilesystemStore(store: FilesystemStore, s3Error: S3ErrorFactory, allowedMetadata: readonly string[]): void {
  confinePaths(store, s3Error);
  const writeMetadata = (object: Omit<StoredObject, 'content'>, md5: string) => writeObjectMetadata(store, object, md5, allowedMetadata);
  store.putObject = async (object) => {
    const objectPath = store.getResourcePath(object.bucket, object.key, 'object');
    await mkdir(dirname(objectPath), { recursive: true });
    return writeThenRename(objectPath, async (temporary) => {
      const written = await writeChecked(object.content, temporary, s3Error);
      await writeMetadata(object, written.md5);
      return written;
    });
  };

  store.putPart = async (bucket, uploadId, partNumber, content) => {
    const partPath = join(uploadDirectory(store, bucket, uploadId), String(partNumber));
    await mkdir(dirname(partPath), { recursive: true });
    return writeThenRename(partPath, async (temporary) => {
      const written = await writeChecked(content, temporary, s3Error);
      await writeFileAtomic(`${partPath}.md5`, written.md5);
      return written;
    });
  };

  store.putObjectMultipart = async (bucket, uploadId, parts) => {
    const directory = uploadDirectory(store, bucket, uploadId);
    let key: string;
    let metadata: Record<string, unknown>;
    try {
      key = await readFile(join(directory, 'key'), 'utf8');
      metadata = JSON.parse(await readFile(join(directory, 'metadata'), 'utf8')) as Record<string, unknown>;
    } catch {
      throw s3Error('NoSuchUpload', 'The specified upload does not exist.');
    }
    const checked = await checkParts(directory, parts, s3Error);
    const objectPath = store.getResourcePath(bucket, key, 'object');
    await mkdir(dirname(objectPath), { recursive: true });
    const etag = `${createHash('md5').update(Buffer.concat(checked.map((part) => Buffer.from(part.md5, 'hex')))).digest('hex')}-${checked.length}`;
    const result = await writeThenRename(objectPath, async (temporary) => {
      await concatenate(
        checked.map((part) => part.path),
        temporary,
      );
      await writeMetadata({ bucket, key, metadata: { 'content-type': 'binary/octet-stream', ...metadata } }, etag);
      return { size: checked.reduce((sum, part) => sum + part.size, 0), md5: etag };
    });
    await rm(directory, { recursive: true, force: true });
    return result;
  };
}

/**
 * The last line of defence behind the gate's checks: s3rver names every file through these two,
 * so no route (or future s3rver path) can reach a file outside its bucket's directory.
 */
function confinePaths(store: FilesystemStore, s3Error: S3ErrorFactory): void {
  const bucketPath = store.getBucketPath.bind(store);
  const resourcePath = store.getResourcePath.bind(store);
  const checkBucket = (bucket: string) => {
    if (typeof bucket !== 'string' || !isStorableBucketName(bucket)) throw s3Error('InvalidBucketName', 'The specified bucket is not valid.');
  };
  store.getBucketPath = (bucket) => {
    checkBucket(bucket);
    return bucketPath(bucket);
  };
  store.getResourcePath = (bucket, key, resource) => {
    checkBucket(bucket);
    if (key !== undefined && key !== '') {
      const problem = typeof key === 'string' ? objectKeyProblem(key) : 'the key is not a string';
      if (problem) throw s3Error('InvalidArgument', `Object key not supported by this store: ${problem}`);
    }
    return resourcePath(bucket, key, resource);
  };
}

async function checkParts(
  directory: string,
  parts: { number: number; etag: string }[],
  s3Error: S3ErrorFactory,
): Promise<{ path: string; md5: string; size: number }[]> {
  const invalidPart = () =>
    s3Error('InvalidPart', "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag.");
  if (parts.length === 0) throw s3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema.');
  const checked: { path: string; md5: string; size: number }[] = [];
  let previous = 0;
  for (const part of parts) {
    if (!Number.isInteger(part.number) || part.number <= previous) {
      throw s3Error('InvalidPartOrder', 'The list of parts was not in ascending order. Parts must be ordered by part number.');
    }
    previous = part.number;
    const path = join(directory, String(part.number));
    let md5: string;
    let size: number;
    try {
      [md5, size] = await Promise.all([readFile(`${path}.md5`, 'utf8'), stat(path).then((info) => info.size)]);
    } catch {
      throw invalidPart();
    }
    if (md5 !== part.etag.toLowerCase()) throw invalidPart();
    checked.push({ path, md5, size });
  }
  if (checked.slice(0, -1).some((part) => part.size < MIN_PART_SIZE)) {
    throw s3Error('EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed object size.');
  }
  return checked;
}

/** Runs `write` on a hidden file next to `target` and renames it over `target` only if it succeeds. */
async function writeThenRename<T>(target: string, write: (temporary: string) => Promise<T>): Promise<T> {
  const temporary = join(dirname(target), `${TEMPORARY_PREFIX}${randomBytes(8).toString('hex')}`);
  try {
    const result = await write(temporary);
    await rename(temporary, target);
    return result;
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

/**
 * Writes the body to `path` and holds it to the digests its request promised (body-digests.ts);
 * the caller renames it into place only if this resolves. A request that ends early (client gone,
 * connection reset) rejects here instead of hanging.
 */
async function writeChecked(content: Readable | Buffer, path: string, s3Error: S3ErrorFactory): Promise<{ size: number; md5: string }> {
  const expected = Buffer.isBuffer(content) ? {} : promisedDigestsOf(content);
  const hasher = bodyHasher(expected);
  let size = 0;
  const source = Buffer.isBuffer(content) ? Readable.from([content]) : content;
  await pipeline(
    source,
    new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hasher.update(chunk);
        size += chunk.length;
        callback(null, chunk);
      },
    }),
    createWriteStream(path, { flags: 'wx' }),
  );
  const digests = hasher.digests();
  const refusal = digestMismatch(expected, digests);
  if (refusal) throw s3Error(refusal.code, refusal.message, refusal.status);
  return { size, md5: digests.md5 };
}

async function concatenate(sources: string[], path: string): Promise<void> {
  const output = createWriteStream(path, { flags: 'wx', highWaterMark: COPY_CHUNK });
  async function* chunks() {
    for (const source of sources) yield* createReadStream(source, { highWaterMark: COPY_CHUNK });
  }
  await pipeline(chunks, output);
}

/**
 * s3rver's own putMetadata, written atomically. The ETag goes in before the object is renamed
 * into place: a reader in between sees the old content under the new ETag, which fails its
 * verification, rather than new content under the old ETag, which would pass unnoticed.
 */
async function writeObjectMetadata(
  store: FilesystemStore,
  object: Omit<StoredObject, 'content'>,
  md5: string,
  allowed: readonly string[],
): Promise<void> {
  const kept = Object.fromEntries(
    Object.entries(object.metadata).filter(([name]) => allowed.includes(name) || name.startsWith('x-amz-meta-')),
  );
  await writeFileAtomic(store.getResourcePath(object.bucket, object.key, 'metadata.json'), JSON.stringify(kept, null, 2));
  await writeFileAtomic(store.getResourcePath(object.bucket, object.key, 'object.md5'), md5);
}

async function writeFileAtomic(path: string, data: string): Promise<void> {
  await writeThenRename(path, (temporary) => writeFile(temporary, data, { flag: 'wx' }));
}
