/**
 * `divio project pull media` / `push media`: copies new and changed files between data/media and
 * an environment's bucket. Incremental (size + ETag against a manifest of local digests), parallel,
 * verified with our own digests, and safe: a failed or interrupted run leaves every file on the
 * target either as it was or complete and verified, and deletes nothing unless every transfer
 * succeeded.
 */
import { createHash } from 'node:crypto';
import { lstat, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DivioError, errorMessage } from '../../../core/errors.js';
import { formatBytes, formatSeconds, type IO } from '../../../core/io.js';
import { hashFile, MIB } from './digests.js';
import { compareKeys, keyFold, type RefusedKey } from './keys.js';
import { Manifest, probeNameSemantics, scanLocalTree, type LocalTree } from './local-tree.js';
import { planSync, type Collision, type Direction, type Plan } from './plan.js';
import { startProgress, type Progress } from './progress.js';
import { listRemoteTree, type RemoteTree } from './remote-tree.js';
import { connectMediaS3, s3ErrorCode, type MediaRemote, type MediaS3 } from './s3.js';
import { downloadFile, LocalDirectories } from './download.js';
import { TransferWorkers } from './transfer-workers.js';
import type { TransferOutcome, TransferSettings } from './transfer.js';

export type { MediaRemote } from './s3.js';

export interface MediaSyncOptions {
  direction: Direction;
  /** Absolute path of data/media (created on pull if missing). */
  localDir: string;
  remote: MediaRemote;
  /** e.g. <project>/.divio/media-manifest.json: the digest cache of `localDir`. */
  manifestFile: string;
  /** Requests in flight at once (default 16). */
  concurrency?: number;
  /** Remove files that exist only on the target, if (and only if) every transfer succeeded. */
  delete?: boolean;
  /** With `delete`: refuse, before anything moves, a sync that would delete more files than this. */
  maxDelete?: number;
  signal?: AbortSignal;
  io: IO;
  /** Multipart tuning; the defaults suit S3 and the embedded store. */
  multipart?: Partial<MultipartSettings>;
}

export interface MultipartSettings {
  /**
   * Files larger than this are uploaded in parts (default 128 MiB). The embedded store assembles
   * a multipart object by copying its parts, about 0.2 s of its CPU per 100 MB, so files of common
   * media sizes (up to a few minutes of video) go in one streamed PUT.
   */
  threshold: number;
  /** Default 16 MiB (grown for files that would need more than 10,000 parts). */
  partSize: number;
  /** Parts of one file in flight at once (default 4). */
  partsInFlight: number;
}

export interface TransferredFile {
  key: string;
  bytes: number;
  /** MD5 of the content; null for multipart uploads and downloads of multipart objects verified by sha256. */
  md5: string | null;
  sha256: string;
}

export interface MediaSyncFailure {
  key: string;
  operation: 'upload' | 'download' | 'delete' | 'read';
  message: string;
  code?: string;
}

export interface MediaSyncResult {
  direction: Direction;
  /** Where files were copied from and to: the local directory and endpoint/bucket/prefix. */
  source: string;
  target: string;
  files: { transferred: number; skipped: number; deleted: number; failed: number; refused: number };
  bytes: { transferred: number };
  durationMs: number;
  /** Every file copied in this run, with the digests it was verified with. */
  transferred: TransferredFile[];
  deleted: string[];
  /** What happened to files only on the target. */
  deletion: { requested: boolean; candidates: number; performed: boolean; reason?: string };
  /**
   * sha256 over the sorted lines `KEY NUL SHA256 LF` of every file now in sync (transferred or
   * unchanged); equal trees give equal digests, whichever side computed them.
   */
  tree: { files: number; sha256: string };
  refused: RefusedKey[];
  collisions: Collision[];
  failures: MediaSyncFailure[];
  /** The signal aborted the run before it finished. */
  interrupted: boolean;
}

/** What a sync would do, for a confirmation prompt (nothing is transferred or deleted). */
export interface MediaSyncPlan {
  direction: Direction;
  source: string;
  target: string;
  transfers: { key: string; bytes: number; reason: 'new' | 'changed' }[];
  bytes: number;
  unchanged: number;
  /** Files only on the target: what `delete: true` would remove. */
  targetOnly: string[];
  refused: RefusedKey[];
  collisions: Collision[];
}

