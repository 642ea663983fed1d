/**
 * The embedded (or any external) PostgreSQL cluster, reached with an admin connection.
 *
 * On a cluster the platform shares with others (an operator's external one), a role or database
 * that happens to have an environment's name is not the platform's to change: the platform records
 * every role and database it creates (`cluster_resources`, in its own database, in the same
 * transaction that creates a role), refuses to provision over one it did not create, and drops
 * only what it recorded.
 */
import pg from 'pg';
import { ApiError } from './errors.js';
import type { DatabaseCluster } from './parts.js';

type ResourceKind = 'role' | 'database';

/** Databases every cluster has, which PostgreSQL opens to every role unless told otherwise. */
const MAINTENANCE_DATABASES = ['postgres', 'template1'] as const;
const DUPLICATE_DATABASE = '42P04';

export class PostgresCluster implements DatabaseCluster {
  /** Admin, on the platform's own database: the record of what the platform made is there. */
  private readonly pool: pg.Pool;

  constructor(
    adminUrl: string,
    readonly appHost: string,
    readonly appPort: number,
    platformDatabase: string,
  ) {
    this.pool = new pg.Pool({ connectionString: platformDatabaseUrl(adminUrl, platformDatabase), max: 3, connectionTimeoutMillis: 5000 });
    this.pool.on('error', () => {
      // An idle admin connection dropped (cluster restart): the pool reconnects on next use.
    });
  }

