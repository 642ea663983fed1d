/**
 * Deleting an app (issue 12, §7) on the shared test platform: `divio project delete` asks for the
 * typed slug (or --yes), another user cannot delete it, and once deleted its services, routes and
 * images are gone at once while its database and bucket are kept, closed, for the grace period. A
 * new app of the same slug inherits nothing: no deployments, no rollback target, no image, an
 * empty database and another bucket. After the grace period the platform purges what was kept.
 */
import { mkdtemp, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { docker } from '../../src/core/docker.js';
import { LABEL_APP_ID } from '../../src/platform/api/deploy/dockerfile-references.js';
import { createApp, createUser, request, viaRouter, type TestUser } from '../helpers/api.js';
import { divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';

describeWithDocker('deleting an app', () => {
  const platform = usePlatform();
  const slug = `gone-${Math.random().toString(36).slice(2, 8)}`;
  let parent = '';
  let owner: TestUser;
  let stranger: TestUser;
  let ownerEnv: Record<string, string>;
  let first: { id: string; database: string; bucket: string; image: string };

  const clusterContainer = async () => {
    const [container] = await docker().listContainers({ filters: { label: [`com.docker.swarm.service.name=${platform().name}-postgres`] } });
    if (!container) throw new Error('the platform cluster is not running');
    return container.Id;
  };
  const adminSql = async (sql: string, database = 'divio_platform') =>
    (await execa('docker', ['exec', '-i', await clusterContainer(), 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', database], { input: sql })).stdout.trim();
  const appServices = async () =>
    (await docker().listServices({ filters: { label: [`divio.platform=${platform().name}`, `divio.app=${slug}`] } })).map((s) => s.Spec?.Name);
  const site = () => viaRouter(platform().port, `test-${slug}.localhost`, '/healthz');
  const bucketFiles = async (bucket: string) => (await readdir(join(platform().dataDir, 'media', bucket), { recursive: true }).catch(() => [])).map(String);
  const appRecord = async () => request(platform().endpoint, `/v1/apps/${slug}`, { token: owner.token });

  beforeAll(async () => {
    parent = await mkdtemp(join(tmpdir(), 'divio-app-deletion-'));
    owner = await createUser(platform().endpoint, await operatorToken(), 'deleter');
    stranger = await createUser(platform().endpoint, await operatorToken(), 'stranger');
    ownerEnv = { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: owner.token };
    const created = await divio(['project', 'create', slug], { cwd: parent, env: ownerEnv });
    expect(created.exitCode, created.stderr).toBe(0);
    const dir = join(parent, slug);
    const deployed = await divio(['project', 'deploy', 'test'], { cwd: dir, env: ownerEnv, timeout: 900_000 });
    expect(deployed.exitCode, deployed.stderr).toBe(0);
    await mkdir(join(dir, 'data', 'media'), { recursive: true });
    await writeFile(join(dir, 'data', 'media', 'keep.txt'), 'kept through the grace period\n');
    const pushed = await divio(['project', 'push', 'media', 'test'], { cwd: dir, env: ownerEnv });
    expect(pushed.exitCode, pushed.stderr).toBe(0);

    const app = (await appRecord()).body as { environments: Array<{ name: string; database: { name: string }; media: { bucket: string } }> };
    const test = app.environments.find((e) => e.name === 'test')!;
    await adminSql("CREATE TABLE kept_rows (v text); INSERT INTO kept_rows VALUES ('precious');", test.database.name);
    const id = await adminSql(`SELECT id FROM apps WHERE slug = '${slug}'`);
    const [image] = await docker().listImages({ filters: { label: [`${LABEL_APP_ID}=${id}`, `divio.app=${slug}`] } });
    first = { id, database: test.database.name, bucket: test.media.bucket, image: image?.Id ?? '' };
    expect(first.image).not.toBe('');
    expect(await appServices()).toContain(`${platform().name}-app-${slug}-test`);
    expect((await site()).status).toBe(200);
    expect(await bucketFiles(first.bucket)).toEqual(expect.arrayContaining([expect.stringContaining('keep.txt')]));
  }, 1_200_000);

  afterAll(async () => {
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  it('needs the typed slug or --yes, and another user cannot delete it', async () => {
    const unconfirmed = await divio(['project', 'delete', slug], { cwd: parent, env: ownerEnv });
    expect(unconfirmed.exitCode).not.toBe(0);
    expect(unconfirmed.stderr).toMatch(/needs confirmation[\s\S]*--yes/);

    const foreign = await divio(['project', 'delete', slug, '--yes'], { cwd: parent, env: { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: stranger.token } });
    expect(foreign.exitCode).not.toBe(0);
    expect(foreign.stderr).toMatch(/not found|no app/i);

    expect((await appRecord()).status).toBe(200);
    expect(await appServices()).toContain(`${platform().name}-app-${slug}-test`);
    expect((await site()).status).toBe(200);
  });

  it('stops and removes services, routes and images at once, and keeps the data closed for the grace period', async () => {
    const deleted = await divio(['project', 'delete', slug, '--yes', '--json'], { cwd: parent, env: ownerEnv });
    expect(deleted.exitCode, deleted.stderr).toBe(0);
    const answer = json<{ slug: string; dataKeptUntil: string }>(deleted);
    expect(answer.slug).toBe(slug);
    const days = (Date.parse(answer.dataKeptUntil) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.9);
    expect(days).toBeLessThan(7.1);

    expect((await appRecord()).status).toBe(404);
    expect(await appServices()).toEqual([]);
    expect(await docker().listImages({ filters: { label: [`${LABEL_APP_ID}=${first.id}`, `divio.app=${slug}`] } })).toEqual([]);
    const page = await site();
    expect(page.status).not.toBe(200);
    expect(page.body).toMatch(/nothing (is )?deployed/i);
    expect(await readdir(join(platform().dataDir, 'router', 'apps'))).not.toContain(`test-${slug}.conf`);

    const retired = `divio_del_${first.id}_test`;
    expect(await adminSql(`SELECT datname FROM pg_database WHERE datname IN ('${first.database}', '${retired}')`)).toBe(retired);
    expect(await adminSql(`SELECT rolcanlogin FROM pg_roles WHERE rolname = '${retired}'`)).toBe('f');
    // Closed to everyone; an operator bringing it back opens it first, as the test does to look.
    expect(await adminSql(`SELECT datallowconn FROM pg_database WHERE datname = '${retired}'`)).toBe('f');
    await adminSql(`ALTER DATABASE ${retired} ALLOW_CONNECTIONS true`);
    expect(await adminSql('SELECT v FROM kept_rows', retired)).toBe('precious');
    await adminSql(`ALTER DATABASE ${retired} ALLOW_CONNECTIONS false`);
    expect(await bucketFiles(first.bucket)).toEqual(expect.arrayContaining([expect.stringContaining('keep.txt')]));
    const kept = await adminSql(`SELECT kind || ' ' || name FROM retained_resources WHERE app_id = ${first.id} ORDER BY kind, name`);
    expect(kept.split('\n')).toEqual([`bucket ${first.bucket}`, `database ${retired}`, `bucket ${first.bucket.replace('-test', '-live')}`, `database divio_del_${first.id}_live`].sort());
  });

  it('a new app of the same slug inherits nothing', async () => {
    const again = join(parent, 'again');
    await mkdir(again);
    const created = await divio(['project', 'create', slug], { cwd: again, env: ownerEnv });
    expect(created.exitCode, created.stderr).toBe(0);
    const app = (await appRecord()).body as { environments: Array<{ name: string; database: { name: string }; media: { bucket: string } }> };
    const test = app.environments.find((e) => e.name === 'test')!;
    // The same database name, a fresh database; another bucket (the kept one holds the old files).
    expect(test.database.name).toBe(first.database);
    expect(await adminSql("SELECT count(*) FROM pg_tables WHERE tablename = 'kept_rows'", test.database.name)).toBe('0');
    expect(test.media.bucket).not.toBe(first.bucket);
    expect(await bucketFiles(test.media.bucket)).toEqual([]);

    const dir = join(again, slug);
    const deployments = await divio(['project', 'deployments', '--json'], { cwd: dir, env: ownerEnv });
    expect(deployments.exitCode, deployments.stderr).toBe(0);
    expect(JSON.stringify(json(deployments))).not.toMatch(/succeeded|failed/);
    const rollback = await divio(['project', 'rollback', 'test', '--yes'], { cwd: dir, env: ownerEnv });
    expect(rollback.exitCode).not.toBe(0);
    const newId = await adminSql(`SELECT id FROM apps WHERE slug = '${slug}'`);
    expect(newId).not.toBe(first.id);
    expect(await docker().listImages({ filters: { label: [`${LABEL_APP_ID}=${newId}`, `divio.app=${slug}`] } })).toEqual([]);
    expect((await site()).status).not.toBe(200);

    // Its first deploy replaces the network the deleted app left (those go hourly) and builds anew.
    const deployed = await divio(['project', 'deploy', 'test'], { cwd: dir, env: ownerEnv, timeout: 900_000 });
    expect(deployed.exitCode, deployed.stderr).toBe(0);
    expect(deployed.stdout).toContain(`Removing the network a deleted app named ${slug} left`);
    expect(deployed.stdout).not.toContain('already built');
    expect(deployed.stdout).toContain(`Building`);
    expect(deployed.stdout).toContain(`/${slug}.${newId}:`);
    expect((await site()).status).toBe(200);
    const network = (await docker().listNetworks({ filters: { name: [`${platform().name}-net-${slug}-test`] } }))[0];
    expect(network?.Labels?.[LABEL_APP_ID]).toBe(newId);
  }, 900_000);

  it("purges the kept data once the grace period is over", async () => {
    const retired = `divio_del_${first.id}_test`;
    await adminSql(`UPDATE retained_resources SET purge_after = now() - interval '1 minute' WHERE app_id = ${first.id}`);
    // Every delete looks for data past its period (as the hourly timer does).
    const throwaway = await createApp(platform().endpoint, owner.token, 'purge-trigger');
    expect((await request(platform().endpoint, `/v1/apps/${throwaway}`, { method: 'DELETE', token: owner.token })).status).toBe(200);
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && (await adminSql(`SELECT count(*) FROM retained_resources WHERE app_id = ${first.id}`)) !== '0') {
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const apiLog = async () => (await execa('docker', ['service', 'logs', '--raw', '--tail', '80', `${platform().name}-api`], { reject: false })).stdout + '';
    const left = await adminSql(`SELECT count(*) FROM retained_resources WHERE app_id = ${first.id}`);
    expect(left, left === '0' ? '' : await apiLog()).toBe('0');
    expect(await adminSql(`SELECT count(*) FROM pg_database WHERE datname = '${retired}'`)).toBe('0');
    expect(await adminSql(`SELECT count(*) FROM pg_roles WHERE rolname = '${retired}'`)).toBe('0');
    expect(await bucketFiles(first.bucket)).toEqual([]);
    // The new app of that slug is untouched by the purge.
    expect((await appRecord()).status).toBe(200);
    // The throwaway's own data is kept for its period.
    expect(await adminSql(`SELECT count(*) FROM retained_resources WHERE app_slug = '${throwaway}'`)).toBe('4');
  });
});