/** Thrown when anything failed or the run was interrupted; `result` is complete either way. */
export class MediaSyncError extends DivioError {
  constructor(
    message: string,
    hint: string,
    readonly result: MediaSyncResult,
  ) {
    super(message, { hint });
    this.name = 'MediaSyncError';
  }
}

const DEFAULT_CONCURRENCY = 16;
const DEFAULT_MULTIPART: MultipartSettings = { threshold: 128 * MIB, partSize: 16 * MIB, partsInFlight: 4 };
const HASH_CONCURRENCY = 8;
const DELETE_BATCH = 1000;
/** A sync that would delete more than this many files is refused unless the caller allows more. */
export const DEFAULT_MAX_DELETE = 100;
/** Refusals and collisions printed as warnings; the rest are in the result (--json). */
const WARNINGS_SHOWN = 10;

export async function planMediaSync(options: MediaSyncOptions): Promise<MediaSyncPlan> {
  const session = openSession(options);
  try {
    const { plan, manifest } = await prepare(session);
    // Digests computed for the comparison spare the sync that follows a second read.
    await manifest.save();
    return {
      ...session.ends,
      direction: options.direction,
      transfers: plan.transfers.map((transfer) => ({ key: transfer.key, bytes: transfer.size, reason: transfer.reason })),
      bytes: plan.transfers.reduce((sum, transfer) => sum + transfer.size, 0),
      unchanged: plan.inSync.length,
      targetOnly: plan.targetOnly,
      refused: plan.refused,
      collisions: plan.collisions,
    };
  } finally {
    session.s3.destroy();
  }
}

export async function syncMedia(options: MediaSyncOptions): Promise<MediaSyncResult> {
  const started = Date.now();
  const session = openSession(options);
  let progress: Progress | undefined;
  try {
    const { plan, local, manifest, readFailures } = await prepare(session).catch((error: unknown) => {
      throw failedBeforeTransfers(session, error, Date.now() - started);
    });
    reportRefusals(options.io, plan);
    const verb = options.direction === 'push' ? 'Pushing' : 'Pulling';
    const totalBytes = plan.transfers.reduce((sum, transfer) => sum + transfer.size, 0);
    progress = plan.transfers.length > 0 ? startProgress(options.io, verb, { files: plan.transfers.length, bytes: totalBytes }) : undefined;

    const outcomes: TransferOutcome[] = [];
    const failures = [...readFailures];
    await runTransfers(session, plan, local, progress, outcomes, failures);
    progress?.stop();
    for (const outcome of outcomes) manifest.remember(outcome.key, outcome.identity, outcome.digests);

    const interrupted = options.signal?.aborted ?? false;
    const deletion = await runDeletion(session, plan, local, failures, interrupted);
    const gone = new Set(deletion.deleted);
    const present = options.direction === 'pull' ? [...local.files.keys(), ...outcomes.map((outcome) => outcome.key)] : [...local.files.keys()];
    manifest.retainOnly(new Set(present.filter((key) => !gone.has(key))));
    await manifest.save();

    const result = buildResult(session, plan, local, outcomes, failures, deletion, interrupted, Date.now() - started);
    report(options.io, result);
    if (interrupted) {
      throw new MediaSyncError(
        `media ${options.direction} interrupted after ${result.files.transferred} of ${plan.transfers.length} file(s)`,
        'Nothing half-copied is left under a real name. Run the same command again: files already copied are skipped.',
        result,
      );
    }
    if (failures.length > 0) {
      const first = failures[0] as MediaSyncFailure;
      const copying = failures.filter((failure) => failure.operation !== 'delete').length;
      const what = copying > 0 ? `${copying} file(s) failed to ${options.direction === 'push' ? 'upload' : 'download'}` : `${failures.length} file(s) could not be deleted`;
      throw new MediaSyncError(
        `${what}; first: ${first.key}: ${first.message}`,
        `${deletion.requested && !deletion.performed ? 'Nothing was deleted. ' : ''}Fix the cause and run the same command again: files already copied are skipped.`,
        result,
      );
    }
    return result;
  } finally {
    progress?.stop();
    session.s3.destroy();
  }
}

