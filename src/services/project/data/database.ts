/**
 * `pull db` and `push db`: a custom-format dump streamed between the platform and the local
 * database, checked end to end (both sides hash the stream; the results must agree before anything
 * is replaced), and never replacing a database until the new one is complete:
 * - pull: the platform's pg_dump streams into a fresh local database (the local atomic import);
 *   the swap happens only once the platform's record of the stream matches what arrived.
 * - push: the local pg_dump streams to the platform, which restores it into a scratch database;
 *   the CLI commits with its own digest, and only then the platform swaps it in and keeps the
 *   database it replaced as a backup.
 */
import { execa } from 'execa';
import { DivioError, ExitCode } from '../../../core/errors.js';
import { formatBytes, type IO } from '../../../core/io.js';
import * as routes from '../../../shared/api/routes.js';
import { dataId, type Backup, type EnvironmentName, type PrunedBackup } from '../../../shared/api/schemas.js';
import { importDatabase } from '../db/import.js';
import type { Snapshot } from '../db/snapshots.js';
import { openLocalDatabase } from '../db/local-database.js';
import type { LocalEnvironment } from '../local-environment.js';
import { dumpCompression, ensureLocalDatabase, type RemoteEnvironment } from './remote.js';
import { DigestMeter } from '../../../shared/digest-meter.js';

export interface DatabaseTransferResult {
  app: string;
  environment: EnvironmentName;
  direction: 'pull' | 'push';
  /** The platform's id of this transfer (`GET …/database/transfers/ID`). */
  transfer: string;
  bytes: number;
  /** sha256 of the dump stream, equal on both sides. */
  sha256: string;
  verified: true;
  /** zlib level of the dump's data blocks. */
  compression: number;
  durationMs: number;
  /** push: the replaced database, now a backup on the platform (null when there was none). */
  backup?: Backup | null;
  /** push: older backups dropped to stay within the platform's retention. */
  pruned?: string[];
  /** push: the same, with what they were and why they were dropped. */
  prunedBackups?: PrunedBackup[];
}

export async function pullDatabase(
  local: LocalEnvironment,
  io: IO,
  remote: RemoteEnvironment,
  options: { signal?: AbortSignal; snapshot?: boolean } = {},
): Promise<DatabaseTransferResult & { snapshot: Snapshot | null }> {
  const started = Date.now();
  const { client, slug, environment } = remote;
  await ensureLocalDatabase(local, io);
  const compression = dumpCompression();
  const params = { slug, env: environment };
  const { body, headers } = await client.download(routes.dumpDatabase, { params, query: { compression: String(compression) } }, options);
  const transfer = dataId.safeParse(headers['x-divio-transfer']);
  if (!transfer.success) {
    body.destroy();
    throw new DivioError('The platform sent a dump without naming its transfer', {
      hint: 'The platform and the CLI may be different versions; update the older one.',
    });
  }
  const imported = await importDatabase(local, io, {
    source: '-',
    stdin: body,
    streaming: true,
    signal: options.signal,
    describeSource: `the database of ${environment}`,
    snapshotReason: options.snapshot === false ? null : `pull db ${environment}`,
    beforeSwap: async (received) => {
      const record = await client.call(routes.getDatabaseTransfer, { params: { ...params, id: transfer.data } });
      if (record.state !== 'completed') {
        throw new DivioError(`The platform did not complete the dump (${record.error ?? record.state}); the local database is as it was`, {
          exitCode: ExitCode.failure,
          hint: 'Try again.',
        });
      }
      if (record.sha256 !== received.sha256 || record.bytes !== received.bytes) {
        throw new DivioError(
          `The dump arrived damaged: the platform sent ${record.bytes} bytes (sha256 ${record.sha256}), ${received.bytes} arrived (sha256 ${received.sha256}); the local database is as it was`,
          { exitCode: ExitCode.failure, hint: 'Try again; if it repeats, check the network between here and the platform.' },
        );
      }
    },
  });
  return {
    app: slug,
    environment,
    direction: 'pull',
    transfer: transfer.data,
    bytes: imported.bytesRead,
    sha256: imported.sha256,
    verified: true,
    compression,
    durationMs: Date.now() - started,
    snapshot: imported.snapshot,
  };
}

export async function pushDatabase(local: LocalEnvironment, io: IO, remote: RemoteEnvironment, options: { signal?: AbortSignal } = {}): Promise<DatabaseTransferResult> {
  const started = Date.now();
  const { client, slug, environment } = remote;
  await ensureLocalDatabase(local, io);
  const db = await openLocalDatabase(local);
  const compression = dumpCompression();
  const params = { slug, env: environment };

  const abort = new AbortController();
  const onSignal = () => abort.abort(new DivioError('interrupted; nothing was replaced', { exitCode: 130 }));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const onAbort = () => abort.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const dump = execa('docker', ['exec', db.containerId, 'pg_dump', '--format=custom', `--compress=${compression}`, '-U', db.user, '-d', db.name], {
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: { stdout: false, stderr: true },
      reject: false,
      cancelSignal: abort.signal,
    });
    const meter = new DigestMeter();
    dump.stdout!.pipe(meter);
    // A dump that fails must not reach the platform as a clean end of stream.
    void dump.then((result) => {
      if (result.exitCode !== 0) meter.destroy(new Error(`pg_dump failed: ${String(result.stderr).trim()}`));
    });
    const uploaded = await io.task(`Sending the local database to ${environment} (restored there into a new database)`, async (task) => {
      const timer = setInterval(() => task.update(formatBytes(meter.bytes)), 500);
      try {
        return await client.upload(routes.importDatabase, { params }, meter, { signal: abort.signal });
      } finally {
        clearInterval(timer);
      }
    });
    const dumped = await dump;
    if (dumped.exitCode !== 0) {
      throw new DivioError(`pg_dump of the local database failed: ${String(dumped.stderr).trim() || `exit code ${dumped.exitCode}`}`, {
        exitCode: ExitCode.childFailed,
        hint: `Nothing was replaced on ${environment}. See \`divio project logs db\`.`,
      });
    }
    const sha256 = meter.digest();
    if (uploaded.sha256 !== sha256 || uploaded.bytes !== meter.bytes) {
      throw new DivioError(`The dump arrived damaged on the platform (${uploaded.bytes} bytes there, ${meter.bytes} sent); nothing was replaced`, {
        hint: 'Try again; if it repeats, check the network between here and the platform.',
      });
    }
    const replaced = await io.task(`Swapping the new database in on ${environment}`, () =>
      client.call(routes.commitDatabaseImport, { params: { ...params, id: uploaded.id }, body: { sha256, bytes: meter.bytes } }),
    );
    return {
      app: slug,
      environment,
      direction: 'push',
      transfer: uploaded.id,
      bytes: meter.bytes,
      sha256,
      verified: true,
      compression,
      durationMs: Date.now() - started,
      backup: replaced.backup,
      pruned: replaced.pruned,
      prunedBackups: replaced.prunedBackups,
    };
  } catch (error) {
    if (abort.signal.aborted) throw abort.signal.reason;
    throw error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

