/**
 * Names made from slugs, on the shared test platform: a slug whose host name label or bucket name
 * would pass its limit is refused at create (400, never a 500, nothing made), by the API and by
 * the CLI before it registers anything; the longest allowed slug gets working names.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { routeConfig } from '../../src/platform/api/deploy/deploy-service.js';
import { renderRouterConfig } from '../../src/services/platform/router-config.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { divio } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';
import { createUser, request, type TestUser } from '../helpers/api.js';

describeWithDocker('names from slugs', () => {
  const platform = usePlatform();
  let user: TestUser;
  let parent: string;

  beforeAll(async () => {
    user = await createUser(platform().endpoint, await operatorToken(), 'namer');
    parent = await mkdtemp(join(tmpdir(), 'divio-names-'));
  });
  afterAll(async () => {
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  it('a 60-character slug is refused at create, with a clear error, and nothing is made', async () => {
    const long = `n${Math.random().toString(36).slice(2, 8)}${'x'.repeat(53)}`;
    expect(long).toHaveLength(60);
    const created = await request(platform().endpoint, '/v1/apps', { method: 'POST', token: user.token, body: { slug: long } });
    expect(created.status).toBe(400);
    expect(created.body.error).toMatchObject({ code: 'invalid_input', field: 'body.slug' });
    expect(created.body.error.message).toMatch(/60 characters, more than 58/);
    expect((await request(platform().endpoint, `/v1/apps/${long}`, { token: user.token })).status).toBe(404);
    const listed = await request(platform().endpoint, '/v1/apps', { token: user.token });
    expect(JSON.stringify(listed.body)).not.toContain(long);

    const cli = await divio(['project', 'create', long], { cwd: parent, env: { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: user.token } });
    expect(cli.exitCode).toBe(4);
    expect(cli.stderr).toMatch(/is not a valid app slug[\s\S]*more than 58/);
    expect(await readdir(parent)).toEqual([]);
  });

  it('the longest allowed slug gets host names whose labels fit', async () => {
    const longest = `m${Math.random().toString(36).slice(2, 8)}${'y'.repeat(51)}`;
    expect(longest).toHaveLength(58);
    const created = await request(platform().endpoint, '/v1/apps', { method: 'POST', token: user.token, body: { slug: longest } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    for (const environment of created.body.environments as { url: string }[]) {
      const [label] = new URL(environment.url).hostname.split('.');
      expect(label!.length).toBeLessThanOrEqual(63);
    }
    expect((await request(platform().endpoint, `/v1/apps/${longest}`, { method: 'DELETE', token: user.token })).status).toBeLessThan(300);
  });
});

describeWithDocker('the router with the longest host names', () => {
  it('nginx takes the configuration with a 58-character slug beside an ordinary app (one long name never breaks every route)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'divio-router-names-'));
    try {
      const longest = `m${'y'.repeat(57)}`;
      const routes = [routeConfig(`live-${longest}.localhost`, `divio-app-${longest.slice(0, 40)}-live`), routeConfig('test-shop.localhost', 'divio-app-shop-test')];
      const config = await renderRouterConfig({ name: 'divio', domain: 'localhost', s3: true, registry: true, appRoutes: routes.join('\n') });
      await writeFile(join(dir, 'default.conf'), config);
      const checked = await execa('docker', [
        'run', '--rm', '--network', 'none',
        '-v', `${join(dir, 'default.conf')}:/etc/nginx/conf.d/default.conf:ro`,
        // As the router's spec does: the Debian image's default site would claim port 80 too.
        '--tmpfs', '/etc/nginx/sites-enabled',
        'nginx:bookworm', 'nginx', '-t',
      ], {
        reject: false,
      });
      expect(checked.exitCode, checked.stderr).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
