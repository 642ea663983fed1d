/**
 * The runtime on this engine's swarm: an environment's first deploy, a rolling update, updates that
 * Swarm rolls back (an image whose health check fails, one whose process exits), release jobs that
 * succeed and fail, and removal. Apps are tiny node servers built here from node:20-bookworm-slim;
 * what serves is checked from a helper container on the test's own overlay network.
 */
import type Docker from 'dockerode';
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker } from '../../src/core/docker.js';
import { healthCheckCommand } from '../../src/platform/api/deploy/health-command.js';
import {
  deployEnvironment,
  environmentServiceName,
  environmentServiceSpec,
  environmentVariables,
  removeEnvironment,
  runReleaseJob,
  scaleEnvironment,
  type EnvironmentInput,
  type RuntimeTiming,
} from '../../src/platform/api/deploy/runtime.js';
import { describeWithDocker } from '../helpers/docker.js';

const TEST_LABEL = { 'divio.test': 'runtime' };
const PORT = 8000;
const SECRET = `s3cret-${randomBytes(6).toString('hex')}`;
/**
 * Fast health checks and a short monitor: the behaviour is Swarm's either way. The start period
 * leaves a loaded machine time to start node (a passing check ends it early).
 */
const TIMING: Partial<RuntimeTiming> = {
  healthIntervalMs: 500,
  healthTimeoutMs: 2_000,
  healthRetries: 2,
  healthStartPeriodMs: 5_000,
  updateMonitorMs: 3_000,
  restartDelayMs: 1_000,
};

const SERVER_JS = `
const http = require('http');
const version = process.env.APP_VERSION;
if (process.env.APP_MODE === 'crash') {
  console.error('crashing on purpose in ' + version);
  process.exit(1);
}
http.createServer((req, res) => {
  if (req.url === '/healthz') {
    const healthy = process.env.APP_MODE !== 'unhealthy';
    res.writeHead(healthy ? 200 : 500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ version, stage: process.env.STAGE, healthy }));
    return;
  }
  res.end('hello from ' + version + '\\n');
}).listen(Number(process.env.PORT), () => console.log('listening as ' + version));
`;

const DOCKERFILE = `FROM node:20-bookworm-slim
ARG VERSION
ARG MODE=ok
ENV APP_VERSION=$VERSION APP_MODE=$MODE
COPY server.js /app/server.js
CMD ["node", "/app/server.js"]
`;

const VARIANTS = { v1: 'ok', v2: 'ok', unhealthy: 'unhealthy', crash: 'crash' } as const;
type Variant = keyof typeof VARIANTS;