  async provision({ database, role, password }: { database: string; role: string; password: string }): Promise<void> {
    const client = await this.pool.connect();
    try {
      const r = client.escapeIdentifier(role);
      const d = client.escapeIdentifier(database);
      await client.query('BEGIN');
      try {
        const roleExists = await exists(client, 'role', role);
        if (roleExists && !(await recorded(client, 'role', role))) throw notCreatedHere('role', role);
        if ((await exists(client, 'database', database)) && !(await recorded(client, 'database', database))) throw notCreatedHere('database', database);
        // Role passwords cannot be bound parameters; escapeLiteral quotes them safely.
        const attributes = `LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD ${client.escapeLiteral(password)}`;
        if (roleExists) {
          await client.query(`ALTER ROLE ${r} ${attributes}`);
        } else {
          // Recorded in the transaction that creates it: never a role made and not recorded, or the reverse.
          await record(client, 'role', role);
          await client.query(`CREATE ROLE ${r} ${attributes}`);
        }
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      }

      if (!(await exists(client, 'database', database))) {
        // CREATE DATABASE cannot run in a transaction: recorded first, forgotten if another made it meanwhile.
        await record(client, 'database', database);
        try {
          await client.query(`CREATE DATABASE ${d} OWNER ${r} ALLOW_CONNECTIONS false`);
        } catch (error) {
          if ((error as { code?: string }).code !== DUPLICATE_DATABASE) throw error;
          await forget(client, 'database', database);
          throw notCreatedHere('database', database);
        }
      }
      // Environments must not reach each other's databases; it was born closed until this holds.
      await client.query(`REVOKE ALL ON DATABASE ${d} FROM PUBLIC`);
      await client.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${d} TO ${r}`);
      await client.query(`ALTER DATABASE ${d} ALLOW_CONNECTIONS true`);
    } finally {
      client.release();
    }
  }

  /** Drops the database and the role, if the platform made them; anything else of that name stays. */
  async deprovision({ database, role }: { database: string; role: string }): Promise<void> {
    const client = await this.pool.connect();
    try {
      if (await recorded(client, 'database', database)) {
        await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(database)} WITH (FORCE)`);
        await forget(client, 'database', database);
      }
      if (!(await recorded(client, 'role', role))) return;
      if (await exists(client, 'role', role)) {
        // Backups and scratch databases of earlier versions belonged to the role; they go with it.
        const owned = await client.query<{ datname: string }>(
          'SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = $1)',
          [role],
        );
        for (const { datname } of owned.rows) await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(datname)} WITH (FORCE)`);
        const r = client.escapeIdentifier(role);
        // Revokes what the role was granted on databases that stay (and owns nothing in this one).
        await client.query(`DROP OWNED BY ${r}`);
        await client.query(`DROP ROLE ${r}`);
      }
      await forget(client, 'role', role);
    } finally {
      client.release();
    }
  }

  /** Renames what the platform made; a name it did not make is left as it is. */
  async retire({ database, role, retiredName }: { database: string; role: string; retiredName: string }): Promise<void> {
    const client = await this.pool.connect();
    try {
      const retired = client.escapeIdentifier(retiredName);
      if ((await recorded(client, 'role', role)) && (await exists(client, 'role', role))) {
        const r = client.escapeIdentifier(role);
        // NOLOGIN first: no new session starts while the old ones are ended and the names change.
        await client.query(`ALTER ROLE ${r} NOLOGIN PASSWORD NULL`);
        await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [role]);
        await client.query(`ALTER ROLE ${r} RENAME TO ${retired}`);
        await rename(client, 'role', role, retiredName);
      }
      if ((await recorded(client, 'database', database)) && (await exists(client, 'database', database))) {
        const d = client.escapeIdentifier(database);
        await client.query(`ALTER DATABASE ${d} ALLOW_CONNECTIONS false`);
        await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [database]);
        await client.query(`ALTER DATABASE ${d} RENAME TO ${retired}`);
        await rename(client, 'database', database, retiredName);
      }
    } finally {
      client.release();
    }
  }

  async check(): Promise<void> {
    await this.pool.query('SELECT 1');
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

async function exists(client: pg.ClientBase, kind: ResourceKind, name: string): Promise<boolean> {
  const sql = kind === 'role' ? 'SELECT 1 FROM pg_roles WHERE rolname = $1' : 'SELECT 1 FROM pg_database WHERE datname = $1';
  return ((await client.query(sql, [name])).rowCount ?? 0) > 0;
}

async function recorded(client: pg.ClientBase, kind: ResourceKind, name: string): Promise<boolean> {
  const { rowCount } = await client.query('SELECT 1 FROM cluster_resources WHERE kind = $1 AND name = $2', [kind, name]);
  return (rowCount ?? 0) > 0;
}

async function record(client: pg.ClientBase, kind: ResourceKind, name: string): Promise<void> {
  await client.query('INSERT INTO cluster_resources (kind, name) VALUES ($1, $2) ON CONFLICT DO NOTHING', [kind, name]);
}

async function rename(client: pg.ClientBase, kind: ResourceKind, from: string, to: string): Promise<void> {
  await client.query('UPDATE cluster_resources SET name = $3 WHERE kind = $1 AND name = $2', [kind, from, to]);
}

async function forget(client: pg.ClientBase, kind: ResourceKind, name: string): Promise<void> {
  await client.query('DELETE FROM cluster_resources WHERE kind = $1 AND name = $2', [kind, name]);
}

function notCreatedHere(kind: ResourceKind, name: string): ApiError {
  return new ApiError(409, 'conflict', `The database cluster already has a ${kind} named "${name}", which this platform did not create; it is left alone`, {
    field: 'body.slug',
    hint: `Choose another slug; or the operator can rename or drop that ${kind} if nothing uses it.`,
  });
}

/**
 * Create the platform's own database when missing, and keep app roles out of it and out of the
 * cluster's maintenance databases (which PostgreSQL opens to every role by default).
 */
export async function ensurePlatformDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    const ident = client.escapeIdentifier(name);
    if (!found.rowCount) await client.query(`CREATE DATABASE ${ident}`);
    await client.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${ident} FROM PUBLIC`);
    for (const database of MAINTENANCE_DATABASES) {
      if (await exists(client, 'database', database)) {
        await client.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${client.escapeIdentifier(database)} FROM PUBLIC`);
      }
    }
  } finally {
    await client.end();
  }
}

export function platformDatabaseUrl(adminUrl: string, database: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}
