/**
 * Moving one file, verified with our own digests (the embedded store checks no Content-MD5 or
 * checksum header itself):
 *
 * - upload: small files are read once into memory; larger ones are hashed first (the sha256 goes
 *   into x-amz-meta-sha256 before the body) and then streamed from disk, so memory does not grow
 *   with file size. Every returned ETag is compared with the MD5 of what was sent (each part's, and
 *   the composite of a multipart upload). A multipart object only appears at
 *   CompleteMultipartUpload, which is not sent unless every part checked out; otherwise the upload
 *   is aborted.
 * - download: written to a hidden temporary file (O_EXCL) in the target directory, checked
 *   (sha256 against x-amz-meta-sha256, else the ETag), fsync'd, and only then renamed over the real
 *   name. No directory on the way is a symlink (checked with lstat, again just before the rename).
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { contentTypeFor } from './content-type.js';
import {
  ContentHasher,
  etagRequirement,
  fileKind,
  hashFile,
  MIB,
  normaliseEtag,
  openRegularFile,
  partCount,
  partSizeFor,
  type FileDigests,
  type FileIdentity,
} from './digests.js';
import { temporaryName } from './keys.js';
import type { LocalFile } from './local-tree.js';
import type { RemoteObject } from './remote-tree.js';
import type { MediaS3 } from './s3.js';

export interface TransferSettings {
  /** Files larger than this go multipart. */
  multipartThreshold: number;
  partSize: number;
  /** Parts of one file in flight at once. */
  partsInFlight: number;
  signal?: AbortSignal;
  /** Called with every chunk of bytes moved (progress). */
  onBytes: (bytes: number) => void;
}

export interface TransferOutcome {
  key: string;
  bytes: number;
  /** MD5 of the whole content, when known (multipart uploads are verified per part instead). */
  md5: string | undefined;
  sha256: string;
  /** The local file as it is now, and what is known of its content (for the manifest). */
  identity: FileIdentity;
  digests: FileDigests;
}

/** A transfer that arrived different from what was sent; retried like a network error. */
export class DigestMismatchError extends Error {
  readonly code = 'DigestMismatch';
  constructor(message: string) {
    super(message);
    this.name = 'DigestMismatch';
  }
}

/** A local path that cannot be written without following or replacing something. */
export class LocalPathError extends Error {
  readonly code = 'LocalPathRefused';
  constructor(message: string) {
    super(message);
    this.name = 'LocalPathRefused';
  }
}

/** Read whole into memory below this size: one read, one request, no second pass. */
const IN_MEMORY_LIMIT = 4 * MIB;
const STREAM_CHUNK = MIB;
const ABORT_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// Upload

export async function uploadFile(s3: MediaS3, file: LocalFile, settings: TransferSettings): Promise<TransferOutcome> {
  if (file.size <= IN_MEMORY_LIMIT) return uploadFromMemory(s3, file, settings);
  const partSize = partSizeFor(file.size, settings.partSize);
  const multipart = file.size > settings.multipartThreshold;
  // The metadata (sha256) precedes the body: a first pass hashes, unless the plan already did.
  let digests = file.digests;
  if (!digests?.sha256 || (!multipart && !digests.md5)) {
    const hashed = await hashFile(file.path, { md5: !multipart, signal: settings.signal });
    assertUnchanged(file, hashed.identity);
    digests = hashed.digests;
  }
  return multipart
    ? uploadMultipart(s3, file, digests, partSize, settings)
    : uploadStreamed(s3, file, digests as FileDigests & { md5: string }, settings);
}

