/**
 * Which object keys and local paths may cross between the bucket and data/media. Both directions
 * use the same rules, so whatever is pushed can be pulled back to the same place, on any
 * filesystem, and nothing from a bucket can name a path outside data/media.
 */

/** S3's own limit. */
export const MAX_KEY_BYTES = 1024;
/** NAME_MAX of every common filesystem. */
export const MAX_SEGMENT_BYTES = 255;

/** Downloads are written under this hidden name first; see `temporaryName`. */
const TEMPORARY_PREFIX = '.divio-partial-';
// An optional `.suffix` lets probe files use the same pattern (and the same clean-up).
const TEMPORARY_NAME = /^\.divio-partial-(\d+)-[0-9a-f]{16}(?:\..*)?$/s;

export interface RefusedKey {
  key: string;
  reason: string;
}

/** Why `key` (relative to the media root or the remote prefix) is refused, or undefined. */
export function keyProblem(key: string): string | undefined {
  if (key === '') return 'empty key';
  if (key.startsWith('/')) return 'absolute path (leading "/")';
  if (key.includes('\\')) return 'backslash in key';
  if (/[\u0000-\u001f\u007f]/.test(key)) return 'control character in key';
  const bytes = Buffer.from(key);
  // A lone surrogate has no UTF-8 form: it would reach S3 or the disk as U+FFFD, another name.
  if (bytes.toString() !== key) return 'not valid Unicode';
  if (bytes.length > MAX_KEY_BYTES) return `longer than ${MAX_KEY_BYTES} bytes`;
  for (const segment of key.split('/')) {
    if (segment === '') return 'empty path segment ("//" or a trailing "/")';
    if (segment === '.' || segment === '..') return `"${segment}" path segment`;
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) return `path segment longer than ${MAX_SEGMENT_BYTES} bytes`;
    if (TEMPORARY_NAME.test(segment)) return 'name reserved for unfinished downloads';
  }
  return undefined;
}

/** S3 consoles create empty `folder/` objects; they carry nothing to copy. */
export function isDirectoryMarker(key: string, size: number): boolean {
  return key.endsWith('/') && size === 0;
}

/** S3 lists keys in UTF-8 byte order; JavaScript's default sort (UTF-16 units) differs above U+FFFF. */
export function compareKeys(a: string, b: string): number {
  return a === b ? 0 : Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** A unique hidden name for a download in progress; the pid lets a later run tell abandoned ones. */
export function temporaryName(random: string): string {
  return `${TEMPORARY_PREFIX}${process.pid}-${random}`;
}

/** The pid that created a temporary download file, or undefined if `name` is not one. */
export function temporaryNameOwner(name: string): number | undefined {
  const match = TEMPORARY_NAME.exec(name);
  return match ? Number(match[1]) : undefined;
}

/**
 * How the local filesystem compares names. On a case-insensitive (macOS, Windows) or normalising
 * (HFS+) filesystem two different keys can name one file; folding finds such pairs.
 */
export interface NameSemantics {
  caseInsensitive: boolean;
  normalising: boolean;
}

export type KeyFold = (key: string) => string;

/** The function that maps two keys naming the same local file to the same string; undefined: identity. */
export function keyFold(semantics: NameSemantics): KeyFold | undefined {
  if (!semantics.caseInsensitive && !semantics.normalising) return undefined;
  return (key) => {
    const normalised = semantics.normalising ? key.normalize('NFC') : key;
    return semantics.caseInsensitive ? normalised.toLowerCase() : normalised;
  };
}
