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
 * - download: written to a hidden temporary file (O_EXCL, O_NOFOLLOW) in the target directory
 *   (large ones by a download worker, see download-pool.ts), checked (sha256 against
 *   x-amz-meta-sha256, else the ETag; see download-check.ts), and only then renamed over the
 *   real name. Every directory on the way is created or checked (lstat: a real
 *   directory, not a symlink) once per sync, and the real name is checked again just before the
 *   rename (a symlink or directory there is refused, never replaced).
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  open as fsOpen,
  openSync,
  readSync,
  rename as fsRename,
  writeSync,
} from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
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
  ContentHasher,
  etagRequirement,
  fileKind,
  hashFile,
  MIB,
  normaliseEtag,
  NotRegularFileError,
  openRegularFile,
  partCount,
  partSizeFor,
  type FileDigests,
  type FileIdentity,
} from './digests.js';
import {
  checkDownload,
  DigestMismatchError,
  downloadExpectation,
  downloadHeaders,
  hasherOptions,
  knownDigests,
  type DownloadExpectation,
} from './download-check.js';
import type { DownloadWorkers } from './download-pool.js';
import { temporaryName } from './keys.js';
import { s3ErrorFromBody } from './object-http.js';
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
  /** Directories of the local tree already created or checked in this sync (pull). */
  directories: LocalDirectories;
  /** Where large downloads are received (pull). */
  downloads: DownloadWorkers;
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

/** A local path that cannot be written without following or replacing something. */
export class LocalPathError extends Error {
  readonly code = 'LocalPathRefused';
  constructor(message: string) {
    super(message);
    this.name = 'LocalPathRefused';
  }
}

/** Read whole into memory up to this size: one read, one request, no second pass. */
export const SMALL_FILE_LIMIT = 4 * MIB;
const STREAM_CHUNK = MIB;
const ABORT_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// Upload