async function uploadFromMemory(s3: MediaS3, file: LocalFile, settings: TransferSettings): Promise<TransferOutcome> {
  const { body, identity } = await readWhole(file.path);
  const md5 = createHash('md5').update(body).digest('hex');
  const sha256 = createHash('sha256').update(body).digest('hex');
  const response = await s3.request(
    () =>
      s3.client.send(
        new PutObjectCommand({
          Bucket: s3.bucket,
          Key: s3.prefix + file.key,
          Body: body,
          ContentLength: body.length,
          ContentMD5: Buffer.from(md5, 'hex').toString('base64'),
          ContentType: contentTypeFor(file.key),
          Metadata: { sha256 },
        }),
        { abortSignal: settings.signal },
      ),
    settings.signal,
  );
  await verifyUploadedEtag(s3, file.key, response.ETag, md5);
  settings.onBytes(body.length);
  return { key: file.key, bytes: body.length, md5, sha256, identity, digests: { md5, sha256 } };
}

async function uploadStreamed(
  s3: MediaS3,
  file: LocalFile,
  digests: FileDigests & { md5: string },
  settings: TransferSettings,
): Promise<TransferOutcome> {
  const { handle, identity } = await openRegularFile(file.path);
  try {
    assertUnchanged(file, identity);
    const { result: response } = await s3.request(
      () =>
        sendStreamed(handle, 0, identity.size, settings, (body, abortSignal) =>
          s3.client.send(
            new PutObjectCommand({
              Bucket: s3.bucket,
              Key: s3.prefix + file.key,
              Body: body,
              ContentLength: identity.size,
              ContentMD5: Buffer.from(digests.md5, 'hex').toString('base64'),
              ContentType: contentTypeFor(file.key),
              Metadata: { sha256: digests.sha256 },
            }),
            { abortSignal },
          ),
        ),
      settings.signal,
    );
    await verifyUploadedEtag(s3, file.key, response.ETag, digests.md5);
    return { key: file.key, bytes: identity.size, md5: digests.md5, sha256: digests.sha256, identity, digests };
  } finally {
    await handle.close();
  }
}

async function uploadMultipart(
  s3: MediaS3,
  file: LocalFile,
  digests: FileDigests,
  partSize: number,
  settings: TransferSettings,
): Promise<TransferOutcome> {
  const { handle, identity } = await openRegularFile(file.path);
  const key = s3.prefix + file.key;
  let uploadId: string | undefined;
  try {
    assertUnchanged(file, identity);
    const created = await s3.request(
      () =>
        s3.client.send(
          new CreateMultipartUploadCommand({
            Bucket: s3.bucket,
            Key: key,
            ContentType: contentTypeFor(file.key),
            Metadata: { sha256: digests.sha256 },
          }),
          { abortSignal: settings.signal },
        ),
      settings.signal,
    );
    uploadId = created.UploadId;
    if (!uploadId) throw new Error('the store started a multipart upload without an upload id');
    const count = partCount(identity.size, partSize);
    const partMd5s: Buffer[] = new Array<Buffer>(count);
    const etags: string[] = new Array<string>(count);
    let nextPart = 0;
    const worker = async () => {
      while (nextPart < count) {
        const index = nextPart++;
        const { etag, md5 } = await uploadPart(s3, handle, key, uploadId as string, index, partSize, identity.size, settings);
        partMd5s[index] = md5;
        etags[index] = etag;
      }
    };
    await Promise.all(Array.from({ length: Math.min(settings.partsInFlight, count) }, worker));

    // The sha256 in the metadata was taken before the parts were read: the file must not have changed since.
    assertUnchanged(file, await statIdentity(handle));
    const expected = compositeOf(partMd5s);
    const completed = await s3.request(
      () =>
        s3.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: s3.bucket,
            Key: key,
            UploadId: uploadId,
            MultipartUpload: { Parts: etags.map((etag, index) => ({ ETag: etag, PartNumber: index + 1 })) },
          }),
          { abortSignal: settings.signal },
        ),
      settings.signal,
    );
    uploadId = undefined;
    const returned = normaliseEtag(completed.ETag ?? '');
    // Stores that answer with something other than a composite ETag cannot be checked against it;
    // every part already was.
    if (/^[0-9a-f]{32}-\d+$/.test(returned) && returned !== expected) {
      await removeQuietly(s3, file.key);
      throw new DigestMismatchError(`${file.key}: the store answered ETag ${returned} for the completed upload, expected ${expected}`);
    }
    const known: FileDigests = { ...digests, etags: { ...digests.etags, [partSize]: expected } };
    return { key: file.key, bytes: identity.size, md5: digests.md5, sha256: digests.sha256, identity, digests: known };
  } finally {
    if (uploadId) await abortQuietly(s3, key, uploadId);
    await handle.close();
  }
}

