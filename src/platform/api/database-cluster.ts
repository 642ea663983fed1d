/** The embedded (or any external) PostgreSQL cluster, reached with an admin connection. */
import pg from 'pg';
import type { DatabaseCluster } from './parts.js';

export class PostgresCluster implements DatabaseCluster {
  private readonly pool: pg.Pool;

  constructor(
    adminUrl: string,
    readonly appHost: string,
    readonly appPort: number,
  ) {
    this.pool = new pg.Pool({ connectionString: adminUrl, max: 3, connectionTimeoutMillis: 5000 });
    this.pool.on('error', () => {
      // An idle admin connection dropped (cluster restart): the pool reconnects on next use.
    });
  }

  async provision({ database, role, password }: { database: string; role: string; password: string }): Promise<void> {
    const client = await this.pool.connect();
    try {
      const r = client.escapeIdentifier(role);
      const d = client.escapeIdentifier(database);
      const existing = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
      // Role passwords cannot be bound parameters; escapeLiteral quotes them safely.
      const verb = existing.rowCount ? 'ALTER' : 'CREATE';
      await client.query(`${verb} ROLE ${r} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD ${client.escapeLiteral(password)}`);
      const db = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
      if (!db.rowCount) await client.query(`CREATE DATABASE ${d} OWNER ${r}`);
      // Environments must not reach each other's databases.
      await client.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${d} FROM PUBLIC`);
      await client.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${d} TO ${r}`);
    } finally {
      client.release();
    }
  }

  async deprovision({ database, role }: { database: string; role: string }): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(database)} WITH (FORCE)`);
      // Its backups and any scratch database of an import belong to the role too, and go with it.
      const owned = await client.query<{ datname: string }>(
        'SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = $1)',
        [role],
      );
      for (const { datname } of owned.rows) await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(datname)} WITH (FORCE)`);
      await client.query(`DROP ROLE IF EXISTS ${client.escapeIdentifier(role)}`);
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

/** Create the platform's own database when missing, and keep app roles out of it. */
export async function ensurePlatformDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    const ident = client.escapeIdentifier(name);
    if (!found.rowCount) await client.query(`CREATE DATABASE ${ident}`);
    await client.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${ident} FROM PUBLIC`);
  } finally {
    await client.end();
  }
}

export function platformDatabaseUrl(adminUrl: string, database: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}
