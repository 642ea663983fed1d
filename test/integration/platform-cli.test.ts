/**
 * The CLI against the shared test platform: login/logout/whoami with stored and environment
 * credentials, `platform users add`, `project create` failing half-way without leaving anything,
 * `project list`, and doctor's platform checks.
 */
import { mkdtempSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync, chmodSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';
import { createUser, request, type TestUser } from '../helpers/api.js';

describeWithDocker('platform CLI', () => {
  const platform = usePlatform();
  let endpoint: string;
  let user: TestUser;
  const home = mkdtempSync(join(tmpdir(), 'divio-cli-home-'));
  const configDir = join(home, 'config');
  // A config dir of its own, so logging in and out here does not touch other tests' credentials.
  const env = (extra: Record<string, string> = {}) => ({ DIVIO_CONFIG_DIR: configDir, ...extra });

  beforeAll(async () => {
    endpoint = platform().endpoint;
    user = await createUser(endpoint, await operatorToken(), 'cli');
  });
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it('login verifies the token, stores it 0600, and never prints it', async () => {
    const bad = await divio(['login', '--endpoint', endpoint, '--token', 'dvt_aaaaaaaaaaaaaaaa_' + 'C'.repeat(43)], { env: env() });
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toMatch(/does not accept this token/);
    expect(existsSync(join(configDir, 'credentials.json'))).toBe(false);

    const ok = await divio(['login', '--endpoint', endpoint, '--token', user.token], { env: env() });
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`as ${user.name}`);
    expect(ok.stdout + ok.stderr).not.toContain(user.token);
    const file = join(configDir, 'credentials.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);

    const who = json(await divio(['whoami', '--json'], { env: env() }));
    expect(who).toMatchObject({ endpoint, user: { name: user.name, operator: false }, source: 'file' });
    expect(JSON.stringify(who)).not.toContain(user.token);
  });

  it('DIVIO_TOKEN and DIVIO_ENDPOINT override stored credentials', async () => {
    const other = await createUser(endpoint, await operatorToken(), 'envuser');
    const who = json(await divio(['whoami', '--json'], { env: env({ DIVIO_TOKEN: other.token, DIVIO_ENDPOINT: endpoint }) }));
    expect(who).toMatchObject({ user: { name: other.name }, source: 'environment' });
    // The stored token belongs to its own endpoint: it is never sent to another.
    const elsewhere = await divio(['whoami'], { env: env({ DIVIO_ENDPOINT: 'http://127.0.0.1:9' }) });
    expect(elsewhere.exitCode).not.toBe(0);
    expect(elsewhere.stderr).toMatch(/not logged in/);
    const nowhere = await divio(['whoami'], { env: env({ DIVIO_ENDPOINT: 'http://127.0.0.1:9', DIVIO_TOKEN: other.token }) });
    expect(nowhere.exitCode).not.toBe(0);
    expect(nowhere.stderr).toMatch(/Cannot reach the divio platform at http:\/\/127\.0\.0\.1:9/);
  });

  it('platform users add prints a working token once (operator only)', async () => {
    const operatorEnv = { DIVIO_CONFIG_DIR: platform().configDir };
    const name = `added-${Math.random().toString(36).slice(2, 8)}`;
    const added = await divio(['platform', 'users', 'add', name, '--json'], { env: operatorEnv });
    expect(added.exitCode, added.stderr).toBe(0);
    const token = json(added).token as string;
    expect((await request(endpoint, '/v1/me', { token })).body.user.name).toBe(name);
    const refused = await divio(['platform', 'users', 'add', 'nope-user'], { env: env() });
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toMatch(/operator/);
  });

  it('project create that fails half-way (push refused) leaves nothing registered and nothing on disk', async () => {
    const parent = join(home, 'projects');
    mkdirSync(parent, { recursive: true });
    // A real git pre-push hook that refuses: the push fails the way a network or server failure would.
    const hooks = join(home, 'hooks');
    mkdirSync(hooks, { recursive: true });
    writeFileSync(join(hooks, 'pre-push'), '#!/bin/sh\necho "refused by test hook" >&2\nexit 1\n');
    chmodSync(join(hooks, 'pre-push'), 0o755);
    const gitConfig = join(home, 'gitconfig');
    writeFileSync(gitConfig, `[core]\n\thooksPath = ${hooks}\n`);
    const slug = `half-${Math.random().toString(36).slice(2, 8)}`;

    const failed = await divio(['project', 'create', slug], { cwd: parent, env: env({ GIT_CONFIG_GLOBAL: gitConfig }) });
    expect(failed.exitCode).not.toBe(0);
    expect(failed.stderr).toMatch(/first push .* failed, so "half-.*" was not created/);
    expect(failed.stderr).toMatch(/Nothing was kept/);
    expect(readdirSync(parent)).toEqual([]);
    expect((await request(endpoint, `/v1/apps/${slug}`, { token: user.token })).status).toBe(404);

    const retried = await divio(['project', 'create', slug, '--json'], { cwd: parent, env: env() });
    expect(retried.exitCode, retried.stderr).toBe(0);
    expect(json(retried)).toMatchObject({ app: slug, registered: true });
    const listed = json(await divio(['project', 'list', '--json'], { env: env() }));
    expect(listed.apps.map((a: { slug: string }) => a.slug)).toEqual([slug]);
    expect(JSON.parse(readFileSync(join(parent, slug, '.divio/config.json'), 'utf8'))).toEqual({ app: slug, endpoint });

    const taken = await divio(['project', 'create', slug, '--directory', join(parent, 'other')], { cwd: parent, env: env() });
    expect(taken.exitCode).not.toBe(0);
    expect(taken.stderr).toMatch(/already exists on/);
    expect(existsSync(join(parent, 'other'))).toBe(false);
  });

  it('doctor reports the platform reachable and the login accepted', async () => {
    const report = json(await divio(['doctor', '--json'], { env: env() }));
    const byName = Object.fromEntries(report.checks.map((c: { name: string }) => [c.name, c]));
    expect(byName['Platform reachable']).toMatchObject({ ok: true });
    expect(byName['Platform login']).toMatchObject({ ok: true });
    expect(byName['Platform login'].detail).toContain(user.name);
  });

  it('logout revokes the token on the platform and forgets it here', async () => {
    const out = await divio(['logout'], { env: env() });
    expect(out.exitCode, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/token is revoked/);
    expect((await request(endpoint, '/v1/me', { token: user.token })).status).toBe(401);
    const who = await divio(['whoami'], { env: env() });
    expect(who.exitCode).not.toBe(0);
    expect(who.stderr).toMatch(/not logged in/);
    const doctor = json(await divio(['doctor', '--json'], { env: env() }));
    expect(doctor.checks.find((c: { name: string }) => c.name === 'Platform login')).toMatchObject({ ok: false, required: false });
  });
});
