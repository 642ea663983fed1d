/**
 * The digests a request promises for its body (`Content-MD5`, a hex `x-amz-content-sha256`) and
 * their check. The signature only proves that the client signed the promise; the body must then
 * be held to it before anything it carries takes effect.
 */
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';

export interface ExpectedDigests {
  /** Lower-case hex. */
  md5?: string;
  /** Lower-case hex. */
  sha256?: string;
}

export interface DigestRefusal {
  code: string;
  message: string;
  status: number;
}

export class DigestError extends Error {
  constructor(readonly refusal: DigestRefusal) {
    super(refusal.message);
  }
}

const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;

/**
 * Reads the promises off the request. A presigned URL may carry the body hash in its query
 * (`queryPayloadHash`); a header-signed request's header wins.
 */
export function expectedDigests(headers: IncomingHttpHeaders, queryPayloadHash: string | undefined): ExpectedDigests {
  const expected: ExpectedDigests = {};
  const contentMd5 = headers['content-md5'];
  if (contentMd5 !== undefined) {
    const value = Array.isArray(contentMd5) ? contentMd5.join(',') : contentMd5;
    const bytes = /^[A-Za-z0-9+/]{22}==$/.test(value.trim()) ? Buffer.from(value.trim(), 'base64') : undefined;
    if (!bytes || bytes.length !== 16) {
      throw new DigestError({ code: 'InvalidDigest', message: 'The Content-MD5 you specified was invalid.', status: 400 });
    }
    expected.md5 = bytes.toString('hex');
  }
  const header = headers['x-amz-content-sha256'];
  const sha256 = (Array.isArray(header) ? header.join(',') : header) ?? queryPayloadHash;
  if (sha256 !== undefined && HEX_SHA256.test(sha256)) expected.sha256 = sha256.toLowerCase();
  return expected;
}

/** The S3 refusal for a body whose digests are not the promised ones, or undefined. */
export function digestMismatch(expected: ExpectedDigests, actual: { md5: string; sha256?: string }): DigestRefusal | undefined {
  if (expected.sha256 !== undefined && actual.sha256 !== expected.sha256) {
    return {
      code: 'XAmzContentSHA256Mismatch',
      message: "The provided 'x-amz-content-sha256' header does not match what was computed.",
      status: 400,
    };
  }
  if (expected.md5 !== undefined && actual.md5 !== expected.md5) {
    return { code: 'BadDigest', message: 'The Content-MD5 you specified did not match what we received.', status: 400 };
  }
  return undefined;
}

/**
 * Request bodies the store writes itself (PutObject, UploadPart), with what they promised; the
 * store looks its body stream up here and checks before the object or part becomes visible.
 */
const promisedDigests = new WeakMap<object, ExpectedDigests>();

export function promiseDigests(body: object, expected: ExpectedDigests): void {
  promisedDigests.set(body, expected);
}

export function promisedDigestsOf(body: object): ExpectedDigests {
  return promisedDigests.get(body) ?? {};
}

/** The SHA-256 is only computed when it was promised: hashing large uploads twice costs a core. */
export function bodyHasher(expected: ExpectedDigests): { update(chunk: Buffer): void; digests(): { md5: string; sha256?: string } } {
  const md5 = createHash('md5');
  const sha256 = expected.sha256 !== undefined ? createHash('sha256') : undefined;
  return {
    update(chunk) {
      md5.update(chunk);
      sha256?.update(chunk);
    },
    digests() {
      const result: { md5: string; sha256?: string } = { md5: md5.digest('hex') };
      if (sha256) result.sha256 = sha256.digest('hex');
      return result;
    },
  };
}

/** Reads a small body (an XML document) whole, up to `limit` bytes, and checks it. */
export async function readCheckedBody(
  body: Readable,
  expected: ExpectedDigests,
  limit: number,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  const hasher = bodyHasher(expected);
  for await (const chunk of body) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    size += buffer.length;
    if (size > limit) {
      throw new DigestError({
        code: 'MaxMessageLengthExceeded',
        message: `Your request was too big: this store accepts request documents of up to ${limit} bytes.`,
        status: 400,
      });
    }
    hasher.update(buffer);
    chunks.push(buffer);
  }
  const refusal = digestMismatch(expected, hasher.digests());
  if (refusal) throw new DigestError(refusal);
  return Buffer.concat(chunks);
}
