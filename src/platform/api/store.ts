/** The platform's state in PostgreSQL: users, tokens, apps, environments. SQL stays in this file. */
import type pg from 'pg';
import type { EnvironmentName, TokenScope } from '../../shared/api/schemas.js';
import type { SecretBox } from './secrets.js';

export interface UserRow {
  id: string;
  name: string;
  operator: boolean;
  created_at: Date;
  disabled_at: Date | null;
}

export interface UserListRow extends UserRow {
  live_tokens: number;
  last_used_at: Date | null;
}

export interface TokenRow {
  id: string;
  user_id: string;
  secret_hash: string;
  scope: TokenScope;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
  expires_at: Date | null;
}

export interface AppRow {
  id: string;
  slug: string;
  owner_id: string;
  owner_name: string;
  boilerplate: string | null;
  state: 'provisioning' | 'ready' | 'deleting';
  created_at: Date;
}

export interface EnvironmentRow {
  id: string;
  app_id: string;
  name: EnvironmentName;
  branch: string;
  db_name: string;
  db_role: string;
  db_password: string;
  media_bucket: string;
  media_prefix: string;
  media_access_key: string | null;
  media_secret_key: string | null;
  secret_key: string | null;
  replicas: number;
  /** Whether git accepts rewriting or deleting the environment's branch (protection.ts). */
  allow_force_push: boolean;
  /** A backup of the database is taken before each release command (live: on by default). */
  backup_before_release: boolean;
  created_at: Date;
}

type Queryable = Pick<pg.Pool, 'query'>;

/**
 * Secret columns (environments' db_password, media keys and secret_key; env_vars.value) hold values
 * sealed by `secrets`: they are sealed on the way in and opened on the way out, here, so callers
 * only ever see plaintext and the database only ciphertext.
 */
export class Store {
  constructor(
    readonly db: pg.Pool,
    readonly secrets: SecretBox,
  ) {}

  /** Run `work` in one transaction: committed when it returns, rolled back when it throws. */
  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.db.connect();
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async tokenWithUser(id: string): Promise<{ token: TokenRow; user: UserRow } | undefined> {
    const { rows } = await this.db.query(
      `SELECT row_to_json(t.*) AS token, row_to_json(u.*) AS user
         FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1`,
      [id],
    );
    const row = rows[0];
    if (!row) return undefined;
    return { token: reviveToken(row.token), user: reviveUser(row.user) };
  }

  async touchToken(id: string): Promise<void> {
    // Only once a minute: a write per request would make every read a write.
    await this.db.query(
      `UPDATE tokens SET last_used_at = now()
        WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`,
      [id],
    );
  }

  async insertToken(
    q: Queryable,
    token: { id: string; userId: string; hash: string; scope: TokenScope; bootstrap?: boolean; expiresAt?: Date | null },
  ): Promise<TokenRow> {
    const { rows } = await q.query(
      `INSERT INTO tokens (id, user_id, secret_hash, scope, bootstrap, expires_at) VALUES ($1, $2, $3, $4, $5, $6)
       RETURNING *`,
      [token.id, token.userId, token.hash, token.scope, token.bootstrap ?? false, token.expiresAt ?? null],
    );
    return rows[0];
  }

  async listTokens(userId: string): Promise<TokenRow[]> {
    const { rows } = await this.db.query(
      'SELECT * FROM tokens WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at',
      [userId],
    );
    return rows;
  }

  /** Revokes a token of this user; false when the user has no such live token. */
  async revokeToken(userId: string, tokenId: string): Promise<boolean> {
    const result = await this.db.query(
      'UPDATE tokens SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL',
      [tokenId, userId],
    );
    return (result.rowCount ?? 0) > 0;
  }

  async listUsers(): Promise<UserListRow[]> {
    const { rows } = await this.db.query(
      `SELECT u.*,
              count(t.id) FILTER (WHERE t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now()))::int AS live_tokens,
              max(t.last_used_at) AS last_used_at
         FROM users u LEFT JOIN tokens t ON t.user_id = u.id
        GROUP BY u.id ORDER BY u.name`,
    );
    return rows;
  }

  async userByName(name: string): Promise<UserRow | undefined> {
    const { rows } = await this.db.query('SELECT * FROM users WHERE name = $1', [name]);
    return rows[0];
  }

  /** Disables (keeping the first moment it was disabled) or enables; undefined when there is no such user. */
  async setUserDisabled(name: string, disabled: boolean): Promise<UserRow | undefined> {
    const { rows } = await this.db.query(
      `UPDATE users SET disabled_at = CASE WHEN $2 THEN COALESCE(disabled_at, now()) ELSE NULL END
        WHERE name = $1 RETURNING *`,
      [name, disabled],
    );
    return rows[0];
  }

