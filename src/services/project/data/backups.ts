/**
 * `backups list|create|restore|download`: the database copies the platform keeps per environment.
 * A download is streamed to a temporary file beside FILE and moved into place only once the
 * platform's record of the stream (bytes, sha256) matches what arrived, so FILE is never a
 * truncated dump.
 */
import { createWriteStream } from 'node:fs';
import { link, lstat, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import { DivioError, ExitCode, InvalidInputError } from '../../../core/errors.js';
import { formatBytes, formatTable } from '../../../core/io.js';
import * as routes from '../../../shared/api/routes.js';
import { dataId, type Backup, type BackupRetention, type BackupTaken, type DatabaseReplaced, type PrunedBackup } from '../../../shared/api/schemas.js';
import { DigestMeter } from '../../../shared/digest-meter.js';
import type { RemoteEnvironment } from './remote.js';

export interface BackupListing {
  app: string;
  environment: string;
  /** How many the platform keeps per environment whatever their age. */
  keep: number;
  retention: BackupRetention | null;
  backups: Backup[];
}

const REASONS: Record<Backup['reason'], string> = {
  import: 'before push/import',
  restore: 'before restore',
  release: 'before release',
  scheduled: 'scheduled',
  manual: 'manual',
};

export function describeReason(reason: Backup['reason']): string {
  return REASONS[reason] ?? reason;
}

export async function listBackups({ client, slug, environment }: RemoteEnvironment): Promise<BackupListing> {
  const answer = await client.call(routes.listBackups, { params: { slug, env: environment } });
  return { app: slug, environment, keep: answer.keep, retention: answer.retention ?? null, backups: answer.backups };
}

export async function restoreBackup({ client, slug, environment }: RemoteEnvironment, id: string): Promise<DatabaseReplaced & { app: string; restored: string }> {
  const answer = await client.call(routes.restoreBackup, { params: { slug, env: environment, id } });
  return { app: slug, restored: id, ...answer };
}

export async function createBackup({ client, slug, environment }: RemoteEnvironment): Promise<BackupTaken & { app: string }> {
  const answer = await client.call(routes.createBackup, { params: { slug, env: environment } });
  return { app: slug, ...answer };
}

export interface BackupDownload {
  app: string;
  environment: string;
  backup: string;
  file: string;
  bytes: number;
  sha256: string;
  verified: true;
}

export function defaultDownloadName(slug: string, environment: string, id: string): string {
  return `${slug}-${environment}-${id}.dump`;
}

/** Stream backup `id` into FILE (refused when it exists, unless `force`). */
export async function downloadBackup(
  { client, slug, environment }: RemoteEnvironment,
  id: string,
  options: { file?: string; force?: boolean; signal?: AbortSignal } = {},
): Promise<BackupDownload> {
  if (!dataId.safeParse(id).success) {
    throw new InvalidInputError(`"${id}" is not a backup id`, { hint: 'Backup ids are 16 hex characters; see `divio project backups list`.' });
  }
  const file = resolve(options.file ?? defaultDownloadName(slug, environment, id));
  if (!options.force && (await exists(file))) {
    throw new DivioError(`${file} already exists; nothing was written`, { exitCode: ExitCode.invalidInput, hint: 'Give another FILE, or --force to replace it.' });
  }
  const params = { slug, env: environment, id };
  const { body, headers } = await client.download(routes.downloadBackup, { params, query: {} }, { signal: options.signal });
  const transfer = dataId.safeParse(headers['x-divio-transfer']);
  if (!transfer.success) {
    body.destroy();
    throw new DivioError('The platform sent a dump without naming its transfer', { hint: 'The platform and the CLI may be different versions; update the older one.' });
  }
  const partial = join(dirname(file), `.${basename(file)}.${randomBytes(4).toString('hex')}.partial`);
  const meter = new DigestMeter();
  try {
    await pipeline(body, meter, createWriteStream(partial, { flags: 'wx', mode: 0o600 }));
    const record = await client.call(routes.getDatabaseTransfer, { params: { slug, env: environment, id: transfer.data } });
    const sha256 = meter.digest();
    if (record.state !== 'completed' || record.sha256 !== sha256 || record.bytes !== meter.bytes) {
      throw new DivioError(
        record.state !== 'completed'
          ? `The platform did not complete the dump (${record.error ?? record.state}); nothing was written`
          : `The dump arrived damaged: the platform sent ${record.bytes} bytes (sha256 ${record.sha256}), ${meter.bytes} arrived (sha256 ${sha256}); nothing was written`,
        { exitCode: ExitCode.failure, hint: 'Try again.' },
      );
    }
    if (options.force) await rename(partial, file);
    else {
      // link() fails when FILE appeared meanwhile: never replaces a file without --force.
      await link(partial, file).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'EEXIST') throw new DivioError(`${file} already exists; nothing was written`, { exitCode: ExitCode.invalidInput, hint: 'Give another FILE, or --force to replace it.' });
        throw error;
      });
      await rm(partial, { force: true });
    }
    return { app: slug, environment, backup: id, file, bytes: meter.bytes, sha256, verified: true };
  } catch (error) {
    body.destroy();
    await rm(partial, { force: true });
    if (error instanceof DivioError) throw error;
    throw new DivioError(`The download of backup ${id} failed; nothing was written: ${(error as Error).message}`, { exitCode: ExitCode.failure, hint: 'Try again.' });
  }
}

export function renderBackupTable(listing: BackupListing): string[] {
  const retention = listing.retention
    ? `(${listing.environment} keeps the newest ${listing.retention.keep}, the newest of each reason, and every backup younger than ${listing.retention.keepDays} days up to ${listing.retention.max}` +
      `${listing.retention.schedule ? `; live is backed up daily at ${listing.retention.schedule} UTC` : ''})`
    : `(${listing.environment} keeps the last ${listing.keep})`;
  if (listing.backups.length === 0) return [`No backups of ${listing.app}'s ${listing.environment} database yet.`, retention];
  const rows = listing.backups.map((b) => [b.id, formatTime(b.createdAt), describeReason(b.reason), formatBytes(b.sizeBytes)]);
  return [...formatTable(['ID', 'TAKEN', 'REASON', 'SIZE'], rows), retention];
}

/** One line per backup an operation pruned: never dropped without saying so. */
export function prunedLines(pruned: readonly PrunedBackup[] | undefined): string[] {
  return (pruned ?? []).map((b) => `Pruned backup ${b.id} (${describeReason(b.reason)}, ${formatTime(b.createdAt)}, ${formatBytes(b.sizeBytes)}): ${b.why}.`);
}

function formatTime(iso: string): string {
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}
