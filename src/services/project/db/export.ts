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

/**
 * pg_dump's output goes to `sink` through `meter`, and at the same time into a verifier that reads
 * all of it: pg_restore for the custom format (every data block is decompressed), a check of the
 * closing line for plain SQL.
 */
async function dumpAndVerify(db: LocalDatabase, format: ExportFormat, meter: Transform, sink: Writable, closeSink: boolean): Promise<void> {
  const dumpArgs = ['exec', db.containerId, 'pg_dump', '-U', db.user, '-d', db.name];
  // Level 1: most of the size win of zlib at a fraction of the default level's time.
  if (format === 'custom') dumpArgs.push('-Fc', '-Z1');
  const dump = execa('docker', dumpArgs, { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', buffer: { stdout: false, stderr: true }, reject: false });

  const verifier =
    format === 'custom'
      ? execa('docker', ['exec', '-i', db.containerId, 'pg_restore', '-f', '/dev/null'], { stdin: 'pipe', stdout: 'ignore', stderr: 'pipe', reject: false })
      : undefined;
  let tail = '';
  const trailerCheck = new Transform({
    transform(chunk: Buffer, _enc, done) {
      tail = (tail + chunk.toString('latin1')).slice(-512);
      done(null, chunk);
    },
  });

  const tee = teeTo(sink, verifier?.stdin ?? undefined, closeSink);

  const stages: (Readable | Transform)[] = [dump.stdout!];
  if (format !== 'custom') stages.push(trailerCheck);
  if (format === 'gzip') stages.push(createGzip({ level: 1 }));
  stages.push(meter);
  let streamError: unknown;
  try {
    await pipeline([...stages, tee] as unknown as [Readable, ...Transform[], Writable]);
  } catch (error) {
    streamError = error;
  }
  const dumped = await dump;
  const verified = verifier ? await verifier : undefined;
  if (dumped.exitCode !== 0) {
    throw new DivioError(`pg_dump failed: ${String(dumped.stderr).trim() || `exit code ${dumped.exitCode}`}`, {
      exitCode: ExitCode.childFailed,
      hint: 'See `divio project logs db`.',
    });
  }
  if (streamError) throw new DivioError(`writing the export failed: ${(streamError as Error).message}`, { exitCode: ExitCode.failure, hint: 'Check the free disk space.' });
  if (verified && verified.exitCode !== 0) {
    throw new DivioError(`the export did not read back as a complete dump: ${String(verified.stderr).trim()}`, {
      exitCode: ExitCode.childFailed,
      hint: 'Nothing was written under the name asked for. Try again; if it repeats, see `divio project logs db`.',
    });
  }
  if (format !== 'custom' && !tail.includes(PLAIN_TRAILER)) {
    throw new DivioError('the SQL export ended without pg_dump\'s closing line', {
      exitCode: ExitCode.childFailed,
      hint: 'Try again; see `divio project logs db`.',
    });
  }
}

/**
 * Write every chunk to `primary` and to `verifier`, honouring both one's back-pressure. The verifier
 * may exit as soon as it has read the end of the archive: from then on it is skipped, and its exit
 * status (checked by the caller) says whether what it read was whole. Errors of `primary` fail.
 */
function teeTo(primary: Writable, verifier: Writable | undefined, endPrimary: boolean): Writable {
  let verifierGone = verifier === undefined;
  const markGone = () => {
    verifierGone = true;
  };
  verifier?.once('close', markGone);
  verifier?.once('error', markGone);
  const toVerifier = (chunk: Buffer) =>
    new Promise<void>((resolveWrite) => {
      if (verifierGone || !verifier) return resolveWrite();
      const onGone = () => resolveWrite();
      verifier.once('close', onGone);
      verifier.write(chunk, () => {
        verifier.off('close', onGone);
        resolveWrite();
      });
    });
  const toPrimary = (chunk: Buffer) =>
    new Promise<void>((resolveWrite, reject) => primary.write(chunk, (error) => (error ? reject(error) : resolveWrite())));
  return new Writable({
    highWaterMark: 1024 * 1024,
    write(chunk: Buffer, _enc, done) {
      Promise.all([toPrimary(chunk), toVerifier(chunk)]).then(() => done(), done);
    },
    final(done) {
      if (verifier && !verifierGone) verifier.end();
      if (!endPrimary) return done();
      primary.once('error', done);
      primary.end(() => done());
    },
  });
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

