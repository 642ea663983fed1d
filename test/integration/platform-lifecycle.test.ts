/**
 * `divio platform start | stop | status` on the shared test platform: a repeated start changes and
 * restarts nothing, status reports every component, the operator login works and stays secret, and
 * stop → start keeps users and media. Restarts the shared platform, and leaves it running.
 */
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { execa } from 'execa';
import { Agent, type AgentOptions } from 'node:http';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { docker } from '../../src/core/docker.js';
import { probeHttp } from '../../src/core/http-probe.js';
import { SecretBox } from '../../src/platform/api/secrets.js';
import { divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';

const COMPONENTS = ['postgres', 'registry', 's3', 'gateway', 'api', 'router'];

describeWithDocker('platform lifecycle', () => {
  const platform = usePlatform();
  const cli = (args: string[]) => divio(['platform', ...args], { env: { DIVIO_CONFIG_DIR: platform().configDir } });

  async function runningTaskIds(): Promise<Record<string, string[]>> {
    const out: Record<string, string[]> = {};
    for (const component of COMPONENTS) {
      const service = `${platform().name}-${component}`;
      const tasks = (await docker().listTasks({ filters: { service: [service], 'desired-state': ['running'] } })) as { ID: string }[];
      out[component] = tasks.map((t) => t.ID).sort();
    }
    return out;
  }

  async function api(path: string, init: { method?: string; body?: unknown } = {}) {
    const response = await fetch(platform().endpoint + path, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${await operatorToken()}`, 'content-type': 'application/json' },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
    return { status: response.status, body: (await response.json()) as any };
  }

  /** An S3 client with the media store's admin key, reaching s3.localhost:PORT through the router. */
  async function s3(): Promise<S3Client> {
    const settings = JSON.parse(await readFile(join(platform().dataDir, 'platform.json'), 'utf8'));
    // `.localhost` names do not resolve through Node's resolver: connect to 127.0.0.1, sign for the name.
    const lookup = ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) =>
      options.all ? callback(null, [{ address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4)) as unknown as AgentOptions['lookup'];
    return new S3Client({
      endpoint: `http://s3.localhost:${platform().port}`,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: settings.secrets.mediaAccessKeyId, secretAccessKey: settings.secrets.mediaSecretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: new NodeHttpHandler({ httpAgent: new Agent({ lookup } as AgentOptions) }),
    });
  }

  it('start again is idempotent and quick: nothing rebuilt or restarted, and the token stays secret', async () => {
    const before = await runningTaskIds();
    const started = Date.now();
    // No flags: the data dir the last start used is remembered in the config dir.
    const result = await cli(['start', '--json']);
    const seconds = (Date.now() - started) / 1000;
    expect(result.exitCode, result.stderr).toBe(0);
    const report = json(result);
    expect(report).toMatchObject({ endpoint: platform().endpoint, dataDir: platform().dataDir, name: platform().name, swarm: 'existing', login: 'kept' });
    expect(report.image.built).toBe(false);
    expect(report.components.map((c: { name: string }) => c.name)).toEqual(COMPONENTS);
    for (const component of report.components) expect(component).toMatchObject({ state: 'running', replicas: '1/1', action: 'unchanged' });
    expect(await runningTaskIds()).toEqual(before);
    expect(seconds).toBeLessThan(30);

    const credentials = join(platform().configDir, 'credentials.json');
    expect((await stat(credentials)).mode & 0o777).toBe(0o600);
    const token = await operatorToken();
    expect(token).toMatch(/^dvt_/);
    expect(result.stdout + result.stderr).not.toContain(token);
    const plain = await cli(['start']);
    expect(plain.exitCode, plain.stderr).toBe(0);
    expect(plain.stdout).toContain(`already running at ${platform().endpoint}`);
    expect(plain.stdout + plain.stderr).not.toContain(token);
  });

  it('status --json reports every component running and the API healthy', async () => {
    const result = await cli(['status', '--json']);
    expect(result.exitCode, result.stderr).toBe(0);
    const status = json(result);
    expect(status).toMatchObject({ name: platform().name, endpoint: platform().endpoint, dataDir: platform().dataDir, state: 'running' });
    expect(status.components).toEqual(
      COMPONENTS.map((name) => ({ name, service: `${platform().name}-${name}`, state: 'running', replicas: '1/1' })),
    );
    expect(status.health.status).toBe('ok');
  });

  it('the API knows the operator token', async () => {
    const me = await api('/v1/me');
    expect(me.status).toBe(200);
    expect(me.body.user).toMatchObject({ name: 'operator', operator: true });
  });

  async function psql(query: string, database = 'postgres'): Promise<string> {
    const [container] = await docker().listContainers({ filters: { label: [`com.docker.swarm.service.name=${platform().name}-postgres`] } });
    if (!container) throw new Error('no running postgres task');
    return (await execa('docker', ['exec', container.Id, 'psql', '-U', 'postgres', '-d', database, '-Atc', query])).stdout.trim();
  }

  it('stop keeps everything: after a start, users, apps, repositories, databases and media are back; half-made apps are removed', async () => {
    const name = `keepme-${Math.random().toString(36).slice(2, 8)}`;
    // An app made the way users make them: scaffolded, registered, first commit pushed.
    const parent = await mkdtemp(join(tmpdir(), 'divio-lifecycle-'));
    const slug = `kept-${Math.random().toString(36).slice(2, 8)}`;
    const operatorEnv = { DIVIO_CONFIG_DIR: platform().configDir };
    const created = await divio(['project', 'create', slug, '--json'], { cwd: parent, env: operatorEnv });
    expect(created.exitCode, created.stderr).toBe(0);
    const commit = json(created).commit as string;
    const app = (await api(`/v1/apps/${slug}`)).body;
    const databases = app.environments.map((e: { database: { name: string } }) => e.database.name);
    await psql(`CREATE TABLE kept (v text); INSERT INTO kept VALUES ('row')`, databases[0]);
    // An app a crash left half-made: its row says provisioning, and one of its databases exists.
    // Its password is sealed under the platform's key, as the API stores every one.
    const half = `half-${Math.random().toString(36).slice(2, 8)}`;
    const platformSettings = JSON.parse(await readFile(join(platform().dataDir, 'platform.json'), 'utf8'));
    const sealedPassword = SecretBox.fromConfig(platformSettings.secrets.secretsKey).seal('x', 'environments.db_password');
    // As the platform leaves it when it crashes mid-provision: the database recorded before it is made.
    await psql(`INSERT INTO cluster_resources (kind, name) VALUES ('database', '${half.replace('-', '_')}_test')`, 'divio_platform');
    await psql(`CREATE DATABASE ${half.replace('-', '_')}_test`);
    await psql(
      `WITH o AS (SELECT id FROM users WHERE name = 'operator'), a AS (INSERT INTO apps (slug, owner_id) SELECT '${half}', id FROM o RETURNING id)
       INSERT INTO environments (app_id, name, branch, db_name, db_role, db_password, media_bucket)
       SELECT id, 'test', 'main', '${half.replace('-', '_')}_test', '${half.replace('-', '_')}_test', '${sealedPassword}', '${half}-test' FROM a`,
      'divio_platform',
    );
    expect((await api('/v1/users', { method: 'POST', body: { name } })).status).toBe(201);
    const bucket = `lifecycle-${Math.random().toString(36).slice(2, 8)}`;
    const content = `kept across a restart ${Date.now()}`;
    const client = await s3();
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'dir/kept.txt', Body: content }));
    client.destroy();

    const stopped = await cli(['stop', '--json']);
    expect(stopped.exitCode, stopped.stderr).toBe(0);
    expect(json(stopped).stopped).toEqual(expect.arrayContaining(COMPONENTS.map((c) => `${platform().name}-${c}`)));
    const status = json(await cli(['status', '--json']));
    expect(status.state).toBe('stopped');
    for (const component of status.components) expect(component).toMatchObject({ state: 'stopped' });
    await expect(probeHttp(platform().port, '/v1/health', `127.0.0.1:${platform().port}`, 2000)).rejects.toThrow();
    // Stopping again is fine.
    expect((await cli(['stop'])).exitCode).toBe(0);

    const started = await cli(['start', '--json']);
    expect(started.exitCode, started.stderr).toBe(0);
    expect(json(started).login).toBe('kept');
    const users = await api('/v1/users');
    expect(users.status).toBe(200);
    expect(users.body.users.map((u: { name: string }) => u.name)).toContain(name);
    const after = await s3();
    const object = await after.send(new GetObjectCommand({ Bucket: bucket, Key: 'dir/kept.txt' }));
    expect(await object.Body!.transformToString()).toBe(content);
    after.destroy();
    expect(json(await cli(['status', '--json'])).state).toBe('running');

    const listed = json(await divio(['project', 'list', '--json'], { env: operatorEnv }));
    expect(listed.apps.map((a: { slug: string }) => a.slug)).toContain(slug);
    expect(listed.apps.map((a: { slug: string }) => a.slug)).not.toContain(half);
    expect(await psql(`SELECT count(*) FROM apps WHERE slug = '${half}'`, 'divio_platform')).toBe('0');
    expect(await psql(`SELECT count(*) FROM pg_database WHERE datname = '${half.replace('-', '_')}_test'`)).toBe('0');
    expect(await psql('SELECT v FROM kept', databases[0])).toBe('row');
    expect(await psql(`SELECT count(*) FROM pg_database WHERE datname = '${databases[1]}'`)).toBe('1');
    // The repository is back: plain git (through divio's credential helper) sees the first commit and takes a second.
    const dir = join(parent, slug);
    const gitEnv = { ...process.env, ...operatorEnv, GIT_TERMINAL_PROMPT: '0' };
    expect((await execa('git', ['ls-remote', 'origin', 'refs/heads/main'], { cwd: dir, env: gitEnv })).stdout.split('\t')[0]).toBe(commit);
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@x', 'commit', '--allow-empty', '-m', 'after restart'], { cwd: dir });
    const pushed = await execa('git', ['push', 'origin', 'main'], { cwd: dir, env: gitEnv, reject: false });
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    await rm(parent, { recursive: true, force: true });
  });
});
