/**
 * The platform's settings, runtime configuration, router configuration and Swarm service specs:
 * pure functions of the settings, checked without an engine (the router config also through
 * `nginx -t` when Docker answers).
 */
import type Docker from 'dockerode';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runtimeConfigSchema } from '../../src/platform/runtime-config.js';
import { buildRuntimeConfig, configSecretName, serialiseRuntimeConfig } from '../../src/services/platform/config.js';
import { domainRegex, renderRouterConfig, renderTemplate, routerValues } from '../../src/services/platform/router-config.js';
import { routeConfig } from '../../src/platform/api/deploy/deploy-service.js';
import {
  chooseDataDir,
  defaultDataDir,
  readSettings,
  rememberDataDir,
  resolveSettings,
  writeSettings,
  type PlatformSettings,
} from '../../src/services/platform/settings.js';
import { LABEL_SPEC_HASH, componentsOf, platformSpecs, specHash, type SpecContext } from '../../src/services/platform/specs.js';
import { componentState, overallState } from '../../src/services/platform/status.js';
import { dockerAvailable } from '../helpers/docker.js';

const scratch = mkdtempSync(join(tmpdir(), 'divio-platform-unit-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function settings(overrides: Partial<PlatformSettings> = {}): PlatformSettings {
  return {
    name: 'divio',
    domain: 'localhost',
    port: 8600,
    secrets: { postgresPassword: 'p@ss/word+with:chars', mediaAccessKeyId: 'DIVIOKEY12345', mediaSecretAccessKey: 'secretsecretsecretsecret' },
    operator: { tokenId: 'abcdefghij012345', tokenHash: 'a'.repeat(64) },
    external: {},
    ...overrides,
  };
}

describe('settings', () => {
  it('are created with generated secrets and defaults, stored 0600, and read back', async () => {
    const dir = join(scratch, 'data-a');
    const { settings: created, created: isNew } = await resolveSettings(dir, {});
    expect(isNew).toBe(true);
    expect(created).toMatchObject({ name: 'divio', domain: 'localhost', port: 8600, external: {} });
    expect(created.secrets.postgresPassword.length).toBeGreaterThanOrEqual(24);
    expect(created.secrets.mediaAccessKeyId).toMatch(/^DIVIO[A-Z0-9]{15}$/);
    await writeSettings(dir, created);
    expect(statSync(join(dir, 'platform.json')).mode & 0o777).toBe(0o600);
    expect(await readSettings(dir)).toEqual(created);

    const again = await resolveSettings(dir, { port: 8700 });
    expect(again.created).toBe(false);
    expect(again.settings).toEqual({ ...created, port: 8700 });
    // Secrets are generated once.
    expect((await resolveSettings(join(scratch, 'data-b'), {})).settings.secrets).not.toEqual(created.secrets);
  });

  it('refuse another name for an existing data dir, bad names, domains and damaged files', async () => {
    const dir = join(scratch, 'data-c');
    await writeSettings(dir, settings());
    await expect(resolveSettings(dir, { name: 'other' })).rejects.toThrow(/belongs to the platform "divio"/);
    await expect(resolveSettings(dir, { name: 'Bad_Name' })).rejects.toThrow(/not a valid platform name/);
    await expect(resolveSettings(dir, { domain: 'x;} server {' })).rejects.toThrow(/not a valid domain/);
    writeFileSync(join(dir, 'platform.json'), '{"name": 1}');
    await expect(readSettings(dir)).rejects.toThrow(/not valid platform settings/);
  });

  it('the data dir: flag, else the remembered one, else XDG_DATA_HOME', async () => {
    const env = { DIVIO_CONFIG_DIR: join(scratch, 'config'), XDG_DATA_HOME: '/xdg' };
    expect(defaultDataDir(env)).toBe('/xdg/divio/platform');
    expect(await chooseDataDir(undefined, env)).toBe('/xdg/divio/platform');
    await rememberDataDir('/srv/platform', env);
    expect(await chooseDataDir(undefined, env)).toBe('/srv/platform');
    expect(await chooseDataDir('/elsewhere', env)).toBe('/elsewhere');
  });
});

describe('runtime config', () => {
  it('points at the embedded parts by service name and passes the schema', () => {
    const config = buildRuntimeConfig(settings({ name: 'divio-test', port: 8611 }), '1.2.3');
    expect(runtimeConfigSchema.parse(config)).toEqual(config);
    expect(config).toMatchObject({
      name: 'divio-test',
      version: '1.2.3',
      publicUrl: 'http://127.0.0.1:8611',
      database: {
        adminUrl: `postgres://postgres:${encodeURIComponent('p@ss/word+with:chars')}@divio-test-postgres:5432/postgres`,
        platformDatabase: 'divio_platform',
        // Apps reach the cluster and the store through the gateway, under these names on their network.
        appHost: 'divio-test-database',
        appPort: 5432,
      },
      media: {
        endpoint: 'http://divio-test-s3:4568',
        appEndpoint: 'http://divio-test-media:4568',
        publicUrl: 'http://s3.localhost:8611',
        region: 'us-east-1',
        accessKeyId: 'DIVIOKEY12345',
        keysFile: '/data/media-keys/keys.json',
      },
      registry: { address: '127.0.0.1:8611' },
      git: { root: '/data/git' },
      operator: { name: 'operator', tokenId: 'abcdefghij012345' },
      runtime: {
        sharedServices: [
          { service: 'divio-test-gateway', aliases: ['divio-test-database', 'divio-test-media'] },
          { service: 'divio-test-router', aliases: [] },
        ],
      },
    });
    expect(new URL(config.database.adminUrl).password).toBe(encodeURIComponent('p@ss/word+with:chars'));
  });

  it('uses external parts instead when configured', () => {
    const config = buildRuntimeConfig(
      settings({
        external: {
          database: { url: 'postgres://admin:pw@db.example.com:6543/postgres' },
          media: { endpoint: 'https://s3.example.com', publicUrl: 'https://cdn.example.com', region: 'eu-west-1', accessKeyId: 'AK', secretAccessKey: 'SK' },
          registry: { address: 'registry.example.com' },
        },
      }),
      '1',
    );
    expect(config.database).toMatchObject({ adminUrl: 'postgres://admin:pw@db.example.com:6543/postgres', appHost: 'db.example.com', appPort: 6543 });
    expect(config.media).toEqual({ endpoint: 'https://s3.example.com', publicUrl: 'https://cdn.example.com', region: 'eu-west-1', accessKeyId: 'AK', secretAccessKey: 'SK' });
    expect(config.registry.address).toBe('registry.example.com');
    expect(componentsOf(settings({ external: { database: { url: 'postgres://x' }, registry: { address: 'r' } } }))).toEqual(['s3', 'gateway', 'api', 'router']);
  });

  it('is delivered under a content-addressed secret name', () => {
    const a = serialiseRuntimeConfig(buildRuntimeConfig(settings(), '1'));
    const b = serialiseRuntimeConfig(buildRuntimeConfig(settings({ port: 8601 }), '1'));
    expect(configSecretName('divio', a)).toMatch(/^divio-config-[0-9a-f]{12}$/);
    expect(configSecretName('divio', a)).toBe(configSecretName('divio', a));
    expect(configSecretName('divio', a)).not.toBe(configSecretName('divio', b));
  });
});

describe('router config', () => {
  it('renders sections and values, and refuses unknown placeholders', () => {
    expect(renderTemplate('a {{x}}\n{{#on}}\nkept\n{{/on}}\n{{#off}}\ngone\n{{/off}}\nend', { x: 'X', on: true, off: false })).toBe('a X\nkept\nend');
    expect(() => renderTemplate('{{missing}}', {})).toThrow(/needs a value/);
  });

  it('routes the API, git, registry and s3 through re-resolved variables', async () => {
    const text = await renderRouterConfig(routerValues(settings({ name: 'divio-test', domain: 'apps.example.com' })));
    expect(text).toContain('resolver 127.0.0.11 valid=2s ipv6=off;');
    expect(text).toContain('set $api divio-test-api:8080;');
    expect(text).toContain('set $registry divio-test-registry:5000;');
    expect(text).toContain('server_name s3.apps.example.com;');
    expect(text).toContain('set $s3 divio-test-s3:4568;');
    expect(text).not.toMatch(/\{\{|\}\}/);
    // Every proxy_pass goes through a variable: names are resolved again on each request.
    for (const line of text.split('\n').filter((l) => l.includes('proxy_pass'))) expect(line).toMatch(/proxy_pass http:\/\/\$\w+;/);
    expect(text).toContain('include /etc/nginx/divio-apps/*.conf;');

    const external = await renderRouterConfig(
      routerValues(settings({ external: { registry: { address: 'r.example.com' }, media: { endpoint: 'https://s3', publicUrl: 'https://s3', region: 'r', accessKeyId: 'a', secretAccessKey: 's' } } })),
    );
    expect(external).not.toContain('/v2/');
    expect(external).not.toContain('server_name s3.');
  });

  it('answers hosts of environments with nothing deployed with a 404 page of its own, never a proxy', async () => {
    expect(domainRegex('apps.example.com')).toBe('apps\\.example\\.com');
    expect(domainRegex('localhost')).toBe('localhost');
    expect(() => domainRegex('a.b$|.*')).toThrow(/invalid domain/);
    const text = await renderRouterConfig(routerValues(settings({ name: 'divio-test', domain: 'apps.example.com' })));
    const block = text.split('\nserver {').find((b) => b.includes('server_name "~'))?.split('\n}')[0] ?? '';
    expect(block).toContain('server_name "~^(?<divio_env>test|live)-(?<divio_slug>[a-z][a-z0-9-]*)\\.apps\\.example\\.com$";');
    expect(block).toMatch(/return 404 ".*Nothing is deployed at \$host yet/);
    expect(block).not.toContain('proxy_pass');
    // The pattern is what the block's page may echo: only names of environments match it.
    const pattern = new RegExp(/server_name "~([^"]+)"/.exec(block)![1]!.replace(/\(\?<\w+>/g, '('));
    expect(pattern.test('test-shop.apps.example.com')).toBe(true);
    expect(pattern.test('live-my-shop2.apps.example.com')).toBe(true);
    for (const other of ['s3.apps.example.com', 'staging-shop.apps.example.com', 'test-shop.appsxexample.com', 'test-<b>.apps.example.com', 'test-shop.apps.example.com.evil']) {
      expect(pattern.test(other), other).toBe(false);
    }
  });

  it("an environment's route retries a vanished task once through tasks.NAME, then answers a 503 page; the app's own errors pass", () => {
    const text = routeConfig('test-shop.localhost', 'divio-app-shop-test:8000');
    expect(text).toContain('server_name test-shop.localhost;');
    expect(text).toContain('proxy_next_upstream error timeout http_502;');
    expect(text).toContain('error_page 502 504 = @retry;');
    expect(text).toContain('set $app_tasks tasks.divio-app-shop-test:8000;');
    expect(text).toMatch(/location @unavailable \{[^}]*return 503 "[^}]*test-shop\.localhost is not answering right now/);
    expect(text).not.toContain('proxy_intercept_errors');
  });

  it.skipIf(!dockerAvailable)('is valid nginx configuration (nginx -t), with an app route', async () => {
    const dir = mkdtempSync(join(scratch, 'nginx-'));
    writeFileSync(join(dir, 'default.conf'), await renderRouterConfig(routerValues(settings({ name: 'divio-test' }))));
    mkdirSync(join(dir, 'apps'));
    writeFileSync(join(dir, 'apps', 'test-shop.conf'), routeConfig('test-shop.localhost', 'divio-test-app-shop-test:8000'));
    // As the router runs it: the config as conf.d/default.conf, app routes in divio-apps, and an empty sites-enabled.
    const out = execFileSync(
      'docker',
      [
        'run',
        '--rm',
        '-v',
        `${join(dir, 'default.conf')}:/etc/nginx/conf.d/default.conf:ro`,
        '-v',
        `${join(dir, 'apps')}:/etc/nginx/divio-apps:ro`,
        '--tmpfs',
        '/etc/nginx/sites-enabled',
        'nginx:bookworm',
        'nginx',
        '-t',
      ],
      { encoding: 'utf8', stdio: 'pipe' },
    );
    expect(out).toBeDefined();
  });
});

describe('service specs', () => {
  const context = (s: PlatformSettings): SpecContext => ({
    settings: s,
    dataDir: '/data/platform',
    images: { platform: 'sha256:platform', postgres: 'sha256:pg', registry: 'sha256:reg', router: 'sha256:nginx' },
    configSecret: { id: 'cfg-id', name: 'divio-config-abc' },
    postgresSecret: { id: 'pw-id', name: 'divio-postgres-password-abc' },
    registrySecret: { id: 'reg-id', name: 'divio-registry-htpasswd-abc' },
    routerConfigHash: 'r1',
  });

  it("keep the router and gateway on the environments' networks without counting them as a change (a start restarts nothing)", () => {
    const bare = platformSpecs(context(settings()));
    const joined = platformSpecs({ ...context(settings()), environmentNetworks: ['net-b', 'net-a'] });
    for (const component of ['router', 'gateway'] as const) {
      const before = bare.find((s) => s.component === component)!.spec;
      const after = joined.find((s) => s.component === component)!.spec;
      expect((after.TaskTemplate as { Networks: { Target: string }[] }).Networks.map((n) => n.Target)).toEqual(['divio-net', 'net-b', 'net-a']);
      expect(after.Labels?.[LABEL_SPEC_HASH]).toBe(before.Labels?.[LABEL_SPEC_HASH]);
    }
    // Nothing else joins them.
    for (const { component, spec } of joined.filter((s) => !['router', 'gateway'].includes(s.component))) {
      expect((spec.TaskTemplate as { Networks: { Target: string }[] }).Networks.map((n) => n.Target), component).toEqual(['divio-net']);
    }
  });

  it('are dnsrr, on the platform network, labelled, pinned to managers, with host-mode publishing', () => {
    const specs = platformSpecs(context(settings()));
    expect(specs.map((s) => s.service)).toEqual(['divio-postgres', 'divio-registry', 'divio-s3', 'divio-gateway', 'divio-api', 'divio-router']);
    for (const { spec, component } of specs) {
      expect(spec.EndpointSpec?.Mode).toBe('dnsrr');
      expect(spec.Labels).toMatchObject({ 'divio.platform': 'divio', 'divio.component': component });
      expect(spec.Labels?.[LABEL_SPEC_HASH]).toBe(specHash(spec));
      expect(spec.TaskTemplate).toMatchObject({ Networks: [{ Target: 'divio-net' }], Placement: { Constraints: ['node.role==manager'] }, RestartPolicy: { Condition: 'any' } });
      expect(spec.Mode).toEqual({ Replicated: { Replicas: 1 } });
    }
    const router = specs.find((s) => s.component === 'router')!.spec;
    expect(router.EndpointSpec?.Ports).toEqual([{ Protocol: 'tcp', TargetPort: 80, PublishedPort: 8600, PublishMode: 'host' }]);
    const api = specs.find((s) => s.component === 'api')!.spec;
    const container = (api.TaskTemplate as { ContainerSpec: { Env: string[]; Secrets: unknown[]; Mounts: { Source: string; Target: string }[] } }).ContainerSpec;
    expect(container.Env).toContain('DIVIO_PLATFORM_CONFIG=/run/secrets/divio-platform.json');
    expect(container.Secrets).toEqual([{ SecretID: 'cfg-id', SecretName: 'divio-config-abc', File: { Name: 'divio-platform.json', UID: '0', GID: '0', Mode: 0o400 } }]);
    expect(container.Mounts.map((m) => `${m.Source}:${m.Target}`)).toEqual([
      '/data/platform/git:/data/git',
      '/data/platform/media-keys:/data/media-keys',
      '/data/platform/router/apps:/data/router-apps',
      '/var/run/docker.sock:/var/run/docker.sock',
    ]);
    const gateway = (specs.find((s) => s.component === 'gateway')!.spec.TaskTemplate as { ContainerSpec: Record<string, unknown> }).ContainerSpec;
    // It holds nothing worth taking: no secret, no mount, an unprivileged user on a read-only root.
    expect(gateway).toMatchObject({ User: 'node', ReadOnly: true, Env: ['DIVIO_GATEWAY_DATABASE=divio-postgres:5432', 'DIVIO_GATEWAY_MEDIA=divio-s3:4568'] });
    expect(gateway.Secrets).toBeUndefined();
    expect(gateway.Mounts).toBeUndefined();
    const postgres = specs.find((s) => s.component === 'postgres')!.spec;
    expect(JSON.stringify(postgres)).toContain('POSTGRES_PASSWORD_FILE=/run/secrets/postgres-password');
    expect(JSON.stringify(postgres)).not.toContain('p@ss');
  });

  it('put the router and the gateway, and only them, on every environment network, under their aliases there', () => {
    const specs = platformSpecs({ ...context(settings()), environmentNetworks: ['net-a', 'net-b'] });
    const networks = (component: string) => (specs.find((s) => s.component === component)!.spec.TaskTemplate as { Networks: unknown[] }).Networks;
    expect(networks('router')).toEqual([
      { Target: 'divio-net', Aliases: ['router'] },
      { Target: 'net-a', Aliases: [] },
      { Target: 'net-b', Aliases: [] },
    ]);
    expect(networks('gateway')).toEqual([
      { Target: 'divio-net', Aliases: ['gateway'] },
      { Target: 'net-a', Aliases: ['divio-database', 'divio-media'] },
      { Target: 'net-b', Aliases: ['divio-database', 'divio-media'] },
    ]);
    for (const inner of ['postgres', 'registry', 's3', 'api']) expect(networks(inner)).toEqual([{ Target: 'divio-net', Aliases: [inner] }]);
  });

  it('hash changes with what matters and only with it', () => {
    const hashes = (s: PlatformSettings, patch: Partial<SpecContext> = {}) =>
      Object.fromEntries(platformSpecs({ ...context(s), ...patch }).map((c) => [c.component, c.spec.Labels![LABEL_SPEC_HASH]]));
    const base = hashes(settings());
    expect(hashes(settings())).toEqual(base);
    const newConfig = hashes(settings(), { configSecret: { id: 'cfg2', name: 'divio-config-def' } });
    expect(newConfig.api).not.toBe(base.api);
    expect(newConfig.s3).not.toBe(base.s3);
    expect(newConfig.postgres).toBe(base.postgres);
    expect(newConfig.router).toBe(base.router);
    const newPort = hashes(settings({ port: 8601 }), { routerConfigHash: 'r2' });
    expect(newPort.router).not.toBe(base.router);
    expect(newPort.registry).toBe(base.registry);
  });
});

describe('component state', () => {
  const service = (replicas: number, image = 'new') =>
    ({ ID: 'x', Spec: { Mode: { Replicated: { Replicas: replicas } }, TaskTemplate: { ContainerSpec: { Image: image } } } }) as unknown as Docker.Service;
  const task = (state: string, desiredState = 'running', error?: string, image = 'new') => ({
    id: state,
    state,
    desiredState,
    error,
    updatedAt: new Date().toISOString(),
    containerSpec: JSON.stringify({ Image: image }),
  });

  it('maps tasks to running, starting, stopped, failed and missing', () => {
    expect(componentState(undefined, [])).toEqual({ state: 'missing', replicas: '0/0' });
    expect(componentState(service(0), [task('shutdown', 'shutdown')]).state).toBe('stopped');
    expect(componentState(service(1), [task('running')])).toEqual({ state: 'running', replicas: '1/1' });
    expect(componentState(service(1), [task('starting')]).state).toBe('starting');
    const failed = componentState(service(1), [task('failed', 'shutdown', 'task: non-zero exit (1)'), task('failed', 'shutdown', 'task: non-zero exit (1)')]);
    expect(failed).toMatchObject({ state: 'failed', replicas: '0/1', detail: 'failed: task: non-zero exit (1)' });
  });

  it('while an update rolls out, a task of the old spec does not count for start', () => {
    const old = [task('running', 'running', undefined, 'old')];
    expect(componentState(service(1), old).state).toBe('running');
    expect(componentState(service(1), old, { currentOnly: true }).state).toBe('starting');
    expect(componentState(service(1), [task('running')], { currentOnly: true }).state).toBe('running');
  });

  it('sums up the platform', () => {
    const c = (state: 'running' | 'stopped' | 'missing') => ({ name: 'api' as const, service: 's', state, replicas: '' });
    const ok = { status: 'ok', components: [] };
    expect(overallState([c('running'), c('running')], ok)).toBe('running');
    expect(overallState([c('running'), c('running')], null)).toBe('partial');
    expect(overallState([c('stopped'), c('stopped')], null)).toBe('stopped');
    expect(overallState([c('running'), c('stopped')], ok)).toBe('partial');
    expect(overallState([c('missing')], null)).toBe('absent');
  });
});

describe('swarm state', () => {
  it('uses an active manager, initialises an inactive engine, and refuses workers, locked and pending swarms with what to do', async () => {
    const { classifySwarm } = await import('../../src/services/platform/swarm.js');
    expect(classifySwarm({ LocalNodeState: 'active', ControlAvailable: true })).toBe('existing');
    expect(classifySwarm({ LocalNodeState: 'inactive' })).toBe('inactive');
    expect(classifySwarm({})).toBe('inactive');
    const worker = classifySwarm({ LocalNodeState: 'active', ControlAvailable: false });
    expect(worker).toBeInstanceOf(Error);
    expect((worker as Error).message).toMatch(/swarm worker/);
    expect((worker as { hint?: string }).hint).toMatch(/manager node/);
    expect((classifySwarm({ LocalNodeState: 'locked' }) as Error).message).toMatch(/locked/);
    expect((classifySwarm({ LocalNodeState: 'pending' }) as Error).message).toMatch(/joining/);
    expect((classifySwarm({ LocalNodeState: 'error', Error: 'boom' }) as Error).message).toMatch(/boom/);
  });
});
