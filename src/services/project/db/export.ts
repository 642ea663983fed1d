/**
 * `divio project export db [FILE|-]`: dump the local database (custom format by default) and read
 * the result back fully before reporting success. A file is written under a temporary name and
 * renamed when verified, so a failed export never leaves a half dump under the name asked for.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { execa } from 'execa';
import { DivioError, ExitCode } from '../../../core/errors.js';
import { formatBytes, type IO } from '../../../core/io.js';
import type { LocalEnvironment } from '../local-environment.js';
import { openLocalDatabase, type LocalDatabase } from './local-database.js';

export type ExportFormat = 'custom' | 'plain' | 'gzip';

export interface ExportOptions {
  /** A file path, "-" for standard output; default <app>-<timestamp>.dump (or .sql / .sql.gz). */
  target?: string;
  format?: ExportFormat;
  stdout?: Writable;
}

export interface ExportResult {
  app: string;
  database: string;
  format: ExportFormat;
  file: string | null;
  bytes: number;
  sha256: string;
  durationMs: number;
  verified: true;
}

const PLAIN_TRAILER = '-- PostgreSQL database dump complete';

export function defaultExportName(app: string, format: ExportFormat, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  const ext = format === 'custom' ? 'dump' : format === 'plain' ? 'sql' : 'sql.gz';
  return `${app}-${stamp}.${ext}`;
}

export async function exportDatabase(local: LocalEnvironment, io: IO, options: ExportOptions = {}): Promise<ExportResult> {
  const started = Date.now();
  const format = options.format ?? 'custom';
  const db = await openLocalDatabase(local);
  const toStdout = options.target === '-';
  const file = toStdout ? null : resolve(options.target ?? defaultExportName(local.project.slug, format));
  const partial = file ? join(dirname(file), `.${basename(file)}.${randomBytes(4).toString('hex')}.partial`) : null;

  let bytes = 0;
  const hash = createHash('sha256');
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      hash.update(chunk);
      done(null, chunk);
    },
  });
  try {
    await io.task(`Exporting the database of ${local.project.slug} (${format})`, async (task) => {
      const timer = setInterval(() => task.update(formatBytes(bytes)), 500);
      try {
        const sink: Writable = toStdout ? (options.stdout ?? process.stdout) : createWriteStream(partial!);
        await dumpAndVerify(db, format, meter, sink, !toStdout);
      } finally {
        clearInterval(timer);
      }
    });
    const sha256 = hash.digest('hex');
    if (file && partial) {
      await io.task('Reading the export back', () => verifyFile(partial, sha256, bytes));
      await rename(partial, file);
    }
    return { app: local.project.slug, database: db.name, format, file, bytes, sha256, durationMs: Date.now() - started, verified: true };
  } catch (error) {
    if (partial) await rm(partial, { force: true });
    throw error;
  }
}

/** pg_dump's output, whatever the format, into `sink` through `meter` (which counts and hashes). */
async function dumpAndVerify(db: LocalDatabase, format: ExportFormat, meter: Transform, sink: Writable, closeSink: boolean): Promise<void> {
  if (format === 'custom') await dumpCustom(db, meter, sink, closeSink);
  else await dumpPlain(db, format, meter, sink, closeSink);
}

/**
 * Custom format: pg_dump writes a file inside the db container (seekable, so the archive records data
 * offsets and restores of it run in parallel), then pg_restore reads that file fully (every data
 * block decompressed) while the same file streams out to `sink`.
 */
