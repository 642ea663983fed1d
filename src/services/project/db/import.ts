/**
 * `divio project import db FILE|-`: restore a dump into the local database, atomically. The dump goes
 * into a fresh database; only when that restore fully succeeded is it swapped in place of the app's
 * database (one transaction), and the old one kept as a local snapshot (snapshots.ts). Any failure
 * leaves the app's database exactly as it was and drops the fresh one.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import { DivioError, ExitCode, InvalidInputError } from '../../../core/errors.js';
import { formatBytes, type IO } from '../../../core/io.js';
import type { LocalEnvironment } from '../local-environment.js';
import { openDump } from './dump-sniff.js';
import { restoreSqlDump } from './sql-restore.js';
import { swapInKeepingSnapshot, type Snapshot } from './snapshots.js';
import {
  driverConnection,
  dropDatabase,
  dropLeftoverDatabases,
  ident,
  openLocalDatabase,
  runSql,
  tempDatabaseName,
  type LocalDatabase,
} from './local-database.js';

export interface ImportOptions {
  /** A file path, or "-" for standard input. */
  source: string;
  stdin?: Readable;
  /** Parallel pg_restore jobs for custom-format dumps. */
  jobs?: number;
  /**
   * Restore a custom-format dump as it arrives (pg_restore reading the stream) instead of copying
   * it into the container first for a parallel restore: faster when the source is itself a
   * stream that takes time (a pull), since the restore overlaps the transfer.
   */
  streaming?: boolean;
  /** Called after the restore succeeded and before the swap; throwing leaves the database as it was. */
  beforeSwap?: (received: { bytes: number; sha256: string }) => Promise<void>;
  /** Aborts the import (as SIGINT does), leaving the database as it was. */
  signal?: AbortSignal;
  /** What the progress line calls the source (default: the dump). */
  describeSource?: string;
  /**
   * Why the database is replaced, recorded with the local snapshot that keeps the old one
   * (default "import db"); null drops the old database instead.
   */
  snapshotReason?: string | null;
}

export interface ImportResult {
  app: string;
  database: string;
  format: 'custom' | 'plain';
  compression: 'none' | 'gzip';
  bytesRead: number;
  /** sha256 of the bytes read from the source. */
  sha256: string;
  durationMs: number;
  replacedExisting: boolean;
  leftoversDropped: string[];
  /** The local snapshot keeping the database this import replaced (`divio project snapshots restore ID`). */
  snapshot: Snapshot | null;
}

/** Server settings for the restore session only: a fresh database needs no crash-safety per commit. */
const RESTORE_PGOPTIONS = '-c synchronous_commit=off -c maintenance_work_mem=128MB';

