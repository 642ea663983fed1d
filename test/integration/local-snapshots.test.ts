/**
 * Local snapshots against a real PostgreSQL in the project's db container: import db keeps the
 * database it replaces; `snapshots restore` brings it back atomically (and is itself undoable);
 * only the last few are kept; a snapshot takes no connections; --no-snapshot drops instead.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { minimalProject, type TestProject } from '../helpers/projects.js';

describeWithDocker('local snapshots', () => {
  let project: TestProject;
  let dbContainer: string;
  let work: string;

  const psql = async (sql: string, database = 'app') => {
    const r = await execa('docker', ['exec', '-i', dbContainer, 'psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', database], { input: sql });
    return r.stdout.trim();
  };
  const marker = () => psql('SELECT string_agg(v, \',\' ORDER BY v) FROM marker;');
  const cli = (args: string[]) => divio(['project', ...args], { cwd: project.dir });
  const snapshots = async () => json((await cli(['snapshots', 'list', '--json']))).snapshots as { id: string; reason: string; database: string; sizeBytes: number }[];
  /** A plain SQL dump whose data says which one it is. */
  const dumpSaying = async (value: string) => {
    const path = join(work, `${value}.sql`);
    await writeFile(path, `CREATE TABLE marker (v text);\nINSERT INTO marker VALUES ('${value}');\n`);
    return path;
  };

  beforeAll(async () => {
    project = await minimalProject('snap');
    work = await mkdtemp(join(tmpdir(), 'divio-snap-'));
    const up = await divio(['project', 'up', '--skip-release'], { cwd: project.dir });
    expect(up.exitCode, String(up.stderr)).toBe(0);
    dbContainer = (await execa('docker', ['ps', '-q', '--filter', `label=com.docker.compose.project=${project.slug}`, '--filter', 'label=com.docker.compose.service=db'])).stdout.trim();
    await psql("CREATE TABLE marker (v text); INSERT INTO marker VALUES ('local work');");
  });
  afterAll(async () => {
    await project?.destroy();
  });

  it('import db keeps the replaced database as a snapshot, and restore brings it back (keeping the one it replaces)', async () => {
    expect(await snapshots()).toEqual([]);
    const imported = await cli(['import', 'db', await dumpSaying('from a dump'), '--json']);
    expect(imported.exitCode, imported.stderr).toBe(0);
    const { snapshot } = json(imported);
    expect(snapshot).toMatchObject({ id: expect.stringMatching(/^\d{8}-\d{6}-[0-9a-f]{4}$/), reason: 'import db' });
    expect(await marker()).toBe('from a dump');

    const listed = await snapshots();
    expect(listed).toEqual([expect.objectContaining({ id: snapshot.id, reason: 'import db', sizeBytes: expect.any(Number) })]);
    // Nothing connects to a snapshot, so nothing changes it.
    expect(await psql(`SELECT datallowconn FROM pg_database WHERE datname = '${listed[0]!.database}'`, 'postgres')).toBe('f');

    const human = await cli(['snapshots', 'list']);
    expect(human.stdout).toMatch(new RegExp(`${snapshot.id}\\s+\\S+ \\S+\\s+import db`));

    const restored = await cli(['snapshots', 'restore', snapshot.id, '--json']);
    expect(restored.exitCode, restored.stderr).toBe(0);
    expect(await marker()).toBe('local work');
    const undo = json(restored).snapshot;
    expect(undo.reason).toBe(`snapshots restore ${snapshot.id}`);
    // The snapshot restored from stays; the database it replaced is one more snapshot.
    expect((await snapshots()).map((s) => s.id)).toEqual([undo.id, snapshot.id]);
    // ...and restoring that undoes the restore.
    expect((await cli(['snapshots', 'restore', undo.id])).exitCode).toBe(0);
    expect(await marker()).toBe('from a dump');
    // The app's database takes connections, whatever was swapped in.
    expect(await psql("SELECT datallowconn FROM pg_database WHERE datname = 'app'", 'postgres')).toBe('t');
  });

  it('keeps the last three; --no-snapshot drops the replaced database instead', async () => {
    for (const value of ['one', 'two', 'three', 'four']) {
      expect((await cli(['import', 'db', await dumpSaying(value)])).exitCode).toBe(0);
    }
    // Dropped in the background: wait for the surplus to go.
    let kept = await snapshots();
    for (let i = 0; i < 40 && kept.length > 3; i++) {
      await new Promise((r) => setTimeout(r, 250));
      kept = await snapshots();
    }
    expect(kept).toHaveLength(3);
    const before = kept.map((s) => s.id);
    const plain = await cli(['import', 'db', await dumpSaying('five'), '--no-snapshot', '--json']);
    expect(plain.exitCode, plain.stderr).toBe(0);
    expect(json(plain).snapshot).toBeNull();
    expect((await snapshots()).map((s) => s.id)).toEqual(before);
    expect(await marker()).toBe('five');
  });

  it('refuses an unknown or malformed id and changes nothing; delete removes one', async () => {
    const before = await marker();
    const [newest] = await snapshots();
    const unknown = await cli(['snapshots', 'restore', '20000101-000000-abcd']);
    expect(unknown.exitCode).not.toBe(0);
    expect(unknown.stderr).toMatch(/there is no local snapshot 20000101-000000-abcd/);
    const malformed = await cli(['snapshots', 'restore', 'x"; DROP DATABASE app; --']);
    expect(malformed.exitCode).toBe(4);
    expect(malformed.stderr).toMatch(/is not a snapshot id/);
    expect(await marker()).toBe(before);

    const deleted = await cli(['snapshots', 'delete', newest!.id]);
    expect(deleted.exitCode, deleted.stderr).toBe(0);
    expect((await snapshots()).map((s) => s.id)).not.toContain(newest!.id);
    expect(await marker()).toBe(before);
  });
});
