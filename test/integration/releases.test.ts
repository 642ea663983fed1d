/**
 * Releases on the shared test platform (issue 13, §4): live backs its database up before every
 * release command and names the backup in the deploy log; a bad migration is undone with one
 * `rollback live ID --with-database`, which also serves the variables that deployment ran with;
 * the refusal when the release being undone took no backup leaves everything as it was; and a
 * release job an API restart left running is awaited before the next release runs.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { docker } from '../../src/core/docker.js';
import { createUser, request } from '../helpers/api.js';
import { divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';

describeWithDocker('releases: a backup before each, undone with rollback --with-database', () => {
  const platform = usePlatform();
  const slug = `rel-${Math.random().toString(36).slice(2, 8)}`;
  let parent = '';
  let dir = '';
  let env: Record<string, string> = {};
  let liveDb = '';
  let liveRole = '';
  const cli = (args: string[]) => divio(args, { cwd: dir, env, timeout: 900_000 });
  const deployments: Record<string, { id: string; releaseBackup?: string | null }> = {};

  const clusterContainer = async () => {
    const [container] = await docker().listContainers({ filters: { label: [`com.docker.swarm.service.name=${platform().name}-postgres`] } });
    if (!container) throw new Error('the platform cluster is not running');
    return container.Id;
  };
  const adminSql = async (sql: string, database: string) =>
    (await execa('docker', ['exec', '-i', await clusterContainer(), 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', database], { input: sql })).stdout.trim();
  const precious = async () =>
    (await adminSql("SELECT to_regclass('precious') IS NULL", liveDb)) === 't' ? 'no table' : adminSql("SELECT string_agg(v, ',' ORDER BY v) FROM precious", liveDb);
  const commitAndPush = async (message: string) => {
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@x', 'add', '-A'], { cwd: dir });
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@x', 'commit', '-qm', message], { cwd: dir });
    const pushed = await execa('git', ['push', '-q'], { cwd: dir, env: { ...process.env, ...env }, reject: false });
    expect(pushed.exitCode, pushed.stderr).toBe(0);
  };
  const liveVariables = async () => {
    const inspected = await docker().getService(`${platform().name}-app-${slug}-live`).inspect();
    return ((inspected.Spec?.TaskTemplate as { ContainerSpec?: { Env?: string[] } }).ContainerSpec?.Env ?? []).filter((e) => e.startsWith('FLAVOUR='));
  };

  beforeAll(async () => {
    const user = await createUser(platform().endpoint, await operatorToken(), 'releaser');
    env = { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: user.token };
    parent = await mkdtemp(join(tmpdir(), 'divio-releases-'));
    dir = join(parent, slug);
    const created = await divio(['project', 'create', slug], { cwd: parent, env });
    expect(created.exitCode, created.stderr).toBe(0);
    const app = (await request(platform().endpoint, `/v1/apps/${slug}`, { token: user.token })).body as { environments: Array<{ name: string; database: { name: string; role: string } }> };
    const live = app.environments.find((e) => e.name === 'live')!;
    liveDb = live.database.name;
    liveRole = live.database.role;
  }, 120_000);

  afterAll(async () => {
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  it('live takes a backup before its release command and names it in the deploy log', async () => {
    const deployed = await cli(['project', 'deploy', 'live', '--yes', '--json']);
    expect(deployed.exitCode, deployed.stderr).toBe(0);
    deployments.d1 = json(deployed);
    expect(deployments.d1!.releaseBackup).toMatch(/^[0-9a-f]{16}$/);
    expect(deployed.stderr).toContain(`Backup ${deployments.d1!.releaseBackup} taken`);
    expect(deployed.stderr).toMatch(/rollback live --with-database/);
    const backups = json(await cli(['project', 'backups', 'list', 'live', '--json']));
    expect(backups.backups).toEqual(expect.arrayContaining([expect.objectContaining({ id: deployments.d1!.releaseBackup, reason: 'release' })]));

    // The users' data from here on; then a variable change redeploys (another backup first).
    // As the app would: the table is the environment role's own.
    await adminSql(`SET ROLE "${liveRole}"; CREATE TABLE precious (v text); INSERT INTO precious VALUES ('kept');`, liveDb);
    const set = await cli(['project', 'env-vars', 'set', 'FLAVOUR=two', '--environment', 'live', '--json']);
    expect(set.exitCode, set.stderr).toBe(0);
    deployments.d2 = json(set).deployment;
    expect(deployments.d2!.releaseBackup).toMatch(/^[0-9a-f]{16}$/);
    expect(await liveVariables()).toEqual(['FLAVOUR=two']);
  });

  it('a bad migration is undone with one rollback --with-database, variables and all', async () => {
    await writeFile(join(dir, 'migrations', '0099_bad.sql'), 'DROP TABLE IF EXISTS precious;\n');
    await commitAndPush('a migration that loses data');
    const bad = await cli(['project', 'deploy', 'live', '--yes', '--json']);
    expect(bad.exitCode, bad.stderr).toBe(0);
    deployments.d3 = json(bad);
    expect(await precious()).toBe('no table');

    // Back to the first deployment: the database as it was before the release of the oldest one
    // undone (d2's backup: after the users' row, before the drop) and d1's variables (no FLAVOUR).
    const rolled = await cli(['project', 'rollback', 'live', deployments.d1!.id, '--with-database', '--yes', '--json']);
    expect(rolled.exitCode, rolled.stderr).toBe(0);
    expect(json(rolled)).toMatchObject({ kind: 'rollback', state: 'succeeded' });
    expect(rolled.stderr).toContain(`Restoring the database from backup ${deployments.d2!.releaseBackup}, taken before deployment ${deployments.d2!.id}'s release`);
    expect(rolled.stderr).toMatch(/the one it replaced is kept as backup [0-9a-f]{16}/);
    expect(rolled.stderr).toContain(`Variables as deployment ${deployments.d1!.id} ran with: removed FLAVOUR`);
    expect(await precious()).toBe('kept');
    expect(json(await cli(['project', 'env-vars', 'list', '--environment', 'live', '--json'])).variables).toEqual({});
    expect(await liveVariables()).toEqual([]);
    const backups = json(await cli(['project', 'backups', 'list', 'live', '--json']));
    expect(backups.backups.map((b: { reason: string }) => b.reason)).toContain('restore');
  });

  it('refuses --with-database when the release being undone took no backup, changing nothing', async () => {
    const off = await cli(['project', 'configure', 'live', '--no-backup-before-release', '--json']);
    expect(off.exitCode, off.stderr).toBe(0);
    expect(json(off).backupBeforeRelease).toBe(false);
    const set = await cli(['project', 'env-vars', 'set', 'FLAVOUR=four', '--environment', 'live', '--json']);
    expect(set.exitCode, set.stderr).toBe(0);
    expect(json(set).deployment.releaseBackup ?? null).toBeNull();
    await adminSql(`SET ROLE "${liveRole}"; INSERT INTO precious VALUES ('after');`, liveDb);

    const refused = await cli(['project', 'rollback', 'live', '--with-database', '--yes']);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toMatch(/took no backup before its release/);
    expect(refused.stderr).toMatch(/--backup-before-release/);
    expect(await precious()).toBe('after,kept');
    expect(await liveVariables()).toEqual(['FLAVOUR=four']);
    const on = await cli(['project', 'configure', 'live', '--backup-before-release']);
    expect(on.exitCode, on.stderr).toBe(0);
  });

  it('awaits a release job an API restart left running before the next release runs', async () => {
    // What a restart mid-release leaves: a release job of this environment, still migrating.
    const leftover = `${platform().name}-release-${slug}-live-leftover`;
    await docker().createService({
      Name: leftover,
      Labels: { 'divio.platform': platform().name, 'divio.app': slug, 'divio.env': 'live', 'divio.component': 'release' },
      TaskTemplate: {
        ContainerSpec: { Image: 'debian:bookworm-slim', Command: ['sleep', '8'] },
        RestartPolicy: { Condition: 'none' },
      },
      Mode: { ReplicatedJob: { MaxConcurrent: 1, TotalCompletions: 1 } },
    } as never);
    const deployed = await cli(['project', 'deploy', 'live', '--yes']);
    expect(deployed.exitCode, deployed.stderr).toBe(0);
    const log = deployed.stdout + deployed.stderr;
    expect(log).toContain(`Waiting for the release job ${leftover} of an earlier deployment to finish`);
    expect(log).toContain(`Removed the earlier release job ${leftover}`);
    expect(log.indexOf(`Removed the earlier release job ${leftover}`)).toBeLessThan(log.indexOf('Backing up the live database'));
    expect((await docker().listServices({ filters: { name: [leftover] } })).filter((s) => s.Spec?.Name === leftover)).toEqual([]);
  });
});