// ---------------------------------------------------------------------------------------------

interface Session {
  options: MediaSyncOptions;
  s3: MediaS3;
  multipart: MultipartSettings;
  concurrency: number;
  ends: { source: string; target: string };
}

function openSession(options: MediaSyncOptions): Session {
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? DEFAULT_CONCURRENCY));
  if (options.remote.prefix !== '' && !options.remote.prefix.endsWith('/')) {
    throw new DivioError(`the media prefix "${options.remote.prefix}" must be empty or end with "/"`);
  }
  const remote = `${options.remote.endpoint.replace(/\/$/, '')}/${options.remote.bucket}/${options.remote.prefix}`;
  return {
    options,
    s3: connectMediaS3(options.remote, concurrency, options.signal),
    multipart: { ...DEFAULT_MULTIPART, ...options.multipart },
    concurrency,
    ends: options.direction === 'push' ? { source: options.localDir, target: remote } : { source: remote, target: options.localDir },
  };
}

interface Prepared {
  plan: Plan;
  local: LocalTree;
  remote: RemoteTree;
  manifest: Manifest;
  readFailures: MediaSyncFailure[];
}

/** Scan and list side by side, then plan; files whose digests the comparison needs are hashed once. */
async function prepare(session: Session): Promise<Prepared> {
  const { options, s3 } = session;
  const signal = options.signal;
  if (options.direction === 'push' && !(await isDirectory(options.localDir))) {
    throw new DivioError(`there is no media to push: ${options.localDir} is not a directory`, {
      hint: 'Media lives in data/media of the project; pull it first or create the directory.',
    });
  }
  const semantics = options.direction === 'pull' ? await probeNameSemantics(options.localDir) : undefined;
  const manifest = await Manifest.load(options.manifestFile, options.localDir);
  const [local, remote] = await Promise.all([scanLocalTree(options.localDir, manifest, signal), listRemoteTree(s3, signal).catch(describeS3Failure(session))]);
  const fold = semantics ? keyFold(semantics) : undefined;
  const input = { direction: options.direction, local, remote, partSize: session.multipart.partSize, fold };

  let plan = planSync(input);
  const readFailures: MediaSyncFailure[] = [];
  // Digests of files that changed while they were read describe nothing worth remembering.
  const volatile = new Set<string>();
  if (plan.needDigests.length > 0) {
    await forEachLimited(plan.needDigests, HASH_CONCURRENCY, async (need) => {
      const file = local.files.get(need.key);
      if (!file) return;
      try {
        const hashed = await hashFile(file.path, { md5: need.md5, partSizes: need.partSizes, signal });
        file.digests = { ...file.digests, ...hashed.digests, etags: { ...file.digests?.etags, ...hashed.digests.etags } };
        const { identity } = hashed;
        if (!hashed.stable || identity.size !== file.size || identity.mtimeMs !== file.mtimeMs || identity.ino !== file.ino) volatile.add(file.key);
      } catch (error) {
        signal?.throwIfAborted();
        // The comparison cannot succeed: the file is transferred (on push, it fails there).
        file.unreadable = true;
        volatile.add(file.key);
        if (options.direction === 'push') readFailures.push({ key: file.key, operation: 'read', message: errorMessage(error) });
      }
    });
    plan = planSync(input);
    // Whatever is still undecided is copied rather than assumed equal.
    for (const need of plan.needDigests) {
      const file = local.files.get(need.key);
      const object = remote.objects.get(need.key);
      plan.transfers.push({ key: need.key, size: (options.direction === 'push' ? file?.size : object?.size) ?? 0, reason: 'changed', local: file, remote: object });
    }
    plan.transfers.sort((a, b) => b.size - a.size || compareKeys(a.key, b.key));
    plan.needDigests = [];
  }
  for (const file of local.files.values()) {
    if (file.digests?.sha256 && !volatile.has(file.key)) manifest.remember(file.key, file, file.digests);
  }
  if (readFailures.length > 0) {
    const failed = new Set(readFailures.map((failure) => failure.key));
    plan.transfers = plan.transfers.filter((transfer) => !failed.has(transfer.key));
  }
  checkDeletion(session, plan, options.direction === 'push' ? local.files.size : remote.objects.size);
  return { plan, local, remote, manifest, readFailures };
}