async function uploadPart(
  s3: MediaS3,
  handle: FileHandle,
  key: string,
  uploadId: string,
  index: number,
  partSize: number,
  size: number,
  settings: TransferSettings,
): Promise<{ etag: string; md5: Buffer }> {
  const start = index * partSize;
  const length = Math.min(partSize, size - start);
  return s3.request(async () => {
    const { result: response, md5: sent } = await sendStreamed(handle, start, length, settings, (body, abortSignal) =>
      s3.client.send(
        new UploadPartCommand({ Bucket: s3.bucket, Key: key, UploadId: uploadId, PartNumber: index + 1, Body: body, ContentLength: length }),
        { abortSignal },
      ),
    );
    const etag = normaliseEtag(response.ETag ?? '');
    if (etag !== sent.toString('hex')) {
      throw new DigestMismatchError(`part ${index + 1} of ${key}: the store answered ETag ${etag}, the part's MD5 is ${sent.toString('hex')}`);
    }
    return { etag: response.ETag ?? etag, md5: sent };
  }, settings.signal);
}

/**
 * Sends `length` bytes of the file from `start` as a request body, hashing them (MD5) on the way.
 * The SDK pipes a stream body into the request and never hears of a read error, so an error aborts
 * the request here; and a failed attempt takes back the progress it reported.
 */
async function sendStreamed<T>(
  handle: FileHandle,
  start: number,
  length: number,
  settings: TransferSettings,
  send: (body: Readable, signal: AbortSignal) => Promise<T>,
): Promise<{ result: T; md5: Buffer }> {
  const md5 = createHash('md5');
  let counted = 0;
  const source = rangeReader(handle, start, length);
  const body = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      md5.update(chunk);
      counted += chunk.length;
      settings.onBytes(chunk.length);
      callback(null, chunk);
    },
  });
  const controller = new AbortController();
  const abort = () => controller.abort(settings.signal?.reason);
  settings.signal?.addEventListener('abort', abort, { once: true });
  let bodyError: unknown;
  const failed = (error: unknown) => {
    bodyError ??= error;
    controller.abort(error);
  };
  source.on('error', failed);
  body.on('error', failed);
  source.pipe(body);
  try {
    const result = await send(body, controller.signal);
    return { result, md5: md5.digest() };
  } catch (error) {
    settings.onBytes(-counted);
    throw bodyError ?? error;
  } finally {
    settings.signal?.removeEventListener('abort', abort);
    source.destroy();
    body.destroy();
  }
}

/**
 * `length` bytes of an open file from `start`, read at explicit positions, so that several parts
 * can be read from one descriptor at once. (fs streams close their descriptor when destroyed,
 * autoClose or not, which would end every other part's stream too.) A file that shrinks under
 * the reader is an error, never a short body.
 */
function rangeReader(handle: FileHandle, start: number, length: number): Readable {
  let position = start;
  const end = start + length;
  return new Readable({
    highWaterMark: STREAM_CHUNK,
    read() {
      const want = Math.min(STREAM_CHUNK, end - position);
      if (want <= 0) {
        this.push(null);
        return;
      }
      handle.read(Buffer.allocUnsafe(want), 0, want, position).then(
        ({ bytesRead, buffer }) => {
          if (bytesRead === 0) {
            this.destroy(new Error('the file became shorter while it was being read'));
            return;
          }
          position += bytesRead;
          this.push(bytesRead === want ? buffer : buffer.subarray(0, bytesRead));
        },
        (error: unknown) => this.destroy(error as Error),
      );
    },
  });
}

