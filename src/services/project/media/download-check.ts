/**
 * Reading a GetObject answer: what a downloaded object is checked against, taken from its headers: the sha256 this
 * engine stores with every upload (x-amz-meta-sha256) when present, else the ETag (the MD5 of a
 * single-part object, or a multipart ETag at a part size that can be worked out). Shared by the
 * downloads received on the main thread and those received in a transfer worker, which hashes
 * with what `hasherOptions` says and leaves the verdict to `checkDownload` on the main thread.
 */
import { etagRequirement, normaliseEtag, type EtagRequirement, type FileDigests } from './digests.js';

/** A transfer that arrived different from what was sent; retried like a network error. */
export class DigestMismatchError extends Error {
  readonly code = 'DigestMismatch';
  constructor(message: string) {
    super(message);
    this.name = 'DigestMismatch';
  }
}

/** The response headers a download is checked with, as the store sent them. */
export interface DownloadHeaders {
  etag: string | undefined;
  contentLength: string | undefined;
  sha256: string | undefined;
}

export interface DownloadExpectation {
  etag: string;
  /** Bytes announced by the store (Content-Length), or the listing's size without one. */
  size: number;
  sha256: string | undefined;
  requirement: EtagRequirement;
}

export function downloadHeaders(headers: Record<string, string | string[] | undefined>): DownloadHeaders {
  const single = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);
  return { etag: single(headers.etag), contentLength: single(headers['content-length']), sha256: single(headers['x-amz-meta-sha256']) };
}

export function downloadExpectation(headers: DownloadHeaders, listedSize: number, partSize: number): DownloadExpectation {
  const etag = normaliseEtag(headers.etag ?? '');
  const length = Number(headers.contentLength);
  const size = headers.contentLength !== undefined && Number.isSafeInteger(length) ? length : listedSize;
  return { etag, size, sha256: headers.sha256?.toLowerCase(), requirement: etagRequirement(etag, size, partSize) };
}

/** Only what the check needs: sha256 is always taken; MD5s only when there is no sha256 to trust. */
export function hasherOptions(expectation: DownloadExpectation): { md5: boolean; partSizes: number[] } {
  const { sha256, requirement } = expectation;
  return {
    md5: !sha256 && requirement.kind === 'md5',
    partSizes: !sha256 && requirement.kind === 'composite' ? [requirement.partSize] : [],
  };
}

/** Throws DigestMismatchError unless `received` bytes with these digests are the stored object. */
export function checkDownload(key: string, expectation: DownloadExpectation, received: number, digests: FileDigests): void {
  const { etag, size, sha256, requirement } = expectation;
  if (received !== size) throw new DigestMismatchError(`${key}: received ${received} bytes, the store announced ${size}`);
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

/** What the manifest may remember of verified content: its sha256, and its ETag in the form it takes. */
export function knownDigests(expectation: DownloadExpectation, digests: FileDigests): FileDigests {
  const known: FileDigests = { sha256: digests.sha256 };
  const { requirement, etag } = expectation;
  // Verified by sha256, the content is the stored object's, so its ETag describes it too.
  if (requirement.kind === 'md5') known.md5 = digests.md5 ?? etag;
  if (requirement.kind === 'composite') known.etags = { [requirement.partSize]: etag };
  return known;
}

/** The start of an error answer's body (S3 error documents are small; anything longer is cut). */
export async function errorBodyOf(response: AsyncIterable<unknown>): Promise<string> {
  let text = '';
  for await (const chunk of response) {
    if (text.length < 64 * 1024) text += String(chunk);
  }
  return text;
}
