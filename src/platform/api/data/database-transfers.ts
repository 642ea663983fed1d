/**
 * Databases in and out of environments, without ever losing one:
 * - dump: pg_dump (custom format, the cluster's major version) streamed to the client; the transfer
 *   records the stream's byte count and sha256 before the response ends, so the client can compare.
 * - import: a dump streamed in is restored into a scratch database while it arrives; nothing else
 *   changes until the client commits with its own digest of what it sent. Only then the scratch
 *   database is swapped in, and the database it replaces is kept as a backup.
 * - restore: a backup is copied and swapped in the same way (the replaced database kept too).
 * A failure at any point, the client going away, or a platform restart leaves the environment's
 * database as it was; scratch databases are dropped on failure, at the next import, and at start.
 *
 * pg_dump and pg_restore connect as the environment's own role, never as the admin: a dump is
 * the tenant's SQL (a CHECK constraint, a default, a trigger can run code while rows are copied),
 * and as the admin it could `RESET ROLE` and do anything. As the role it can do what the app can.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { execa, type ResultPromise } from 'execa';
import type { EnvironmentRow } from '../store.js';
import { ApiError } from '../errors.js';
import { BACKUP_PREFIX, ClusterDatabases, SCRATCH_PREFIX, backupName, scratchName } from './cluster-databases.js';
import { DataStore, type BackupRow, type TransferRow } from './data-store.js';
import { backupsToPrune, type RetentionPolicy } from './backup-retention.js';
import { asRole, connectionArgs, connectionEnv, connectionOf, pgToolPath, type PgConnection } from './pg-tools.js';
import { DigestMeter } from '../../../shared/digest-meter.js';

export interface DatabaseTransfersDeps {
  adminUrl: string;
  store: DataStore;
  cluster: ClusterDatabases;
  retention: RetentionPolicy;
  log: (line: string) => void;
  /** The clock retention ages backups by (tests set it). */
  now?: () => Date;
  /** Where the pg tools live (tests point elsewhere); default /usr/lib/postgresql. */
  toolsRoot?: string;
}

/** A backup an operation dropped, and why (the client is told: nothing is pruned silently). */
export interface PrunedBackupRow extends BackupRow {
  why: string;
}

export interface Replaced {
  transfer: TransferRow;
  backup: BackupRow | null;
  pruned: PrunedBackupRow[];
}

export interface Taken {
  transfer: TransferRow;
  backup: BackupRow;
  pruned: PrunedBackupRow[];
}

/** Reasons for a backup that copies the database in place (the others keep a database an operation replaced). */
export type CopyReason = 'scheduled' | 'manual' | 'release';

/** Session settings for restores into a scratch database: nothing there needs crash safety per commit. */
const RESTORE_PGOPTIONS = '-c synchronous_commit=off -c maintenance_work_mem=256MB';
const RESTARTED = 'the platform restarted during this transfer';
/** How often to look for the restore's own session while the scratch database admits the role. */
const ADMIT_POLL_MS = 50;

export class DatabaseTransfers {
  /** The cluster's host and port (from the admin URL); the user and password are always the environment's. */
  private readonly cluster: PgConnection;
  /** Transfers this process is working on: an open row not in here was abandoned. */
  private readonly active = new Set<string>();

  constructor(private readonly deps: DatabaseTransfersDeps) {
    this.cluster = connectionOf(deps.adminUrl);
  }

  /** Stream `env`'s database to `res` as a custom-format dump (data blocks at zlib `level`). */
  async dump(env: EnvironmentRow, res: ServerResponse, level: number): Promise<void> {
    const pgDump = await this.tool('pg_dump');
    const id = newId();
    await this.deps.store.insertTransfer({ id, environmentId: env.id, kind: 'dump', state: 'running', scratchDb: null });
    this.active.add(id);
    try {
      await this.streamDump(pgDump, id, env, env.db_name, res, level);
    } finally {
      this.active.delete(id);
    }
  }