describe('runtime names and specs', () => {
  it('names services PLATFORM-app-SLUG-ENV, within 63 characters, deterministically', () => {
    expect(environmentServiceName('divio', 'shop', 'live')).toBe('divio-app-shop-live');
    const long = 'a'.repeat(60);
    const test = environmentServiceName('divio-test-1234', long, 'test');
    expect(test.length).toBeLessThanOrEqual(63);
    expect(test).toMatch(/^divio-test-1234-app-a+-[0-9a-f]{8}-test$/);
    expect(environmentServiceName('divio-test-1234', long, 'test')).toBe(test);
    expect(environmentServiceName('divio-test-1234', `${long}b`, 'test')).not.toBe(test);
    expect(() => environmentServiceName('divio', 'Shop!', 'test')).toThrow(/slug/);
  });

  it('rejects bad variable names and never shows a value', () => {
    expect(environmentVariables({ B: '2', A_1: '1' })).toEqual(['A_1=1', 'B=2']);
    expect(() => environmentVariables({ '1X': SECRET })).toThrow(/1X/);
    expect(() => environmentVariables({ 'X-Y': SECRET })).not.toThrow(new RegExp(SECRET));
    expect(() => environmentVariables({ X: `${SECRET}\0` })).toThrow(/X/);
    expect(() => environmentVariables({ X: `${SECRET}\0` })).not.toThrow(new RegExp(SECRET));
  });

  it('builds health checks from a valid port and path only', () => {
    const test = healthCheckCommand(8000, "/api/health-check;v=1.0/it's-$(ok)");
    expect(test.slice(0, 3)).toEqual(['CMD', 'sh', '-c']);
    // Port and path are arguments of the script, never part of its text.
    expect(test.slice(-2)).toEqual(['8000', "/api/health-check;v=1.0/it's-$(ok)"]);
    expect(test[3]).not.toContain('health-check');
    for (const [port, path] of [
      [0, '/'],
      [65_536, '/'],
      [80.5, '/'],
      [80, 'healthz'],
      [80, '/a b'],
      [80, '/"x"'],
      [80, '/a\\b'],
      [80, '/a\nb'],
      [80, '/healthz?probe=1'],
      [80, '/a`b`'],
    ] as const) {
      expect(() => healthCheckCommand(port, path)).toThrow();
    }
  });

  it('specifies a start-first, rolled-back, health-checked service with dnsrr', () => {
    const spec = environmentServiceSpec(environmentInput('sha256:abc', { SECRET_KEY: SECRET }));
    expect(spec.Labels).toMatchObject({ 'divio.platform': 'p', 'divio.app': 'shop', 'divio.env': 'test', 'divio.component': 'app' });
    expect(spec.EndpointSpec).toEqual({ Mode: 'dnsrr' });
    expect(spec.UpdateConfig).toMatchObject({ Parallelism: 1, Order: 'start-first', FailureAction: 'rollback', Monitor: 10e9, MaxFailureRatio: 0 });
    expect(spec.RollbackConfig).toMatchObject({ Order: 'start-first' });
    const container = (spec.TaskTemplate as Docker.ContainerTaskSpec).ContainerSpec!;
    expect(container).toMatchObject({ Init: true, StopGracePeriod: 10e9, Env: ['PORT=8000', `SECRET_KEY=${SECRET}`] });
    expect(container.HealthCheck).toMatchObject({ Interval: 2e9, Timeout: 2e9, Retries: 3, StartPeriod: 60e9 });
  });

  function environmentInput(image: string, variables: Record<string, string>): EnvironmentInput {
    return { platform: 'p', slug: 'shop', env: 'test', image, replicas: 2, port: PORT, healthPath: '/healthz', variables: { PORT: String(PORT), ...variables }, network: 'n' };
  }
});

