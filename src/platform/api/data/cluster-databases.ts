/**
 * Whole-database operations on the cluster for imports, backups and restores: scratch databases
 * that a restore fills, the swap that puts one in place of an environment's database, copies kept
 * as backups. Run with the admin connection, which never connects into a database a tenant has
 * filled (SQL there could be waiting for it); only into a scratch database it has just made empty.
 *
 * Who may reach what:
 * - An environment's database is owned by its role and closed to every other (REVOKE … FROM PUBLIC).
 * - A scratch database is owned by the admin. The environment's role may create in it but not
 *   connect, except for the one moment its restore session connects (`admit`/`shut`).
 * - A backup is owned by the admin with connections off: the role can neither open it again, nor
 *   drop or rename it. A swap hands the database it puts in place to the role, the one it keeps to
 *   the admin.
 */
import pg from 'pg';

/** Cluster-wide names: `divio_tx_<id>` (scratch, being filled) and `divio_bk_<id>` (a kept backup). */
export const SCRATCH_PREFIX = 'divio_tx_';
export const BACKUP_PREFIX = 'divio_bk_';
export const scratchName = (id: string) => `${SCRATCH_PREFIX}${id}`;
export const backupName = (id: string) => `${BACKUP_PREFIX}${id}`;

const SWAP_ATTEMPTS = 6;

export interface Session {
  pid: number;
  applicationName: string;
}

export class ClusterDatabases {
  private readonly pool: pg.Pool;

  constructor(private readonly adminUrl: string) {
    this.pool = new pg.Pool({ connectionString: adminUrl, max: 4, connectionTimeoutMillis: 10_000 });
    this.pool.on('error', () => {
      // A dropped idle connection (cluster restart): the pool reconnects on next use.
    });
  }

  async serverMajor(): Promise<number> {
    const { rows } = await this.pool.query<{ server_version_num: string }>('SHOW server_version_num');
    return Math.floor(Number(rows[0]?.server_version_num) / 10_000);
  }

  async exists(name: string): Promise<boolean> {
    const { rowCount } = await this.pool.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    return (rowCount ?? 0) > 0;
  }

  async sizeOf(name: string): Promise<number> {
    const { rows } = await this.pool.query<{ size: string }>('SELECT pg_database_size($1)::text AS size', [name]);
    return Number(rows[0]?.size ?? 0);
  }

  /** Names starting with `prefix` (scratch or backup databases), for leftover sweeps. */
  async namesWithPrefix(prefix: string): Promise<string[]> {
    const pattern = `${prefix.replaceAll('_', '\\_')}%`;
    const { rows } = await this.pool.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname LIKE $1', [pattern]);
    return rows.map((r) => r.datname);
  }

  /**
   * An empty database for `role`'s restore, owned by the admin. The role may create schemas and
   * temporary tables there and owns its `public` schema, but holds no CONNECT until `admit`.
   */
  async createScratch(name: string, role: string): Promise<void> {
    await this.withClient(async (client) => {
      const n = client.escapeIdentifier(name);
      // Born closed: PUBLIC may connect to a new database until the REVOKE.
      await client.query(`CREATE DATABASE ${n} TEMPLATE template0 ALLOW_CONNECTIONS false`);
      await client.query(`REVOKE ALL ON DATABASE ${n} FROM PUBLIC`);
      await client.query(`GRANT CREATE, TEMPORARY ON DATABASE ${n} TO ${client.escapeIdentifier(role)}`);
      await client.query(`ALTER DATABASE ${n} ALLOW_CONNECTIONS true`);
    });
    // Still empty and closed to the role: the one time the admin connects into such a database.
    const inside = new pg.Client({ connectionString: databaseUrl(this.adminUrl, name), connectionTimeoutMillis: 10_000 });
    await inside.connect();
    try {
      await inside.query(`ALTER SCHEMA public OWNER TO ${inside.escapeIdentifier(role)}`);
    } finally {
      await inside.end();
    }
  }

  /** Let `role` connect to `name` (for the moment its restore session connects). */
  async admit(name: string, role: string): Promise<void> {
    await this.pool.query(`GRANT CONNECT ON DATABASE ${escapeIdentifier(name)} TO ${escapeIdentifier(role)}`);
  }

  /** No new connections of `role` to `name`; sessions already there stay (see `sessions`, `terminate`). */
  async shut(name: string, role: string): Promise<void> {
    await this.pool.query(`REVOKE CONNECT ON DATABASE ${escapeIdentifier(name)} FROM ${escapeIdentifier(role)}`);
  }

  async sessions(name: string): Promise<Session[]> {
    const { rows } = await this.pool.query<{ pid: number; application_name: string }>(
      'SELECT pid, application_name FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
      [name],
    );
    return rows.map((r) => ({ pid: r.pid, applicationName: r.application_name }));
  }

  async terminate(pids: number[]): Promise<void> {
    if (pids.length) await this.pool.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
  }

  /** A copy of `template` (a backup, which takes no connections) under `name`: owned by the admin, closed until swapped in. */
  async cloneInto(template: string, name: string): Promise<void> {
    await this.withClient(async (client) => {
      const n = client.escapeIdentifier(name);
      await client.query(`CREATE DATABASE ${n} TEMPLATE ${client.escapeIdentifier(template)} ALLOW_CONNECTIONS false`);
      await client.query(`REVOKE ALL ON DATABASE ${n} FROM PUBLIC`);
    });
  }