  /**
   * Stream backup `backupId` to `res` as a custom-format dump. A backup takes no connections, so
   * it is copied into a scratch database that the environment's role may open, dumped from there
   * as that role (like any dump), and the copy dropped.
   */
  async dumpBackup(env: EnvironmentRow, backupId: string, res: ServerResponse, level: number): Promise<void> {
    const backup = await this.deps.store.backup(env.id, backupId);
    if (!backup) throw new ApiError(404, 'not_found', `Backup ${backupId} not found`);
    const pgDump = await this.tool('pg_dump');
    const id = newId();
    const scratch = scratchName(id);
    await this.deps.store.insertTransfer({ id, environmentId: env.id, kind: 'dump', state: 'running', scratchDb: scratch });
    this.active.add(id);
    try {
      try {
        await this.deps.cluster.cloneInto(backup.database, scratch);
        await this.deps.cluster.allowConnections(scratch);
        await this.deps.cluster.admit(scratch, env.db_role);
      } catch (error) {
        await this.fail(id, describe(error));
        throw new ApiError(503, 'dump_failed', `The backup could not be copied for the dump: ${describe(error)}`, { hint: 'Try again.' });
      }
      await this.streamDump(pgDump, id, env, scratch, res, level);
    } finally {
      this.active.delete(id);
      await this.deps.cluster.drop(scratch).catch((error: unknown) => this.deps.log(`could not drop ${scratch}: ${describe(error)}; the next start does`));
    }
  }

