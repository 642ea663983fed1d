/**
 * Local snapshots (the DDEV habit): the database that `pull db`, `import db` or a snapshot restore
 * replaces is kept instead of dropped, so a pull over a morning's local work can be taken back.
 * A snapshot is a database beside the app's, `<db>__snap_<id>`, with connections off (nothing
 * changes it) and a comment that says when and why it was kept. The newest few are kept.
 * Restoring copies the snapshot (CREATE DATABASE … TEMPLATE) and swaps the copy in like an import,
 * keeping the database it replaces as a snapshot in turn: a restore is itself undoable.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { DivioError, ExitCode, InvalidInputError } from '../../../core/errors.js';
import { formatBytes, formatTable } from '../../../core/io.js';
import {
  dropDatabase,
  dropDatabaseInBackground,
  ident,
  literal,
  runSql,
  swapInDatabase,
  tempDatabaseName,
  type LocalDatabase,
} from './local-database.js';

/** How many snapshots a project keeps; older ones are dropped when a new one is taken. */
export const SNAPSHOTS_KEPT = 3;
const SNAPSHOT_MARKER = '__snap_';
/** `20261202-184700-3fa9`: sorts by time, and stays a short identifier suffix. */
export const SNAPSHOT_ID = /^\d{8}-\d{6}-[0-9a-f]{4}$/;

const commentSchema = z.object({ reason: z.string(), createdAt: z.string() });

export interface Snapshot {
  id: string;
  /** What replaced the database this snapshot holds, e.g. "pull db test". */
  reason: string;
  createdAt: string;
  sizeBytes: number;
  database: string;
}

export function snapshotDatabaseName(db: LocalDatabase, id: string): string {
  return `${db.name}${SNAPSHOT_MARKER}${id}`;
}