/**
 * The habits that empty a bucket by accident: `--delete` from an empty or missing tree, or from
 * the wrong directory. Refused while nothing has moved yet, naming the count.
 */
function checkDeletion(session: Session, plan: Plan, sourceFiles: number): void {
  const { options, ends } = session;
  const count = plan.targetOnly.length;
  if (!options.delete || count === 0) return;
  if (sourceFiles === 0) {
    throw new DivioError(`refusing --delete: ${ends.source} is empty, so every one of the ${count} file(s) on ${ends.target} would be deleted`, {
      hint: 'Nothing was copied or deleted. Check you are in the right project and that its media is there; without --delete nothing is removed.',
    });
  }
  const limit = options.maxDelete ?? DEFAULT_MAX_DELETE;
  if (count > limit) {
    throw new DivioError(`refusing --delete: it would delete ${count} file(s) on ${ends.target}, more than --max-delete ${limit}`, {
      hint: `Nothing was copied or deleted. If ${count} deletions are what you mean, run it again with --max-delete ${count}.`,
    });
  }
}

async function runTransfers(
  session: Session,
  plan: Plan,
  local: LocalTree,
  progress: Progress | undefined,
  outcomes: TransferOutcome[],
  failures: MediaSyncFailure[],
): Promise<void> {
  // A no-change sync loads nothing more (the upload path needs the AWS SDK: ~0.1 s to load).
  if (plan.transfers.length === 0) return;
  const { options, s3, multipart } = session;
  const settings: TransferSettings = {
    multipartThreshold: multipart.threshold,
    partSize: multipart.partSize,
    partsInFlight: multipart.partsInFlight,
    signal: options.signal,
    onBytes: (bytes) => progress?.bytes(bytes),
    directories: new LocalDirectories(options.localDir),
    workers: new TransferWorkers(),
  };
  // Uploads need the AWS SDK; a pull never loads it (see s3.ts).
  const upload = options.direction === 'push' ? (await import('./upload.js')).uploadFile : undefined;
  const run = async (transfer: Plan['transfers'][number]) => {
    if (options.signal?.aborted) return;
    try {
      const outcome = upload
        ? await upload(s3, local.files.get(transfer.key) ?? (transfer.local as NonNullable<typeof transfer.local>), settings)
        : await downloadFile(s3, transfer.remote as NonNullable<typeof transfer.remote>, settings);
      outcomes.push(outcome);
    } catch (error) {
      if (options.signal?.aborted) return;
      failures.push({
        key: transfer.key,
        operation: options.direction === 'push' ? 'upload' : 'download',
        message: describeError(error),
        ...(s3ErrorCode(error) ? { code: s3ErrorCode(error) } : {}),
      });
    } finally {
      progress?.fileDone();
    }
  };
  try {
    await forEachLimited(plan.transfers, session.concurrency, run);
  } finally {
    await settings.workers.close();
  }
}

interface DeletionOutcome {
  requested: boolean;
  performed: boolean;
  reason?: string;
  deleted: string[];
}

async function runDeletion(
  session: Session,
  plan: Plan,
  local: LocalTree,
  failures: MediaSyncFailure[],
  interrupted: boolean,
): Promise<DeletionOutcome> {
  const { options } = session;
  const requested = options.delete === true;
  const candidates = plan.targetOnly;
  if (!requested || candidates.length === 0) return { requested, performed: false, deleted: [] };
  if (interrupted) return { requested, performed: false, reason: 'the sync was interrupted', deleted: [] };
  if (failures.length > 0) {
    return { requested, performed: false, reason: `${failures.length} transfer(s) failed, so no file was deleted`, deleted: [] };
  }
  const deleted = options.direction === 'push' ? await deleteRemote(session, candidates, failures) : await deleteLocal(options.localDir, local, candidates, failures);
  return { requested, performed: true, deleted };
}

