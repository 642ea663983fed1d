/**
 * Downloading one object: written to a hidden temporary file (O_EXCL, O_NOFOLLOW) in the target
 * directory (large ones by a transfer worker, see transfer-workers.ts), checked (sha256 against
 * x-amz-meta-sha256, else the ETag; see download-check.ts), and only then renamed over the real
 * name. Every directory on the way is created or checked (lstat: a real directory, not a symlink)
 * once per sync, and the real name is checked again just before the rename (a symlink or
 * directory there is refused, never replaced).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, open as fsOpen, rename as fsRename, writeSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ContentHasher, fileKind, type FileDigests, type FileIdentity } from './digests.js';
import { checkDownload, DigestMismatchError, downloadExpectation, downloadHeaders, hasherOptions, knownDigests, type DownloadExpectation } from './download-check.js';
import { temporaryName } from './keys.js';
import { s3ErrorFromBody } from './object-http.js';
import type { RemoteObject } from './remote-tree.js';
import type { MediaS3 } from './s3.js';
import { SMALL_FILE_LIMIT, type TransferOutcome, type TransferSettings } from './transfer.js';

/** A local path that cannot be written without following or replacing something. */
export class LocalPathError extends Error {
  readonly code = 'LocalPathRefused';
  constructor(message: string) {
    super(message);
    this.name = 'LocalPathRefused';
  }
}

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
      const { expectation, digests, identity, bytes } = await place({ s3, object, directory, target, settings, onBytes });
      const known = knownDigests(expectation, digests);
      return { key: object.key, bytes, md5: known.md5, sha256: digests.sha256, identity, digests: known };
    } catch (error) {
      // A retry starts over: take back what this attempt reported.
      settings.onBytes(-counted);
      throw error;
    }
  }, settings.signal);
}

/** One attempt at placing `object` at `target` (in `directory`), reporting bytes as they arrive. */
interface Placing {
  s3: MediaS3;
  object: RemoteObject;
  directory: string;
  target: string;
  settings: TransferSettings;
  onBytes: (bytes: number) => void;
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
async function downloadSmall(placing: Placing): Promise<Placed> {
  const { s3, object, directory, target, settings, onBytes } = placing;
  const response = await s3.objects.get(s3.prefix + object.key);
  const expectation = downloadExpectation(downloadHeaders(response.headers), object.size, settings.partSize);
  // Replaced by a large object since the listing: not into memory.
  const tooLarge = (bytes: number) => bytes > SMALL_FILE_LIMIT;
  if (tooLarge(expectation.size)) {
    response.body.destroy();
    return downloadInWorker(placing);
  }
  const hasher = new ContentHasher(hasherOptions(expectation));
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of response.body) {
      hasher.update(chunk as Buffer);
      chunks.push(chunk as Buffer);
      onBytes((chunk as Buffer).length);
      if (tooLarge(hasher.bytes)) throw new DigestMismatchError(`${object.key}: more bytes arrived than the store announced (${expectation.size})`);
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
 * worker (transfer-workers.ts), so memory stays at a few MiB per file; it is checked and renamed
 * here, or removed.
 */
async function downloadInWorker({ s3, object, directory, target, settings, onBytes }: Placing): Promise<Placed> {
  const temporary = join(directory, temporaryName(randomBytes(8).toString('hex')));
  const request = await s3.objects.signGet(s3.prefix + object.key);
  let renamed = false;
  try {
    const answer = await settings.workers.download(
      { request, temporary, listedSize: object.size, partSize: settings.partSize, idleTimeoutMs: s3.idleTimeoutMs },
      onBytes,
      settings.signal,
    );
    if (answer.type === 'refused') throw s3ErrorFromBody(answer.status, answer.body);
    const expectation = downloadExpectation(answer.headers, object.size, settings.partSize);
    checkDownload(object.key, expectation, answer.bytes, answer.digests);
    refuseNonFileTarget(target);
    await rename(temporary, target);
    renamed = true;
    return { expectation, digests: answer.digests, bytes: answer.bytes, identity: identityOf(target) };
  } finally {
    // The worker removes its file when it fails; not when it dies.
    if (!renamed) await rm(temporary, { force: true });
  }
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