export function newSnapshotId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${stamp}-${randomBytes(2).toString('hex')}`;
}

/** Newest first. */
export async function listSnapshots(db: LocalDatabase): Promise<Snapshot[]> {
  const prefix = `${db.name}${SNAPSHOT_MARKER}`;
  const pattern = prefix.replaceAll('_', '\\_') + '%';
  const rows = await runSql(
    db,
    `SELECT datname || '|' || pg_database_size(oid) || '|' || coalesce(encode(convert_to(shobj_description(oid, 'pg_database'), 'UTF8'), 'hex'), '')
       FROM pg_database WHERE datname LIKE ${literal(pattern)};`,
  );
  const snapshots: Snapshot[] = [];
  for (const line of rows.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const [database, size, comment] = line.split('|');
    const id = database!.slice(prefix.length);
    if (!SNAPSHOT_ID.test(id)) continue;
    // Hex: one line per row whatever the comment holds (base64 wraps, a comment may hold '|').
    const meta = parseComment(Buffer.from(comment ?? '', 'hex').toString('utf8'));
    snapshots.push({ id, database: database!, sizeBytes: Number(size), reason: meta?.reason ?? 'unknown', createdAt: meta?.createdAt ?? idTime(id) });
  }
  return snapshots.sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}

/**
 * Swap `fresh` in for the app's database, keeping the database it replaces as a snapshot (or
 * dropping it when `reason` is null). Returns the snapshot taken, if there was a database to keep.
 */
export async function swapInKeepingSnapshot(
  db: LocalDatabase,
  fresh: string,
  reason: string | null,
  token: string,
  protect: ReadonlySet<string> = new Set(),
): Promise<{ replaced: boolean; snapshot: Snapshot | null; pruned: string[] }> {
  if (reason === null) {
    const old = tempDatabaseName(db.name, 'old', token);
    const { replaced } = await swapInDatabase(db, fresh, old);
    if (replaced) await dropDatabaseInBackground(db, old);
    return { replaced, snapshot: null, pruned: [] };
  }
  const id = newSnapshotId();
  const name = snapshotDatabaseName(db, id);
  // The swap turns connections off on the replaced database before renaming it, so the snapshot
  // comes out closed: the app reconnects to the new database, never to the kept one.
  const { replaced } = await swapInDatabase(db, fresh, name);
  if (!replaced) return { replaced, snapshot: null, pruned: [] };
  const createdAt = new Date().toISOString();
  await runSql(db, `COMMENT ON DATABASE ${ident(name)} IS ${literal(JSON.stringify({ reason, createdAt }))};`);
  const pruned = await pruneSnapshots(db, protect);
  const sizeBytes = Number((await runSql(db, `SELECT pg_database_size(${literal(name)});`)).trim());
  return { replaced, snapshot: { id, database: name, reason, createdAt, sizeBytes }, pruned };
}

/** Keep the newest SNAPSHOTS_KEPT (and any protected); the rest are dropped in the background (a drop forces a checkpoint). */
async function pruneSnapshots(db: LocalDatabase, protect: ReadonlySet<string>): Promise<string[]> {
  const surplus = (await listSnapshots(db)).slice(SNAPSHOTS_KEPT).filter((snapshot) => !protect.has(snapshot.id));
  for (const snapshot of surplus) await dropDatabaseInBackground(db, snapshot.database);
  return surplus.map((snapshot) => snapshot.id);
}

export async function findSnapshot(db: LocalDatabase, id: string): Promise<Snapshot> {
  if (!SNAPSHOT_ID.test(id)) {
    throw new InvalidInputError(`"${id}" is not a snapshot id`, { hint: 'Snapshot ids look like 20261202-184700-3fa9; see `divio project snapshots list`.' });
  }
  const found = (await listSnapshots(db)).find((snapshot) => snapshot.id === id);
  if (!found) {
    throw new DivioError(`there is no local snapshot ${id}`, { exitCode: ExitCode.usage, hint: 'See `divio project snapshots list`.' });
  }
  return found;
}

/**
 * Put a copy of snapshot `id` in place of the app's database; the snapshot itself stays, and the
 * database it replaces is kept as a new snapshot. A failure leaves the app's database as it was.
 */
export async function restoreSnapshot(db: LocalDatabase, id: string): Promise<{ restored: Snapshot; snapshot: Snapshot | null; pruned: string[] }> {
  const restored = await findSnapshot(db, id);
  const token = randomBytes(5).toString('hex');
  const fresh = tempDatabaseName(db.name, 'import', token);
  try {
    await runSql(db, `CREATE DATABASE ${ident(fresh)} TEMPLATE ${ident(restored.database)};`);
    // The snapshot restored from is never pruned by its own restore, even when it is the oldest.
    const swapped = await swapInKeepingSnapshot(db, fresh, `snapshots restore ${id}`, token, new Set([id]));
    return { restored, snapshot: swapped.snapshot, pruned: swapped.pruned };
  } catch (error) {
    await dropDatabase(db, fresh).catch(() => undefined);
    throw error;
  }
}

export async function deleteSnapshot(db: LocalDatabase, id: string): Promise<Snapshot> {
  const snapshot = await findSnapshot(db, id);
  await dropDatabase(db, snapshot.database);
  return snapshot;
}

/** What a command prints when it kept the database it replaced. */
export function snapshotKeptLine(snapshot: Snapshot): string {
  return `The database it replaced is kept as local snapshot ${snapshot.id} (divio project snapshots restore ${snapshot.id}).`;
}

export function renderSnapshotTable(app: string, snapshots: Snapshot[]): string[] {
  if (snapshots.length === 0) return [`No local snapshots of ${app}'s database yet (pull db and import db keep the database they replace).`];
  const rows = snapshots.map((s) => [s.id, s.createdAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'), s.reason, formatBytes(s.sizeBytes)]);
  return [...formatTable(['ID', 'TAKEN', 'REPLACED BY', 'SIZE'], rows), `(the last ${SNAPSHOTS_KEPT} are kept)`];
}

function parseComment(text: string): z.infer<typeof commentSchema> | undefined {
  try {
    const parsed = commentSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

function idTime(id: string): string {
  const m = /^(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})/.exec(id)!;
  return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.000Z`;
}