async function deleteRemote(session: Session, keys: string[], failures: MediaSyncFailure[]): Promise<string[]> {
  const { s3, options } = session;
  const [{ DeleteObjectsCommand }, { fast }] = await Promise.all([import('@aws-sdk/client-s3'), s3.sdk()]);
  const deleted: string[] = [];
  for (let start = 0; start < keys.length; start += DELETE_BATCH) {
    const batch = keys.slice(start, start + DELETE_BATCH);
    try {
      const response = await s3.request(
        () => fast.send(new DeleteObjectsCommand({ Bucket: s3.bucket, Delete: { Objects: batch.map((key) => ({ Key: s3.prefix + key })), Quiet: true } })),
        options.signal,
      );
      const errors = new Map((response.Errors ?? []).map((error) => [error.Key?.slice(s3.prefix.length) ?? '', error]));
      for (const key of batch) {
        const error = errors.get(key);
        if (error) failures.push({ key, operation: 'delete', message: error.Message ?? error.Code ?? 'not deleted', code: error.Code });
        else deleted.push(key);
      }
    } catch (error) {
      for (const key of batch) failures.push({ key, operation: 'delete', message: describeError(error) });
    }
  }
  return deleted;
}

async function deleteLocal(root: string, local: LocalTree, keys: string[], failures: MediaSyncFailure[]): Promise<string[]> {
  const deleted: string[] = [];
  const emptied = new Set<string>();
  for (const key of keys) {
    const file = local.files.get(key);
    if (!file) continue;
    try {
      // Only the regular file that was scanned; whatever replaced it since is left alone.
      const info = await lstat(file.path);
      if (!info.isFile() || info.ino !== file.ino) throw new Error('the file was replaced since it was scanned; left alone');
      await unlink(file.path);
      deleted.push(key);
      for (let directory = dirname(file.path); directory.startsWith(`${root}/`); directory = dirname(directory)) emptied.add(directory);
    } catch (error) {
      failures.push({ key, operation: 'delete', message: errorMessage(error) });
    }
  }
  // Directories left empty by the deletions go too (deepest first); any other stays.
  for (const directory of [...emptied].sort((a, b) => b.length - a.length)) await rmdir(directory).catch(() => undefined);
  return deleted;
}

function buildResult(
  session: Session,
  plan: Plan,
  local: LocalTree,
  outcomes: TransferOutcome[],
  failures: MediaSyncFailure[],
  deletion: DeletionOutcome,
  interrupted: boolean,
  durationMs: number,
): MediaSyncResult {
  const transferred = outcomes
    .map((outcome) => ({ key: outcome.key, bytes: outcome.bytes, md5: outcome.md5 ?? null, sha256: outcome.sha256 }))
    .sort((a, b) => compareKeys(a.key, b.key));
  const inSync = new Map<string, string>();
  for (const key of plan.inSync) inSync.set(key, local.files.get(key)?.digests?.sha256 ?? '');
  for (const file of transferred) inSync.set(file.key, file.sha256);
  const lines = [...inSync.entries()].sort(([a], [b]) => compareKeys(a, b)).map(([key, sha256]) => `${key}\0${sha256}\n`);
  const tree = { files: lines.length, sha256: createHash('sha256').update(lines.join('')).digest('hex') };
  return {
    direction: session.options.direction,
    ...session.ends,
    files: {
      transferred: transferred.length,
      skipped: plan.inSync.length,
      deleted: deletion.deleted.length,
      failed: new Set(failures.map((failure) => failure.key)).size,
      refused: plan.refused.length,
    },
    bytes: { transferred: transferred.reduce((sum, file) => sum + file.bytes, 0) },
    durationMs,
    transferred,
    deleted: deletion.deleted,
    deletion: {
      requested: deletion.requested,
      candidates: plan.targetOnly.length,
      performed: deletion.performed,
      ...(deletion.reason ? { reason: deletion.reason } : {}),
    },
    tree,
    refused: plan.refused,
    collisions: plan.collisions,
    failures,
    interrupted,
  };
}

