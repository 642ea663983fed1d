/**
 * Secrets the platform stores are encrypted at rest: a dump of `divio_platform` (pg_dump as the
 * cluster's admin, the worst a stolen backup gives) holds none of an environment's database
 * password, media keys, SECRET_KEY or variable values, while the app still gets every one of them.
 * And the migration seals rows a platform stored before.
 */
import { mkdtempSync, rmSync, cpSync, statSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { docker } from '../../src/core/docker.js';
import { environmentServiceName } from '../../src/platform/api/deploy/runtime.js';
import { REPO_ROOT } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';
import { createApp, createUser, request, type TestUser } from '../helpers/api.js';

const scratch = mkdtempSync(join(tmpdir(), 'divio-secrets-'));

function git(args: string[], cwd: string, token?: string) {
  return execa('git', args, {
    cwd,
    reject: false,
    env: {
      GIT_TERMINAL_PROMPT: '0',
      GIT_CONFIG_NOSYSTEM: '1',
      HOME: scratch,
      ...(token
        ? { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'http.extraHeader', GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`x:${token}`).toString('base64')}` }
        : {}),
    },
  });
}

describeWithDocker('secrets at rest', () => {
  const platform = usePlatform();
  let endpoint: string;
  let user: TestUser;
  let slug: string;
  let container: (component: string) => Promise<string>;

  beforeAll(async () => {
    endpoint = platform().endpoint;
    user = await createUser(endpoint, await operatorToken(), 'sealed');
    slug = await createApp(endpoint, user.token, 'sealed');
    container = async (component) => {
      const [found] = await docker().listContainers({ filters: { label: [`com.docker.swarm.service.name=${platform().name}-${component}`] } });
      if (!found) throw new Error(`no running container of ${platform().name}-${component}`);
      return found.Id;
    };
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('a pg_dump of divio_platform holds none of the secrets the deployed app gets', async () => {
    const variable = `var-value-${Math.random().toString(36).slice(2)}-${Date.now()}`;
    const set = await request(endpoint, `/v1/apps/${slug}/environments/test/env-vars`, {
      method: 'PATCH',
      token: user.token,
      body: { set: { API_SECRET: variable } },
    });
    expect(set.status, JSON.stringify(set.body)).toBe(200);
    // Callers of the store get plaintext back.
    expect((await request(endpoint, `/v1/apps/${slug}/environments/test/env-vars`, { token: user.token })).body.variables).toEqual({ API_SECRET: variable });

    const app = (await request(endpoint, `/v1/apps/${slug}`, { token: user.token })).body;
    const work = join(scratch, 'work');
    cpSync(join(REPO_ROOT, 'test/fixtures/projects/minimal'), work, { recursive: true });
    for (const args of [['init', '-q', '-b', 'main'], ['add', '.'], ['-c', 'user.name=s', '-c', 'user.email=s@x', 'commit', '-qm', 'app']]) {
      const done = await git(args, work);
      expect(done.exitCode, done.stderr).toBe(0);
    }
    const pushed = await git(['push', app.gitUrl, 'HEAD:main'], work, user.token);
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    const started = await request(endpoint, `/v1/apps/${slug}/environments/test/deployments`, { method: 'POST', token: user.token, body: {} });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    let state = started.body.state as string;
    for (const deadline = Date.now() + 300_000; !['succeeded', 'failed'].includes(state) && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      state = (await request(endpoint, `/v1/apps/${slug}/deployments/${started.body.id}`, { token: user.token })).body.state;
    }
    const log = (await request(endpoint, `/v1/apps/${slug}/deployments/${started.body.id}/log`, { token: user.token })).body;
    expect(state, String(log)).toBe('succeeded');

    // What the app runs with: the platform opened every sealed value for it.
    const service = await docker().getService(environmentServiceName(platform().name, slug, 'test')).inspect();
    const env = Object.fromEntries(
      ((service.Spec.TaskTemplate as { ContainerSpec: { Env: string[] } }).ContainerSpec.Env ?? []).map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    expect(env.API_SECRET).toBe(variable);
    const database = new URL(env.DATABASE_URL!);
    const storage = new URL(env.DEFAULT_STORAGE_DSN!);
    const secrets = {
      'database password': decodeURIComponent(database.password),
      'media access key': decodeURIComponent(storage.username),
      'media secret key': decodeURIComponent(storage.password),
      SECRET_KEY: env.SECRET_KEY!,
      'variable value': variable,
    };
    for (const [what, value] of Object.entries(secrets)) expect(value.length, what).toBeGreaterThanOrEqual(16);

    // The database password is the real one: the role logs in with it over TCP (password auth), and not without it.
    const postgres = await container('postgres');
    const psqlAs = (password: string) =>
      execa('docker', ['exec', '-e', `PGPASSWORD=${password}`, postgres, 'psql', '-h', `${platform().name}-postgres`, '-U', decodeURIComponent(database.username), '-d', database.pathname.slice(1), '-Atc', 'SELECT 1'], { reject: false });
    const good = await psqlAs(secrets['database password']);
    expect(good.exitCode, good.stderr).toBe(0);
    expect(good.stdout.trim()).toBe('1');
    const bad = await psqlAs(`${secrets['database password']}x`);
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toMatch(/password authentication failed/);

    const dump = await execa('docker', ['exec', postgres, 'pg_dump', '-U', 'postgres', 'divio_platform'], { maxBuffer: 256 * 1024 * 1024 });
    expect(dump.stdout).toContain(app.environments[0].database.name);
    for (const [what, value] of Object.entries(secrets)) {
      expect(dump.stdout.includes(value), `${what} is in the dump`).toBe(false);
      // Nor in the encodings a dump might carry it in.
      expect(dump.stdout.includes(Buffer.from(value).toString('base64')), `${what} (base64) is in the dump`).toBe(false);
      expect(dump.stdout.includes(Buffer.from(value).toString('hex')), `${what} (hex) is in the dump`).toBe(false);
    }
    // They are there, sealed.
    expect(dump.stdout.match(/dvs1:[A-Za-z0-9_-]{20,}/g)?.length ?? 0).toBeGreaterThanOrEqual(5);

    // The key is only in the 0600 configuration, never in the database.
    const settings = join(platform().dataDir, 'platform.json');
    expect(statSync(settings).mode & 0o777).toBe(0o600);
    const key = (JSON.parse(readFileSync(settings, 'utf8')) as { secrets: { secretsKey?: string } }).secrets.secretsKey;
    expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(dump.stdout.includes(key!)).toBe(false);
  }, 600_000);

  it('the migration seals secrets a platform stored in plaintext before, and they open to the same values', async () => {
    const plain = {
      db_password: 'plain-db-password-0123456789',
      media_access_key: 'DMPLAINACCESSKEY01',
      media_secret_key: 'plain-media-secret-0123456789',
      secret_key: 'plain-secret-key-0123456789abcdef',
      value: 'plain-variable-value-0123456789',
    };
    // The platform's own code in its API container, against a scratch database on the real cluster.
    const script = `
      import pg from 'pg';
      import { readRuntimeConfig } from 'file:///opt/divio/dist/platform/runtime-config.js';
      import { migrate } from 'file:///opt/divio/dist/platform/api/migrations.js';
      import { SecretBox } from 'file:///opt/divio/dist/platform/api/secrets.js';
      const plain = ${JSON.stringify(plain)};
      const config = await readRuntimeConfig();
      const secrets = SecretBox.fromConfig(config.secretsKey);
      const admin = new pg.Client({ connectionString: config.database.adminUrl });
      await admin.connect();
      const name = 'divio_migration_probe_' + process.pid;
      await admin.query('DROP DATABASE IF EXISTS ' + name);
      await admin.query('CREATE DATABASE ' + name);
      try {
        const url = new URL(config.database.adminUrl);
        url.pathname = '/' + name;
        const client = new pg.Client({ connectionString: url.toString() });
        await client.connect();
        await migrate(client, { secrets });
        // Rows as a platform from before migration 7 kept them.
        await client.query("INSERT INTO users (name) VALUES ('old')");
        await client.query("INSERT INTO apps (slug, owner_id, state) SELECT 'old-app', id, 'ready' FROM users");
        await client.query(
          "INSERT INTO environments (app_id, name, branch, db_name, db_role, db_password, media_bucket, media_access_key, media_secret_key, secret_key) " +
          "SELECT id, 'test', 'main', 'old_db', 'old_role', $1, 'old-bucket', $2, $3, $4 FROM apps",
          [plain.db_password, plain.media_access_key, plain.media_secret_key, plain.secret_key],
        );
        await client.query("INSERT INTO env_vars (environment_id, name, value) SELECT id, 'OLD', $1 FROM environments", [plain.value]);
        await client.query('DELETE FROM schema_migrations WHERE id = 7');
        const ran = await migrate(client, { secrets });
        const stored = (await client.query('SELECT db_password, media_access_key, media_secret_key, secret_key FROM environments')).rows[0];
        stored.value = (await client.query('SELECT value FROM env_vars')).rows[0].value;
        const opened = {
          db_password: secrets.open(stored.db_password, 'environments.db_password'),
          media_access_key: secrets.open(stored.media_access_key, 'environments.media_access_key'),
          media_secret_key: secrets.open(stored.media_secret_key, 'environments.media_secret_key'),
          secret_key: secrets.open(stored.secret_key, 'environments.secret_key'),
          value: secrets.open(stored.value, 'env_vars.value'),
        };
        // Run again: sealed values are left as they are.
        await client.query('DELETE FROM schema_migrations WHERE id = 7');
        await migrate(client, { secrets });
        const again = (await client.query('SELECT db_password FROM environments')).rows[0].db_password;
        await client.end();
        console.log(JSON.stringify({ ran, stored, opened, unchanged: again === stored.db_password }));
      } finally {
        await admin.query('DROP DATABASE IF EXISTS ' + name + ' WITH (FORCE)');
        await admin.end();
      }
    `;
    const run = await execa('docker', ['exec', '-w', '/opt/divio', await container('api'), 'node', '--input-type=module', '-e', script], { reject: false });
    expect(run.exitCode, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout.trim().split('\n').pop()!) as { ran: number[]; stored: Record<string, string>; opened: Record<string, string>; unchanged: boolean };
    expect(result.ran).toEqual([7]);
    for (const [column, value] of Object.entries(plain)) {
      expect(result.stored[column], column).toMatch(/^dvs1:/);
      expect(result.stored[column], column).not.toContain(value);
      expect(result.opened[column], column).toBe(value);
    }
    expect(result.unchanged).toBe(true);
  }, 300_000);
});
