/**
 * The bucket side of a sync: every object under the prefix, by key relative to the prefix, from
 * ListObjectsV2 alone (size and ETag are all the comparison needs; no HEAD per object).
 */
import { isDirectoryMarker, keyProblem, MAX_KEY_BYTES, type RefusedKey } from './keys.js';
import type { MediaS3 } from './s3.js';

export interface RemoteObject {
  /** Relative to the prefix. */
  key: string;
  size: number;
  etag: string;
}

export interface RemoteTree {
  objects: Map<string, RemoteObject>;
  /** Keys no local path may be made from; never downloaded, never deleted. */
  refused: RefusedKey[];
}

export async function listRemoteTree(s3: MediaS3, signal?: AbortSignal): Promise<RemoteTree> {
  const objects = new Map<string, RemoteObject>();
  const refused: RefusedKey[] = [];
  const seen = new Set<string>();
  let continuationToken: string | undefined;
  let pages = 0;
  do {
    const token = continuationToken;
    const page = await s3.request(() => s3.objects.list(s3.prefix, token), signal);
    pages++;
    let fresh = 0;
    for (const entry of page.objects) {
      const fullKey = entry.key;
      if (!fullKey.startsWith(s3.prefix)) continue;
      const key = fullKey.slice(s3.prefix.length);
      const size = Number.isSafeInteger(entry.size) && entry.size >= 0 ? entry.size : 0;
      if (key === '' || isDirectoryMarker(key, size) || seen.has(key)) continue;
      seen.add(key);
      fresh++;
      const problem = keyProblem(key) ?? (Buffer.byteLength(fullKey) > MAX_KEY_BYTES ? `longer than ${MAX_KEY_BYTES} bytes` : undefined);
      if (problem) refused.push({ key, reason: problem });
      else objects.set(key, { key, size, etag: entry.etag });
    }
    // A server that hands out a token but nothing new would otherwise be listed forever.
    if (page.continuationToken && fresh === 0 && pages > 1) throw new Error(`the listing of bucket ${s3.bucket} stopped making progress`);
    continuationToken = page.continuationToken;
  } while (continuationToken);
  return { objects, refused };
}