  private async streamDump(pgDump: string, id: string, env: EnvironmentRow, database: string, res: ServerResponse, level: number): Promise<void> {
    const connection = this.roleOf(env);
    const child = execa(pgDump, ['--format=custom', `--compress=${level}`, ...connectionArgs(connection, database)], {
      env: connectionEnv(connection),
      extendEnv: false,
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: { stdout: false, stderr: true },
      reject: false,
    });
    // Until pg_dump has written something, a failure can still be an ordinary error response.
    const started = await firstOutputOrExit(child);
    if (!started) {
      const result = await child;
      const reason = lastLines(String(result.stderr)) || `pg_dump exited with ${result.exitCode}`;
      await this.fail(id, reason);
      throw new ApiError(503, 'dump_failed', `The database could not be dumped: ${reason}`, { hint: 'Try again; the operator can check `divio platform status`.' });
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'no-store', 'x-divio-transfer': id });
    const meter = new DigestMeter();
    let clientGone = false;
    res.once('close', () => {
      if (!res.writableFinished) {
        clientGone = true;
        child.kill();
      }
    });
    let streamError: unknown;
    try {
      await pipeline(child.stdout!, meter, res, { end: false });
    } catch (error) {
      streamError = error;
    }
    const result = await child;
    if (clientGone || streamError || result.exitCode !== 0) {
      const reason = clientGone
        ? 'the client went away before the dump was complete'
        : result.exitCode !== 0
          ? lastLines(String(result.stderr)) || `pg_dump exited with ${result.exitCode}`
          : `sending the dump failed: ${(streamError as Error).message}`;
      await this.fail(id, reason);
      // Cut the chunked response short: the client must see an incomplete stream, never a clean end.
      res.destroy();
      return;
    }
    // Recorded before the response ends, so a client that saw the end can always read the digest.
    await this.deps.store.advance(id, ['running'], { state: 'completed', bytes: meter.bytes, sha256: meter.digest() });
    res.end();
  }

  /**
   * Take a backup of `env`'s database where it is: pg_dump piped into pg_restore (both as the
   * environment's role, like every dump and restore) into a scratch database, which then becomes
   * the backup. pg_dump reads one snapshot, so the copy is consistent while the app keeps writing.
   * Holds the environment's import slot: a swap meanwhile would end pg_dump's session.
   */
  async takeBackup(env: EnvironmentRow, reason: CopyReason): Promise<Taken> {
    const pgDump = await this.tool('pg_dump');
    const pgRestore = await this.tool('pg_restore');
    await this.sweepAbandoned(env);
    const { store, cluster } = this.deps;
    const id = newId();
    const scratch = scratchName(id);
    const row = await store.insertTransfer({ id, environmentId: env.id, kind: 'backup', state: 'running', scratchDb: scratch });
    if (!row) throw importInProgress(env);
    this.active.add(id);
    try {
      await cluster.createScratch(scratch, env.db_role);
      const connection = this.roleOf(env);
      const tag = `divio-restore-${randomBytes(12).toString('hex')}`;
      await cluster.admit(scratch, env.db_role);
      const restore = execa(pgRestore, ['--exit-on-error', '--no-owner', '--no-acl', ...connectionArgs(connection, scratch)], {
        env: connectionEnv(connection, { PGOPTIONS: RESTORE_PGOPTIONS, PGAPPNAME: tag }),
        extendEnv: false,
        stdin: 'pipe',
        stdout: 'ignore',
        stderr: 'pipe',
        reject: false,
      });
      const intruders = this.admitOnlyRestore(scratch, env.db_role, tag, restore);
      intruders.catch(() => undefined);
      const dump = execa(pgDump, ['--format=custom', '--compress=0', ...connectionArgs(connection, env.db_name)], {
        env: connectionEnv(connection),
        extendEnv: false,
        stdin: 'ignore',
        stdout: 'pipe',
        stderr: 'pipe',
        buffer: { stdout: false, stderr: true },
        reject: false,
      });
      // Counts the bytes copied, for the transfer's record.
      const meter = new DigestMeter();
      restore.stdin!.on('error', () => undefined);
      // pg_restore stopping early must not leave pg_dump blocked on a full pipe.
      void restore.then((result) => {
        if (result.exitCode !== 0) dump.kill();
      });
      dump.stdout!.pipe(meter).pipe(restore.stdin!);
      const [dumped, restored] = await Promise.all([dump, restore]);
      const intruded = await intruders;
      if (intruded || restored.exitCode !== 0 || dumped.exitCode !== 0) {
        const why = intruded
          ? "another session connected to the backup's scratch database"
          : dumped.exitCode !== 0 && String(dumped.stderr).trim()
            ? lastLines(String(dumped.stderr))
            : lastLines(String(restored.stderr)) || `pg_dump exited with ${dumped.exitCode}, pg_restore with ${restored.exitCode}`;
        await this.discard(id, scratch, why);
        throw new ApiError(503, 'backup_failed', `The backup of the ${env.name} database failed; nothing changed: ${why}`, { hint: 'Try again.' });
      }
      const kept = backupName(id);
      await cluster.keepAsBackup(scratch, kept);
      await store.advance(id, ['running'], { state: 'running', bytes: meter.bytes });
      const done = await store.completeWithBackup(id, { id, environmentId: env.id, database: kept, reason, sizeBytes: await cluster.sizeOf(kept) });
      const pruned = await this.prune(env);
      return { transfer: done.transfer, backup: done.backup!, pruned };
    } catch (error) {
      if (!(error instanceof ApiError)) await this.discard(id, scratch, describe(error)).catch(() => undefined);
      throw error;
    } finally {
      this.active.delete(id);
    }
  }

  /** Restore the dump in `req`'s body into a scratch database; it waits there for `commit`. */
  async receive(env: EnvironmentRow, req: IncomingMessage): Promise<TransferRow> {
    const pgRestore = await this.tool('pg_restore');
    await this.sweepAbandoned(env);
    const id = newId();
    const scratch = scratchName(id);
    const row = await this.deps.store.insertTransfer({ id, environmentId: env.id, kind: 'import', state: 'running', scratchDb: scratch });
    if (!row) throw importInProgress(env);
    this.active.add(id);
    try {
      await this.deps.cluster.createScratch(scratch, env.db_role);
      const connection = this.roleOf(env);
      // Names the restore's session among any others of the role; only this process knows it.
      const tag = `divio-restore-${randomBytes(12).toString('hex')}`;
      await this.deps.cluster.admit(scratch, env.db_role);
      const child = execa(
        pgRestore,
        ['--exit-on-error', '--no-owner', '--no-acl', ...connectionArgs(connection, scratch)],
        {
          env: connectionEnv(connection, { PGOPTIONS: RESTORE_PGOPTIONS, PGAPPNAME: tag }),
          extendEnv: false,
          stdin: 'pipe',
          stdout: 'ignore',
          stderr: 'pipe',
          reject: false,
        },
      );
      const meter = new DigestMeter();
      const stdin = child.stdin!;
      // pg_restore stopping at an error closes its input; its exit code and output say why.
      stdin.on('error', () => undefined);
      let clientGone = false;
      req.once('close', () => {
        if (!req.complete) {
          clientGone = true;
          child.kill();
        }
      });
      const intruders = this.admitOnlyRestore(scratch, env.db_role, tag, child);
      // Awaited below; a rejection meanwhile must not count as unhandled.
      intruders.catch(() => undefined);
      req.pipe(meter).pipe(stdin);
      const result = await child;
      const intruded = await intruders;
      if (clientGone || intruded || result.exitCode !== 0) {
        const reason = clientGone
          ? 'the upload ended before the dump was complete'
          : intruded
            ? "another session connected to the import's scratch database"
            : lastLines(String(result.stderr)) || `pg_restore exited with ${result.exitCode}`;
        await this.discard(id, scratch, reason);
        // The rest of the body is read and dropped, so the client gets this answer, not a reset.
        if (!clientGone) await drain(req, meter);
        if (intruded) {
          throw new ApiError(409, 'conflict', 'Another session connected to the database this import was being restored into; nothing changed', {
            hint: 'Only the platform may connect there while a dump is restored: try again.',
          });
        }
        throw new ApiError(422, 'restore_failed', `The dump did not restore; nothing changed: ${reason}`, {
          hint: 'Make the dump again (`divio project export db`) and check it restores locally (`divio project import db`).',
        });
      }
      const restored = await this.deps.store.advance(id, ['running'], { state: 'restored', bytes: meter.bytes, sha256: meter.digest() });
      if (!restored) throw new ApiError(409, 'conflict', 'The import was cancelled while it was restored');
      return restored;
    } catch (error) {
      if (!(error instanceof ApiError)) await this.discard(id, scratch, describe(error)).catch(() => undefined);
      throw error;
    } finally {
      this.active.delete(id);
    }
  }

  /** Swap a restored import in, if the client's digest of what it sent matches what arrived. */
  async commit(env: EnvironmentRow, id: string, claim: { sha256: string; bytes: number }): Promise<Replaced> {
    const row = await this.deps.store.transfer(env.id, id);
    if (!row || row.kind !== 'import') throw new ApiError(404, 'not_found', 'Import not found');
    if (row.state !== 'restored') throw new ApiError(409, 'conflict', `The import is ${row.state}, not waiting for a commit`);
    if (row.sha256 !== claim.sha256 || Number(row.bytes) !== claim.bytes) {
      await this.discard(id, row.scratch_db, 'the digests of what was sent and what arrived differ');
      throw new ApiError(409, 'digest_mismatch', `What arrived (${row.bytes} bytes, sha256 ${row.sha256}) is not what was sent (${claim.bytes} bytes, sha256 ${claim.sha256}); nothing changed`, {
        hint: 'Try again: the dump was damaged on the way.',
      });
    }
    const claimed = await this.deps.store.advance(id, ['restored'], { state: 'swapping' });
    if (!claimed) throw new ApiError(409, 'conflict', 'The import is no longer waiting for a commit');
    this.active.add(id);
    try {
      return await this.swapIn(env, claimed, 'import');
    } finally {
      this.active.delete(id);
    }
  }

  /** Put a copy of backup `backupId` in place of the environment's database. */
  async restore(env: EnvironmentRow, backupId: string): Promise<Replaced> {
    const backup = await this.deps.store.backup(env.id, backupId);
    if (!backup) throw new ApiError(404, 'not_found', `Backup ${backupId} not found`);
    await this.sweepAbandoned(env);
    const id = newId();
    const scratch = scratchName(id);
    const row = await this.deps.store.insertTransfer({ id, environmentId: env.id, kind: 'import', state: 'swapping', scratchDb: scratch });
    if (!row) throw importInProgress(env);
    this.active.add(id);
    try {
      try {
        await this.deps.cluster.cloneInto(backup.database, scratch);
      } catch (error) {
        await this.discard(id, scratch, describe(error));
        throw error;
      }
      return await this.swapIn(env, row, 'restore');
    } finally {
      this.active.delete(id);
    }
  }

  async transfer(env: EnvironmentRow, id: string): Promise<TransferRow | undefined> {
    return this.deps.store.transfer(env.id, id);
  }

  async backups(env: EnvironmentRow): Promise<BackupRow[]> {
    return this.deps.store.backups(env.id);
  }

  get retention(): RetentionPolicy {
    return this.deps.retention;
  }

  /**
   * Drop every scratch and backup database the environment's imports made (its app is being
   * deleted). They belong to the admin, so dropping the environment's role would not find them.
   */
  async dropEnvironmentDatabases(env: EnvironmentRow): Promise<void> {
    const { store, cluster } = this.deps;
    const names = new Set<string>();
    for (const row of await store.importDatabases(env.id)) {
      if (row.scratch_db) names.add(row.scratch_db);
      names.add(backupName(row.id));
    }
    for (const backup of await store.backups(env.id)) names.add(backup.database);
    for (const name of names) await cluster.drop(name);
  }

  /**
   * At start: nothing is in flight any more. An import caught before its swap is dropped; one
   * caught inside the swap is finished if the swap committed (the scratch database is gone) and
   * undone otherwise; scratch databases nobody owns are dropped.
   */
  async recover(): Promise<void> {
    const { store, cluster, log } = this.deps;
    for (const row of await store.openTransfers()) {
      if (row.state === 'swapping' && row.scratch_db && !(await cluster.exists(row.scratch_db))) {
        const kept = backupName(row.id);
        const backup = (await cluster.exists(kept))
          ? { id: row.id, environmentId: row.environment_id, database: kept, reason: 'import' as const, sizeBytes: await cluster.sizeOf(kept) }
          : null;
        await store.completeWithBackup(row.id, backup);
        log(`database transfer ${row.id}: its swap had committed before the restart; completed`);
        continue;
      }
      await store.advance(row.id, ['running', 'restored', 'swapping'], { state: 'failed', error: RESTARTED });
      if (row.scratch_db) await cluster.drop(row.scratch_db);
      log(`database transfer ${row.id}: ${RESTARTED}; dropped`);
    }
    for (const name of await store.environmentDatabases()) await cluster.allowConnections(name);
    for (const name of await cluster.namesWithPrefix(SCRATCH_PREFIX)) {
      await cluster.drop(name);
      log(`dropped the leftover scratch database ${name}`);
    }
    // Backups pruned from the list whose drop a restart cut short.
    const kept = new Set(await store.allBackupDatabases());
    for (const name of await cluster.namesWithPrefix(BACKUP_PREFIX)) {
      if (kept.has(name)) {
        // Never a reason not to start: the next start tries again.
        await cluster.closeBackup(name).catch((error: unknown) => log(`could not hand the backup ${name} to the admin: ${describe(error)}`));
        continue;
      }
      await cluster.drop(name);
      log(`dropped the pruned backup database ${name}`);
    }
  }

  private async swapIn(env: EnvironmentRow, row: TransferRow, reason: 'import' | 'restore'): Promise<Replaced> {
    const { store, cluster } = this.deps;
    const scratch = row.scratch_db!;
    const kept = backupName(row.id);
    let replaced: boolean;
    try {
      replaced = await cluster.swapIn(env.db_name, scratch, kept, env.db_role);
    } catch (error) {
      await this.discard(row.id, scratch, `the swap failed: ${describe(error)}`);
      throw new ApiError(503, 'swap_failed', `The new database could not be swapped in; nothing changed: ${describe(error)}`, {
        hint: 'Try again; connections to the database may have been busy.',
      });
    }
    const backup = replaced
      ? { id: row.id, environmentId: env.id, database: kept, reason, sizeBytes: await cluster.sizeOf(kept) }
      : null;
    const done = await store.completeWithBackup(row.id, backup);
    const pruned = await this.prune(env);
    return { ...done, pruned };
  }

  /**
   * Drop the environment's backups that the retention (backup-retention.ts) no longer keeps. They
   * leave the list at once; their databases are dropped in the background, because DROP DATABASE
   * forces a checkpoint that after a large restore takes seconds. A drop cut short by a restart is
   * redone at start. Returns what was dropped and why, for the client to show.
   */
  private async prune(env: EnvironmentRow): Promise<PrunedBackupRow[]> {
    const { store, cluster, log } = this.deps;
    const backups = await store.backups(env.id);
    const now = this.deps.now?.() ?? new Date();
    const decisions = backupsToPrune(
      backups.map((b) => ({ id: b.id, reason: b.reason, createdAt: new Date(b.created_at) })),
      this.deps.retention,
      now,
    );
    const byId = new Map(backups.map((b) => [b.id, b]));
    const surplus = decisions.map((d) => ({ ...byId.get(d.id)!, why: d.why }));
    for (const backup of surplus) {
      await store.deleteBackup(backup.id);
      log(`pruned backup ${backup.id} of environment ${env.id} (${backup.reason}, ${new Date(backup.created_at).toISOString()}): ${backup.why}`);
    }
    void (async () => {
      for (const backup of surplus) {
        await cluster.drop(backup.database).catch((error: unknown) => log(`could not drop the old backup ${backup.database}: ${describe(error)}; the next start retries`));
      }
    })();
    return surplus;
  }

  /** Imports of this environment nobody is working on (the client went away): dropped. */
  private async sweepAbandoned(env: EnvironmentRow): Promise<void> {
    for (const row of await this.deps.store.openImports(env.id)) {
      if (this.active.has(row.id)) continue;
      await this.discard(row.id, row.scratch_db, 'abandoned: the client never committed it');
    }
  }

  private async discard(id: string, scratch: string | null, reason: string): Promise<void> {
    await this.fail(id, reason);
    if (scratch) await this.deps.cluster.drop(scratch);
  }

  private async fail(id: string, reason: string): Promise<void> {
    await this.deps.store.advance(id, ['running', 'restored', 'swapping'], { state: 'failed', error: reason.slice(0, 2000) });
  }

  /**
   * While the scratch database admits the role, wait for the restore's own session (by its tag),
   * then shut it: from then on no new session of the role gets in. Any other session that got in
   * meanwhile is ended; true when there was one (or two carried the tag, so ours is not known).
   */
  private async admitOnlyRestore(scratch: string, role: string, tag: string, child: ResultPromise): Promise<boolean> {
    const { cluster } = this.deps;
    let exited = child.exitCode !== null;
    const onExit = () => {
      exited = true;
    };
    child.once('exit', onExit);
    let ours: number[] = [];
    try {
      while (!exited) {
        ours = (await cluster.sessions(scratch)).filter((s) => s.applicationName === tag).map((s) => s.pid);
        if (ours.length) break;
        await new Promise((resolve) => setTimeout(resolve, ADMIT_POLL_MS));
      }
    } finally {
      child.off('exit', onExit);
      await cluster.shut(scratch, role);
    }
    const keep = ours.length === 1 ? ours[0] : undefined;
    const others = (await cluster.sessions(scratch)).filter((s) => s.pid !== keep).map((s) => s.pid);
    await cluster.terminate(others);
    return others.length > 0;
  }

  private roleOf(env: EnvironmentRow): PgConnection {
    return asRole(this.cluster, env.db_role, env.db_password);
  }

  private async tool(name: 'pg_dump' | 'pg_restore'): Promise<string> {
    return pgToolPath(name, await this.deps.cluster.serverMajor(), this.deps.toolsRoot);
  }
}


