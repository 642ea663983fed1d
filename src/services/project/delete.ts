/** `project delete`: ask the platform to delete an app (what runs goes now, its data after the grace period). */
import type { ApiClient } from '../../core/api-client.js';
import * as routes from '../../shared/api/routes.js';
import type { DeletedApp } from '../../shared/api/schemas.js';

export async function deleteApp(client: ApiClient, slug: string): Promise<DeletedApp> {
  return client.call(routes.deleteApp, { params: { slug } });
}

/** What the user reads once the app is gone. */
export function deletedLines(deleted: DeletedApp): string[] {
  const lines = [`Deleted ${deleted.slug}: its services, routes, images and repository are gone.`];
  lines.push(
    deleted.dataKeptUntil
      ? `Its databases and media are kept, closed to everyone, until ${deleted.dataKeptUntil}; the platform's operator can bring them back until then.`
      : 'Its databases and media were dropped with it.',
  );
  return lines;
}
