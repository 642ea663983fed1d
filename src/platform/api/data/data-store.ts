/** Database transfers and backups in the platform's own database. SQL for them stays in this file. */
import type pg from 'pg';
import type { Backup, DatabaseTransfer, EnvironmentName } from '../../../shared/api/schemas.js';

export type TransferKind = DatabaseTransfer['kind'];
export type TransferState = DatabaseTransfer['state'];

export interface TransferRow {
  id: string;
  environment_id: string;
  kind: TransferKind;
  state: TransferState;
  scratch_db: string | null;
  bytes: string;
  sha256: string | null;
  error: string | null;
  created_at: Date;
  finished_at: Date | null;
}

export interface BackupRow {
  id: string;
  environment_id: string;
  database: string;
  reason: Backup['reason'];
  size_bytes: string;
  created_at: Date;
}

/** Postgres' unique_violation: the one-import-per-environment index said no. */
const UNIQUE_VIOLATION = '23505';

export class DataStore {
  constructor(private readonly db: pg.Pool) {}

  /** Undefined when another import into the environment holds the slot. */
  async insertTransfer(row: { id: string; environmentId: string; kind: TransferKind; state: TransferState; scratchDb: string | null }): Promise<TransferRow | undefined> {
    try {
      const { rows } = await this.db.query<TransferRow>(
        'INSERT INTO db_transfers (id, environment_id, kind, state, scratch_db) VALUES ($1, $2, $3, $4, $5) RETURNING *',
        [row.id, row.environmentId, row.kind, row.state, row.scratchDb],
      );
      return rows[0];
    } catch (error) {
      if ((error as { code?: string }).code === UNIQUE_VIOLATION) return undefined;
      throw error;
    }
  }

  async transfer(environmentId: string, id: string): Promise<TransferRow | undefined> {
    const { rows } = await this.db.query<TransferRow>('SELECT * FROM db_transfers WHERE id = $1 AND environment_id = $2', [id, environmentId]);
    return rows[0];
  }

  /** Imports of an environment that have not reached a final state. */
  async openImports(environmentId: string): Promise<TransferRow[]> {
    const { rows } = await this.db.query<TransferRow>(
      "SELECT * FROM db_transfers WHERE environment_id = $1 AND kind = 'import' AND state IN ('running', 'restored', 'swapping')",
      [environmentId],
    );
    return rows;
  }

  async openTransfers(): Promise<TransferRow[]> {
    const { rows } = await this.db.query<TransferRow>("SELECT * FROM db_transfers WHERE state IN ('running', 'restored', 'swapping')");
    return rows;
  }

  /** Moves a transfer on only from `from` (a final state never changes again). */
  async advance(id: string, from: TransferState[], change: { state: TransferState; bytes?: number; sha256?: string; error?: string }): Promise<TransferRow | undefined> {
    const final = change.state === 'completed' || change.state === 'failed';
    const { rows } = await this.db.query<TransferRow>(
      `UPDATE db_transfers SET state = $2, bytes = COALESCE($3, bytes), sha256 = COALESCE($4, sha256), error = COALESCE($5, error),
         finished_at = CASE WHEN $6 THEN now() ELSE finished_at END
       WHERE id = $1 AND state = ANY($7) RETURNING *`,
      [id, change.state, change.bytes ?? null, change.sha256 ?? null, change.error ?? null, final, from],
    );
    return rows[0];
  }

  /** The transfer completes and the replaced database becomes a backup, together or not at all. */
  async completeWithBackup(transferId: string, backup: { id: string; environmentId: string; database: string; reason: Backup['reason']; sizeBytes: number } | null): Promise<{ transfer: TransferRow; backup: BackupRow | null }> {
    const client = await this.db.connect();
    try {
      await client.query('BEGIN');
      let backupRow: BackupRow | null = null;
      if (backup) {
        const inserted = await client.query<BackupRow>(
          'INSERT INTO db_backups (id, environment_id, database, reason, size_bytes) VALUES ($1, $2, $3, $4, $5) RETURNING *',
          [backup.id, backup.environmentId, backup.database, backup.reason, backup.sizeBytes],
        );
        backupRow = inserted.rows[0] ?? null;
      }
      const { rows } = await client.query<TransferRow>(
        "UPDATE db_transfers SET state = 'completed', finished_at = now() WHERE id = $1 RETURNING *",
        [transferId],
      );
      await client.query('COMMIT');
      return { transfer: rows[0]!, backup: backupRow };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async backups(environmentId: string): Promise<BackupRow[]> {
    const { rows } = await this.db.query<BackupRow>('SELECT * FROM db_backups WHERE environment_id = $1 ORDER BY created_at DESC, id', [environmentId]);
    return rows;
  }

  /** When the environment's newest backup of `reason` was taken (the scheduler's memory). */
  async newestBackupAt(environmentId: string, reason: Backup['reason']): Promise<Date | null> {
    const { rows } = await this.db.query<{ at: Date | null }>(
      'SELECT max(created_at) AS at FROM db_backups WHERE environment_id = $1 AND reason = $2',
      [environmentId, reason],
    );
    return rows[0]?.at ? new Date(rows[0].at) : null;
  }

  async backup(environmentId: string, id: string): Promise<BackupRow | undefined> {
    const { rows } = await this.db.query<BackupRow>('SELECT * FROM db_backups WHERE id = $1 AND environment_id = $2', [id, environmentId]);
    return rows[0];
  }

  async allBackupDatabases(): Promise<string[]> {
    const { rows } = await this.db.query<{ database: string }>('SELECT database FROM db_backups');
    return rows.map((r) => r.database);
  }

  /** Every database an environment's imports and restores made or kept: scratch and backup names, for deleting the app. */
  async importDatabases(environmentId: string): Promise<{ id: string; scratch_db: string | null }[]> {
    const { rows } = await this.db.query<{ id: string; scratch_db: string | null }>(
      "SELECT id, scratch_db FROM db_transfers WHERE environment_id = $1 AND kind = 'import'",
      [environmentId],
    );
    return rows;
  }

  async deleteBackup(id: string): Promise<void> {
    await this.db.query('DELETE FROM db_backups WHERE id = $1', [id]);
  }

  /** Every environment's database name (a crash mid-swap may have left one refusing connections). */
  async environmentDatabases(): Promise<string[]> {
    const { rows } = await this.db.query<{ db_name: string }>('SELECT db_name FROM environments');
    return rows.map((r) => r.db_name);
  }
}

export function renderTransfer(row: TransferRow, environment: EnvironmentName): DatabaseTransfer {
  return {
    id: row.id,
    environment,
    kind: row.kind,
    state: row.state,
    bytes: Number(row.bytes),
    sha256: row.sha256,
    error: row.error,
    createdAt: new Date(row.created_at).toISOString(),
    finishedAt: row.finished_at ? new Date(row.finished_at).toISOString() : null,
  };
}

export function renderBackup(row: BackupRow, environment: EnvironmentName): Backup {
  return {
    id: row.id,
    environment,
    reason: row.reason,
    sizeBytes: Number(row.size_bytes),
    createdAt: new Date(row.created_at).toISOString(),
  };
}
