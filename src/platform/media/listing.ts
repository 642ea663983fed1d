/**
 * ListObjects (V1 and V2) for the embedded store, answered by the gate instead of s3rver, whose
 * listing is wrong in ways that lose data:
 *
 * - it walks the bucket in directory order, not key order (`a/x` before `a-b`), but pages with
 *   "keys after the last one returned", so listings past 1,000 keys skip keys (a pull with
 *   --delete would then delete local files that are in the bucket);
 * - with a delimiter it stops descending two levels below the prefix, so `prefix=x/` over
 *   `x/a/b/file` returns no common prefix at all (rclone sees an empty bucket);
 * - its V2 continuation tokens use DES, which OpenSSL 3 only has in its legacy provider;
 * - it ignores encoding-type=url.
 *
 * Here the keys are collected (pruned by prefix and start point), sorted in UTF-8 byte order as
 * S3 does, grouped by the delimiter, and paged with tokens that name the last entry returned.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const OBJECT_SUFFIX = '._S3rver_object';
const UPLOADS_DIRECTORY = '._S3rver_uploads';
const MAX_KEYS = 1000;
const TOKEN_VERSION = 'd1';

export interface ListingRequest {
  version: 1 | 2;
  prefix: string;
  delimiter: string;
  maxKeys: number;
  /** Keys up to and including this are not listed. */
  startAfter: string;
  /** Set when continuing after a common prefix: nothing under it is listed again. */
  skipUnder?: string;
  urlEncoded: boolean;
  /** Echoed back. */
  continuationToken?: string;
  requestedStartAfter?: string;
  marker?: string;
  requestedMaxKeys?: string;
}

type Query = Record<string, string | string[] | undefined>;

export class ListingArgumentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ListingArgumentError';
  }
}

/** s3rver routes GET /bucket without a subresource parameter to its listing. */
export function isListObjects(method: string, key: string, query: Query, bucketSubresources: ReadonlySet<string>): boolean {
  return method === 'GET' && key === '' && !Object.keys(query).some((name) => bucketSubresources.has(name));
}

export function parseListingRequest(query: Query): ListingRequest {
  const single = (name: string): string | undefined => {
    const value = query[name];
    if (Array.isArray(value)) throw new ListingArgumentError(`${name} was given more than once`);
    return value;
  };
  const version = single('list-type') === '2' ? 2 : 1;
  const requestedMaxKeys = single('max-keys');
  let maxKeys = MAX_KEYS;
  if (requestedMaxKeys !== undefined) {
    if (!/^\d+$/.test(requestedMaxKeys) || Number(requestedMaxKeys) > 2147483647) {
      throw new ListingArgumentError('Provided max-keys not an integer or within integer range');
    }
    maxKeys = Math.min(MAX_KEYS, Number(requestedMaxKeys));
  }
  const encoding = single('encoding-type');
  if (encoding !== undefined && encoding !== 'url') throw new ListingArgumentError('Invalid Encoding Method specified in Request');
  const request: ListingRequest = {
    version,
    prefix: single('prefix') ?? '',
    delimiter: single('delimiter') ?? '',
    maxKeys,
    startAfter: '',
    urlEncoded: encoding === 'url',
    requestedMaxKeys,
  };
  if (version === 2) {
    const token = single('continuation-token');
    request.requestedStartAfter = single('start-after');
    if (token !== undefined) {
      request.continuationToken = token;
      const resume = decodeToken(token);
      request.startAfter = resume.after;
      if (resume.prefix) request.skipUnder = resume.after;
    } else {
      request.startAfter = request.requestedStartAfter ?? '';
    }
  } else {
    request.marker = single('marker');
    request.startAfter = request.marker ?? '';
  }
  // Resuming after a common prefix (a V1 NextMarker, or a start point ending in the delimiter)
  // must not return that prefix again: everything under it was covered by it.
  if (request.delimiter && request.startAfter.endsWith(request.delimiter) && request.startAfter.startsWith(request.prefix)) {
    request.skipUnder = request.startAfter;
  }
  return request;
}

interface Entry {
  key: string;
  bytes: Buffer;
}

interface ListedObject {
  key: string;
  size: number;
  etag: string;
  lastModified: Date;
}

export interface Listing {
  objects: ListedObject[];
  commonPrefixes: string[];
  isTruncated: boolean;
  /** What the next page continues after, when truncated. */
  next?: { after: string; prefix: boolean };
}

export async function listBucket(bucketPath: string, request: ListingRequest): Promise<Listing> {
  const keys = await collectKeys(bucketPath, request.prefix, request.startAfter);
  const after = Buffer.from(request.startAfter);
  const sorted: Entry[] = keys
    .map((key) => ({ key, bytes: Buffer.from(key) }))
    .filter((entry) => Buffer.compare(entry.bytes, after) > 0 && !(request.skipUnder && entry.key.startsWith(request.skipUnder)))
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes));

  const listing: Listing = { objects: [], commonPrefixes: [], isTruncated: false };
  const pageKeys: string[] = [];
  let count = 0;
  let lastPrefix: string | undefined;
  let last: { after: string; prefix: boolean } | undefined;
  for (const { key } of sorted) {
    let commonPrefix: string | undefined;
    if (request.delimiter) {
      const at = key.indexOf(request.delimiter, request.prefix.length);
      if (at !== -1) commonPrefix = key.slice(0, at + request.delimiter.length);
    }
    if (commonPrefix !== undefined && commonPrefix === lastPrefix) continue;
    if (count === request.maxKeys) {
      listing.isTruncated = true;
      listing.next = last;
      break;
    }
    count++;
    if (commonPrefix !== undefined) {
      lastPrefix = commonPrefix;
      listing.commonPrefixes.push(commonPrefix);
      last = { after: commonPrefix, prefix: true };
    } else {
      pageKeys.push(key);
      last = { after: key, prefix: false };
    }
  }
  const described = await Promise.all(pageKeys.map((key) => describeObject(bucketPath, key)));
  listing.objects = described.filter((object): object is ListedObject => object !== undefined);
  return listing;
}

