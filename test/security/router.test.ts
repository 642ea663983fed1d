/**
 * The router's configuration is shared by every tenant (issue 12, §6): a route nginx refuses is
 * taken back, the deployment fails saying so, and every app keeps being served. nginx is made to
 * refuse with a configuration file that does not parse, planted in the router's apps directory
 * beside the routes (what a bad route would be); with it gone, the same deploy works. Both apps
 * are deployed first: an environment's first deploy restarts the router (it joins the
 * environment's network), and nginx would not start at all with the bad file there.
 */
import { mkdtemp, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createUser, viaRouter } from '../helpers/api.js';
import { divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';

describeWithDocker('router: a route nginx refuses is never left in place', () => {
  const platform = usePlatform();
  const served = `rtok-${Math.random().toString(36).slice(2, 8)}`;
  const refused = `rtno-${Math.random().toString(36).slice(2, 8)}`;
  let parent = '';
  let env: Record<string, string> = {};
  const appsDir = () => join(platform().dataDir, 'router', 'apps');
  const broken = () => join(appsDir(), 'zz-broken.conf');

  beforeAll(async () => {
    const user = await createUser(platform().endpoint, await operatorToken(), 'router');
    env = { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: user.token };
    parent = await mkdtemp(join(tmpdir(), 'divio-router-'));
    for (const slug of [served, refused]) {
      const created = await divio(['project', 'create', slug], { cwd: parent, env });
      expect(created.exitCode, created.stderr).toBe(0);
    }
    for (const slug of [served, refused]) {
      const deployed = await divio(['project', 'deploy', 'test'], { cwd: join(parent, slug), env, timeout: 900_000 });
      expect(deployed.exitCode, deployed.stderr).toBe(0);
    }
  }, 1_200_000);

  afterAll(async () => {
    await unlink(broken()).catch(() => undefined);
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  it('fails the deployment whose route nginx refuses, takes the route back, and keeps serving every app', async () => {
    const before = await readdir(appsDir());
    const route = join(appsDir(), `test-${refused}.conf`);
    const routeBefore = await readFile(route, 'utf8');
    await writeFile(broken(), 'server { this is not nginx configuration\n');
    const deployed = await divio(['project', 'deploy', 'test', '--json'], { cwd: join(parent, refused), env, timeout: 900_000 });
    await unlink(broken());
    expect(deployed.exitCode).not.toBe(0);
    expect(deployed.stderr).toMatch(new RegExp(`the route for test-${refused}\\.localhost was not taken up, so it was taken back`));
    // Its route is the one nginx still serves; no file came or went.
    expect(await readFile(route, 'utf8')).toBe(routeBefore);
    expect((await readdir(appsDir())).sort()).toEqual(before.sort());
    expect((await viaRouter(platform().port, `test-${served}.localhost`, '/healthz')).status).toBe(200);
    expect((await viaRouter(platform().port, `test-${refused}.localhost`, '/healthz')).status).toBe(200);

    // With the bad file gone, the same deploy routes.
    const again = await divio(['project', 'deploy', 'test', '--json'], { cwd: join(parent, refused), env, timeout: 900_000 });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(json(again).state).toBe('succeeded');
    expect((await viaRouter(platform().port, `test-${refused}.localhost`, '/healthz')).status).toBe(200);
    expect((await viaRouter(platform().port, `test-${served}.localhost`, '/healthz')).status).toBe(200);
  });
});
