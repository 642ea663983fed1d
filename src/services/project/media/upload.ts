/**
 * Uploading one file, verified with our own digests (the embedded store checks no Content-MD5 or
 * checksum header itself). Small files are read once into memory; larger ones are hashed first
 * (the sha256 goes into x-amz-meta-sha256 before the body) and then streamed from disk, so memory
 * does not grow with file size. Every returned ETag is compared with the MD5 of what was sent
 * (each part's, and the composite of a multipart upload). A multipart object only appears at
 * CompleteMultipartUpload, which is not sent unless every part checked out; otherwise the upload
 * is aborted.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { contentTypeFor } from './content-type.js';
import {
  compositeEtag,
  fileKind,
  MIB,
  normaliseEtag,
  NotRegularFileError,
  openRegularFile,
  partCount,
  partSizeFor,
  type FileDigests,
  type FileIdentity,
} from './digests.js';
import { DigestMismatchError } from './download-check.js';
import type { LocalFile } from './local-tree.js';
import type { MediaS3 } from './s3.js';
import { SMALL_FILE_LIMIT, type TransferOutcome, type TransferSettings } from './transfer.js';

const STREAM_CHUNK = MIB;
const ABORT_TIMEOUT_MS = 10_000;

export async function uploadFile(s3: MediaS3, file: LocalFile, settings: TransferSettings): Promise<TransferOutcome> {
  if (file.size <= SMALL_FILE_LIMIT) return uploadFromMemory(s3, file, settings);
  // The metadata (sha256) precedes the body: a first pass hashes, in a transfer worker, unless
  // the manifest or the plan already did. It takes the MD5 a single-part upload's ETag is checked
  // against too; a multipart upload's part MD5s are taken from the bytes as they are sent.
  const multipart = file.size > settings.multipartThreshold;
  let digests = file.digests;
  if (!digests?.sha256 || (!multipart && !digests.md5)) {
    const hashed = await settings.workers.hash(file.path, { md5: !multipart }, settings.signal);
    assertUnchanged(file, hashed.identity);
    digests = { ...digests, ...hashed.digests };
  }
  return multipart
    ? uploadMultipart(s3, file, digests, partSizeFor(file.size, settings.partSize), settings)
    : uploadStreamed(s3, file, { ...digests, md5: digests.md5 as string }, settings);
}

async function uploadFromMemory(s3: MediaS3, file: LocalFile, settings: TransferSettings): Promise<TransferOutcome> {
  const { body, identity } = readSmallFile(file.path);
  const md5 = createHash('md5').update(body).digest('hex');
  const sha256 = createHash('sha256').update(body).digest('hex');
  const response = await s3.request(async () => {
    const put = await s3.objects.put(
      s3.prefix + file.key,
      body,
      { 'content-md5': Buffer.from(md5, 'hex').toString('base64'), 'content-type': contentTypeFor(file.key), 'x-amz-meta-sha256': sha256 },
      sha256,
    );
    put.body.resume();
    return put;
  }, settings.signal);
  await verifyUploadedEtag(s3, file.key, singleHeader(response.headers.etag), md5);
  settings.onBytes(body.length);
  return { key: file.key, bytes: body.length, md5, sha256, identity, digests: { md5, sha256 } };
}

/**
 * The MD5 is known from the first pass: the store's ETag (the MD5 of what it received) must equal
 * it, so the file is not hashed again on the way out. A file changed in between gives another
 * ETag, and the object is removed again.
 */