/** Writes to an open file without ever closing it (the caller fsyncs and closes). */
function fileWriter(handle: FileHandle): Writable {
  return new Writable({
    highWaterMark: STREAM_CHUNK,
    write(chunk: Buffer, _encoding, callback) {
      writeFully(handle, chunk).then(() => callback(), callback);
    },
  });
}

async function writeFully(handle: FileHandle, chunk: Buffer): Promise<void> {
  for (let offset = 0; offset < chunk.length; ) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset);
    offset += bytesWritten;
  }
}

function compositeOf(partMd5s: Buffer[]): string {
  return `${createHash('md5').update(Buffer.concat(partMd5s)).digest('hex')}-${partMd5s.length}`;
}

/** A single-part object is visible as soon as it is stored: one that arrived wrong is removed again. */
async function verifyUploadedEtag(s3: MediaS3, key: string, etag: string | undefined, md5: string): Promise<void> {
  const returned = normaliseEtag(etag ?? '');
  if (returned === md5) return;
  await removeQuietly(s3, key);
  throw new DigestMismatchError(`${key}: the store answered ETag ${returned || '(none)'}, the file's MD5 is ${md5} (the object was removed again)`);
}

async function removeQuietly(s3: MediaS3, key: string): Promise<void> {
  await s3.client
    .send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: s3.prefix + key }), { abortSignal: AbortSignal.timeout(ABORT_TIMEOUT_MS) })
    .catch(() => undefined);
}

/** Best effort, and never under the sync's own (possibly aborted) signal. */
async function abortQuietly(s3: MediaS3, key: string, uploadId: string): Promise<void> {
  await s3.client
    .send(new AbortMultipartUploadCommand({ Bucket: s3.bucket, Key: key, UploadId: uploadId }), {
      abortSignal: AbortSignal.timeout(ABORT_TIMEOUT_MS),
    })
    .catch(() => undefined);
}

async function readWhole(path: string): Promise<{ body: Buffer; identity: FileIdentity }> {
  const { handle, identity } = await openRegularFile(path);
  try {
    const body = await handle.readFile();
    return { body, identity: { ...identity, size: body.length } };
  } finally {
    await handle.close();
  }
}

async function statIdentity(handle: FileHandle): Promise<FileIdentity> {
  const info = await handle.stat();
  return { size: info.size, mtimeMs: info.mtimeMs, ctimeMs: info.ctimeMs, ino: info.ino };
}

/** The digests in hand describe the file as planned; a file rewritten since must be planned again. */
function assertUnchanged(file: LocalFile, now: FileIdentity): void {
  if (now.size !== file.size || now.mtimeMs !== file.mtimeMs || now.ino !== file.ino) {
    throw new Error(`${file.key} changed while it was being uploaded; run the sync again`);
  }
}

// ---------------------------------------------------------------------------------------------
// Download