describeWithDocker('runtime on Swarm', () => {
  const run = `${process.pid}-${randomBytes(3).toString('hex')}`;
  const platform = `rtt-${run}`;
  const network = `${platform}-net`;
  const helper = `${platform}-helper`;
  const slug = 'shop';
  const service = environmentServiceName(platform, slug, 'test');
  const images = {} as Record<Variant, string>;
  let context: string | undefined;
  let networkCreated = false;

  beforeAll(async () => {
    context = await mkdtemp(join(tmpdir(), 'divio-runtime-test-'));
    await writeFile(join(context, 'server.js'), SERVER_JS);
    await writeFile(join(context, 'Dockerfile'), DOCKERFILE);
    for (const [variant, mode] of Object.entries(VARIANTS) as [Variant, string][]) {
      images[variant] = await buildImage(context, variant, mode);
    }
    await docker().createNetwork({ Name: network, Driver: 'overlay', Attachable: true, CheckDuplicate: true, Labels: TEST_LABEL });
    networkCreated = true;
    await execa('docker', ['run', '-d', '--rm', '--init', '--name', helper, '--network', network, '--label', 'divio.test=runtime', 'node:20-bookworm-slim', 'sleep', 'infinity']);
  });

  afterAll(async () => {
    await cleanUp();
    if (context) await rm(context, { recursive: true, force: true });
  });

  async function buildImage(dir: string, variant: Variant, mode: string): Promise<string> {
    const tag = `divio-runtime-test:${variant}-${run}`;
    const { stdout } = await execa('docker', ['build', '-q', '--build-arg', `VERSION=${variant}`, '--build-arg', `MODE=${mode}`, '--label', 'divio.test=runtime', '-t', tag, dir]);
    const id = /sha256:[0-9a-f]{64}/.exec(stdout)?.[0];
    if (!id) throw new Error(`docker build printed no image id: ${stdout}`);
    // The image ID, not the tag: the engine then never tries to pull it from a registry.
    return id;
  }

  async function cleanUp(): Promise<void> {
    for (const s of await docker().listServices({ filters: { label: [`divio.platform=${platform}`] } })) {
      await docker().getService(s.ID).remove().catch(() => {});
    }
    const containers = [
      ...(await docker().listContainers({ all: true, filters: { label: [`divio.platform=${platform}`] } })),
      ...(await docker().listContainers({ all: true, filters: { name: [helper] } })),
    ];
    for (const c of containers) await docker().getContainer(c.Id).remove({ force: true }).catch(() => {});
    if (networkCreated) await removeNetwork();
    const tags = Object.keys(VARIANTS).map((variant) => `divio-runtime-test:${variant}-${run}`);
    await execa('docker', ['image', 'rm', '--force', ...tags], { reject: false });
  }

  async function removeNetwork(): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        await docker().getNetwork(network).remove();
        return;
      } catch (error) {
        if ((error as { statusCode?: number }).statusCode === 404) return;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  function spec(variant: Variant) {
    const result = environmentServiceSpec({
      platform,
      slug,
      env: 'test',
      image: images[variant],
      replicas: 2,
      port: PORT,
      healthPath: '/healthz',
      variables: { PORT: String(PORT), STAGE: 'test', SECRET_KEY: SECRET },
      network,
      labels: TEST_LABEL,
      timing: TIMING,
    });
    return result;
  }

  function recorder() {
    const lines: string[] = [];
    return { lines, log: (line: string) => lines.push(line) };
  }

  /** What `count` requests to the service name answer, from inside the network (dnsrr: any task). */
  async function versionsServing(count = 6): Promise<string[]> {
    const script = `
      const [host, port, count] = process.argv.slice(1);
      (async () => {
        const out = [];
        for (let i = 0; i < Number(count); i++) {
          const response = await fetch('http://' + host + ':' + port + '/healthz');
          const body = await response.json();
          out.push(response.status + ' ' + body.version + ' ' + body.stage);
        }
        console.log(JSON.stringify(out));
      })().catch((error) => { console.error(String(error.cause ?? error)); process.exit(1); });`;
    const { stdout } = await execa('docker', ['exec', helper, 'node', '-e', script, service, String(PORT), String(count)]);
    return JSON.parse(stdout) as string[];
  }

  it('a first deploy creates the service; it answers once all replicas are healthy', async () => {
    const { lines, log } = recorder();
    const outcome = await deployEnvironment(docker(), spec('v1'), { log, timeoutMs: 60_000 });
    expect(outcome, lines.join('\n')).toEqual({ ok: true, image: images.v1 });
    expect(lines).toContain(`created the service ${service}`);
    expect(lines).toContain('2/2 tasks running the new image');
    expect(new Set(await versionsServing())).toEqual(new Set(['200 v1 test']));
    const created = (await docker().getService(service).inspect()) as Docker.Service;
    expect(created.Spec?.Labels).toMatchObject({ ...TEST_LABEL, 'divio.platform': platform, 'divio.app': slug, 'divio.env': 'test', 'divio.component': 'app' });
    expect(lines.join('\n')).not.toContain(SECRET);
  });

  it('an update to v2 rolls start-first and then only v2 serves', async () => {
    const { lines, log } = recorder();
    const outcome = await deployEnvironment(docker(), spec('v2'), { log, timeoutMs: 60_000 });
    expect(outcome, lines.join('\n')).toEqual({ ok: true, image: images.v2 });
    expect(lines.at(-1)).toBe('2/2 tasks running the new image');
    // Progress is logged when it changes, not on every poll.
    expect(lines.length).toBeLessThanOrEqual(5);
    expect(new Set(await versionsServing())).toEqual(new Set(['200 v2 test']));
  });

  it('deploying the same spec again changes nothing and succeeds at once', async () => {
    const before = await taskIds();
    const started = Date.now();
    const outcome = await deployEnvironment(docker(), spec('v2'), { log: () => {}, timeoutMs: 30_000 });
    expect(outcome).toEqual({ ok: true, image: images.v2 });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await taskIds()).toEqual(before);
  });

  it('an update whose health check fails is rolled back: v2 keeps serving', async () => {
    const { lines, log } = recorder();
    const outcome = await deployEnvironment(docker(), spec('unhealthy'), { log, timeoutMs: 90_000 });
    expect(outcome.ok, lines.join('\n')).toBe(false);
    expect(outcome.reason).toMatch(/unhealthy container/);
    expect(outcome.image).toBe(images.v2);
    expect(lines.some((l) => l.startsWith('rolling back: '))).toBe(true);
    expect(new Set(await versionsServing())).toEqual(new Set(['200 v2 test']));
    expect(await serviceImage()).toBe(images.v2);
  });

  it('an update whose process exits is rolled back: v2 keeps serving, and its output is logged', async () => {
    const { lines, log } = recorder();
    const outcome = await deployEnvironment(docker(), spec('crash'), { log, timeoutMs: 90_000 });
    expect(outcome.ok, lines.join('\n')).toBe(false);
    expect(outcome.reason).toMatch(/non-zero exit \(1\)/);
    expect(outcome.image).toBe(images.v2);
    expect(lines).toContain('  crashing on purpose in crash');
    expect(new Set(await versionsServing())).toEqual(new Set(['200 v2 test']));
  });

  it('scales an environment, keeping its image', async () => {
    await scaleEnvironment(docker(), platform, slug, 'test', 1);
    const scaled = (await docker().getService(service).inspect()) as Docker.Service;
    expect(scaled.Spec?.Mode?.Replicated?.Replicas).toBe(1);
    expect(await serviceImage()).toBe(images.v2);
  });

  it("another app whose shortened service name equals this one's is refused, and this service stays as it was", async () => {
    // What a crafted slug would send: the same (hashed) service name, labelled for another app.
    const victim = (await docker().getService(service).inspect()) as Docker.Service;
    const intruder = spec('v1');
    intruder.Labels = { ...intruder.Labels, 'divio.app': 'another-app' };
    await expect(deployEnvironment(docker(), intruder, { log: () => {}, timeoutMs: 30_000 })).rejects.toThrow(
      `a service named ${service} exists and is not this environment's`,
    );
    const after = (await docker().getService(service).inspect()) as Docker.Service;
    expect(after.Version?.Index).toBe(victim.Version?.Index);
    expect(after.Spec).toEqual(victim.Spec);
  });

  it('a release job runs the command once with the new image and the variables, its output logged', async () => {
    const { lines, log } = recorder();
    const command = 'echo "migrating $STAGE with $APP_VERSION"; echo "a warning" >&2; [ "$SECRET_KEY" = "$EXPECTED" ] && printf "secret ok"';
    const outcome = await runReleaseJob(
      docker(),
      { platform, slug, env: 'test', image: images.v1, command, variables: { STAGE: 'test', SECRET_KEY: SECRET, EXPECTED: SECRET }, network, labels: TEST_LABEL },
      { log, timeoutMs: 60_000 },
    );
    expect(outcome, lines.join('\n')).toEqual({ ok: true, exitCode: 0 });
    expect(lines).toEqual(expect.arrayContaining(['migrating test with v1', 'a warning', 'secret ok']));
    expect(lines.join('\n')).not.toContain(SECRET);
    expect(await releaseJobsLeft()).toEqual([]);
  });

  it('a failing release job reports its exit code and output', async () => {
    const { lines, log } = recorder();
    const outcome = await runReleaseJob(
      docker(),
      { platform, slug, env: 'test', image: images.v2, command: 'echo "migration failed"; exit 7', variables: {}, network, labels: TEST_LABEL },
      { log, timeoutMs: 60_000 },
    );
    expect(outcome.ok).toBe(false);
    expect(outcome.exitCode).toBe(7);
    expect(outcome.reason).toMatch(/exited with 7/);
    expect(lines).toContain('migration failed');
    expect(await releaseJobsLeft()).toEqual([]);
  });

  it('the health probe works with bash and, in an image without bash, with node', async () => {
    const check = async (image: string, removeBash: boolean, path = '/healthz') => {
      const probe = healthCheckCommand(PORT, path).slice(1);
      // Probe once the server says it listens: a fixed sleep loses the race on a loaded machine.
      const setup = `${removeBash ? 'rm -f /bin/bash /usr/bin/bash; ' : ''}PORT=${PORT} node /app/server.js >/tmp/server.out & until grep -q listening /tmp/server.out 2>/dev/null; do sleep 0.05; done; exec "$@"`;
      const result = await execa('docker', ['run', '--rm', '--label', 'divio.test=runtime', image, 'sh', '-c', setup, 'setup', ...probe], { reject: false });
      return { exitCode: result.exitCode, stderr: result.stderr };
    };
    const [bash, node, bashQuoted, nodeQuoted, bashUnhealthy, nodeUnhealthy] = await Promise.all([
      check(images.v1, false),
      check(images.v1, true),
      // Quotes and $( ) in the path stay data (the test server answers 200 on any other path).
      check(images.v1, false, "/it's;$(exit)"),
      check(images.v1, true, "/it's;$(exit)"),
      check(images.unhealthy, false),
      check(images.unhealthy, true),
    ]);
    expect({ bash, node, bashQuoted, nodeQuoted }).toEqual({
      bash: { exitCode: 0, stderr: '' },
      node: { exitCode: 0, stderr: '' },
      bashQuoted: { exitCode: 0, stderr: '' },
      nodeQuoted: { exitCode: 0, stderr: '' },
    });
    expect(bashUnhealthy).toEqual({ exitCode: 1, stderr: 'health check: /healthz answered 500' });
    expect(nodeUnhealthy).toEqual({ exitCode: 1, stderr: 'health check: /healthz answered 500' });
  });

  it('removing an environment removes its service and containers, and again is a no-op', async () => {
    expect(await removeEnvironment(docker(), platform, slug, 'test')).toBe('removed');
    expect(await docker().listServices({ filters: { name: [service] } })).toEqual([]);
    expect(await docker().listContainers({ all: true, filters: { label: [`com.docker.swarm.service.name=${service}`] } })).toEqual([]);
    expect(await removeEnvironment(docker(), platform, slug, 'test')).toBe('absent');
  });

  async function taskIds(): Promise<string[]> {
    const tasks = (await docker().listTasks({ filters: { service: [service], 'desired-state': ['running'] } })) as { ID: string }[];
    return tasks.map((t) => t.ID).sort();
  }

  async function serviceImage(): Promise<string | undefined> {
    const current = (await docker().getService(service).inspect()) as Docker.Service;
    return (current.Spec?.TaskTemplate as Docker.ContainerTaskSpec).ContainerSpec?.Image;
  }

  async function releaseJobsLeft(): Promise<string[]> {
    const jobs = await docker().listServices({ filters: { label: [`divio.platform=${platform}`, 'divio.component=release'] } });
    return jobs.map((j) => j.Spec?.Name ?? j.ID);
  }
});