  /**
   * Put `fresh` in place of `current` as `role`'s database, keeping the replaced database under
   * `keepAs` as a backup (the admin's, connections off). New connections to `current` are refused
   * first and existing ones ended (the app reconnects to the new one under the same name); then
   * the renames and owner changes commit in one transaction. On failure nothing has changed and
   * `current` takes connections again. Returns false when there was no `current` to keep (fresh
   * is simply renamed).
   */
  async swapIn(current: string, fresh: string, keepAs: string, role: string): Promise<boolean> {
    return this.withClient(async (client) => {
      const c = client.escapeIdentifier(current);
      const f = client.escapeIdentifier(fresh);
      const k = client.escapeIdentifier(keepAs);
      const r = client.escapeIdentifier(role);
      const handOver = async () => {
        await client.query(`ALTER DATABASE ${c} OWNER TO ${r}`);
        await client.query(`REVOKE ALL ON DATABASE ${c} FROM PUBLIC`);
        await client.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${c} TO ${r}`);
        await client.query(`ALTER DATABASE ${c} ALLOW_CONNECTIONS true`);
      };
      if (!(await this.exists(current))) {
        await client.query('BEGIN');
        try {
          await client.query(`ALTER DATABASE ${f} RENAME TO ${c}`);
          await handOver();
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw error;
        }
        return false;
      }
      let lastError: unknown;
      for (let attempt = 0; attempt < SWAP_ATTEMPTS; attempt++) {
        try {
          await client.query(`ALTER DATABASE ${c} ALLOW_CONNECTIONS false`);
          await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ANY($1) AND pid <> pg_backend_pid()', [
            [current, fresh],
          ]);
          await client.query('BEGIN');
          await client.query(`ALTER DATABASE ${c} RENAME TO ${k}`);
          await client.query(`ALTER DATABASE ${f} RENAME TO ${c}`);
          await handOver();
          // The owner of a database can turn its connections back on, drop or rename it: not the role.
          await client.query(`ALTER DATABASE ${k} OWNER TO CURRENT_USER`);
          await client.query(`REVOKE ALL ON DATABASE ${k} FROM PUBLIC, ${r}`);
          await client.query('COMMIT');
          return true;
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          // A terminated backend can take a moment to exit; renaming waits for none, so try again.
          lastError = error;
          await new Promise((r) => setTimeout(r, 150 * (attempt + 1)));
        }
      }
      await client.query(`ALTER DATABASE ${c} ALLOW_CONNECTIONS true`).catch(() => undefined);
      throw lastError;
    });
  }

  /**
   * A kept backup as it must be: the admin's, connections off, no grants. Backups kept by earlier
   * versions belonged to the environment's role, which could open them again.
   */
  async closeBackup(name: string): Promise<void> {
    await this.withClient(async (client) => {
      // As JSON: node-pg leaves a name[] as its text form.
      const { rows } = await client.query<{ mine: boolean; datallowconn: boolean; grantees: string[] }>(
        `SELECT d.datdba = (SELECT oid FROM pg_roles WHERE rolname = CURRENT_USER) AS mine, d.datallowconn,
                to_json(ARRAY(SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END
                        FROM aclexplode(COALESCE(d.datacl, acldefault('d', d.datdba))) a
                       WHERE a.grantee <> (SELECT oid FROM pg_roles WHERE rolname = CURRENT_USER))) AS grantees
           FROM pg_database d WHERE d.datname = $1`,
        [name],
      );
      const row = rows[0];
      if (!row || (row.mine && !row.datallowconn && row.grantees.length === 0)) return;
      const n = client.escapeIdentifier(name);
      await client.query(`ALTER DATABASE ${n} ALLOW_CONNECTIONS false`);
      await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name]);
      // The old owner's privileges move to the new owner with it; grants to anyone else are revoked.
      await client.query(`ALTER DATABASE ${n} OWNER TO CURRENT_USER`);
      for (const grantee of row.grantees) {
        await client.query(`REVOKE ALL ON DATABASE ${n} FROM ${grantee === 'PUBLIC' ? 'PUBLIC' : client.escapeIdentifier(grantee)}`);
      }
    });
  }

  /**
   * A scratch database a backup was restored into becomes the backup `name`: its sessions ended,
   * renamed, then closed like every backup (the admin's, connections off, no grants).
   */
  async keepAsBackup(scratch: string, name: string): Promise<void> {
    await this.withClient(async (client) => {
      const s = client.escapeIdentifier(scratch);
      await client.query(`ALTER DATABASE ${s} ALLOW_CONNECTIONS false`);
      await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [scratch]);
      let lastError: unknown;
      for (let attempt = 0; attempt < SWAP_ATTEMPTS; attempt++) {
        try {
          await client.query(`ALTER DATABASE ${s} RENAME TO ${client.escapeIdentifier(name)}`);
          return;
        } catch (error) {
          // A terminated backend can take a moment to exit.
          lastError = error;
          await new Promise((r) => setTimeout(r, 150 * (attempt + 1)));
        }
      }
      throw lastError;
    });
    await this.closeBackup(name);
  }

  /** Connections on again: undoes a swap that a crash stopped between its first step and its commit. */
  async allowConnections(name: string): Promise<void> {
    await this.withClient(async (client) => {
      const { rows } = await client.query<{ datallowconn: boolean }>('SELECT datallowconn FROM pg_database WHERE datname = $1', [name]);
      if (rows[0] && !rows[0].datallowconn) await client.query(`ALTER DATABASE ${client.escapeIdentifier(name)} ALLOW_CONNECTIONS true`);
    });
  }

  async drop(name: string): Promise<void> {
    await this.pool.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private async withClient<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      return await work(client);
    } finally {
      client.release();
    }
  }
}

function databaseUrl(adminUrl: string, database: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

function escapeIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
