// Media storage chosen by DEFAULT_STORAGE_DSN:
//   file:///data/media/?url=/media/                       files in a directory, served by this app
//   s3://KEY:SECRET@BUCKET.HOST[:PORT]/PREFIX/?url=URL&region=REGION&scheme=http|https
//                                                         objects in an S3 bucket (path-style),
//                                                         every key prefixed with PREFIX
// A file's public URL is the `url` parameter + its name; without `url` the app serves it itself
// under its media path (/media/).
import { createReadStream } from 'node:fs';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

export const DEFAULT_MEDIA_PATH = '/media/';

/** A safe storage name for an uploaded file: uploads/<random>-<cleaned original name>. */
export function newFileName(originalName) {
  const base = String(originalName || '')
    .split(/[\\/]/)
    .pop()
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '') // accents: ü -> u
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^[.-]+/, '')
    .replace(/-{2,}/g, '-')
    .slice(-100);
  return `uploads/${randomBytes(6).toString('hex')}-${base || 'file'}`;
}

/** Rejects names that could escape the storage root. */
export function isSafeName(name) {
  return (
    typeof name === 'string' &&
    name.length > 0 &&
    name.length <= 1024 &&
    !name.startsWith('/') &&
    !name.includes('\\') &&
    !name.includes('\0') &&
    name.split('/').every((part) => part !== '' && part !== '.' && part !== '..')
  );
}

function encodeName(name) {
  return name.split('/').map(encodeURIComponent).join('/');
}

function withSlash(s) {
  return s.endsWith('/') ? s : `${s}/`;
}

/** The path under which this app serves media: the `url` parameter when it is a path, else /media/. */
function mediaPathFor(url) {
  return url && url.startsWith('/') ? withSlash(url) : DEFAULT_MEDIA_PATH;
}

class FileStorage {
  constructor(dsn) {
    this.kind = 'file';
    this.root = resolve(decodeURIComponent(dsn.pathname) || '/data/media/');
    const url = dsn.searchParams.get('url');
    this.mediaPath = mediaPathFor(url);
    this.baseUrl = url ? withSlash(url) : this.mediaPath;
    this.description = `files in ${this.root}`;
    this.servesMedia = true;
  }

  pathOf(name) {
    if (!isSafeName(name)) throw new Error(`invalid file name: ${name}`);
    const path = resolve(this.root, name);
    if (!path.startsWith(this.root + sep)) throw new Error(`invalid file name: ${name}`);
    return path;
  }

  async save(name, buffer) {
    const path = this.pathOf(name);
    await mkdir(dirname(path), { recursive: true });
    // Write next to the target and rename, so a reader never sees half a file.
    const partial = join(dirname(path), `.${randomBytes(4).toString('hex')}.part`);
    try {
      await writeFile(partial, buffer, { flag: 'wx' });
      await rename(partial, path);
    } catch (error) {
      await rm(partial, { force: true });
      throw error;
    }
  }

  async delete(name) {
    await rm(this.pathOf(name), { force: true });
  }

  /** { stream, size, contentType? } or null when there is no such file. */
  async open(name) {
    let path;
    try {
      path = this.pathOf(name);
      const info = await stat(path);
      if (!info.isFile()) return null;
      return { stream: createReadStream(path), size: info.size, lastModified: info.mtime };
    } catch {
      return null;
    }
  }

  url(name) {
    return this.baseUrl + encodeName(name);
  }
}

class S3Storage {
  constructor(dsn) {
    this.kind = 's3';
    // The host is BUCKET.ENDPOINT-HOST; the bucket is its first label.
    const host = dsn.hostname;
    const dot = host.indexOf('.');
    if (dot <= 0 || dot === host.length - 1) {
      throw new Error('DEFAULT_STORAGE_DSN: an s3:// DSN needs BUCKET.HOST (e.g. s3://KEY:SECRET@media.s3.example.com/prefix/)');
    }
    this.bucket = host.slice(0, dot);
    const endpointHost = host.slice(dot + 1);
    const params = dsn.searchParams;
    const scheme = (params.get('scheme') || 'https').toLowerCase();
    if (scheme !== 'http' && scheme !== 'https') throw new Error(`DEFAULT_STORAGE_DSN: unsupported scheme "${scheme}"`);
    const prefix = decodeURIComponent(dsn.pathname).replace(/^\/+/, '');
    this.prefix = prefix ? withSlash(prefix) : '';
    const url = params.get('url');
    this.baseUrl = url ? withSlash(url) : null;
    this.mediaPath = mediaPathFor(url);
    this.endpoint = `${scheme}://${endpointHost}${dsn.port ? `:${dsn.port}` : ''}`;
    this.description = `S3 bucket ${this.bucket} at ${this.endpoint}${this.prefix ? `, prefix ${this.prefix}` : ''}`;
    // Without a public URL the app proxies the files itself.
    this.servesMedia = true;
    this.client = new S3Client({
      endpoint: this.endpoint,
      region: params.get('region') || 'us-east-1',
      credentials: {
        accessKeyId: decodeURIComponent(dsn.username),
        secretAccessKey: decodeURIComponent(dsn.password),
      },
      forcePathStyle: true,
      // S3-compatible servers (the platform's among them) mishandle the SDK's default
      // streaming checksums; only send and check them where the API requires it.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  key(name) {
    if (!isSafeName(name)) throw new Error(`invalid file name: ${name}`);
    return this.prefix + name;
  }

  async save(name, buffer, contentType) {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: this.key(name),
        Body: buffer,
        ContentLength: buffer.length,
        ContentType: contentType || 'application/octet-stream',
      }),
    );
  }

  async delete(name) {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(name) }));
  }

  async open(name) {
    if (!isSafeName(name)) return null;
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(name) }));
      return { stream: out.Body, size: out.ContentLength, contentType: out.ContentType, lastModified: out.LastModified, etag: out.ETag };
    } catch (error) {
      if (error?.name === 'NoSuchKey' || error?.$metadata?.httpStatusCode === 404) return null;
      throw error;
    }
  }

  url(name) {
    return (this.baseUrl ?? this.mediaPath) + encodeName(name);
  }
}

export function createStorage(dsnString) {
  let dsn;
  try {
    dsn = new URL(dsnString);
  } catch {
    throw new Error(`DEFAULT_STORAGE_DSN is not a URL: ${JSON.stringify(dsnString.replace(/\/\/[^@/]*@/, '//***@'))}`);
  }
  if (dsn.protocol === 'file:') return new FileStorage(dsn);
  if (dsn.protocol === 's3:') return new S3Storage(dsn);
  throw new Error(`DEFAULT_STORAGE_DSN: unsupported scheme "${dsn.protocol}" (use file:// or s3://)`);
}
