/** `backups list` and `backups restore`: the database copies the platform keeps per environment. */
import { formatBytes, formatTable } from '../../../core/io.js';
import * as routes from '../../../shared/api/routes.js';
import type { Backup, DatabaseReplaced } from '../../../shared/api/schemas.js';
import type { RemoteEnvironment } from './remote.js';

export interface BackupListing {
  app: string;
  environment: string;
  /** How many the platform keeps per environment. */
  keep: number;
  backups: Backup[];
}

export async function listBackups({ client, slug, environment }: RemoteEnvironment): Promise<BackupListing> {
  const answer = await client.call(routes.listBackups, { params: { slug, env: environment } });
  return { app: slug, environment, keep: answer.keep, backups: answer.backups };
}

export async function restoreBackup({ client, slug, environment }: RemoteEnvironment, id: string): Promise<DatabaseReplaced & { app: string; restored: string }> {
  const answer = await client.call(routes.restoreBackup, { params: { slug, env: environment, id } });
  return { app: slug, restored: id, ...answer };
}

export function renderBackupTable(listing: BackupListing): string[] {
  if (listing.backups.length === 0) return [`No backups of ${listing.app}'s ${listing.environment} database yet (push db and restores keep the database they replace).`];
  const rows = listing.backups.map((b) => [b.id, b.createdAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'), b.reason, formatBytes(b.sizeBytes)]);
  return [...formatTable(['ID', 'CREATED', 'REPLACED BY', 'SIZE'], rows), `(${listing.environment} keeps the last ${listing.keep})`];
}