export async function importDatabase(local: LocalEnvironment, io: IO, options: ImportOptions): Promise<ImportResult> {
  const started = Date.now();
  const { input, size } = await openSource(options);
  const db = await openLocalDatabase(local);
  const leftoversDropped = await dropLeftoverDatabases(db);
  if (leftoversDropped.length > 0) io.info(`Dropped ${leftoversDropped.length} database(s) left by an interrupted import.`);

  let bytesRead = 0;
  const hash = createHash('sha256');
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytesRead += chunk.length;
      hash.update(chunk);
      done(null, chunk);
    },
  });
  input.on('error', (error) => counter.destroy(error));
  const counted = input.pipe(counter);
  const dump = await openDump(counted);

  const token = randomBytes(5).toString('hex');
  const fresh = tempDatabaseName(db.name, 'import', token);
  const describe = `${dump.format === 'custom' ? 'custom-format' : 'SQL'} dump${dump.compression === 'gzip' ? ' (gzip)' : ''}`;

  const abort = new AbortController();
  const onSignal = () => abort.abort(new DivioError('interrupted', { exitCode: 130 }));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const onAbort = () => abort.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await runSql(db, `CREATE DATABASE ${ident(fresh)} TEMPLATE template0;`);
    await io.task(`Restoring ${options.describeSource ?? `the ${describe}`} into a new database`, async (task) => {
      const timer = setInterval(() => {
        task.update(size ? `${formatBytes(bytesRead)} of ${formatBytes(size)} (${Math.floor((bytesRead / size) * 100)}%)` : formatBytes(bytesRead));
      }, 500);
      try {
        if (dump.format === 'custom' && options.streaming) await restoreCustomStream(db, fresh, dump.stream, abort.signal);
        else if (dump.format === 'custom') await restoreCustom(db, fresh, dump.stream, token, options.jobs ?? 2, abort.signal);
        else await restorePlain(db, fresh, dump.stream, abort.signal);
      } finally {
        clearInterval(timer);
      }
    });
    const sha256 = hash.digest('hex');
    await options.beforeSwap?.({ bytes: bytesRead, sha256 });
    if (abort.signal.aborted) throw abort.signal.reason;
    const reason = options.snapshotReason === undefined ? 'import db' : options.snapshotReason;
    const { replaced, snapshot } = await swapInKeepingSnapshot(db, fresh, reason, token);
    return {
      app: local.project.slug,
      database: db.name,
      format: dump.format,
      compression: dump.compression,
      bytesRead,
      sha256,
      durationMs: Date.now() - started,
      replacedExisting: replaced,
      leftoversDropped,
      snapshot,
    };
  } catch (error) {
    input.destroy();
    await dropDatabase(db, fresh).catch(() => {
      io.warn(`could not drop the temporary database ${fresh}; the next import drops it.`);
    });
    throw error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

async function openSource(options: ImportOptions): Promise<{ input: Readable; size?: number }> {
  if (options.source === '-') return { input: options.stdin ?? process.stdin };
  let info;
  try {
    info = await stat(options.source);
  } catch {
    throw new InvalidInputError(`cannot read ${options.source}: no such file`, { hint: 'Check the path, or pass - to read the dump from standard input.' });
  }
  if (!info.isFile()) {
    throw new InvalidInputError(`${options.source} is not a file`, {
      hint: 'Directory-format dumps are not supported: make a custom-format dump with `pg_dump -Fc`.',
    });
  }
  return { input: createReadStream(options.source, { highWaterMark: 1024 * 1024 }), size: info.size };
}

/**
 * Plain SQL: sent by divio itself, statement by statement (sql-restore.ts), stopping at the first
 * error; no psql reads the dump, so none of its meta-commands can run.
 */
async function restorePlain(db: LocalDatabase, target: string, sql: Readable, signal: AbortSignal): Promise<void> {
  const config = await driverConnection(db, target);
  try {
    await restoreSqlDump({ ...config, options: RESTORE_PGOPTIONS }, sql, signal);
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    if (error instanceof DivioError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ETIMEDOUT' || code === 'ECONNRESET') {
      throw new DivioError(`could not reach the local database at ${config.host}:${config.port}: ${(error as Error).message}`, {
        exitCode: ExitCode.environment,
        hint: 'Nothing was changed. Check that the db service publishes its port (`docker compose port db 5432`) and see `divio project logs db`.',
      });
    }
    if (error instanceof Error && 'severity' in error) {
      throw new InvalidInputError(`the SQL dump failed to restore: ${error.message}`, { hint: 'Nothing was changed: the local database is as it was.' });
    }
    throwStreamError(error, signal);
    throw error;
  }
}

/** Custom format, restored as it arrives (one pg_restore session), stopping at the first error. */
async function restoreCustomStream(db: LocalDatabase, target: string, dump: Readable, signal: AbortSignal): Promise<void> {
  const restore = execa(
    'docker',
    ['exec', '-i', '-e', `PGOPTIONS=${RESTORE_PGOPTIONS}`, db.containerId, 'pg_restore', '--exit-on-error', '--no-owner', '--no-acl', '-U', db.user, '-d', target],
    { stdin: 'pipe', stdout: 'ignore', stderr: 'pipe', reject: false, cancelSignal: signal },
  );
  let streamError: unknown;
  try {
    await pipeline(dump, restore.stdin!, { signal });
  } catch (error) {
    streamError = error;
  }
  const result = await restore;
  throwStreamError(streamError, signal);
  if (result.exitCode !== 0) {
    throw new InvalidInputError(`the custom-format dump failed to restore: ${lastLines(result.stderr)}`, {
      hint: 'Nothing was changed: the local database is as it was.',
    });
  }
}

/**
 * Custom format: copied into the container first, because pg_restore runs jobs in parallel only
 * from a seekable file; then restored with --exit-on-error so the first error fails the import.
 */
async function restoreCustom(db: LocalDatabase, target: string, dump: Readable, token: string, jobs: number, signal: AbortSignal): Promise<void> {
  const path = `/tmp/divio-import-${token}.dump`;
  try {
    const copy = execa('docker', ['exec', '-i', db.containerId, 'dd', `of=${path}`, 'bs=1M', 'status=none'], {
      stdin: 'pipe',
      stdout: 'ignore',
      stderr: 'pipe',
      reject: false,
      cancelSignal: signal,
    });
    let streamError: unknown;
    try {
      await pipeline(dump, copy.stdin!, { signal });
    } catch (error) {
      streamError = error;
    }
    const copied = await copy;
    throwStreamError(streamError, signal);
    if (copied.exitCode !== 0) {
      throw new DivioError(`could not copy the dump into the database container: ${lastLines(copied.stderr)}`, {
        exitCode: ExitCode.childFailed,
        hint: 'Check the free disk space of Docker (`docker system df`).',
      });
    }
    const restore = await execa(
      'docker',
      ['exec', '-e', `PGOPTIONS=${RESTORE_PGOPTIONS}`, db.containerId, 'pg_restore', '--exit-on-error', '--no-owner', '--no-acl', '-j', String(jobs), '-U', db.user, '-d', target, path],
      { stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', reject: false, cancelSignal: signal },
    );
    if (signal.aborted) throw signal.reason;
    if (restore.exitCode !== 0) {
      throw new InvalidInputError(`the custom-format dump failed to restore: ${lastLines(restore.stderr)}`, {
        hint: 'Nothing was changed: the local database is as it was. A dump cut short or made by a newer pg_dump than the server cannot be restored; export it again.',
      });
    }
  } finally {
    await execa('docker', ['exec', db.containerId, 'rm', '-f', path], { reject: false });
  }
}

function throwStreamError(error: unknown, signal: AbortSignal): void {
  if (signal.aborted) throw signal.reason;
  if (error === undefined) return;
  if (error instanceof DivioError) throw error;
  const code = (error as NodeJS.ErrnoException).code;
  // EPIPE: the restoring process exited early; its own exit status explains why.
  if (code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ERR_STREAM_DESTROYED') return;
  throw new InvalidInputError(`reading the dump failed: ${(error as Error).message}`, {
    hint: 'Nothing was changed: the local database is as it was.',
  });
}

function lastLines(text: string, count = 6): string {
  const lines = text.split('\n').filter((l) => l.trim());
  return lines.slice(-count).join('\n') || 'no error output';
}
