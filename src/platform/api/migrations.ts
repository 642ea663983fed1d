/**
 * The platform's own schema, as an ordered list of migrations. Each runs once, in a transaction,
 * under an advisory lock so two API replicas starting together cannot both apply it.
 */
import type pg from 'pg';
import type { SecretBox } from './secrets.js';
import { sealStoredSecrets } from './secrets-migration.js';

/** What a migration written in code (not SQL) may need. */
export interface MigrationContext {
  secrets: SecretBox;
}

type Migration =
  | { id: number; name: string; sql: string }
  | { id: number; name: string; run: (client: pg.ClientBase, context: MigrationContext) => Promise<void> };

const MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    name: 'users, tokens, apps, environments',
    sql: `
      CREATE TABLE users (
        id bigserial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        operator boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE tokens (
        id text PRIMARY KEY,
        user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
        secret_hash text NOT NULL,
        scope text NOT NULL CHECK (scope IN ('read', 'write')),
        bootstrap boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        last_used_at timestamptz,
        revoked_at timestamptz
      );
      CREATE INDEX tokens_user ON tokens (user_id);
      CREATE TABLE apps (
        id bigserial PRIMARY KEY,
        slug text NOT NULL UNIQUE,
        owner_id bigint NOT NULL REFERENCES users,
        boilerplate text,
        state text NOT NULL DEFAULT 'provisioning' CHECK (state IN ('provisioning', 'ready', 'deleting')),
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX apps_owner ON apps (owner_id);
      CREATE TABLE environments (
        id bigserial PRIMARY KEY,
        app_id bigint NOT NULL REFERENCES apps ON DELETE CASCADE,
        name text NOT NULL CHECK (name IN ('test', 'live')),
        branch text NOT NULL,
        db_name text NOT NULL UNIQUE,
        db_role text NOT NULL UNIQUE,
        db_password text NOT NULL,
        media_bucket text NOT NULL UNIQUE,
        media_prefix text NOT NULL DEFAULT '',
        media_access_key text,
        media_secret_key text,
        created_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (app_id, name)
      );
    `,
  },
  {
    id: 2,
    name: 'deployments and their logs; per-environment secret key and replicas',
    sql: `
      -- Filled by the API from a CSPRNG the first time the environment is deployed.
      ALTER TABLE environments ADD COLUMN secret_key text;
      ALTER TABLE environments ADD COLUMN replicas int NOT NULL DEFAULT 1 CHECK (replicas BETWEEN 0 AND 20);
      CREATE TABLE deployments (
        id bigserial PRIMARY KEY,
        environment_id bigint NOT NULL REFERENCES environments ON DELETE CASCADE,
        kind text NOT NULL CHECK (kind IN ('deploy', 'rollback')),
        state text NOT NULL CHECK (state IN ('queued', 'building', 'releasing', 'deploying', 'succeeded', 'failed')),
        commit text,
        image text,
        reason text,
        created_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz
      );
      -- One deployment at a time per environment: a second insert conflicts.
      CREATE UNIQUE INDEX deployments_one_active ON deployments (environment_id)
        WHERE state NOT IN ('succeeded', 'failed');
      CREATE INDEX deployments_environment ON deployments (environment_id, id DESC);
      CREATE TABLE deployment_log (
        seq bigserial PRIMARY KEY,
        deployment_id bigint NOT NULL REFERENCES deployments ON DELETE CASCADE,
        line text NOT NULL
      );
      CREATE INDEX deployment_log_by_deployment ON deployment_log (deployment_id, seq);
    `,
  },
  {
    id: 3,
    name: 'environment variables set by users',
    sql: `
      CREATE TABLE env_vars (
        environment_id bigint NOT NULL REFERENCES environments ON DELETE CASCADE,
        name text NOT NULL,
        value text NOT NULL,
        PRIMARY KEY (environment_id, name)
      );
    `,
  },
  {
    id: 4,
    name: 'database transfers and backups',
    sql: `
      -- A dump streamed out (pull) or a dump streamed in and restored into a scratch database
      -- (push) that waits for the client to confirm the digest before it is swapped in.
      CREATE TABLE db_transfers (
        id text PRIMARY KEY,
        environment_id bigint NOT NULL REFERENCES environments ON DELETE CASCADE,
        kind text NOT NULL CHECK (kind IN ('dump', 'import')),
        state text NOT NULL CHECK (state IN ('running', 'restored', 'swapping', 'completed', 'failed')),
        scratch_db text,
        bytes bigint NOT NULL DEFAULT 0,
        sha256 text,
        error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz
      );
      -- One import at a time per environment.
      CREATE UNIQUE INDEX db_transfers_one_import ON db_transfers (environment_id)
        WHERE kind = 'import' AND state IN ('running', 'restored', 'swapping');
      CREATE INDEX db_transfers_environment ON db_transfers (environment_id, created_at DESC);
      -- A database an import or a backup restore replaced, kept on the cluster (connections off).
      CREATE TABLE db_backups (
        id text PRIMARY KEY,
        environment_id bigint NOT NULL REFERENCES environments ON DELETE CASCADE,
        database text NOT NULL UNIQUE,
        reason text NOT NULL CHECK (reason IN ('import', 'restore')),
        size_bytes bigint NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX db_backups_environment ON db_backups (environment_id, created_at DESC);
    `,
  },
  {
    id: 7,
    name: 'secrets stored before they were encrypted at rest are sealed',
    run: (client, { secrets }) => sealStoredSecrets(client, secrets),
  },
  {
    id: 9,
    name: 'accounts: disabled users, expiring tokens',
    sql: `
      ALTER TABLE users ADD COLUMN disabled_at timestamptz;
      ALTER TABLE tokens ADD COLUMN expires_at timestamptz;
    `,
  },
  {
    id: 5,
    name: 'roles and databases the platform created on the cluster',
    sql: `
      -- On a shared cluster a role or database with an environment's name may be someone else's:
      -- the platform changes and drops only what is recorded here as its own.
      CREATE TABLE cluster_resources (
        kind text NOT NULL CHECK (kind IN ('role', 'database')),
        name text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (kind, name)
      );
      -- Environments that exist were provisioned by the platform.
      INSERT INTO cluster_resources (kind, name)
        SELECT 'role', db_role FROM environments UNION SELECT 'database', db_name FROM environments
        ON CONFLICT DO NOTHING;
    `,
  },
  {
    id: 10,
    name: 'environments may allow force pushes to their branch',
    sql: `
      -- Off for every environment, existing ones included: rewriting a deployed branch is opted into.
      ALTER TABLE environments ADD COLUMN allow_force_push boolean NOT NULL DEFAULT false;
    `,
  },
  {
    id: 11,
    name: 'backups taken on schedule, on request or before a release; one backup or import at a time',
    sql: `
      ALTER TABLE db_backups DROP CONSTRAINT db_backups_reason_check;
      ALTER TABLE db_backups ADD CONSTRAINT db_backups_reason_check
        CHECK (reason IN ('import', 'restore', 'release', 'scheduled', 'manual'));
      -- A backup copies the live database into a scratch one (pg_dump piped into pg_restore).
      ALTER TABLE db_transfers DROP CONSTRAINT db_transfers_kind_check;
      ALTER TABLE db_transfers ADD CONSTRAINT db_transfers_kind_check CHECK (kind IN ('dump', 'import', 'backup'));
      -- A swap ends every session on the database, a running backup's pg_dump too: one at a time.
      DROP INDEX db_transfers_one_import;
      CREATE UNIQUE INDEX db_transfers_one_import ON db_transfers (environment_id)
        WHERE kind IN ('import', 'backup') AND state IN ('running', 'restored', 'swapping');
    `,
  },
  {
    id: 12,
    name: "a deleted app's databases and buckets are kept for a grace period",
    sql: `
      -- What a deleted app left to purge later: its databases under a retired name (the role too,
      -- NOLOGIN) and its buckets with no key. The slug is free at once; these names are not reused.
      CREATE TABLE retained_resources (
        id bigserial PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('database', 'bucket')),
        name text NOT NULL,
        role text,
        app_slug text NOT NULL,
        app_id bigint NOT NULL,
        environment text NOT NULL,
        deleted_at timestamptz NOT NULL DEFAULT now(),
        purge_after timestamptz NOT NULL,
        UNIQUE (kind, name)
      );
    `,
  },
  {
    id: 13,
    name: 'a backup before each release, and the variables each deployment ran with',
    sql: `
      -- Live backs its database up before a release command runs; test when its owner asks.
      ALTER TABLE environments ADD COLUMN backup_before_release boolean NOT NULL DEFAULT false;
      UPDATE environments SET backup_before_release = true WHERE name = 'live';
      -- The backup taken before this deployment's release (rollback --with-database restores it).
      ALTER TABLE deployments ADD COLUMN release_backup_id text;
      -- The user's variables this deployment ran with, sealed as one JSON object (a rollback
      -- restores them); NULL for deployments made before.
      ALTER TABLE deployments ADD COLUMN env_vars text;
    `,
  },
];

const LOCK_KEY = 0x64697669; // "divi"

export async function migrate(client: pg.ClientBase, context: MigrationContext): Promise<number[]> {
  await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
  try {
    await client.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (id int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    const { rows } = await client.query<{ id: number }>('SELECT id FROM schema_migrations');
    const applied = new Set(rows.map((r) => r.id));
    const ran: number[] = [];
    for (const migration of MIGRATIONS) {
      if (applied.has(migration.id)) continue;
      await client.query('BEGIN');
      try {
        if ('sql' in migration) await client.query(migration.sql);
        else await migration.run(client, context);
        await client.query('INSERT INTO schema_migrations (id, name) VALUES ($1, $2)', [migration.id, migration.name]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      }
      ran.push(migration.id);
    }
    return ran;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]);
  }
}
