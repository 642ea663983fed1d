/**
 * Backups on the shared test platform, through the built CLI: four pushes in a row keep the
 * pre-push original (retention by age and count) and any backup an operation prunes is named with
 * the reason; `backups list` shows why each was taken, when and its size; `backups download`
 * writes a custom-format dump that `import db` takes (an existing file kept unless --force, an app
 * the token cannot see refused like elsewhere); and the API takes the daily backup of live when
 * its scheduled time comes (`platform start --backup-schedule`).
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { docker } from '../../src/core/docker.js';
import { BIN, REPO_ROOT, divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { createApp, createUser, request } from '../helpers/api.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';

describeWithDocker('backups: retention, listing, download, the daily schedule', () => {
  const platform = usePlatform();
  const slug = `bkp-${Math.random().toString(36).slice(2, 8)}`;
  let parent: string;
  let dir: string;
  let env: Record<string, string>;
  let token: string;
  const cli = (args: string[]) => divio(args, { cwd: dir, env, timeout: 600_000 });

  const localSql = async (sql: string) => {
    const [container] = await docker().listContainers({ filters: { label: [`com.docker.compose.project=${slug}`, 'com.docker.compose.service=db'] } });
    if (!container) throw new Error('the local db container is not running');
    return (await execa('docker', ['exec', '-i', container.Id, 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', 'app'], { input: sql })).stdout.trim();
  };
  const clusterSql = async (sql: string, database: string) => {
    const [container] = await docker().listContainers({ filters: { label: [`com.docker.swarm.service.name=${platform().name}-postgres`] } });
    if (!container) throw new Error('the platform cluster is not running');
    return (await execa('docker', ['exec', '-i', container.Id, 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', database], { input: sql })).stdout.trim();
  };
  const envDb = (environment: 'test' | 'live') => `${slug.replace(/-/g, '_')}_${environment}`;
  const setGeneration = (n: number) => localSql(`DROP TABLE IF EXISTS generation; CREATE TABLE generation (n int); INSERT INTO generation VALUES (${n});`);
  const push = async (environment: 'test' | 'live') => {
    const pushed = await cli(['project', 'push', 'db', environment, '--yes', '--json']);
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    return json(pushed);
  };
  const listing = async (environment: 'test' | 'live') => {
    const listed = await cli(['project', 'backups', 'list', environment, '--json']);
    expect(listed.exitCode, listed.stderr).toBe(0);
    return json(listed);
  };

  beforeAll(async () => {
    const user = await createUser(platform().endpoint, await operatorToken(), 'keeper');
    token = user.token;
    env = { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: user.token };
    parent = await mkdtemp(join(tmpdir(), 'divio-bkp-'));
    dir = join(parent, slug);
    const created = await divio(['project', 'create', slug], { cwd: parent, env });
    expect(created.exitCode, created.stderr).toBe(0);
    // pull starts the local database by itself.
    const started = await cli(['project', 'pull', 'db']);
    expect(started.exitCode, started.stderr).toBe(0);
  });

  afterAll(async () => {
    if (dir) await cli(['project', 'down', '--volumes']).catch(() => undefined);
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  let original: { id: string };

  it('four pushes in a row keep the pre-push original; it restores; nothing was pruned silently', async () => {
    // The environment's "real" data, then four pushes over it.
    await setGeneration(0);
    await push('test');
    const pushes = [];
    for (let n = 1; n <= 4; n++) {
      await setGeneration(n);
      pushes.push(await push('test'));
    }
    original = pushes[0].backup;
    expect(original).toMatchObject({ reason: 'import', environment: 'test' });
    // Younger than 7 days: nothing pruned by any of them, and every push said so (an empty list).
    for (const p of pushes) expect(p.pruned).toEqual([]);
    for (const p of pushes) expect(p.prunedBackups).toEqual([]);
    const listed = await listing('test');
    expect(listed.backups.map((b: { id: string }) => b.id)).toContain(original.id);
    expect(listed.backups).toHaveLength(5);
    // The original holds generation 0: restore it and look.
    const restored = await cli(['project', 'backups', 'restore', 'test', original.id, '--yes', '--json']);
    expect(restored.exitCode, restored.stderr).toBe(0);
    expect(json(restored)).toMatchObject({ restored: original.id, backup: { reason: 'restore' }, pruned: [] });
    expect(await clusterSql('SELECT n FROM generation', envDb('test'))).toBe('0');
  });

  it('list shows why each backup was taken, when and its size, as a table and as JSON', async () => {
    const manual = await cli(['project', 'backups', 'create', 'test', '--json']);
    expect(manual.exitCode, manual.stderr).toBe(0);
    const taken = json(manual);
    expect(taken.backup).toMatchObject({ reason: 'manual', environment: 'test' });
    expect(taken.backup.sizeBytes).toBeGreaterThan(1000);

    const listed = await listing('test');
    expect(listed.retention).toEqual({ keep: 3, keepDays: 7, max: 10, schedule: null });
    expect(listed.backups.map((b: { reason: string }) => b.reason)).toEqual(['manual', 'restore', 'import', 'import', 'import', 'import', 'import']);
    for (const b of listed.backups) {
      expect(Date.now() - Date.parse(b.createdAt)).toBeLessThan(30 * 60_000);
      expect(b.sizeBytes).toBeGreaterThan(1000);
    }
    // Newest first.
    const times = listed.backups.map((b: { createdAt: string }) => Date.parse(b.createdAt));
    expect([...times].sort((a, b) => b - a)).toEqual(times);

    const table = await cli(['project', 'backups', 'list', 'test']);
    expect(table.exitCode, table.stderr).toBe(0);
    const lines = table.stdout.split('\n');
    expect(lines[0]).toMatch(/^ID\s+TAKEN\s+REASON\s+SIZE$/);
    expect(lines[1]).toMatch(new RegExp(`^${taken.backup.id}\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ\\s+manual\\s+[\\d.]+ (KiB|MiB)$`));
    expect(lines.find((l) => l.startsWith(original.id))).toMatch(/before push\/import/);
    expect(lines.some((l) => /\sbefore restore\s/.test(l))).toBe(true);
    expect(table.stdout).toMatch(/keeps the newest 3, the newest of each reason, and every backup younger than 7 days up to 10/);
  });

  it('more than max young backups: the oldest are pruned and named with why; the newest pre-push backup never is', async () => {
    const before = (await listing('test')).backups;
    const newestImport = before.find((b: { reason: string }) => b.reason === 'import');
    // The backup of the environment's first database (before the push of generation 0).
    const oldest = before.at(-1);
    expect(oldest.id).not.toBe(original.id);
    let lastOutput = '';
    for (let i = 0; i < 4; i++) {
      const made = await cli(['project', 'backups', 'create', 'test']);
      expect(made.exitCode, made.stderr).toBe(0);
      lastOutput = made.stdout;
    }
    // 7 + 4 = 11 backups, all younger than 7 days, at most 10 kept: the oldest went, and the CLI said so.
    expect(lastOutput).toMatch(new RegExp(`Pruned backup ${oldest.id} \\(before push/import, [^)]*\\): more than 10 backups are younger than 7 days\\.`));
    // One more: the pre-push original goes now, named in the API's answer with what it was and why.
    const api = await request(platform().endpoint, `/v1/apps/${slug}/environments/test/backups`, { method: 'POST', token });
    expect(api.status).toBe(201);
    expect(api.body.pruned).toEqual([original.id]);
    expect(api.body.prunedBackups).toEqual([expect.objectContaining({ id: original.id, reason: 'import', why: 'more than 10 backups are younger than 7 days' })]);
    const listed = await listing('test');
    expect(listed.backups).toHaveLength(10);
    const ids = listed.backups.map((b: { id: string }) => b.id);
    expect(ids).toContain(newestImport.id);
    expect(ids).not.toContain(original.id);
    expect(ids).not.toContain(oldest.id);
    expect(listed.backups.filter((b: { reason: string }) => b.reason === 'restore')).toHaveLength(1);
    // Pruned databases are dropped in the background.
    const deadline = Date.now() + 60_000;
    while (Number(await clusterSql(`SELECT count(*) FROM pg_database WHERE datname IN ('divio_bk_${oldest.id}', 'divio_bk_${original.id}')`, 'postgres')) > 0) {
      if (Date.now() > deadline) throw new Error('the pruned backups were not dropped');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });

  it('download writes a custom-format dump that import db takes; an existing file is kept unless --force', async () => {
    const listed = await listing('test');
    const restoreBackup = listed.backups.find((b: { reason: string }) => b.reason === 'restore');
    // The database the restore replaced held generation 4 (the last push).
    const file = join(parent, 'gen4.dump');
    const downloaded = await cli(['project', 'backups', 'download', 'test', restoreBackup.id, file, '--json']);
    expect(downloaded.exitCode, downloaded.stderr).toBe(0);
    const result = json(downloaded);
    expect(result).toMatchObject({ backup: restoreBackup.id, file, verified: true });
    expect((await stat(file)).size).toBe(result.bytes);
    expect((await readFile(file)).subarray(0, 5).toString()).toBe('PGDMP');

    await writeFile(join(parent, 'keep.dump'), 'precious');
    const refused = await cli(['project', 'backups', 'download', 'test', restoreBackup.id, join(parent, 'keep.dump')]);
    expect(refused.exitCode).toBe(4);
    expect(refused.stderr).toMatch(/already exists; nothing was written/);
    expect(await readFile(join(parent, 'keep.dump'), 'utf8')).toBe('precious');
    const forced = await cli(['project', 'backups', 'download', 'test', restoreBackup.id, join(parent, 'keep.dump'), '--force']);
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect((await readFile(join(parent, 'keep.dump'))).subarray(0, 5).toString()).toBe('PGDMP');

    await setGeneration(99);
    const imported = await cli(['project', 'import', 'db', file]);
    expect(imported.exitCode, imported.stderr).toBe(0);
    expect(await localSql('SELECT n FROM generation')).toBe('4');
    // No copy left behind on the cluster, and the transfer recorded what was sent.
    expect(await clusterSql(`SELECT count(*) FROM pg_database WHERE datname LIKE 'divio\\_tx\\_%'`, 'postgres')).toBe('0');
    expect(await clusterSql(`SELECT count(*) FROM db_transfers WHERE kind = 'dump' AND state = 'completed' AND bytes = ${result.bytes} AND sha256 = '${result.sha256}'`, 'divio_platform')).toBe('1');
  });

  it("download of another user's app, or an unknown backup, is refused with the same 404 as elsewhere", async () => {
    const other = await createUser(platform().endpoint, await operatorToken(), 'stranger');
    const theirs = await createApp(platform().endpoint, other.token, 'theirs');
    const id = (await listing('test')).backups[0].id;
    const foreign = await request(platform().endpoint, `/v1/apps/${slug}/environments/test/backups/${id}/dump`, { token: other.token });
    expect(foreign.status).toBe(404);
    expect(foreign.body.error.code).toBe('not_found');
    const throughOwnApp = await request(platform().endpoint, `/v1/apps/${theirs}/environments/test/backups/${id}/dump`, { token: other.token });
    expect(throughOwnApp.status).toBe(404);
    const cliForeign = await divio(['project', 'backups', 'download', 'test', id, join(parent, 'never.dump'), '--app', slug], {
      cwd: parent,
      env: { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: other.token },
    });
    expect(cliForeign.exitCode).not.toBe(0);
    expect(cliForeign.stderr).toMatch(/not found/i);
    await expect(stat(join(parent, 'never.dump'))).rejects.toThrow();
    const unknown = await cli(['project', 'backups', 'download', 'test', '0123456789abcdef', join(parent, 'never.dump')]);
    expect(unknown.exitCode).not.toBe(0);
    expect(unknown.stderr).toMatch(/Backup 0123456789abcdef not found/);
    await expect(stat(join(parent, 'never.dump'))).rejects.toThrow();
  });

  it('with --backup-schedule the API takes the daily backup of live when its time comes', async () => {
    await setGeneration(7);
    await push('live');
    const before = (await listing('live')).backups.filter((b: { reason: string }) => b.reason === 'scheduled');
    expect(before).toEqual([]);
    const { dataDir, name, port, configDir } = platform();
    const start = (schedule: string) =>
      execa('node', [BIN, 'platform', 'start', '--data-dir', dataDir, '--port', String(port), '--name', name, '--backup-schedule', schedule, '--json'], {
        cwd: REPO_ROOT,
        env: { DIVIO_CONFIG_DIR: configDir, NO_COLOR: '1', CI: 'true' },
        stdin: 'ignore',
        reject: false,
        timeout: 10 * 60_000,
      });
    // A time a little ahead: taken by the API's timer, or at its start if the restart took longer.
    const due = new Date(Date.now() + 45_000);
    const schedule = due.toISOString().slice(11, 19);
    try {
      const started = await start(schedule);
      expect(started.exitCode, String(started.stderr)).toBe(0);
      const deadline = Date.now() + 180_000;
      let scheduled: { createdAt: string; sizeBytes: number }[] = [];
      while (Date.now() < deadline) {
        const res = await request(platform().endpoint, `/v1/apps/${slug}/environments/live/backups`, { token }).catch(() => undefined);
        if (res?.status === 200) {
          expect(res.body.retention.schedule).toBe(schedule);
          scheduled = res.body.backups.filter((b: { reason: string }) => b.reason === 'scheduled');
          if (scheduled.length) break;
        }
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      expect(scheduled).toHaveLength(1);
      expect(Date.parse(scheduled[0]!.createdAt)).toBeGreaterThanOrEqual(due.getTime() - 1000);
      // A copy of live as it was: generation 7.
      const id = (scheduled[0] as unknown as { id: string }).id;
      const file = join(parent, 'scheduled.dump');
      const downloaded = await cli(['project', 'backups', 'download', 'live', id, file]);
      expect(downloaded.exitCode, downloaded.stderr).toBe(0);
      expect((await cli(['project', 'import', 'db', file])).exitCode).toBe(0);
      expect(await localSql('SELECT n FROM generation')).toBe('7');
      const table = await cli(['project', 'backups', 'list', 'live']);
      expect(table.stdout).toMatch(new RegExp(`^${id}\\s+\\S+ \\S+\\s+scheduled\\s+`, 'm'));
      expect(table.stdout).toContain(`live is backed up daily at ${schedule} UTC`);
    } finally {
      const off = await start('off');
      expect(off.exitCode, String(off.stderr)).toBe(0);
    }
    // Turned off: the setting is gone from the platform's answer.
    expect((await listing('live')).retention.schedule).toBeNull();
  });
});
