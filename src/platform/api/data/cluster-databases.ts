/**
 * Whole-database operations on the cluster for imports, backups and restores: scratch databases
 * that a restore fills, the swap that puts one in place of an environment's database, copies kept
 * as backups. Every database made here is owned by the environment's role and closed to everyone
 * else (REVOKE CONNECT FROM PUBLIC), so isolation between environments holds for copies too.
 */
import pg from 'pg';

/** Cluster-wide names: `divio_tx_<id>` (scratch, being filled) and `divio_bk_<id>` (a kept backup). */
export const SCRATCH_PREFIX = 'divio_tx_';
export const BACKUP_PREFIX = 'divio_bk_';
export const scratchName = (id: string) => `${SCRATCH_PREFIX}${id}`;
export const backupName = (id: string) => `${BACKUP_PREFIX}${id}`;

const SWAP_ATTEMPTS = 6;

export class ClusterDatabases {
  private readonly pool: pg.Pool;

  constructor(adminUrl: string) {
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

  /** An empty database for a restore, owned by `owner`. */
  async createScratch(name: string, owner: string): Promise<void> {
    await this.withClient(async (client) => {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)} OWNER ${client.escapeIdentifier(owner)} TEMPLATE template0`);
      await closeToPublic(client, name, owner);
    });
  }

  /** A copy of `template` (a backup, which takes no connections) under `name`, owned by `owner`. */
  async cloneInto(template: string, name: string, owner: string): Promise<void> {
    await this.withClient(async (client) => {
      const t = client.escapeIdentifier(template);
      const n = client.escapeIdentifier(name);
      await client.query(`CREATE DATABASE ${n} OWNER ${client.escapeIdentifier(owner)} TEMPLATE ${t}`);
      await client.query(`ALTER DATABASE ${n} ALLOW_CONNECTIONS true`);
      await closeToPublic(client, name, owner);
    });
  }

  /**
   * Put `fresh` in place of `current`, keeping the replaced database under `keepAs` with connections
   * off (a backup nobody can change). New connections to `current` are refused first and existing
   * ones ended (the app reconnects to the new one under the same name); then both renames commit in
   * one transaction. On failure nothing has changed and `current` takes connections again.
   * Returns false when there was no `current` to keep (fresh is simply renamed).
   */
  async swapIn(current: string, fresh: string, keepAs: string): Promise<boolean> {
    return this.withClient(async (client) => {
      const c = client.escapeIdentifier(current);
      const f = client.escapeIdentifier(fresh);
      const k = client.escapeIdentifier(keepAs);
      if (!(await this.exists(current))) {
        await client.query(`ALTER DATABASE ${f} RENAME TO ${c}`);
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
          await client.query(`ALTER DATABASE ${c} ALLOW_CONNECTIONS true`);
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

async function closeToPublic(client: pg.PoolClient, name: string, owner: string): Promise<void> {
  const n = client.escapeIdentifier(name);
  await client.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${n} FROM PUBLIC`);
  await client.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${n} TO ${client.escapeIdentifier(owner)}`);
}

function escapeIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