  /** Revokes every live token of the user; how many there were. */
  async revokeAllTokens(userId: string): Promise<number> {
    const result = await this.db.query('UPDATE tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL', [userId]);
    return result.rowCount ?? 0;
  }

  /** Creates a user and its first token atomically; undefined when the name is taken. */
  async createUserWithToken(
    name: string,
    operator: boolean,
    token: { id: string; hash: string; scope: TokenScope },
  ): Promise<{ user: UserRow; token: TokenRow } | undefined> {
    return this.transaction(async (client) => {
      const inserted = await client.query<UserRow>(
        'INSERT INTO users (name, operator) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING *',
        [name, operator],
      );
      const user = inserted.rows[0];
      if (!user) return undefined;
      const tokenRow = await this.insertToken(client, { ...token, userId: user.id });
      return { user, token: tokenRow };
    });
  }

  /**
   * Make sure the operator exists and holds exactly the bootstrap token `platform start` issued;
   * bootstrap tokens from earlier starts stop working.
   */
  async ensureOperator(name: string, token: { id: string; hash: string }): Promise<void> {
    await this.transaction(async (client) => {
      const { rows } = await client.query<UserRow>(
        `INSERT INTO users (name, operator) VALUES ($1, true)
         ON CONFLICT (name) DO UPDATE SET operator = true RETURNING *`,
        [name],
      );
      const user = rows[0]!;
      await client.query(
        `INSERT INTO tokens (id, user_id, secret_hash, scope, bootstrap) VALUES ($1, $2, $3, 'write', true)
         ON CONFLICT (id) DO NOTHING`,
        [token.id, user.id, token.hash],
      );
      await client.query(
        `UPDATE tokens SET revoked_at = now()
          WHERE user_id = $1 AND bootstrap AND id <> $2 AND revoked_at IS NULL`,
        [user.id, token.id],
      );
    });
  }

  async listApps(ownerId: string): Promise<AppRow[]> {
    const { rows } = await this.db.query(
      `${APP_SELECT} WHERE a.owner_id = $1 AND a.state = 'ready' ORDER BY a.slug`,
      [ownerId],
    );
    return rows;
  }

  /** The app when it exists, is ready, and belongs to this owner: one query, so "not yours" and "absent" look alike. */
  async ownedApp(ownerId: string, slug: string): Promise<AppRow | undefined> {
    const { rows } = await this.db.query(`${APP_SELECT} WHERE a.slug = $1 AND a.owner_id = $2 AND a.state = 'ready'`, [
      slug,
      ownerId,
    ]);
    return rows[0];
  }

  async appsInState(state: AppRow['state']): Promise<AppRow[]> {
    const { rows } = await this.db.query(`${APP_SELECT} WHERE a.state = $1`, [state]);
    return rows;
  }

  /** Reserve the slug; undefined when it is taken (by anyone). */
  async insertApp(
    ownerId: string,
    slug: string,
    boilerplate: string | null,
    environments: Omit<EnvironmentRow, 'id' | 'app_id' | 'created_at' | 'secret_key' | 'replicas' | 'allow_force_push' | 'backup_before_release'>[],
  ): Promise<AppRow | undefined> {
    const appId = await this.transaction(async (client) => {
      const inserted = await client.query<{ id: string }>(
        `INSERT INTO apps (slug, owner_id, boilerplate) VALUES ($1, $2, $3)
         ON CONFLICT (slug) DO NOTHING RETURNING id`,
        [slug, ownerId, boilerplate],
      );
      const id = inserted.rows[0]?.id;
      if (!id) return undefined;
      for (const env of environments) {
        await client.query(
          `INSERT INTO environments (app_id, name, branch, db_name, db_role, db_password, media_bucket, media_prefix, backup_before_release)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $2 = 'live')`,
          [id, env.name, env.branch, env.db_name, env.db_role, this.secrets.seal(env.db_password, 'environments.db_password'), env.media_bucket, env.media_prefix],
        );
      }
      return id;
    });
    if (!appId) return undefined;
    const { rows } = await this.db.query(`${APP_SELECT} WHERE a.slug = $1`, [slug]);
    return rows[0];
  }

  async setAppState(appId: string, state: AppRow['state']): Promise<void> {
    await this.db.query('UPDATE apps SET state = $2 WHERE id = $1', [appId, state]);
  }