export async function uploadFile(s3: MediaS3, file: LocalFile, settings: TransferSettings): Promise<TransferOutcome> {
  if (file.size <= SMALL_FILE_LIMIT) return uploadFromMemory(s3, file, settings);
  // The metadata (sha256) precedes the body: a first pass hashes, unless the manifest or the plan
  // already did. MD5s are taken from the bytes as they are sent.
  let digests = file.digests;
  if (!digests?.sha256) {
    const hashed = await hashFile(file.path, { md5: false, signal: settings.signal });
    assertUnchanged(file, hashed.identity);
    digests = hashed.digests;
  }
  return file.size > settings.multipartThreshold
    ? uploadMultipart(s3, file, digests, partSizeFor(file.size, settings.partSize), settings)
    : uploadStreamed(s3, file, digests, settings);
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

async function uploadStreamed(s3: MediaS3, file: LocalFile, digests: FileDigests, settings: TransferSettings): Promise<TransferOutcome> {
  const { handle, identity } = await openRegularFile(file.path);
  try {
    assertUnchanged(file, identity);
    const { result: response, md5 } = await s3.request(
      () =>
        sendStreamed(handle, 0, identity.size, settings, (body, abortSignal) =>
          s3.client.send(
            new PutObjectCommand({
              Bucket: s3.bucket,
              Key: s3.prefix + file.key,
              Body: body,
              ContentLength: identity.size,
              // Stores that check it refuse a corrupted body outright; known only from an earlier hash.
              ...(digests.md5 ? { ContentMD5: Buffer.from(digests.md5, 'hex').toString('base64') } : {}),
              ContentType: contentTypeFor(file.key),
              Metadata: { sha256: digests.sha256 },
            }),
            { abortSignal },
          ),
        ),
      settings.signal,
    );
    const sent = md5.toString('hex');
    // The object is visible already: if the file changed since its sha256 was taken, it goes again.
    if ((digests.md5 && digests.md5 !== sent) || !sameIdentity(file, await statIdentity(handle))) {
      await removeQuietly(s3, file.key);
      throw new Error(`${file.key} changed while it was being uploaded; run the sync again`);
    }
    await verifyUploadedEtag(s3, file.key, response.ETag, sent);
    return { key: file.key, bytes: identity.size, md5: sent, sha256: digests.sha256, identity, digests: { ...digests, md5: sent } };
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
        s3.fast.send(
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
        s3.fast.send(
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

// ---------------------------------------------------------------------------------------------
// Download

export async function downloadFile(s3: MediaS3, object: RemoteObject, settings: TransferSettings): Promise<TransferOutcome> {
  const segments = object.key.split('/');
  const name = segments.pop() as string;
  const directory = settings.directories.ensure(segments);
  const target = join(directory, name);
  const place = object.size <= SMALL_FILE_LIMIT ? downloadSmall : downloadInWorker;

  return s3.request(async () => {
    let counted = 0;
    const onBytes = (bytes: number) => {
      counted += bytes;
      settings.onBytes(bytes);
    };
    try {
      const { expectation, digests, identity, bytes } = await place(s3, object, directory, target, settings, onBytes);
      const known = knownDigests(expectation, digests);
      return { key: object.key, bytes, md5: known.md5, sha256: digests.sha256, identity, digests: known };
    } catch (error) {
      // A retry starts over: take back what this attempt reported.
      settings.onBytes(-counted);
      throw error;
    }
  }, settings.signal);
}

interface Placed {
  expectation: DownloadExpectation;
  digests: FileDigests;
  identity: FileIdentity;
  bytes: number;
}

const fsAsync = {
  open: promisify(fsOpen),
  rename: promisify(fsRename),
};

/**
 * A small download is received and verified in memory, then written under a fresh hidden name
 * (O_EXCL, never following a link) and renamed over the real name. Not flushed per file: a flush
 * per download serialises on the filesystem journal (~0.4 s of a 2,000-file pull). What a crash
 * could cost is a pulled file reverting to empty; the platform still has it, and the next pull
 * sees the size differ from the manifest, re-reads the file and fetches it again.
 */
async function downloadSmall(
  s3: MediaS3,
  object: RemoteObject,
  directory: string,
  target: string,
  settings: TransferSettings,
  onBytes: (bytes: number) => void,
): Promise<Placed> {
  const response = await s3.objects.get(s3.prefix + object.key);
  const expectation = downloadExpectation(downloadHeaders(response.headers), object.size, settings.partSize);
  const hasher = new ContentHasher(hasherOptions(expectation));
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of response.body) {
      hasher.update(chunk as Buffer);
      chunks.push(chunk as Buffer);
      onBytes((chunk as Buffer).length);
    }
  } catch (error) {
    // Free the connection.
    response.body.destroy();
    throw error;
  }
  const digests = hasher.digest();
  checkDownload(object.key, expectation, hasher.bytes, digests);
  const content = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
  const temporary = join(directory, temporaryName(randomBytes(8).toString('hex')));
  const fd = await fsAsync.open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o666);
  let renamed = false;
  try {
    // Into the page cache: quick enough to do in place. The rename is not.
    for (let offset = 0; offset < content.length; ) offset += writeSync(fd, content, offset, content.length - offset);
    refuseNonFileTarget(target);
    await fsAsync.rename(temporary, target);
    renamed = true;
    // Taken after the rename (which changes the ctime), from the still open descriptor.
    const info = fstatSync(fd);
    return { expectation, digests, bytes: hasher.bytes, identity: { size: info.size, mtimeMs: info.mtimeMs, ctimeMs: info.ctimeMs, ino: info.ino } };
  } finally {
    closeSync(fd);
    if (!renamed) await rm(temporary, { force: true });
  }
}

/**
 * A large download is received, hashed and written to its hidden temporary file by a download
 * worker (download-pool.ts), so memory stays at a few MiB per file; it is checked and renamed
 * here, or removed.
 */
async function downloadInWorker(
  s3: MediaS3,
  object: RemoteObject,
  directory: string,
  target: string,
  settings: TransferSettings,
  onBytes: (bytes: number) => void,
): Promise<Placed> {
  const temporary = join(directory, temporaryName(randomBytes(8).toString('hex')));
  const request = await s3.objects.signGet(s3.prefix + object.key);
  const answer = await settings.downloads.download(
    { request, temporary, listedSize: object.size, partSize: settings.partSize, idleTimeoutMs: s3.idleTimeoutMs },
    onBytes,
    settings.signal,
  );
  if (answer.type === 'refused') throw s3ErrorFromBody(answer.status, answer.body);
  let renamed = false;
  try {
    const expectation = downloadExpectation(answer.headers, object.size, settings.partSize);
    checkDownload(object.key, expectation, answer.bytes, answer.digests);
    refuseNonFileTarget(target);
    await rename(temporary, target);
    renamed = true;
    return { expectation, digests: answer.digests, bytes: answer.bytes, identity: identityOf(target) };
  } finally {
    if (!renamed) await rm(temporary, { force: true });
  }
}

function singleHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function identityOf(path: string): FileIdentity {
  const info = lstatSync(path);
  return { size: info.size, mtimeMs: info.mtimeMs, ctimeMs: info.ctimeMs, ino: info.ino };
}

/** rename() would replace a symlink (not write through it) or fail on a directory; neither is wanted. */
function refuseNonFileTarget(target: string): void {
  let info;
  try {
    info = lstatSync(target);
  } catch {
    return;
  }
  if (!info.isFile()) throw new LocalPathError(`${target} is ${fileKind(info)}; it is not replaced`);
}

/**
 * The directories of the local tree, each created or checked once per sync. An existing one must
 * be a real directory: never a symlink (which would send files outside data/media) or a file.
 */
export class LocalDirectories {
  private readonly known = new Set<string>();

  constructor(private readonly root: string) {}

  /** The directory for a key's `segments` (all but its last), made if missing; throws LocalPathError. */
  ensure(segments: readonly string[]): string {
    let path = this.root;
    for (const segment of segments) {
      path = join(path, segment);
      if (this.known.has(path)) continue;
      try {
        mkdirSync(path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const info = lstatSync(path);
        if (!info.isDirectory()) throw new LocalPathError(`${path} is ${fileKind(info)}, not a directory`);
      }
      this.known.add(path);
    }
    return path;
  }
}
