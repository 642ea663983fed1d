/**
 * What uploads (upload.ts) and downloads (download.ts) share: their settings, their outcome, and
 * the size up to which a file moves whole in memory. The uploads, which need the AWS SDK, are
 * loaded only for a push: a pull does without it (see s3.ts).
 */
import { MIB, type FileDigests, type FileIdentity } from './digests.js';
import type { LocalDirectories } from './download.js';
import type { TransferWorkers } from './transfer-workers.js';

export interface TransferSettings {
  /** Files larger than this go multipart. */
  multipartThreshold: number;
  partSize: number;
  /** Parts of one file in flight at once. */
  partsInFlight: number;
  signal?: AbortSignal;
  /** Called with every chunk of bytes moved (progress). */
  onBytes: (bytes: number) => void;
  /** Directories of the local tree already created or checked in this sync (pull). */
  directories: LocalDirectories;
  /** Where large downloads are received and large uploads hashed. */
  workers: TransferWorkers;
}

export interface TransferOutcome {
  key: string;
  bytes: number;
  /** MD5 of the whole content, when known (multipart uploads are verified per part instead). */
  md5: string | undefined;
  sha256: string;
  /** The local file as it is now, and what is known of its content (for the manifest). */
  identity: FileIdentity;
  digests: FileDigests;
}

/** Read whole into memory up to this size: one read, one request, no second pass. */
export const SMALL_FILE_LIMIT = 4 * MIB;