/** Listing, scanning or hashing failed (or was interrupted): nothing was copied or deleted. */
function failedBeforeTransfers(session: Session, error: unknown, durationMs: number): MediaSyncError {
  const empty: Plan = { direction: session.options.direction, transfers: [], inSync: [], targetOnly: [], refused: [], collisions: [], needDigests: [] };
  const local: LocalTree = { root: session.options.localDir, files: new Map(), directories: new Set(), obstacles: new Map(), invalid: [], abandonedRemoved: 0 };
  const interrupted = session.options.signal?.aborted ?? false;
  const failures: MediaSyncFailure[] = interrupted ? [] : [{ key: '', operation: session.options.direction === 'push' ? 'read' : 'download', message: errorMessage(error) }];
  const result = buildResult(session, empty, local, [], failures, { requested: session.options.delete === true, performed: false, deleted: [] }, interrupted, durationMs);
  if (interrupted) return new MediaSyncError(`media ${session.options.direction} interrupted before any file was copied`, 'Nothing was changed.', result);
  return new MediaSyncError(errorMessage(error), error instanceof DivioError && error.hint ? error.hint : 'Nothing was copied or deleted.', result);
}

function reportRefusals(io: IO, plan: Plan): void {
  for (const refused of plan.refused.slice(0, WARNINGS_SHOWN)) io.warn(`skipped ${JSON.stringify(refused.key)}: ${refused.reason}`);
  if (plan.refused.length > WARNINGS_SHOWN) io.warn(`... and ${plan.refused.length - WARNINGS_SHOWN} more skipped name(s) (see --json)`);
  for (const collision of plan.collisions.slice(0, WARNINGS_SHOWN)) {
    io.warn(`not copied: ${collision.keys.map((key) => JSON.stringify(key)).join(', ')} would be one local path (${collision.reason})`);
  }
  if (plan.collisions.length > WARNINGS_SHOWN) io.warn(`... and ${plan.collisions.length - WARNINGS_SHOWN} more collision(s) (see --json)`);
}

function report(io: IO, result: MediaSyncResult): void {
  const verb = result.direction === 'push' ? 'Pushed' : 'Pulled';
  const parts = [`${verb} ${result.files.transferred} file(s) (${formatBytes(result.bytes.transferred)}) in ${formatSeconds(result.durationMs)}`, `${result.files.skipped} unchanged`];
  if (result.files.deleted > 0) parts.push(`${result.files.deleted} deleted`);
  if (result.files.failed > 0) parts.push(`${result.files.failed} failed`);
  if (result.files.refused > 0) parts.push(`${result.files.refused} skipped`);
  io.info(parts.join(', '));
  if (result.deletion.requested && !result.deletion.performed && result.deletion.reason) {
    io.warn(`${result.deletion.candidates} file(s) only on the target were kept: ${result.deletion.reason}`);
  } else if (!result.deletion.requested && result.deletion.candidates > 0) {
    io.info(`${result.deletion.candidates} file(s) exist only on the target and were kept (--delete removes them)`);
  }
}

function describeError(error: unknown): string {
  const code = s3ErrorCode(error);
  const message = errorMessage(error);
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}

/** The listing is the first request: its failure usually means wrong endpoint or credentials. */
function describeS3Failure(session: Session): (error: unknown) => never {
  return (error) => {
    session.options.signal?.throwIfAborted();
    const code = s3ErrorCode(error);
    const where = `${session.options.remote.endpoint} bucket ${session.options.remote.bucket}`;
    const hint =
      code === 'AccessDenied' || code === 'InvalidAccessKeyId' || code === 'SignatureDoesNotMatch' || code === 'ExpiredToken'
        ? 'The media credentials were refused: log in again, or check that the environment exists.'
        : 'Check that the platform is running and reachable (divio doctor).';
    throw new DivioError(`cannot list media at ${where}: ${describeError(error)}`, { hint, cause: error });
  };
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    // data/media itself may be a symlink the user made (to a bigger disk); nothing below it may.
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Runs `work` over `items` with at most `limit` at a time; resolves when all are done. */
async function forEachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