/** Every key under `prefix`, from the object files' paths; directories outside the range are not read. */
async function collectKeys(bucketPath: string, prefix: string, startAfter: string): Promise<string[]> {
  const keys: string[] = [];
  const visit = async (directory: string, keyPrefix: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(directory, { withFileTypes: true });
    } catch (error) {
      // A directory emptied and removed by a concurrent delete holds no keys.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return;
      throw error;
    }
    await Promise.all(
      entries.map(async (entry) => {
        if (entry.isDirectory()) {
          if (keyPrefix === '' && entry.name === UPLOADS_DIRECTORY) return;
          const directoryKey = `${keyPrefix}${entry.name}/`;
          if (!directoryKey.startsWith(prefix) && !prefix.startsWith(directoryKey)) return;
          // Every key under it sorts before the start point.
          if (startAfter && !startAfter.startsWith(directoryKey) && Buffer.compare(Buffer.from(directoryKey), Buffer.from(startAfter)) < 0) return;
          await visit(join(directory, entry.name), directoryKey);
        } else if (entry.isFile() && entry.name.endsWith(OBJECT_SUFFIX)) {
          const key = keyPrefix + entry.name.slice(0, -OBJECT_SUFFIX.length);
          if (key.startsWith(prefix)) keys.push(key);
        }
      }),
    );
  };
  await visit(bucketPath, '');
  return keys;
}

async function describeObject(bucketPath: string, key: string): Promise<ListedObject | undefined> {
  const segments = key.split('/');
  const name = segments.pop() ?? '';
  const objectPath = join(bucketPath, ...segments, `${name}${OBJECT_SUFFIX}`);
  try {
    const info = await stat(objectPath);
    return { key, size: info.size, etag: await storedEtag(objectPath), lastModified: info.mtime };
  } catch (error) {
    // Deleted since it was seen: not part of this listing.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** s3rver keeps an object's ETag next to it; one written before that file existed gets it computed, as s3rver does. */
async function storedEtag(objectPath: string): Promise<string> {
  try {
    return await readFile(`${objectPath}.md5`, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const md5 = createHash('md5');
  for await (const chunk of createReadStream(objectPath)) md5.update(chunk as Buffer);
  const etag = md5.digest('hex');
  await writeFile(`${objectPath}.md5`, etag);
  return etag;
}

// ---------------------------------------------------------------------------------------------

function encodeToken(next: { after: string; prefix: boolean }): string {
  return `${TOKEN_VERSION}${next.prefix ? 'p' : 'k'}${Buffer.from(next.after).toString('base64url')}`;
}

function decodeToken(token: string): { after: string; prefix: boolean } {
  const match = /^d1([pk])([A-Za-z0-9_-]*)$/.exec(token);
  if (!match) throw new ListingArgumentError('The continuation token provided is incorrect');
  return { prefix: match[1] === 'p', after: Buffer.from(match[2] ?? '', 'base64url').toString() };
}

function xmlEscape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] as string);
}

export function renderListing(bucket: string, request: ListingRequest, listing: Listing): string {
  const name = (text: string) => xmlEscape(request.urlEncoded ? encodeURIComponent(text) : text);
  const element = (tag: string, value: string | number | boolean | undefined) =>
    value === undefined ? '' : `<${tag}>${typeof value === 'string' ? value : String(value)}</${tag}>`;
  const parts = [
    element('Name', xmlEscape(bucket)),
    element('Prefix', name(request.prefix)),
  ];
  if (request.version === 2) {
    parts.push(
      element('KeyCount', listing.objects.length + listing.commonPrefixes.length),
      element('MaxKeys', request.requestedMaxKeys ?? MAX_KEYS),
      request.delimiter ? element('Delimiter', name(request.delimiter)) : '',
      element('IsTruncated', listing.isTruncated),
      request.continuationToken !== undefined ? element('ContinuationToken', xmlEscape(request.continuationToken)) : '',
      listing.isTruncated && listing.next ? element('NextContinuationToken', encodeToken(listing.next)) : '',
      request.requestedStartAfter !== undefined ? element('StartAfter', name(request.requestedStartAfter)) : '',
    );
  } else {
    parts.push(
      element('Marker', name(request.marker ?? '')),
      listing.isTruncated && listing.next ? element('NextMarker', name(listing.next.after)) : '',
      element('MaxKeys', request.requestedMaxKeys ?? MAX_KEYS),
      request.delimiter ? element('Delimiter', name(request.delimiter)) : '',
      element('IsTruncated', listing.isTruncated),
    );
  }
  if (request.urlEncoded) parts.push(element('EncodingType', 'url'));
  for (const object of listing.objects) {
    parts.push(
      `<Contents>${element('Key', name(object.key))}${element('LastModified', object.lastModified.toISOString())}${element('ETag', `&quot;${object.etag}&quot;`)}${element('Size', object.size)}${element('StorageClass', 'STANDARD')}</Contents>`,
    );
  }
  for (const prefix of listing.commonPrefixes) parts.push(`<CommonPrefixes>${element('Prefix', name(prefix))}</CommonPrefixes>`);
  return `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${parts.join('')}</ListBucketResult>`;
}
