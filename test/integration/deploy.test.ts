/**
 * Deploying to the shared test platform: the express boilerplate built once and rolled out to test
 * and live (live reuses test's image), answering through the router with its stage; a failing
 * release command fails the deployment and the previous release keeps serving; concurrent deploys
 * of one environment are refused; live needs confirmation.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';
import { createUser, request } from '../helpers/api.js';
import { docker } from '../../src/core/docker.js';

/** GET through the router with the environment's Host header (Node cannot resolve .localhost). */
function viaRouter(
  port: number,
  host: string,
  path: string,
  options: { method?: string; body?: Buffer; headers?: Record<string, string>; raw?: boolean } = {},
): Promise<{ status: number; body: string; buffer?: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: { host: `${host}:${port}`, ...options.headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const buffer = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, body: buffer.toString('utf8'), ...(options.raw ? { buffer } : {}) });
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

describeWithDocker('deploys', () => {
  const platform = usePlatform();
  let parent: string;
  let dir: string;
  let env: Record<string, string>;
  let token: string;
  const slug = `dep-${Math.random().toString(36).slice(2, 8)}`;
  const cli = (args: string[]) => divio(args, { cwd: dir, env, timeout: 900_000 });
  const health = (stage: string) => viaRouter(platform().port, `${stage}-${slug}.localhost`, '/healthz');

  beforeAll(async () => {
    const user = await createUser(platform().endpoint, await operatorToken(), 'deployer');
    token = user.token;
    env = { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: user.token };
    parent = await mkdtemp(join(tmpdir(), 'divio-deploy-'));
    dir = join(parent, slug);
    const created = await divio(['project', 'create', slug], { cwd: parent, env });
    expect(created.exitCode, created.stderr).toBe(0);
  });
  afterAll(async () => {
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  it('deploys test: streams the build and release log, and /healthz through the router says test', async () => {
    const before = await health('test');
    expect(before.status).not.toBe(200);
    const result = await cli(['project', 'deploy', 'test']);
    expect(result.exitCode, result.stderr + result.stdout).toBe(0);
    expect(result.stdout).toMatch(/Step 1\/\d+ : FROM node:20-bookworm-slim/);
    expect(result.stdout).toMatch(/Release command: node migrate\.js/);
    expect(result.stdout).toMatch(/migrate: applied/);
    expect(result.stdout).toContain(`Deployed: http://test-${slug}.localhost:${platform().port}`);
    const answer = await health('test');
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ stage: 'test', database: 'ok' });
  });

  it('media on test goes to its own bucket through DEFAULT_STORAGE_DSN and is served back byte-identical', async () => {
    const data = randomBytes(40_000);
    const name = `probe-${randomBytes(3).toString('hex')}.bin`;
    const boundary = `----divio${randomBytes(8).toString('hex')}`;
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      data,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const posted = await viaRouter(platform().port, `test-${slug}.localhost`, '/upload', {
      method: 'POST',
      body,
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    });
    expect([200, 201, 302, 303], posted.body).toContain(posted.status);
    const page = (await viaRouter(platform().port, `test-${slug}.localhost`, '/')).body;
    const link = page.match(new RegExp(`href="([^"]*${name.replace('.', '\\.')})"`))?.[1];
    expect(link, 'the page links the upload').toBeTruthy();
    const url = new URL(link!);
    expect(url.host).toBe(`s3.localhost:${platform().port}`);
    expect(url.pathname.startsWith(`/${slug}-test/`)).toBe(true);
    const back = await viaRouter(platform().port, url.hostname, url.pathname, { raw: true });
    expect(back.status).toBe(200);
    expect(back.buffer!.equals(data)).toBe(true);
  });

  it('live needs confirmation; with --yes it reuses the very image test runs', async () => {
    const refused = await cli(['project', 'deploy', 'live']);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toMatch(/needs confirmation[\s\S]*--yes/);
    expect(json(await cli(['project', 'deployments', 'live', '--json'])).deployments).toEqual([]);

    const result = await cli(['project', 'deploy', 'live', '--yes', '--json']);
    expect(result.exitCode, result.stderr).toBe(0);
    const live = json(result);
    expect(live).toMatchObject({ environment: 'live', state: 'succeeded' });
    expect(result.stderr).toMatch(/already built; reusing it/);
    const [test] = json(await cli(['project', 'deployments', 'test', '--json'])).deployments;
    expect(live.image).toBe(test.image);
    expect(live.commit).toBe(test.commit);
    expect(JSON.parse((await health('live')).body)).toMatchObject({ stage: 'live' });
  });

  it('a failing release command fails the deployment (non-zero exit, reason in the log) and the previous release keeps serving', async () => {
    const manifestPath = join(dir, 'divio.yaml');
    const manifest = await readFile(manifestPath, 'utf8');
    await writeFile(manifestPath, manifest.replace(/command: node migrate\.js/, 'command: echo about to fail && exit 7'));
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@x', 'commit', '-qam', 'a release that fails'], { cwd: dir });
    const pushed = await execa('git', ['push', '-q', 'origin', 'main'], { cwd: dir, env: { ...process.env, ...env }, reject: false });
    expect(pushed.exitCode, pushed.stderr).toBe(0);

    const result = await cli(['project', 'deploy', 'test']);
    expect(result.exitCode).not.toBe(0);
    expect(result.stdout).toContain('about to fail');
    expect(result.stderr).toMatch(/failed: the release command failed \(exit 7\)/);
    expect(result.stderr).toMatch(/previous release keeps serving/);
    const answer = await health('test');
    expect(answer.status).toBe(200);
    const [failed, previous] = json(await cli(['project', 'deployments', 'test', '--json'])).deployments;
    expect(failed).toMatchObject({ state: 'failed', reason: expect.stringMatching(/exit 7/) });
    expect(previous.state).toBe('succeeded');

    const log = await cli(['project', 'deploy-log', failed.id]);
    expect(log.stdout).toMatch(/Deployment failed: the release command failed/);
  });

  it('rollback serves the previous image again, health-checked', async () => {
    // A second good release, so there is something to roll back from.
    const manifestPath = join(dir, 'divio.yaml');
    const manifest = await readFile(manifestPath, 'utf8');
    await writeFile(manifestPath, manifest.replace(/command: echo about to fail && exit 7/, 'command: node migrate.js'));
    await writeFile(join(dir, 'VERSION'), 'second\n');
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@x', 'add', '-A'], { cwd: dir });
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@x', 'commit', '-qm', 'second release'], { cwd: dir });
    expect((await execa('git', ['push', '-q', 'origin', 'main'], { cwd: dir, env: { ...process.env, ...env }, reject: false })).exitCode).toBe(0);
    const second = await cli(['project', 'deploy', 'test', '--json']);
    expect(second.exitCode, second.stderr).toBe(0);
    const secondImage = json(second).image;

    const rolled = await cli(['project', 'rollback', 'test', '--json']);
    expect(rolled.exitCode, rolled.stderr).toBe(0);
    const result = json(rolled);
    expect(result).toMatchObject({ kind: 'rollback', state: 'succeeded' });
    expect(result.image).not.toBe(secondImage);
    const first = json(await cli(['project', 'deployments', 'test', '--json'])).deployments.find(
      (d: { kind: string; state: string; image: string }) => d.kind === 'deploy' && d.state === 'succeeded' && d.image !== secondImage,
    );
    expect(result.image).toBe(first.image);
    expect((await health('test')).status).toBe(200);
    const services = await execa('docker', ['service', 'inspect', '--format', '{{.Spec.TaskTemplate.ContainerSpec.Image}}', `${platform().name}-app-${slug}-test`]);
    expect(services.stdout.trim()).toBe(first.image);
  });

  it('env-vars: set reaches the running app at once (redeployed), list shows it, unset removes it; STAGE cannot be replaced', async () => {
    const printenv = async (name: string) => {
      const [task] = await docker().listContainers({ filters: { label: [`com.docker.swarm.service.name=${platform().name}-app-${slug}-test`] } });
      const result = await execa('docker', ['exec', task!.Id, 'printenv', name], { reject: false });
      return result.exitCode === 0 ? result.stdout.trim() : undefined;
    };
    const set = await cli(['project', 'env-vars', 'set', 'GREETING=hello=world', 'DEBUG=false', '--environment', 'test']);
    expect(set.exitCode, set.stderr).toBe(0);
    expect(set.stdout).toMatch(/Takes effect now: redeploying/);
    expect(set.stdout).toMatch(/In effect\./);
    expect(await printenv('GREETING')).toBe('hello=world');
    expect(await printenv('DEBUG')).toBe('false');
    expect(json(await cli(['project', 'env-vars', 'list', '--environment', 'test', '--json'])).variables).toEqual({ DEBUG: 'false', GREETING: 'hello=world' });
    expect((await health('test')).status).toBe(200);

    const refused = await cli(['project', 'env-vars', 'set', 'STAGE=live', '--environment', 'test']);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toMatch(/STAGE.*set by the platform/);

    const unset = await cli(['project', 'env-vars', 'unset', 'GREETING', '--environment', 'test']);
    expect(unset.exitCode, unset.stderr).toBe(0);
    expect(await printenv('GREETING')).toBeUndefined();
    expect(await printenv('STAGE')).toBe('test');
  });

  it('status --json lists test and live with URL, commit and current deployment; open prints the URL', async () => {
    const status = json(await cli(['project', 'status', '--json']));
    expect(status).toMatchObject({ app: slug, endpoint: platform().endpoint });
    const byName = Object.fromEntries(status.environments.map((e: { name: string }) => [e.name, e]));
    expect(Object.keys(byName)).toEqual(['local', 'test', 'live']);
    for (const name of ['test', 'live']) {
      expect(byName[name]).toMatchObject({ state: 'running', url: `http://${name}-${slug}.localhost:${platform().port}` });
      expect(byName[name].commit).toMatch(/^[0-9a-f]{40}$/);
      expect(byName[name].deployment).toBeTruthy();
    }
    const opened = await cli(['project', 'open', 'live']);
    expect(opened.exitCode, opened.stderr).toBe(0);
    expect(opened.stdout.trim()).toBe(byName.live.url);
  });

  it('configure: replicas apply now to a running environment; a branch applies at the next deploy', async () => {
    const scaled = await cli(['project', 'configure', 'live', '--replicas', '2', '--json']);
    expect(scaled.exitCode, scaled.stderr).toBe(0);
    expect(json(scaled)).toMatchObject({ name: 'live', replicas: 2, branch: 'main' });
    const service = `${platform().name}-app-${slug}-live`;
    const replicas = await execa('docker', ['service', 'inspect', '--format', '{{.Spec.Mode.Replicated.Replicas}}', service]);
    expect(replicas.stdout.trim()).toBe('2');
    const branch = await cli(['project', 'configure', 'test', '--branch', 'no-such-branch']);
    expect(branch.exitCode, branch.stderr).toBe(0);
    const failed = await cli(['project', 'deploy', 'test']);
    expect(failed.exitCode).not.toBe(0);
    expect(failed.stderr).toMatch(/nothing has been pushed to the branch "no-such-branch"/);
    expect((await cli(['project', 'configure', 'test', '--branch', 'main'])).exitCode).toBe(0);
    expect((await cli(['project', 'configure', 'live', '--replicas', '1'])).exitCode).toBe(0);
  });

  it('logs ENV shows the runtime output of the environment', async () => {
    await health('test');
    const logs = await cli(['project', 'logs', 'test', '--tail', '50']);
    expect(logs.exitCode, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/listening on 0\.0\.0\.0:8000 \(stage test/);
    const never = await cli(['project', 'logs', 'live', '--app', 'no-such-app']);
    expect(never.exitCode).not.toBe(0);
  });

  async function commitAndPush(message: string, change: () => Promise<void>): Promise<void> {
    await change();
    await execa('git', ['add', '-A'], { cwd: dir });
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@x', 'commit', '-qm', message], { cwd: dir });
    const pushed = await execa('git', ['push', '-q', 'origin', 'main'], { cwd: dir, env: { ...process.env, ...env }, reject: false });
    expect(pushed.exitCode, pushed.stderr).toBe(0);
  }

  it('a Dockerfile error fails the deployment with the failing step in its log; the previous release keeps serving', async () => {
    const dockerfile = await readFile(join(dir, 'Dockerfile'), 'utf8');
    await commitAndPush('a broken build', () => writeFile(join(dir, 'Dockerfile'), `${dockerfile}\nRUN echo breaking && exit 3\n`));
    const result = await cli(['project', 'deploy', 'test']);
    expect(result.exitCode).not.toBe(0);
    expect(result.stdout).toContain('breaking');
    expect(result.stderr).toMatch(/failed: .*RUN echo breaking && exit 3.*returned a non-zero code: 3/);
    expect((await health('test')).status).toBe(200);
    await commitAndPush('build fixed', () => writeFile(join(dir, 'Dockerfile'), dockerfile));
  });

  it('a platform restart in the middle of a deployment leaves it failed, not running forever', async () => {
    const dockerfile = await readFile(join(dir, 'Dockerfile'), 'utf8');
    await commitAndPush('a slow build', () => writeFile(join(dir, 'Dockerfile'), `${dockerfile}\nRUN sleep 25\n`));
    const started = await cli(['project', 'deploy', 'test', '--no-wait', '--json']);
    expect(started.exitCode, started.stderr).toBe(0);
    const { id } = json(started);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await execa('docker', ['service', 'update', '--force', '--quiet', `${platform().name}-api`]);
    // The API is back when it answers again.
    for (let i = 0; i < 120; i++) {
      const res = await request(platform().endpoint, '/v1/health').catch(() => undefined);
      if (res?.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const deployment = (await request(platform().endpoint, `/v1/apps/${slug}/deployments/${id}`, { token })).body;
    expect(deployment).toMatchObject({ state: 'failed', reason: 'the platform restarted during this deployment' });
    expect((await health('test')).status).toBe(200);
    await commitAndPush('no more sleeping', () => writeFile(join(dir, 'Dockerfile'), dockerfile));
  });

  it('a second deploy of the same environment while one runs is refused, clearly', async () => {
    const first = await request(platform().endpoint, `/v1/apps/${slug}/environments/test/deployments`, { method: 'POST', token, body: {} });
    expect(first.status).toBe(202);
    const second = await cli(['project', 'deploy', 'test']);
    expect(second.exitCode).not.toBe(0);
    expect(second.stderr).toMatch(/Another deployment of .* test is in progress/);
    // Let the first one end before the file's other tests or teardown.
    await cli(['project', 'deploy-log', first.body.id, '--follow']);
  });
});