  async setMediaCredentials(envId: string, accessKey: string, secretKey: string, prefix: string): Promise<void> {
    await this.db.query(
      'UPDATE environments SET media_access_key = $2, media_secret_key = $3, media_prefix = $4 WHERE id = $1',
      [envId, this.secrets.seal(accessKey, 'environments.media_access_key'), this.secrets.seal(secretKey, 'environments.media_secret_key'), prefix],
    );
  }

  async changeEnvironment(
    environmentId: string,
    change: { branch?: string; replicas?: number; allowForcePush?: boolean; backupBeforeRelease?: boolean },
  ): Promise<void> {
    await this.db.query(
      `UPDATE environments SET branch = COALESCE($2, branch), replicas = COALESCE($3, replicas),
         allow_force_push = COALESCE($4, allow_force_push),
         backup_before_release = COALESCE($5, backup_before_release) WHERE id = $1`,
      [environmentId, change.branch ?? null, change.replicas ?? null, change.allowForcePush ?? null, change.backupBeforeRelease ?? null],
    );
  }

  async envVars(environmentId: string): Promise<Record<string, string>> {
    const { rows } = await this.db.query<{ name: string; value: string }>(
      'SELECT name, value FROM env_vars WHERE environment_id = $1 ORDER BY name',
      [environmentId],
    );
    return Object.fromEntries(rows.map((r) => [r.name, this.secrets.open(r.value, 'env_vars.value')]));
  }

  /** Sets and unsets in one transaction: a reader sees all of the change or none of it. */
  async changeEnvVars(environmentId: string, set: Record<string, string>, unset: string[]): Promise<void> {
    await this.transaction(async (client) => {
      if (unset.length) await client.query('DELETE FROM env_vars WHERE environment_id = $1 AND name = ANY($2::text[])', [environmentId, unset]);
      for (const [name, value] of Object.entries(set)) {
        await client.query(
          `INSERT INTO env_vars (environment_id, name, value) VALUES ($1, $2, $3)
           ON CONFLICT (environment_id, name) DO UPDATE SET value = EXCLUDED.value`,
          [environmentId, name, this.secrets.seal(value, 'env_vars.value')],
        );
      }
    });
  }

  /** Every app's slug, whatever its state. */
  async appSlugs(): Promise<string[]> {
    const { rows } = await this.db.query<{ slug: string }>('SELECT slug FROM apps');
    return rows.map((r) => r.slug);
  }

  /** Every app's id, whatever its state. */
  async appIds(): Promise<Set<string>> {
    const { rows } = await this.db.query<{ id: string }>('SELECT id::text AS id FROM apps');
    return new Set(rows.map((r) => r.id));
  }

  async deleteApp(appId: string): Promise<void> {
    await this.db.query('DELETE FROM apps WHERE id = $1', [appId]);
  }

  async environments(appIds: string[]): Promise<EnvironmentRow[]> {
    if (appIds.length === 0) return [];
    const { rows } = await this.db.query(
      "SELECT * FROM environments WHERE app_id = ANY($1::bigint[]) ORDER BY app_id, CASE name WHEN 'test' THEN 0 ELSE 1 END",
      [appIds],
    );
    return rows.map((row: EnvironmentRow) => this.openEnvironment(row));
  }

  private openEnvironment(row: EnvironmentRow): EnvironmentRow {
    return {
      ...row,
      db_password: this.secrets.open(row.db_password, 'environments.db_password'),
      media_access_key: this.secrets.openNullable(row.media_access_key, 'environments.media_access_key'),
      media_secret_key: this.secrets.openNullable(row.media_secret_key, 'environments.media_secret_key'),
      secret_key: this.secrets.openNullable(row.secret_key, 'environments.secret_key'),
    };
  }
}

const APP_SELECT = `SELECT a.*, u.name AS owner_name FROM apps a JOIN users u ON u.id = a.owner_id`;

function reviveToken(raw: Record<string, unknown>): TokenRow {
  return {
    ...(raw as unknown as TokenRow),
    id: String(raw.id),
    user_id: String(raw.user_id),
    created_at: new Date(raw.created_at as string),
    last_used_at: raw.last_used_at ? new Date(raw.last_used_at as string) : null,
    revoked_at: raw.revoked_at ? new Date(raw.revoked_at as string) : null,
    expires_at: raw.expires_at ? new Date(raw.expires_at as string) : null,
  };
}

function reviveUser(raw: Record<string, unknown>): UserRow {
  return {
    id: String(raw.id),
    name: raw.name as string,
    operator: raw.operator as boolean,
    created_at: new Date(raw.created_at as string),
    disabled_at: raw.disabled_at ? new Date(raw.disabled_at as string) : null,
  };
}