export async function downloadFile(s3: MediaS3, root: string, object: RemoteObject, settings: TransferSettings): Promise<TransferOutcome> {
  const segments = object.key.split('/');
  const name = segments.pop() as string;
  const directory = await ensureDirectories(root, segments);
  const target = join(directory, name);
  const partSize = settings.partSize;

  return s3.request(async () => {
    const temporary = join(directory, temporaryName(randomBytes(8).toString('hex')));
    // O_EXCL: a fresh file, never an existing one or a symlink planted under the name.
    const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o666);
    let renamed = false;
    let counted = 0;
    try {
      const response = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: s3.prefix + object.key }), {
        abortSignal: settings.signal,
      });
      const etag = normaliseEtag(response.ETag ?? '');
      const size = response.ContentLength ?? object.size;
      const sha256 = response.Metadata?.sha256?.toLowerCase();
      const requirement = etagRequirement(etag, size, partSize);
      const hasher = new ContentHasher({
        md5: !sha256 && requirement.kind === 'md5',
        partSizes: !sha256 && requirement.kind === 'composite' ? [requirement.partSize] : [],
      });
      const meter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          hasher.update(chunk);
          counted += chunk.length;
          settings.onBytes(chunk.length);
          callback(null, chunk);
        },
      });
      await pipeline(response.Body as Readable, meter, fileWriter(handle), { signal: settings.signal });
      const digests = hasher.digest();
      if (hasher.bytes !== size) throw new DigestMismatchError(`${object.key}: received ${hasher.bytes} bytes, the store announced ${size}`);
      verifyDownload(object.key, digests, etag, sha256, requirement);
      await handle.sync();
      await handle.close();
      await assertNoSymlinkOnPath(root, segments, name);
      await rename(temporary, target);
      renamed = true;
      const info = await lstat(target);
      const known: FileDigests = { sha256: digests.sha256 };
      // Verified by sha256, the content is the stored object's, so its ETag describes it too.
      if (requirement.kind === 'md5') known.md5 = digests.md5 ?? etag;
      if (requirement.kind === 'composite') known.etags = { [requirement.partSize]: etag };
      return {
        key: object.key,
        bytes: hasher.bytes,
        md5: known.md5,
        sha256: digests.sha256,
        identity: { size: info.size, mtimeMs: info.mtimeMs, ctimeMs: info.ctimeMs, ino: info.ino },
        digests: known,
      };
    } catch (error) {
      // A retry starts over: take back what this attempt reported.
      settings.onBytes(-counted);
      throw error;
    } finally {
      if (!renamed) {
        await handle.close().catch(() => undefined);
        await rm(temporary, { force: true });
      }
    }
  }, settings.signal);
}

function verifyDownload(
  key: string,
  digests: FileDigests,
  etag: string,
  sha256: string | undefined,
  requirement: ReturnType<typeof etagRequirement>,
): void {
  if (sha256) {
    if (digests.sha256 !== sha256) throw new DigestMismatchError(`${key}: sha256 ${digests.sha256} does not match the object's x-amz-meta-sha256 ${sha256}`);
    return;
  }
  if (requirement.kind === 'md5' && digests.md5 !== etag) throw new DigestMismatchError(`${key}: MD5 ${digests.md5} does not match the ETag ${etag}`);
  if (requirement.kind === 'composite') {
    const computed = digests.etags?.[requirement.partSize];
    if (computed !== etag) throw new DigestMismatchError(`${key}: multipart ETag ${computed} does not match the store's ${etag}`);
  }
  // Incomparable ETags (e.g. encrypted objects) and no sha256: nothing to check against but the length.
}

/**
 * Creates the directories of a key one at a time; an existing component must be a real
 * directory, never a symlink (which would send the file outside data/media) or a file.
 */
async function ensureDirectories(root: string, segments: string[]): Promise<string> {
  let path = root;
  for (const segment of segments) {
    path = join(path, segment);
    try {
      await mkdir(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const info = await lstat(path);
      if (!info.isDirectory()) throw new LocalPathError(`${path} is ${fileKind(info)}, not a directory`);
    }
  }
  return path;
}

async function assertNoSymlinkOnPath(root: string, segments: string[], name: string): Promise<void> {
  let path = root;
  for (const segment of segments) {
    path = join(path, segment);
    const info = await lstat(path);
    if (!info.isDirectory()) throw new LocalPathError(`${path} is ${fileKind(info)}, not a directory`);
  }
  const final = await lstat(join(path, name)).catch(() => undefined);
  if (final && !final.isFile()) throw new LocalPathError(`${join(path, name)} is ${fileKind(final)}; it is not replaced`);
}
