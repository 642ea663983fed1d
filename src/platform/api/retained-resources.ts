/**
 * What a deleted app leaves behind for a grace period: each environment's database (renamed, its
 * role renamed and NOLOGIN) and bucket (its keys revoked), so an operator can bring back a mistaken
 * delete. The slug is free at once and a new app of that name gets fresh names; once the period is
 * over, `purge` drops them for good.
 */
import type pg from 'pg';
import type { DatabaseCluster, MediaStorage } from './parts.js';

export interface RetainedResource {
  id: string;
  kind: 'database' | 'bucket';
  name: string;
  role: string | null;
  app_slug: string;
  app_id: string;
  environment: string;
  deleted_at: Date;
  purge_after: Date;
}

export const DEFAULT_RETENTION_DAYS = 7;

export { retiredDatabaseName } from './resource-names.js';

export class RetainedResources {
  constructor(
    private readonly db: pg.Pool,
    readonly retentionDays = DEFAULT_RETENTION_DAYS,
  ) {}

  async record(entry: { kind: 'database' | 'bucket'; name: string; role?: string; appSlug: string; appId: string; environment: string }): Promise<void> {
    await this.db.query(
      `INSERT INTO retained_resources (kind, name, role, app_slug, app_id, environment, purge_after)
       VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(days => $7))
       ON CONFLICT (kind, name) DO NOTHING`,
      [entry.kind, entry.name, entry.role ?? null, entry.appSlug, entry.appId, entry.environment, this.retentionDays],
    );
  }

  async list(): Promise<RetainedResource[]> {
    const { rows } = await this.db.query<RetainedResource>('SELECT id::text AS id, kind, name, role, app_slug, app_id::text AS app_id, environment, deleted_at, purge_after FROM retained_resources ORDER BY retained_resources.id');
    return rows;
  }

  /** Bucket names a new environment must not take: their objects are someone's kept data. */
  async bucketNames(): Promise<Set<string>> {
    const { rows } = await this.db.query<{ name: string }>("SELECT name FROM retained_resources WHERE kind = 'bucket'");
    return new Set(rows.map((r) => r.name));
  }

  /** Drop what is past its grace period; each one is forgotten only once it is gone. */
  async purge(parts: { cluster: DatabaseCluster; media: MediaStorage }, log: (line: string) => void, now = new Date()): Promise<RetainedResource[]> {
    const { rows } = await this.db.query<RetainedResource>(
      'SELECT id::text AS id, kind, name, role, app_slug, app_id::text AS app_id, environment, deleted_at, purge_after FROM retained_resources WHERE purge_after <= $1 ORDER BY retained_resources.id',
      [now],
    );
    const purged: RetainedResource[] = [];
    for (const row of rows) {
      try {
        if (row.kind === 'database') await parts.cluster.deprovision({ database: row.name, role: row.role ?? row.name });
        else await parts.media.deprovision({ bucket: row.name });
        await this.db.query('DELETE FROM retained_resources WHERE id = $1', [row.id]);
        log(`purged the ${row.kind} ${row.name} of deleted app ${row.app_slug} (${row.environment}), kept since ${row.deleted_at.toISOString()}`);
        purged.push(row);
      } catch (error) {
        log(`could not purge the ${row.kind} ${row.name} of deleted app ${row.app_slug}: ${(error as Error).message}; retried later`);
      }
    }
    return purged;
  }
}
