/**
 * What an object key, a bucket name and a copy source may be, wherever they arrive from (the URL
 * path, a DeleteObjects body, `x-amz-copy-source`). s3rver joins keys into file paths, so a key
 * the rules below let through must name exactly one file inside its own bucket's directory.
 */

export const MAX_KEY_BYTES = 1024;
/** s3rver names an object's files SEGMENT + the longest of these suffixes; a file name has 255 bytes. */
const LONGEST_STORE_SUFFIX = '._S3rver_metadata.json';
const MAX_SEGMENT_BYTES = 255 - Buffer.byteLength(LONGEST_STORE_SUFFIX);
const STORE_MARKER = '._S3rver_';

/** The names s3rver can hold as one directory of the store (the platform's own are stricter still). */
export function isStorableBucketName(bucket: string): boolean {
  return /^[A-Za-z0-9._-]+$/.test(bucket) && bucket !== '.' && bucket !== '..';
}

/**
 * Why s3rver cannot store `key` faithfully and inside its bucket, or undefined when it can. A
 * trailing `/` (a directory marker) is fine; every other empty segment, `.` and `..` would be
 * folded away by path.join, so the object would land under another key, or outside its bucket.
 */
export function objectKeyProblem(key: string): string | undefined {
  if (key === '') return 'the key is empty';
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) return `the key is longer than ${MAX_KEY_BYTES} bytes`;
  if (key.includes('\0')) return 'the key contains a NUL character';
  // A lone surrogate is written to disk as U+FFFD, so the object would answer to another key.
  if (/\p{Cs}/u.test(key)) return 'the key is not valid Unicode';
  const segments = key.split('/');
  if (segments.at(-1) === '') segments.pop();
  for (const segment of segments) {
    if (segment === '') return 'the key has an empty path segment (a leading or doubled /)';
    if (segment === '.' || segment === '..') return 'the key has a "." or ".." path segment';
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) return `a path segment of the key is longer than ${MAX_SEGMENT_BYTES} bytes`;
    if (segment.includes(STORE_MARKER)) return `the key contains "${STORE_MARKER}", which this store reserves`;
  }
  return undefined;
}

/**
 * Stricter, for keys an environment's credentials send: no control characters and no backslash,
 * which other S3 servers and Windows clients turn into paths of their own. The platform's admin
 * key may still store what the filesystem holds faithfully (tests plant such keys on purpose).
 */
export function tenantKeyProblem(key: string): string | undefined {
  const problem = objectKeyProblem(key);
  if (problem) return problem;
  if (/[\u0000-\u001f\u007f]/.test(key)) return 'the key contains a control character';
  if (key.includes('\\')) return 'the key contains a backslash';
  return undefined;
}

export type CopySource = { bucket: string; key: string } | { problem: string };

/**
 * `x-amz-copy-source` as S3 reads it: `[/]BUCKET/KEY[?versionId=…]`, URL-encoded, decoded exactly
 * once. A raw `?` starts the version; an encoded one (%3F) belongs to the key.
 */
export function parseCopySource(raw: string): CopySource {
  const question = raw.indexOf('?');
  if (question >= 0) return { problem: 'copying a particular version is not supported by this store' };
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    return { problem: 'x-amz-copy-source is not properly percent-encoded' };
  }
  const path = decoded.startsWith('/') ? decoded.slice(1) : decoded;
  const slash = path.indexOf('/');
  if (slash <= 0 || slash === path.length - 1) {
    return { problem: 'x-amz-copy-source must name the source bucket and key: BUCKET/KEY' };
  }
  return { bucket: path.slice(0, slash), key: path.slice(slash + 1) };
}

/**
 * The copy source written so that s3rver (which applies decodeURI and splits at the first `/`)
 * reads back exactly `bucket` and `key`: decodeURI(encodeURI(key)) === key for every valid string.
 */
export function copySourceForS3rver(bucket: string, key: string): string {
  return `${bucket}/${encodeURI(key)}`;
}
