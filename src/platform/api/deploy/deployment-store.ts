/** Deployments and their logs in the platform database. */
import type pg from 'pg';
import type { Deployment, DeploymentState, EnvironmentName } from '../../../shared/api/schemas.js';
import type { SecretBox } from '../secrets.js';

export interface DeploymentRow {
  id: string;
  environment_id: string;
  kind: 'deploy' | 'rollback';
  state: DeploymentState;
  commit: string | null;
  image: string | null;
  reason: string | null;
  created_at: Date;
  finished_at: Date | null;
  /** The backup taken before this deployment's release command. */
  release_backup_id: string | null;
  /** Sealed JSON of the user's variables it ran with (NULL: made before they were recorded). */
  env_vars: string | null;
  app_slug: string;
  environment: EnvironmentName;
}

const SELECT = `SELECT d.*, a.slug AS app_slug, e.name AS environment
  FROM deployments d JOIN environments e ON e.id = d.environment_id JOIN apps a ON a.id = e.app_id`;

export const FINAL_STATES: readonly DeploymentState[] = ['succeeded', 'failed'];

export class DeploymentStore {
  /** `secrets` seals the environment's SECRET_KEY, as the Store seals its other secrets. */
  constructor(
    private readonly db: pg.Pool,
    private readonly secrets: SecretBox,
  ) {}

  /** Undefined when another deployment of this environment is still in progress. */
  async insert(environmentId: string, kind: DeploymentRow['kind'], commit: string | null, image: string | null = null): Promise<DeploymentRow | undefined> {
    try {
      const { rows } = await this.db.query<{ id: string }>(
        `INSERT INTO deployments (environment_id, kind, state, commit, image) VALUES ($1, $2, 'queued', $3, $4) RETURNING id`,
        [environmentId, kind, commit, image],
      );
      return this.get(rows[0]!.id);
    } catch (error) {
      if ((error as { code?: string }).code === '23505') return undefined;
      throw error;
    }
  }

  async get(id: string): Promise<DeploymentRow | undefined> {
    const { rows } = await this.db.query<DeploymentRow>(`${SELECT} WHERE d.id = $1`, [id]);
    return rows[0];
  }

  async forApp(appId: string, environment?: EnvironmentName, limit = 50): Promise<DeploymentRow[]> {
    const { rows } = await this.db.query<DeploymentRow>(
      `${SELECT} WHERE a.id = $1 AND ($2::text IS NULL OR e.name = $2) ORDER BY d.id DESC LIMIT $3`,
      [appId, environment ?? null, limit],
    );
    return rows;
  }

  async inProgress(environmentId: string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `SELECT 1 FROM deployments WHERE environment_id = $1 AND state NOT IN ('succeeded', 'failed')`,
      [environmentId],
    );
    return (rowCount ?? 0) > 0;
  }

  /** Successful deployments of one environment, newest first. */
  async succeeded(environmentId: string): Promise<DeploymentRow[]> {
    const { rows } = await this.db.query<DeploymentRow>(
      `${SELECT} WHERE d.environment_id = $1 AND d.state = 'succeeded' AND d.image IS NOT NULL ORDER BY d.id DESC`,
      [environmentId],
    );
    return rows;
  }

  /**
   * The image an earlier build of COMMIT recorded for this app instance (either environment), by
   * digest: what a deploy of the same commit runs again. Tag references (from before digests were
   * recorded) do not count: the tag may have been pushed over since.
   */
  async recordedImage(appId: string, commit: string): Promise<string | undefined> {
    const { rows } = await this.db.query<{ image: string }>(
      `SELECT d.image FROM deployments d JOIN environments e ON e.id = d.environment_id
        WHERE e.app_id = $1 AND d.commit = $2 AND d.kind = 'deploy' AND d.image LIKE '%@sha256:%'
        ORDER BY d.id DESC LIMIT 1`,
      [appId, commit],
    );
    return rows[0]?.image;
  }

  async setState(id: string, state: DeploymentState, fields: { commit?: string; image?: string; reason?: string } = {}): Promise<void> {
    const final = FINAL_STATES.includes(state);
    await this.db.query(
      `UPDATE deployments SET state = $2, commit = COALESCE($3, commit), image = COALESCE($4, image),
              reason = COALESCE($5, reason), finished_at = CASE WHEN $6 THEN now() ELSE finished_at END
        WHERE id = $1 AND state NOT IN ('succeeded', 'failed')`,
      // A final state is final: a job that outlived a restart (already marked failed) cannot revive it.
      [id, state, fields.commit ?? null, fields.image ?? null, fields.reason ?? null, final],
    );
  }

  async setReleaseBackup(id: string, backupId: string): Promise<void> {
    await this.db.query('UPDATE deployments SET release_backup_id = $2 WHERE id = $1', [id, backupId]);
  }

  /** The user's variables the deployment runs with, kept (sealed) so a rollback can restore them. */
  async recordVariables(id: string, variables: Record<string, string>): Promise<void> {
    await this.db.query('UPDATE deployments SET env_vars = $2 WHERE id = $1', [id, this.secrets.seal(JSON.stringify(variables), 'deployments.env_vars')]);
  }

  /** Undefined for a deployment made before variables were recorded. */
  variablesOf(row: DeploymentRow): Record<string, string> | undefined {
    if (row.env_vars === null) return undefined;
    return JSON.parse(this.secrets.open(row.env_vars, 'deployments.env_vars')) as Record<string, string>;
  }

  async appendLog(id: string, lines: string[]): Promise<void> {
    if (lines.length === 0) return;
    await this.db.query('INSERT INTO deployment_log (deployment_id, line) SELECT $1, unnest($2::text[])', [id, lines]);
  }

  async logSince(id: string, afterSeq: string, limit = 1000): Promise<{ seq: string; line: string }[]> {
    const { rows } = await this.db.query<{ seq: string; line: string }>(
      'SELECT seq, line FROM deployment_log WHERE deployment_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
      [id, afterSeq, limit],
    );
    return rows;
  }

  /** Deployments a platform restart interrupted: they can never finish, so they failed. */
  async failInterrupted(): Promise<DeploymentRow[]> {
    const { rows } = await this.db.query<{ id: string }>(
      `UPDATE deployments SET state = 'failed', reason = 'the platform restarted during this deployment', finished_at = now()
        WHERE state NOT IN ('succeeded', 'failed') RETURNING id`,
    );
    const out: DeploymentRow[] = [];
    for (const { id } of rows) {
      await this.appendLog(id, ['The platform restarted during this deployment; it did not finish.']);
      const row = await this.get(id);
      if (row) out.push(row);
    }
    return out;
  }

  /** The environment's secret key, made once from a CSPRNG value the caller offers. */
  async ensureSecretKey(environmentId: string, candidate: string): Promise<string> {
    const { rows } = await this.db.query<{ secret_key: string }>(
      `UPDATE environments SET secret_key = COALESCE(secret_key, $2) WHERE id = $1 RETURNING secret_key`,
      [environmentId, this.secrets.seal(candidate, 'environments.secret_key')],
    );
    return this.secrets.open(rows[0]!.secret_key, 'environments.secret_key');
  }
}

export function renderDeployment(row: DeploymentRow): Deployment {
  return {
    id: row.id,
    app: row.app_slug,
    environment: row.environment,
    kind: row.kind,
    state: row.state,
    commit: row.commit,
    image: row.image,
    reason: row.reason,
    releaseBackup: row.release_backup_id,
    createdAt: row.created_at.toISOString(),
    finishedAt: row.finished_at ? row.finished_at.toISOString() : null,
  };
}