async function uploadStreamed(
  s3: MediaS3,
  file: LocalFile,
  digests: FileDigests & { md5: string },
  settings: TransferSettings,
): Promise<TransferOutcome> {
  const sdk = await s3.sdk();
  const { handle, identity } = await openRegularFile(file.path);
  try {
    assertUnchanged(file, identity);
    const { result: response } = await s3.request(
      () =>
        sendStreamed(handle, 0, identity.size, settings, false, (body, abortSignal) =>
          sdk.client.send(
            new PutObjectCommand({
              Bucket: s3.bucket,
              Key: s3.prefix + file.key,
              Body: body,
              ContentLength: identity.size,
              // Stores that check it refuse a corrupted body outright.
              ContentMD5: Buffer.from(digests.md5, 'hex').toString('base64'),
              ContentType: contentTypeFor(file.key),
              Metadata: { sha256: digests.sha256 },
            }),
            { abortSignal },
          ),
        ),
      settings.signal,
    );
    // The object is visible already: if the file changed since it was hashed, it goes again.
    if (!sameIdentity(file, await statIdentity(handle))) {
      await removeQuietly(s3, file.key);
      throw new Error(`${file.key} changed while it was being uploaded; run the sync again`);
    }
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
  const sdk = await s3.sdk();
  const { handle, identity } = await openRegularFile(file.path);
  const key = s3.prefix + file.key;
  let uploadId: string | undefined;
  try {
    assertUnchanged(file, identity);
    const created = await s3.request(
      () =>
        sdk.fast.send(
          new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: key, ContentType: contentTypeFor(file.key), Metadata: { sha256: digests.sha256 } }),
        ),
      settings.signal,
    );
    uploadId = created.UploadId;
    if (!uploadId) throw new Error('the store started a multipart upload without an upload id');
    const count = partCount(identity.size, partSize);
    const partMd5s: Buffer[] = new Array<Buffer>(count);
    const etags: string[] = new Array<string>(count);
    let nextPart = 0;
    let failure: unknown;
    // After a failed part no new part starts, and the upload is aborted only once none is in flight.
    const worker = async () => {
      while (nextPart < count && failure === undefined) {
        const index = nextPart++;
        try {
          const { etag, md5 } = await uploadPart(s3, handle, key, uploadId as string, index, partSize, identity.size, settings);
          partMd5s[index] = md5;
          etags[index] = etag;
        } catch (error) {
          failure ??= error;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(settings.partsInFlight, count) }, worker));
    if (failure !== undefined) throw failure;

    // The sha256 in the metadata was taken before the parts were read: the file must not have changed since.
    assertUnchanged(file, await statIdentity(handle));
    const expected = compositeEtag(partMd5s);
    const completed = await s3.request(
      () =>
        sdk.fast.send(
          new CompleteMultipartUploadCommand({
            Bucket: s3.bucket,
            Key: key,
            UploadId: uploadId,
            MultipartUpload: { Parts: etags.map((etag, index) => ({ ETag: etag, PartNumber: index + 1 })) },
          }),
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
  const sdk = await s3.sdk();
  const start = index * partSize;
  const length = Math.min(partSize, size - start);
  return s3.request(async () => {
    const { result: response, md5: sent } = await sendStreamed(handle, start, length, settings, true, (body, abortSignal) =>
      sdk.client.send(
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
 * Sends `length` bytes of the file from `start` as a request body, hashing them (MD5) on the way
 * when `hashing` (the MD5 of the whole body, else an empty digest). The SDK pipes a stream body
 * into the request and never hears of a read error, so an error aborts the request here; and a
 * failed attempt takes back the progress it reported.
 */
async function sendStreamed<T>(
  handle: FileHandle,
  start: number,
  length: number,
  settings: TransferSettings,
  hashing: boolean,
  send: (body: Readable, signal: AbortSignal) => Promise<T>,
): Promise<{ result: T; md5: Buffer }> {
  const md5 = hashing ? createHash('md5') : undefined;
  let counted = 0;
  const source = rangeReader(handle, start, length);
  const body = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      md5?.update(chunk);
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
    return { result, md5: md5?.digest() ?? Buffer.alloc(0) };
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

/** A single-part object is visible as soon as it is stored: one that arrived wrong is removed again. */
async function verifyUploadedEtag(s3: MediaS3, key: string, etag: string | undefined, md5: string): Promise<void> {
  const returned = normaliseEtag(etag ?? '');
  if (returned === md5) return;
  await removeQuietly(s3, key);
  throw new DigestMismatchError(`${key}: the store answered ETag ${returned || '(none)'}, the file's MD5 is ${md5} (the object was removed again)`);
}

async function removeQuietly(s3: MediaS3, key: string): Promise<void> {
  const sdk = await s3.sdk();
  await sdk.client
    .send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: s3.prefix + key }), { abortSignal: AbortSignal.timeout(ABORT_TIMEOUT_MS) })
    .catch(() => undefined);
}

/** Best effort, and never under the sync's own (possibly aborted) signal. */
async function abortQuietly(s3: MediaS3, key: string, uploadId: string): Promise<void> {
  const sdk = await s3.sdk();
  await sdk.client
    .send(new AbortMultipartUploadCommand({ Bucket: s3.bucket, Key: key, UploadId: uploadId }), {
      abortSignal: AbortSignal.timeout(ABORT_TIMEOUT_MS),
    })
    .catch(() => undefined);
}

/**
 * A small file in four blocking system calls: cheaper than four trips through libuv's thread
 * pool, which on a busy two-core machine cost a context switch each. Never follows a symlink,
 * never blocks on a FIFO (see openRegularFile).
 */
function readSmallFile(path: string): { body: Buffer; identity: FileIdentity } {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOOP') throw new NotRegularFileError(path, 'a symbolic link');
    throw error;
  }
  try {
    const info = fstatSync(fd);
    if (!info.isFile()) throw new NotRegularFileError(path, fileKind(info));
    const body = Buffer.allocUnsafe(info.size);
    let filled = 0;
    while (filled < info.size) {
      const read = readSync(fd, body, filled, info.size - filled, filled);
      if (read === 0) break;
      filled += read;
    }
    return { body: filled === info.size ? body : body.subarray(0, filled), identity: { size: filled, mtimeMs: info.mtimeMs, ctimeMs: info.ctimeMs, ino: info.ino } };
  } finally {
    closeSync(fd);
  }
}

async function statIdentity(handle: FileHandle): Promise<FileIdentity> {
  const info = await handle.stat();
  return { size: info.size, mtimeMs: info.mtimeMs, ctimeMs: info.ctimeMs, ino: info.ino };
}

/** The digests in hand describe the file as planned; a file rewritten since must be planned again. */
function assertUnchanged(file: LocalFile, now: FileIdentity): void {
  if (!sameIdentity(file, now)) throw new Error(`${file.key} changed while it was being uploaded; run the sync again`);
}

function sameIdentity(file: LocalFile, now: FileIdentity): boolean {
  return now.size === file.size && now.mtimeMs === file.mtimeMs && now.ino === file.ino;
}

function singleHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
