/**
 * Content digests, and how they compare with S3 ETags. A single-part object's ETag is the MD5 of
 * its content; a multipart object's is md5(concatenated binary part MD5s) + "-" + part count,
 * which depends on the uploader's part size. sha256 is what this engine itself trusts: it is
 * stored with every upload (x-amz-meta-sha256) and checked on every download.
 */
import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

export const MIB = 1024 * 1024;
/** S3 allows at most this many parts per upload. */
const MAX_PARTS = 10_000;
const READ_CHUNK = MIB;

export interface FileDigests {
  /** MD5 of the whole file (a single-part ETag); absent when it was not needed. */
  md5?: string;
  sha256: string;
  /** Multipart ETags of this content, by part size in bytes. */
  etags?: Record<string, string>;
}

/** The part size used to upload `size` bytes: `preferred`, grown as needed to stay within 10,000 parts. */
export function partSizeFor(size: number, preferred: number): number {
  return Math.max(preferred, Math.ceil(size / MAX_PARTS / MIB) * MIB);
}

export function partCount(size: number, partSize: number): number {
  return Math.max(1, Math.ceil(size / partSize));
}

export function compositeEtag(partMd5s: readonly Buffer[]): string {
  return `${createHash('md5').update(Buffer.concat(partMd5s)).digest('hex')}-${partMd5s.length}`;
}

/** An ETag without its quotes, lower case. */
export function normaliseEtag(etag: string): string {
  return etag.replace(/"/g, '').toLowerCase();
}

/** What local content must be hashed with to be compared with a remote ETag. */
export type EtagRequirement = { kind: 'md5' } | { kind: 'composite'; partSize: number } | { kind: 'incomparable' };

/**
 * A multipart ETag names its part count, not its part size: try ours, then the smallest whole
 * number of MiB that gives that count (what most tools use). Anything else is incomparable, and
 * only costs a transfer.
 */
export function etagRequirement(etag: string, size: number, ourPartSize: number): EtagRequirement {
  const normalised = normaliseEtag(etag);
  if (/^[0-9a-f]{32}$/.test(normalised)) return { kind: 'md5' };
  const match = /^[0-9a-f]{32}-(\d+)$/.exec(normalised);
  if (!match) return { kind: 'incomparable' };
  const parts = Number(match[1]);
  const ours = partSizeFor(size, ourPartSize);
  if (parts === partCount(size, ours)) return { kind: 'composite', partSize: ours };
  if (parts < 1 || size === 0) return { kind: 'incomparable' };
  const guess = Math.ceil(Math.ceil(size / parts) / MIB) * MIB;
  return partCount(size, guess) === parts ? { kind: 'composite', partSize: guess } : { kind: 'incomparable' };
}

/** true/false when known; undefined when the digests needed are missing. */
export function etagMatches(digests: FileDigests | undefined, etag: string, requirement: EtagRequirement): boolean | undefined {
  if (requirement.kind === 'incomparable') return false;
  if (!digests) return undefined;
  const expected = requirement.kind === 'md5' ? digests.md5 : digests.etags?.[requirement.partSize];
  return expected === undefined ? undefined : expected === normaliseEtag(etag);
}

/** MD5 and SHA-256 of a stream of chunks, and part MD5s at any number of part sizes, in one pass. */
export class ContentHasher {
  private readonly sha256 = createHash('sha256');
  private readonly md5: Hash | undefined;
  private readonly parts: { size: number; hash: Hash; filled: number; md5s: Buffer[] }[];
  bytes = 0;

  constructor(options: { md5: boolean; partSizes?: readonly number[] }) {
    this.md5 = options.md5 ? createHash('md5') : undefined;
    this.parts = [...new Set(options.partSizes ?? [])].map((size) => ({ size, hash: createHash('md5'), filled: 0, md5s: [] }));
  }

  update(chunk: Buffer): void {
    this.bytes += chunk.length;
    this.sha256.update(chunk);
    this.md5?.update(chunk);
    for (const part of this.parts) {
      let offset = 0;
      while (offset < chunk.length) {
        const take = Math.min(chunk.length - offset, part.size - part.filled);
        part.hash.update(offset === 0 && take === chunk.length ? chunk : chunk.subarray(offset, offset + take));
        part.filled += take;
        offset += take;
        if (part.filled === part.size) {
          part.md5s.push(part.hash.digest());
          part.hash = createHash('md5');
          part.filled = 0;
        }
      }
    }
  }

  digest(): FileDigests {
    const digests: FileDigests = { sha256: this.sha256.digest('hex') };
    if (this.md5) digests.md5 = this.md5.digest('hex');
    for (const part of this.parts) {
      if (part.filled > 0 || part.md5s.length === 0) part.md5s.push(part.hash.digest());
      (digests.etags ??= {})[part.size] = compositeEtag(part.md5s);
    }
    return digests;
  }
}

export class NotRegularFileError extends Error {
  constructor(readonly path: string, readonly kind: string) {
    super(`${path} is ${kind}, not a regular file`);
    this.name = 'NotRegularFileError';
  }
}

export interface FileIdentity {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
}

/**
 * Opens a local file for reading without ever following a symlink (O_NOFOLLOW) and without
 * blocking on a FIFO (O_NONBLOCK); anything but a regular file is refused.
 */
export async function openRegularFile(path: string): Promise<{ handle: FileHandle; identity: FileIdentity }> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ELOOP') throw new NotRegularFileError(path, 'a symbolic link');
    throw error;
  });
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new NotRegularFileError(path, fileKind(info));
    return { handle, identity: { size: info.size, mtimeMs: info.mtimeMs, ctimeMs: info.ctimeMs, ino: info.ino } };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

export function fileKind(info: { isDirectory(): boolean; isSymbolicLink(): boolean; isFIFO(): boolean; isSocket(): boolean }): string {
  if (info.isDirectory()) return 'a directory';
  if (info.isSymbolicLink()) return 'a symbolic link';
  if (info.isFIFO()) return 'a named pipe';
  if (info.isSocket()) return 'a socket';
  return 'a device or other special file';
}

export interface HashedFile {
  identity: FileIdentity;
  digests: FileDigests;
  /** False when the file changed while it was read: the digests are not worth remembering. */
  stable: boolean;
}

export async function hashFile(
  path: string,
  options: { md5: boolean; partSizes?: readonly number[]; signal?: AbortSignal },
): Promise<HashedFile> {
  const { handle, identity } = await openRegularFile(path);
  try {
    const hasher = new ContentHasher(options);
    const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(identity.size, 1)));
    for (;;) {
      options.signal?.throwIfAborted();
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hasher.update(buffer.subarray(0, bytesRead));
    }
    const after = await handle.stat();
    const stable = hasher.bytes === identity.size && after.mtimeMs === identity.mtimeMs && after.size === identity.size;
    return { identity, digests: hasher.digest(), stable };
  } finally {
    await handle.close();
  }
}
