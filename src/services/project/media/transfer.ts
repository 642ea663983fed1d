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
 * - download: written to a hidden temporary file (O_EXCL, O_NOFOLLOW) in the target directory,
 *   checked (sha256 against x-amz-meta-sha256, else the ETag), flushed to disk, and only then
 *   renamed over the real name. Every directory on the way is created or checked (lstat: a real
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
  /** Directories of the local tree already created or checked in this sync (pull). */
  directories: LocalDirectories;
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

/** Read whole into memory up to this size: one read, one request, no second pass. */
export const SMALL_FILE_LIMIT = 4 * MIB;
const STREAM_CHUNK = MIB;
const WRITE_BATCH = 4 * MIB;
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

/** Writes every byte of `buffers` (writev may write less than asked). */
async function writeAll(handle: FileHandle, buffers: Buffer[]): Promise<void> {
  let pending = buffers;
  while (pending.length > 0) {
    let { bytesWritten } = await handle.writev(pending);
    // A short write: drop what went out and write the rest.
    while (pending.length > 0 && bytesWritten >= (pending[0] as Buffer).length) bytesWritten -= (pending.shift() as Buffer).length;
    if (bytesWritten > 0) pending[0] = (pending[0] as Buffer).subarray(bytesWritten);
  }
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

  return s3.request(async () => {
    let counted = 0;
    let response: Awaited<ReturnType<typeof s3.objects.get>> | undefined;
    try {
      response = await s3.objects.get(s3.prefix + object.key);
      const body = response.body;
      const etag = normaliseEtag(singleHeader(response.headers.etag) ?? '');
      const length = Number(response.headers['content-length']);
      const size = Number.isSafeInteger(length) ? length : object.size;
      const sha256 = singleHeader(response.headers['x-amz-meta-sha256'])?.toLowerCase();
      const requirement = etagRequirement(etag, size, settings.partSize);
      const hasher = new ContentHasher({
        md5: !sha256 && requirement.kind === 'md5',
        partSizes: !sha256 && requirement.kind === 'composite' ? [requirement.partSize] : [],
      });
      const received = (chunk: Buffer) => {
        hasher.update(chunk);
        counted += chunk.length;
        settings.onBytes(chunk.length);
      };
      const check = () => {
        if (hasher.bytes !== size) throw new DigestMismatchError(`${object.key}: received ${hasher.bytes} bytes, the store announced ${size}`);
        const digests = hasher.digest();
        verifyDownload(object.key, digests, etag, sha256, requirement);
        return digests;
      };
      const placed =
        size <= SMALL_FILE_LIMIT ? await placeSmall(body, directory, target, received, check) : await placeStreamed(body, directory, target, received, check);
      const known: FileDigests = { sha256: placed.digests.sha256 };
      // Verified by sha256, the content is the stored object's, so its ETag describes it too.
      if (requirement.kind === 'md5') known.md5 = placed.digests.md5 ?? etag;
      if (requirement.kind === 'composite') known.etags = { [requirement.partSize]: etag };
      return { key: object.key, bytes: hasher.bytes, md5: known.md5, sha256: placed.digests.sha256, identity: placed.identity, digests: known };
    } catch (error) {
      // A retry starts over: take back what this attempt reported, and free the connection.
      settings.onBytes(-counted);
      response?.body.destroy();
      throw error;
    }
  }, settings.signal);
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
async function placeSmall(
  body: Readable,
  directory: string,
  target: string,
  received: (chunk: Buffer) => void,
  check: () => FileDigests,
): Promise<{ digests: FileDigests; identity: FileIdentity }> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) {
    received(chunk as Buffer);
    chunks.push(chunk as Buffer);
  }
  const digests = check();
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
    return { digests, identity: { size: info.size, mtimeMs: info.mtimeMs, ctimeMs: info.ctimeMs, ino: info.ino } };
  } finally {
    closeSync(fd);
    if (!renamed) await rm(temporary, { force: true });
  }
}

/** A large download streams to its hidden temporary file; memory stays at a few chunks. */
async function placeStreamed(
  body: Readable,
  directory: string,
  target: string,
  received: (chunk: Buffer) => void,
  check: () => FileDigests,
): Promise<{ digests: FileDigests; identity: FileIdentity }> {
  const temporary = join(directory, temporaryName(randomBytes(8).toString('hex')));
  const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o666);
  let renamed = false;
  try {
    // Network chunks (64 KiB) are gathered into one writev per few MiB. One batch is written while
    // the next is received; reading pauses only when that write is still under way, so memory
    // stays at two batches.
    let batch: Buffer[] = [];
    let batched = 0;
    let writing: Promise<void> = Promise.resolve();
    try {
      for await (const chunk of body) {
        received(chunk as Buffer);
        batch.push(chunk as Buffer);
        batched += (chunk as Buffer).length;
        if (batched >= WRITE_BATCH) {
          await writing;
          writing = writeAll(handle, batch);
          batch = [];
          batched = 0;
        }
      }
    } finally {
      // Never leave a write running on a handle that is about to be closed.
      await writing.catch(() => undefined);
    }
    await writing;
    if (batch.length > 0) await writeAll(handle, batch);
    const digests = check();
    await handle.close();
    refuseNonFileTarget(target);
    await rename(temporary, target);
    renamed = true;
    return { digests, identity: identityOf(target) };
  } finally {
    if (!renamed) {
      await handle.close().catch(() => undefined);
      await rm(temporary, { force: true });
    }
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
