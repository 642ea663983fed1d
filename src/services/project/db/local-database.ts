/**
 * The local PostgreSQL of a project, reached through its `db` container: the pg tools run inside it,
 * so their version always matches the server and no PostgreSQL is needed on the host.
 */
import { execa } from 'execa';
import type pg from 'pg';
import { docker } from '../../../core/docker.js';
import { DivioError, ExitCode } from '../../../core/errors.js';
import { LOCAL_DB } from '../compose-file.js';
import type { LocalEnvironment } from '../local-environment.js';

export interface LocalDatabase {
  containerId: string;
  user: string;
  /** The database the app uses (DATABASE_URL). */
  name: string;
}

/** Work-in-progress databases: a restore in flight, or a replaced one about to be dropped. */
export const TEMP_DB_MARKER = '__divio_';
export function tempDatabaseName(base: string, purpose: 'import' | 'old', token: string): string {
  return `${base}${TEMP_DB_MARKER}${purpose}_${token}`;
}

/** Quote an identifier for SQL. Our names are generated, but quoting keeps that an invariant. */
export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
export function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

export async function openLocalDatabase(local: LocalEnvironment, timeoutMs = 60_000): Promise<LocalDatabase> {
  if (!local.project.manifest.database) {
    throw new DivioError(`${local.project.slug} has no database (divio.yaml has no "database" section)`, {
      exitCode: ExitCode.usage,
      hint: 'Add `database: {engine: postgres, version: 15}` to divio.yaml and run `divio project up`.',
    });
  }
  const container = await local.requireRunning('db');
  const db: LocalDatabase = { containerId: container.id, user: LOCAL_DB.user, name: LOCAL_DB.name };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // Over TCP: the image's first-start initialisation runs a temporary server on the socket only,
    // which answers pg_isready and then stops.
    const ready = await execa('docker', ['exec', db.containerId, 'pg_isready', '-q', '-h', '127.0.0.1', '-U', db.user, '-d', 'postgres'], { reject: false });
    if (ready.exitCode === 0) return db;
    if (Date.now() > deadline) {
      throw new DivioError('the local database did not become ready', {
        exitCode: ExitCode.environment,
        hint: 'See `divio project logs db`.',
      });
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * How divio's own driver reaches the server as the superuser: the port compose publishes on
 * 127.0.0.1, or else (a compose file edited to publish none) the container's address on its
 * Docker network, which the host reaches on Linux.
 */
export async function driverConnection(db: LocalDatabase, database: string): Promise<pg.ClientConfig> {
  const info = await docker().getContainer(db.containerId).inspect();
  const env = new Map((info.Config.Env ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)] as const));
  const password = env.get('POSTGRES_PASSWORD');
  const base = { user: db.user, database, ...(password !== undefined ? { password } : {}) };
  const published = (info.NetworkSettings.Ports?.['5432/tcp'] ?? []).find((p) => p.HostPort);
  if (published) {
    const host = published.HostIp === '' || published.HostIp === '0.0.0.0' || published.HostIp === '::' ? '127.0.0.1' : published.HostIp;
    return { ...base, host, port: Number(published.HostPort) };
  }
  const address = Object.values(info.NetworkSettings.Networks ?? {}).find((n) => n.IPAddress)?.IPAddress;
  if (address) return { ...base, host: address, port: 5432 };
  throw new DivioError('the local database container publishes no port and has no network address divio can reach', {
    exitCode: ExitCode.environment,
    hint: 'Keep the `ports: ["127.0.0.1::5432"]` entry of the db service in docker-compose.yml (delete the file to have divio generate it again).',
  });
}

/** Run SQL as the superuser on the maintenance database (or another); returns unaligned rows. */
export async function runSql(db: LocalDatabase, sql: string, database = 'postgres'): Promise<string> {
  const result = await execa(
    'docker',
    ['exec', '-i', db.containerId, 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-U', db.user, '-d', database],
    { input: sql, reject: false },
  );
  if (result.exitCode !== 0) {
    throw new DivioError(`a command on the local database failed: ${result.stderr.trim() || `exit code ${result.exitCode}`}`, {
      exitCode: ExitCode.childFailed,
      hint: 'Check `divio project logs db`.',
    });
  }
  return result.stdout;
}

export async function databaseExists(db: LocalDatabase, name: string): Promise<boolean> {
  const out = await runSql(db, `SELECT 1 FROM pg_database WHERE datname = ${literal(name)};`);
  return out.trim() === '1';
}

/** Databases left by an import that was killed before it could clean up. */
export async function dropLeftoverDatabases(db: LocalDatabase): Promise<string[]> {
  const pattern = `${db.name}${TEMP_DB_MARKER}`.replaceAll('_', '\\_') + '%';
  const names = (await runSql(db, `SELECT datname FROM pg_database WHERE datname LIKE ${literal(pattern)};`))
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const dropped: string[] = [];
  for (const name of names) {
    // One may be in the middle of its background drop; cleanup is best-effort, never a failure.
    if (await dropDatabase(db, name).then(() => true, () => false)) dropped.push(name);
  }
  return dropped;
}

/**
 * Drop a database the app no longer sees, without waiting: DROP DATABASE forces a checkpoint, which
 * after a large restore means flushing all of it to disk. It runs detached inside the container; if
 * it does not complete, the next import's leftover cleanup drops it.
 */
export async function dropDatabaseInBackground(db: LocalDatabase, name: string): Promise<void> {
  await execa('docker', ['exec', '-d', db.containerId, 'psql', '-X', '-q', '-U', db.user, '-d', 'postgres', '-c', `DROP DATABASE IF EXISTS ${ident(name)} WITH (FORCE);`]);
}

export async function dropDatabase(db: LocalDatabase, name: string): Promise<void> {
  await runSql(db, `DROP DATABASE IF EXISTS ${ident(name)} WITH (FORCE);`);
}

/**
 * Put `fresh` in place of the app's database in one transaction: new connections to the old one are
 * refused, existing ones ended, then both renames commit together. The old database is returned
 * under its new name for the caller to drop; on failure nothing has changed.
 */
export async function swapInDatabase(db: LocalDatabase, fresh: string, old: string): Promise<{ replaced: boolean }> {
  const exists = await databaseExists(db, db.name);
  if (!exists) {
    await runSql(db, `ALTER DATABASE ${ident(fresh)} RENAME TO ${ident(db.name)};`);
    return { replaced: false };
  }
  const sql = `
ALTER DATABASE ${ident(db.name)} ALLOW_CONNECTIONS false;
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = ${literal(db.name)} AND pid <> pg_backend_pid();
BEGIN;
ALTER DATABASE ${ident(db.name)} RENAME TO ${ident(old)};
ALTER DATABASE ${ident(fresh)} RENAME TO ${ident(db.name)};
COMMIT;
`;
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await runSql(db, sql);
      return { replaced: true };
    } catch (error) {
      // A backend may take a moment to exit after pg_terminate_backend; try again.
      lastError = error;
      await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
    }
  }
  await runSql(db, `ALTER DATABASE ${ident(db.name)} ALLOW_CONNECTIONS true;`).catch(() => {});
  throw lastError;
}
