/**
 * DeleteObjects (POST /BUCKET?delete), answered by the gate itself. s3rver's own handler joined
 * every key of the body into a file path unchecked (`../other-bucket/x` deleted another tenant's
 * object), read numbers-looking keys as numbers and deleted in parallel, racing its own clean-up
 * of emptied directories. Here every key is checked before any is deleted: one bad key refuses
 * the whole request, so nothing changes.
 */
import { parseXML } from '@aws-sdk/xml-builder';
import { MAX_KEY_BYTES } from './object-keys.js';

export const MAX_DELETE_KEYS = 1000;
/** 1000 keys of 1024 bytes, escaped, with their elements. */
export const MAX_DELETE_BODY_BYTES = 8 * 1024 * 1024;

export interface DeleteRequest {
  keys: string[];
  quiet: boolean;
}

export class DeleteRequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const MALFORMED = 'The XML you provided was not well-formed or did not validate against our published schema.';

/** `keyProblem` says why a key is refused; the first refused key refuses the request. */
export function parseDeleteRequest(xml: string, keyProblem: (key: string) => string | undefined): DeleteRequest {
  let document: unknown;
  try {
    document = parseXML(xml);
  } catch {
    throw new DeleteRequestError('MalformedXML', MALFORMED);
  }
  const root = (document as { Delete?: unknown } | undefined)?.Delete;
  if (!root || typeof root !== 'object') throw new DeleteRequestError('MalformedXML', MALFORMED);
  const { Object: objects, Quiet: quiet } = root as { Object?: unknown; Quiet?: unknown };
  if (objects === undefined) throw new DeleteRequestError('MalformedXML', MALFORMED);
  const entries = Array.isArray(objects) ? (objects as unknown[]) : [objects];
  if (entries.length > MAX_DELETE_KEYS) {
    throw new DeleteRequestError('MalformedXML', `A DeleteObjects request may name at most ${MAX_DELETE_KEYS} keys.`);
  }
  const keys = entries.map((entry, index) => {
    const key = (entry as { Key?: unknown } | undefined)?.Key;
    if (typeof key !== 'string') throw new DeleteRequestError('MalformedXML', MALFORMED);
    if ((entry as { VersionId?: unknown }).VersionId !== undefined) {
      throw new DeleteRequestError('NotImplemented', 'Deleting a particular version is not supported by this store.');
    }
    const problem = keyProblem(key);
    if (problem) {
      throw new DeleteRequestError(
        Buffer.byteLength(key) > MAX_KEY_BYTES ? 'KeyTooLongError' : 'InvalidArgument',
        `Object key not supported by this store (object ${index + 1} of the request): ${problem}; nothing was deleted.`,
      );
    }
    return key;
  });
  if (quiet !== undefined && quiet !== 'true' && quiet !== 'false') throw new DeleteRequestError('MalformedXML', MALFORMED);
  return { keys, quiet: quiet === 'true' };
}

export function renderDeleteResult(deleted: string[], quiet: boolean): string {
  const entries = quiet ? '' : deleted.map((key) => `<Deleted><Key>${xmlEscape(key)}</Key></Deleted>`).join('');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${entries}</DeleteResult>`;
}

function xmlEscape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] as string);
}