async function drain(req: IncomingMessage, meter: DigestMeter): Promise<void> {
  req.unpipe(meter);
  if (req.complete) return;
  req.resume();
  await new Promise<void>((resolve) => {
    req.once('end', resolve);
    req.once('close', resolve);
  });
}

/**
 * Resolves true once the child has output to read (or exited successfully: a small dump may still
 * be in the pipe when the exit is seen), false if it failed before writing anything.
 */
function firstOutputOrExit(child: ResultPromise): Promise<boolean> {
  const stdout = child.stdout!;
  return new Promise((resolve) => {
    const onReadable = () => {
      cleanup();
      resolve(true);
    };
    const onExit = (code: number | null) => {
      cleanup();
      resolve(code === 0 || stdout.readableLength > 0);
    };
    const cleanup = () => {
      stdout.off('readable', onReadable);
      child.off('exit', onExit);
    };
    stdout.once('readable', onReadable);
    child.once('exit', onExit);
  });
}

function importInProgress(env: EnvironmentRow): ApiError {
  return new ApiError(409, 'conflict', `Another database import, restore or backup of ${env.name} is in progress`, {
    hint: 'Wait for it to finish, then try again.',
  });
}

function newId(): string {
  return randomBytes(8).toString('hex');
}

function lastLines(text: string, count = 5): string {
  return text.trim().split('\n').slice(-count).join('\n');
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
