/** `divio project snapshots`: the local snapshots of a project, with its db service started when needed. */
import type { IO } from '../../../core/io.js';
import { ensureLocalDatabase } from '../data/remote.js';
import type { LocalEnvironment } from '../local-environment.js';
import { openLocalDatabase } from './local-database.js';
import { deleteSnapshot, listSnapshots, restoreSnapshot, type Snapshot } from './snapshots.js';

async function database(local: LocalEnvironment, io: IO) {
  await ensureLocalDatabase(local, io);
  return openLocalDatabase(local);
}

export async function localSnapshots(local: LocalEnvironment, io: IO): Promise<{ app: string; snapshots: Snapshot[] }> {
  return { app: local.project.slug, snapshots: await listSnapshots(await database(local, io)) };
}

export async function restoreLocalSnapshot(local: LocalEnvironment, io: IO, id: string) {
  const db = await database(local, io);
  return { app: local.project.slug, ...(await io.task(`Restoring local snapshot ${id}`, () => restoreSnapshot(db, id))) };
}

export async function deleteLocalSnapshot(local: LocalEnvironment, io: IO, id: string): Promise<{ app: string; deleted: Snapshot }> {
  return { app: local.project.slug, deleted: await deleteSnapshot(await database(local, io), id) };
}
