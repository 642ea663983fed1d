/**
 * PostgreSQL's client tools, of the cluster's major version: a dump made or restored by another
 * major version can fail or lose features, so the API never falls back to whatever is on PATH.
 * Debian's postgresql-client-N packages install side by side under /usr/lib/postgresql/N/bin.
 */
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { ApiError } from '../errors.js';

export type PgTool = 'pg_dump' | 'pg_restore';

export interface PgConnection {
  host: string;
  port: number;
  user: string;
  password: string;
  /** The admin URL's `sslmode`, when it has one: the tools reach the cluster the same way. */
  sslmode?: string;
}

export const PG_TOOLS_ROOT = process.env.DIVIO_PG_TOOLS_ROOT ?? '/usr/lib/postgresql';

export async function pgToolPath(tool: PgTool, major: number, root = PG_TOOLS_ROOT): Promise<string> {
  const path = join(root, String(major), 'bin', tool);
  try {
    await access(path, constants.X_OK);
    return path;
  } catch {
    throw new ApiError(503, 'pg_tools_missing', `This platform has no ${tool} for PostgreSQL ${major}, the cluster's major version`, {
      hint: `The operator should add postgresql-client-${major} to the platform image (templates/platform/Dockerfile).`,
    });
  }
}

/** Host, port and user for the tools' arguments; the password goes into their environment, never argv. */
export function connectionOf(adminUrl: string): PgConnection {
  const url = new URL(adminUrl);
  const sslmode = url.searchParams.get('sslmode');
  return {
    host: url.hostname,
    port: url.port ? Number(url.port) : 5432,
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    ...(sslmode ? { sslmode } : {}),
  };
}

/**
 * The same cluster reached as an environment's own role. Dumps and restores run as that role, so
 * SQL in a dump (or in the database being dumped) can do no more than the environment's app can.
 */
export function asRole(cluster: PgConnection, role: string, password: string): PgConnection {
  return { ...cluster, user: role, password };
}

export function connectionArgs(connection: PgConnection, database: string): string[] {
  return ['--host', connection.host, '--port', String(connection.port), '--username', connection.user, '--dbname', database, '--no-password'];
}

export function connectionEnv(connection: PgConnection, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PGPASSWORD: connection.password,
    PGCONNECT_TIMEOUT: '10',
    ...(connection.sslmode ? { PGSSLMODE: connection.sslmode } : {}),
    ...extra,
  };
}