async function dumpCustom(db: LocalDatabase, meter: Transform, sink: Writable, closeSink: boolean): Promise<void> {
  const path = `/tmp/divio-export-${randomBytes(5).toString('hex')}.dump`;
  const exec = (args: string[]) => execa('docker', ['exec', db.containerId, ...args], { stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', reject: false });
  try {
    // Level 1: most of zlib's size win at a fraction of the default level's time.
    const dumped = await exec(['pg_dump', '-Fc', '-Z1', '-U', db.user, '-d', db.name, '-f', path]);
    if (dumped.exitCode !== 0) throw pgDumpFailed(String(dumped.stderr));
    const verifying = exec(['pg_restore', '-f', '/dev/null', path]);
    const copy = execa('docker', ['exec', db.containerId, 'cat', path], { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', buffer: { stdout: false, stderr: true }, reject: false });
    let streamError: unknown;
    try {
      await pipeline(copy.stdout!, meter, sink, { end: closeSink });
    } catch (error) {
      streamError = error;
    }
    const [copied, verified] = await Promise.all([copy, verifying]);
    if (streamError) throw writeFailed(streamError);
    if (copied.exitCode !== 0) throw new DivioError(`copying the dump out of the db container failed: ${String(copied.stderr).trim()}`, { exitCode: ExitCode.childFailed, hint: 'Try again; see `divio project logs db`.' });
    if (verified.exitCode !== 0) {
      throw new DivioError(`the export did not read back as a complete dump: ${String(verified.stderr).trim()}`, {
        exitCode: ExitCode.childFailed,
        hint: 'Nothing was written under the name asked for. Try again; if it repeats, see `divio project logs db`.',
      });
    }
  } finally {
    await execa('docker', ['exec', db.containerId, 'rm', '-f', path], { reject: false });
  }
}

/** Plain SQL (optionally gzip'd here): streamed out; complete only with pg_dump's closing line. */
async function dumpPlain(db: LocalDatabase, format: ExportFormat, meter: Transform, sink: Writable, closeSink: boolean): Promise<void> {
  const dump = execa('docker', ['exec', db.containerId, 'pg_dump', '-U', db.user, '-d', db.name], { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', buffer: { stdout: false, stderr: true }, reject: false });
  let tail = '';
  const trailerCheck = new Transform({
    transform(chunk: Buffer, _enc, done) {
      tail = (tail + chunk.toString('latin1')).slice(-512);
      done(null, chunk);
    },
  });
  const stages: Transform[] = [trailerCheck];
  if (format === 'gzip') stages.push(createGzip({ level: 1 }));
  stages.push(meter);
  let streamError: unknown;
  try {
    await pipeline([dump.stdout!, ...stages, sink] as unknown as [Readable, ...Transform[], Writable], { end: closeSink });
  } catch (error) {
    streamError = error;
  }
  const dumped = await dump;
  if (dumped.exitCode !== 0) throw pgDumpFailed(String(dumped.stderr));
  if (streamError) throw writeFailed(streamError);
  if (!tail.includes(PLAIN_TRAILER)) {
    throw new DivioError("the SQL export ended without pg_dump's closing line", { exitCode: ExitCode.childFailed, hint: 'Try again; see `divio project logs db`.' });
  }
}

function pgDumpFailed(stderr: string): DivioError {
  return new DivioError(`pg_dump failed: ${stderr.trim() || 'no error output'}`, { exitCode: ExitCode.childFailed, hint: 'See `divio project logs db`.' });
}

function writeFailed(error: unknown): DivioError {
  return new DivioError(`writing the export failed: ${(error as Error).message}`, { exitCode: ExitCode.failure, hint: 'Check the free disk space.' });
}

async function verifyFile(path: string, sha256: string, bytes: number): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  const hash = createHash('sha256');
  let size = 0;
  await pipeline(
    createReadStream(path, { highWaterMark: 1024 * 1024 }),
    new Writable({
      write(chunk: Buffer, _enc, done) {
        size += chunk.length;
        hash.update(chunk);
        done();
      },
    }),
  );
  if (size !== bytes || hash.digest('hex') !== sha256) {
    throw new DivioError('the export file on disk differs from what pg_dump wrote', {
      exitCode: ExitCode.failure,
      hint: 'The disk may be failing or full; nothing was written under the name asked for.',
    });
  }
}

