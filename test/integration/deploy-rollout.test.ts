/**
 * Rollouts as the router's clients see them, on the shared test platform: a redeploy of a healthy
 * change drops no request; a release whose process will not start fails the deployment while the
 * previous release keeps answering every request; hosts with nothing deployed get a plain 404 page
 * (not the API's JSON, never another app); the django boilerplate goes to test and then to live on
 * the same image.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { divio, json, uniqueSlug } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';
import { createUser } from '../helpers/api.js';

interface Answer {
  status: number;
  body: string;
  contentType: string;
}

/**
 * GET through the router with an environment's Host header (Node cannot resolve .localhost). A new
 * connection each time: the loop measures the router and the rollout, not a client's reuse of a
 * keep-alive connection that a router reload is closing.
 */
function viaRouter(port: number, host: string, path: string, timeoutMs = 10_000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false, headers: { host: `${host}:${port}` }, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, contentType: String(res.headers['content-type'] ?? '') }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

interface LoopResult {
  requests: number;
  /** Every answer that was not a 200, and every request that got no answer, with when it happened. */
  failures: string[];
}

/** Sequential GETs of `path` with short pauses until `stop()`; resolves with what they got. */
function requestLoop(port: number, host: string, path: string, pauseMs = 50): { stop: () => Promise<LoopResult> } {
  let running = true;
  const started = Date.now();
  const result: LoopResult = { requests: 0, failures: [] };
  const done = (async () => {
    while (running) {
      const at = ((Date.now() - started) / 1000).toFixed(2);
      try {
        const answer = await viaRouter(port, host, path);
        if (answer.status !== 200) result.failures.push(`${at}s: ${answer.status} ${answer.body.slice(0, 200)}`);
      } catch (error) {
        result.failures.push(`${at}s: ${(error as Error).message}`);
      }
      result.requests += 1;
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
    return result;
  })();
  return {
    stop: async () => {
      running = false;
      return done;
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describeWithDocker('rollouts through the router', () => {
  const platform = usePlatform();
  let parent: string;
  let env: Record<string, string>;
  const slug = uniqueSlug('roll');
  const djangoSlug = uniqueSlug('rolldj');
  const dirOf = (s: string) => join(parent, s);
  const cli = (s: string, args: string[]) => divio(args, { cwd: dirOf(s), env, timeout: 900_000 });
  const host = (stage: string, s = slug) => `${stage}-${s}.localhost`;
  const health = (stage: string, s = slug) => viaRouter(platform().port, host(stage, s), '/healthz');

  async function commitAndPush(s: string, message: string): Promise<void> {
    const cwd = dirOf(s);
    await execa('git', ['add', '-A'], { cwd });
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@x', 'commit', '-qm', message], { cwd });
    const pushed = await execa('git', ['push', '-q', 'origin', 'main'], { cwd, env: { ...process.env, ...env }, reject: false });
    expect(pushed.exitCode, pushed.stderr).toBe(0);
  }

  /** Runs `deploy` while a request loop runs, and stops the loop 3 s after the deploy returns. */
  async function deployUnderLoad(s: string, args: string[]) {
    const loop = requestLoop(platform().port, host('test', s), '/healthz');
    try {
      const result = await cli(s, args);
      await sleep(3_000);
      return { result, traffic: await loop.stop() };
    } finally {
      await loop.stop();
    }
  }

  beforeAll(async () => {
    const user = await createUser(platform().endpoint, await operatorToken(), 'roller');
    env = { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: user.token };
    parent = await mkdtemp(join(tmpdir(), 'divio-rollout-'));
    const created = await divio(['project', 'create', slug], { cwd: parent, env });
    expect(created.exitCode, created.stderr).toBe(0);
  });
  afterAll(async () => {
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  it('a host with nothing deployed answers a plain 404 page that says so, not the API', async () => {
    for (const name of [host('test'), host('live'), 'test-doesnotexist.localhost']) {
      const answer = await viaRouter(platform().port, name, '/healthz');
      expect(answer.status, name).toBe(404);
      expect(answer.contentType).toMatch(/^text\/html/);
      expect(answer.body).toContain(`Nothing is deployed at ${name} yet`);
      expect(answer.body).not.toMatch(/No route for/);
    }
    // Anything else on the public port is still the API's.
    const api = await viaRouter(platform().port, '127.0.0.1', '/v1/health');
    expect(api.status).toBe(200);
  });

  it('redeploying a healthy change drops no request through the router', { timeout: 900_000 }, async () => {
    const first = await cli(slug, ['project', 'deploy', 'test', '--json']);
    expect(first.exitCode, first.stderr).toBe(0);
    expect((await health('test')).status).toBe(200);

    await writeFile(join(dirOf(slug), 'VERSION'), 'second\n');
    await commitAndPush(slug, 'a harmless change');
    const { result, traffic } = await deployUnderLoad(slug, ['project', 'deploy', 'test', '--json']);
    expect(result.exitCode, result.stderr).toBe(0);
    // A real rollout happened: a new image replaced the one that served.
    expect(json(result).image).not.toBe(json(first).image);
    expect(traffic.failures, traffic.failures.join('\n')).toEqual([]);
    expect(traffic.requests).toBeGreaterThanOrEqual(100);

    // The exact name of the deployed environment wins over the pattern for hosts with nothing deployed,
    // which still answers for live.
    expect(JSON.parse((await health('test')).body)).toMatchObject({ stage: 'test' });
    const live = await health('live');
    expect(live.status).toBe(404);
    expect(live.body).toContain(`Nothing is deployed at ${host('live')} yet`);
  });

  it('a release whose web process exits fails the deployment (exit code, reason in the log) and the previous release answers throughout', { timeout: 900_000 }, async () => {
    // A process that exits at once fails within seconds; one that never passes its health check takes
    // the 60 s health start period (runtime.test.ts covers that with short timings).
    const manifestPath = join(dirOf(slug), 'divio.yaml');
    const manifest = await readFile(manifestPath, 'utf8');
    const broken = manifest.replace(/^ {2}command: exec node server\.js$/m, `  command: 'echo "web: this release refuses to start" >&2; exit 3'`);
    expect(broken).not.toBe(manifest);
    await writeFile(manifestPath, broken);
    await commitAndPush(slug, 'a release that never starts');

    expect((await health('test')).status).toBe(200);
    const { result, traffic } = await deployUnderLoad(slug, ['project', 'deploy', 'test']);
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toMatch(/failed: the new release did not become healthy: .*non-zero exit \(3\)/);
    expect(result.stderr).toMatch(/previous release keeps serving/);
    expect(result.stdout).toContain('web: this release refuses to start');
    expect(traffic.failures, traffic.failures.join('\n')).toEqual([]);
    expect(JSON.parse((await health('test')).body)).toMatchObject({ stage: 'test', database: 'ok' });

    const [failed, previous] = json(await cli(slug, ['project', 'deployments', 'test', '--json'])).deployments;
    expect(failed).toMatchObject({ state: 'failed', reason: expect.stringMatching(/did not become healthy/) });
    expect(previous.state).toBe('succeeded');
    const log = await cli(slug, ['project', 'deploy-log', failed.id]);
    expect(log.stdout).toMatch(/Deployment failed: the new release did not become healthy/);
  });

  it('a deployed environment with no task running answers a short 503 page, and serves again once one runs', { timeout: 300_000 }, async () => {
    const service = `${platform().name}-app-${slug}-test`;
    const scale = (replicas: number) => execa('docker', ['service', 'scale', '--detach', `${service}=${replicas}`]);
    /** The first answer with `status` within 30 s (the task stops after a grace period; nginx may hold an old lookup for 3 s). */
    const awaitStatus = async (status: number) => {
      let answer = await health('test');
      for (let attempt = 0; attempt < 60 && answer.status !== status; attempt++) {
        await sleep(500);
        answer = await health('test');
      }
      return answer;
    };
    await scale(0);
    try {
      const answer = await awaitStatus(503);
      expect(answer.status, answer.body).toBe(503);
      expect(answer.contentType).toMatch(/^text\/html/);
      expect(answer.body).toContain(`${host('test')} is not answering right now`);
    } finally {
      await scale(1);
    }
    expect((await awaitStatus(200)).status).toBe(200);
  });

  it('django: test, then live on the same image; /healthz through the router says each stage', { timeout: 1_200_000 }, async () => {
    const created = await divio(['project', 'create', djangoSlug, '--boilerplate', 'django'], { cwd: parent, env });
    expect(created.exitCode, created.stderr).toBe(0);

    const test = await cli(djangoSlug, ['project', 'deploy', 'test', '--json']);
    expect(test.exitCode, test.stderr).toBe(0);
    const testAnswer = await health('test', djangoSlug);
    expect(testAnswer.status, testAnswer.body).toBe(200);
    expect(JSON.parse(testAnswer.body)).toMatchObject({ stage: 'test', database: 'ok' });
    const beforeLive = await health('live', djangoSlug);
    expect(beforeLive.status).toBe(404);
    expect(beforeLive.body).toContain('Nothing is deployed at');

    const live = await cli(djangoSlug, ['project', 'deploy', 'live', '--yes', '--json']);
    expect(live.exitCode, live.stderr).toBe(0);
    expect(json(live)).toMatchObject({ environment: 'live', state: 'succeeded', image: json(test).image, commit: json(test).commit });
    const liveAnswer = await health('live', djangoSlug);
    expect(liveAnswer.status, liveAnswer.body).toBe(200);
    expect(JSON.parse(liveAnswer.body)).toMatchObject({ stage: 'live', database: 'ok' });
  });
});
