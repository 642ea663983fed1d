/**
 * The Swarm service of each platform component, as a pure function of the settings and what start
 * resolved (image IDs, secret IDs, the router config's digest). Every spec carries a hash of itself
 * in a label: start updates a service only when that hash changes, so a repeated start restarts
 * nothing.
 */
import type Docker from 'dockerode';
import { createHash } from 'node:crypto';
import {
  CONTAINER_PATHS,
  REGISTRY_PORT,
  S3_PORT,
  POSTGRES_PORT,
  environmentAliases,
  networkName,
  serviceName,
} from './config.js';
import { ROUTER_APPS_DIR } from './router-config.js';
import { dataPaths, type PlatformSettings } from './settings.js';

/** Start order: stateful parts first, the router (the only public port) last. */
export const COMPONENTS = ['postgres', 'registry', 's3', 'gateway', 'api', 'router'] as const;
export type Component = (typeof COMPONENTS)[number];

export const LABEL_PLATFORM = 'divio.platform';
export const LABEL_COMPONENT = 'divio.component';
export const LABEL_SPEC_HASH = 'divio.spec-hash';
/** Set by `stop` on services that are not components (apps): how many replicas to give back at start. */
export const LABEL_REPLICAS_BEFORE_STOP = 'divio.replicas-before-stop';
export const LABEL_SECRET_KIND = 'divio.secret';

export const IMAGES = { postgres: 'postgres:15', registry: 'registry:2', router: 'nginx:bookworm' } as const;

const SECOND = 1_000_000_000;
const REGISTRY_HTPASSWD_PATH = '/run/secrets/registry-htpasswd';

/** The components this platform runs itself: external parts have no service. */
export function componentsOf(settings: PlatformSettings): Component[] {
  return COMPONENTS.filter((c) => {
    if (c === 'postgres') return !settings.external.database;
    if (c === 's3') return !settings.external.media;
    if (c === 'registry') return !settings.external.registry;
    // Apps reach an external cluster or store over the outside network, not through the gateway.
    if (c === 'gateway') return !settings.external.database || !settings.external.media;
    return true;
  });
}

export interface SecretRef {
  id: string;
  name: string;
}

export interface SpecContext {
  settings: PlatformSettings;
  dataDir: string;
  /** Image IDs (sha256:…), so the engine never tries to pull. */
  images: { platform: string; postgres: string; registry: string; router: string };
  configSecret: SecretRef;
  /** Absent when the database is external. */
  postgresSecret?: SecretRef;
  /** The embedded registry's htpasswd file; absent when the registry is external. */
  registrySecret?: SecretRef;
  /** Digest of DATA/router/nginx.conf: a new config means a new router task. */
  routerConfigHash: string;
  /**
   * The app environments' networks (IDs), sorted: the router and the gateway stay on every one the
   * API made them join (environment-networks.ts), so a start keeps them there.
   */
  environmentNetworks?: string[];
  /**
   * The swarm node that ran `start`: the data directory and the platform image are on it, so every
   * task is placed there (with several managers, `node.role==manager` alone could pick another).
   */
  nodeId?: string;
}

export interface ComponentSpec {
  component: Component;
  service: string;
  spec: Docker.ServiceSpec;
}

function bind(source: string, target: string, readOnly = false): Docker.MountSettings {
  return { Type: 'bind', Source: source, Target: target, ReadOnly: readOnly };
}

function configSecretMount(secret: SecretRef): Docker.SecretReference {
  return {
    SecretID: secret.id,
    SecretName: secret.name,
    File: { Name: CONTAINER_PATHS.config.split('/').pop()!, UID: '0', GID: '0', Mode: 0o400 },
  };
}

function baseSpec(ctx: SpecContext, component: Component, container: Docker.ContainerSpec, extra: Partial<Docker.ServiceSpec> = {}): ComponentSpec {
  const { name } = ctx.settings;
  const aliases = environmentAliases(name, component);
  const environmentNetworks = aliases ? (ctx.environmentNetworks ?? []).map((id) => ({ Target: id, Aliases: [...aliases] })) : [];
  const labels = { [LABEL_PLATFORM]: name, [LABEL_COMPONENT]: component };
  const service = serviceName(name, component);
  const spec: Docker.ServiceSpec = {
    Name: service,
    Labels: { ...labels },
    TaskTemplate: {
      ContainerSpec: { ...container, Labels: { ...labels } },
      RestartPolicy: { Condition: 'any', Delay: 2 * SECOND, MaxAttempts: 0 },
      // Data lives in bind mounts on the host that ran `platform start`: a manager.
      Placement: { Constraints: ['node.role==manager', ...(ctx.nodeId ? [`node.id==${ctx.nodeId}`] : [])] },
      Networks: [{ Target: networkName(name), Aliases: [component] }, ...environmentNetworks],
    },
    Mode: { Replicated: { Replicas: 1 } },
    // One task at a time per data directory: stop the old before the new starts.
    UpdateConfig: { Parallelism: 1, Order: 'stop-first', FailureAction: 'pause' },
    EndpointSpec: { Mode: 'dnsrr' },
    ...extra,
  };
  spec.Labels![LABEL_SPEC_HASH] = specHash(spec);
  return { component, service, spec };
}

/**
 * Digest of a spec without its own hash label, and without the environment networks: the API
 * joins the router and the gateway to those as apps deploy (environment-networks.ts), so a start
 * that finds them there has nothing to change, and restarts nothing.
 */
export function specHash(spec: Docker.ServiceSpec): string {
  const labels = { ...(spec.Labels ?? {}) };
  delete labels[LABEL_SPEC_HASH];
  const template = spec.TaskTemplate as Docker.ContainerTaskSpec | undefined;
  const platformNetwork = labels[LABEL_PLATFORM] ? networkName(labels[LABEL_PLATFORM]) : undefined;
  const ownNetworks = template?.Networks?.filter((n) => n.Target === platformNetwork);
  const hashed = { ...spec, Labels: labels, ...(template ? { TaskTemplate: { ...template, Networks: ownNetworks } } : {}) };
  return createHash('sha256').update(stableJson(hashed)).digest('hex').slice(0, 16);
}

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function componentSpec(ctx: SpecContext, component: Component): ComponentSpec {
  const paths = dataPaths(ctx.dataDir);
  const configEnv = `DIVIO_PLATFORM_CONFIG=${CONTAINER_PATHS.config}`;
  switch (component) {
    case 'postgres': {
      if (!ctx.postgresSecret) throw new Error('the embedded database needs its password secret');
      return baseSpec(ctx, component, {
        Image: ctx.images.postgres,
        // The password comes from a secret file. Not every postgres image reads POSTGRES_PASSWORD_FILE
        // (and the official one refuses it next to POSTGRES_PASSWORD), so the entrypoint gets the value.
        Command: [
          'sh',
          '-c',
          'POSTGRES_PASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")"; export POSTGRES_PASSWORD; unset POSTGRES_PASSWORD_FILE; exec docker-entrypoint.sh postgres',
        ],
        Env: ['POSTGRES_PASSWORD_FILE=/run/secrets/postgres-password', 'PGDATA=/var/lib/postgresql/data/pgdata'],
        Secrets: [
          {
            SecretID: ctx.postgresSecret.id,
            SecretName: ctx.postgresSecret.name,
            // The entrypoint reads it after dropping to the postgres user.
            File: { Name: 'postgres-password', UID: '0', GID: '0', Mode: 0o444 },
          },
        ],
        Mounts: [
          bind(paths.postgres, '/var/lib/postgresql/data'),
          { Type: 'tmpfs', Source: '', Target: '/dev/shm', TmpfsOptions: { SizeBytes: 256 * 1024 * 1024, Mode: 0o1777 } },
        ],
        HealthCheck: {
          // Over TCP: during initdb the temporary server listens on the socket only.
          Test: ['CMD-SHELL', 'pg_isready -U postgres -h 127.0.0.1 -p 5432'],
          Interval: 3 * SECOND,
          Timeout: 5 * SECOND,
          Retries: 5,
          StartPeriod: 120 * SECOND,
        },
        StopGracePeriod: 60 * SECOND,
      });
    }
    case 'registry':
      if (!ctx.registrySecret) throw new Error('the embedded registry needs its htpasswd secret');
      return baseSpec(ctx, component, {
        Image: ctx.images.registry,
        Env: [
          // Nothing is ever deleted through the registry's API (the router refuses DELETE as well):
          // a deployed digest must stay pullable, whoever holds the account.
          'REGISTRY_STORAGE_DELETE_ENABLED=false',
          `REGISTRY_HTTP_ADDR=0.0.0.0:${REGISTRY_PORT}`,
          // The account is checked by the registry itself, not by the router: the registry is also
          // reachable on the platform's network, where no router stands in the way. htpasswd (bcrypt)
          // is the one auth the registry image here offers besides token servers.
          'REGISTRY_AUTH=htpasswd',
          'REGISTRY_AUTH_HTPASSWD_REALM=divio-registry',
          `REGISTRY_AUTH_HTPASSWD_PATH=${REGISTRY_HTPASSWD_PATH}`,
        ],
        Secrets: [
          {
            SecretID: ctx.registrySecret.id,
            SecretName: ctx.registrySecret.name,
            File: { Name: REGISTRY_HTPASSWD_PATH.split('/').pop()!, UID: '0', GID: '0', Mode: 0o444 },
          },
        ],
        Mounts: [bind(paths.registry, '/var/lib/registry')],
        StopGracePeriod: 30 * SECOND,
      });
    case 's3':
      return baseSpec(ctx, component, {
        Image: ctx.images.platform,
        Command: ['node', '--openssl-legacy-provider', 'dist/platform/media/s3-server.js'],
        Dir: '/opt/divio',
        Env: [configEnv, `DIVIO_S3_DIRECTORY=${CONTAINER_PATHS.media}`, `DIVIO_S3_PORT=${S3_PORT}`, 'DIVIO_S3_ADDRESS=0.0.0.0'],
        Secrets: [configSecretMount(ctx.configSecret)],
        Mounts: [bind(paths.media, CONTAINER_PATHS.media), bind(paths.mediaKeys, CONTAINER_PATHS.mediaKeys)],
        // Node as PID 1 ignores SIGTERM: an init process makes stops quick.
        Init: true,
        StopGracePeriod: 30 * SECOND,
      });
    case 'gateway': {
      const { name, external } = ctx.settings;
      return baseSpec(ctx, component, {
        Image: ctx.images.platform,
        Command: ['node', 'dist/platform/gateway/main.js'],
        Dir: '/opt/divio',
        // It holds no secret and mounts nothing: the node image's unprivileged user, a read-only root.
        User: 'node',
        ReadOnly: true,
        Env: [
          ...(external.database ? [] : [`DIVIO_GATEWAY_DATABASE=${serviceName(name, 'postgres')}:${POSTGRES_PORT}`]),
          ...(external.media ? [] : [`DIVIO_GATEWAY_MEDIA=${serviceName(name, 's3')}:${S3_PORT}`]),
        ],
        Init: true,
        StopGracePeriod: 5 * SECOND,
      });
    }
    case 'api':
      return baseSpec(ctx, component, {
        Image: ctx.images.platform,
        Command: ['node', 'dist/platform/api/main.js'],
        Dir: '/opt/divio',
        Env: [configEnv],
        Secrets: [configSecretMount(ctx.configSecret)],
        Mounts: [
          bind(paths.git, CONTAINER_PATHS.git),
          bind(paths.mediaKeys, CONTAINER_PATHS.mediaKeys),
          // The API writes app routes there; the router includes them.
          bind(paths.routerApps, CONTAINER_PATHS.routerApps),
          // The builder and the runtime drive this engine.
          bind('/var/run/docker.sock', '/var/run/docker.sock'),
        ],
        Init: true,
        StopGracePeriod: 30 * SECOND,
      });
    case 'router':
      return baseSpec(
        ctx,
        component,
        {
          Image: ctx.images.router,
          Mounts: [
            bind(paths.routerConfig, '/etc/nginx/conf.d/default.conf', true),
            bind(paths.routerApps, ROUTER_APPS_DIR, true),
            // Debian-packaged nginx images ship a default site there that would claim port 80 too.
            { Type: 'tmpfs', Source: '', Target: '/etc/nginx/sites-enabled', TmpfsOptions: { SizeBytes: 1024 * 1024, Mode: 0o755 } },
          ],
          // Not read by nginx: a new configuration or port makes a new container spec, so the router's
          // task is replaced (Swarm restarts tasks on container spec changes, not on endpoint changes).
          Env: [`DIVIO_ROUTER_CONFIG_HASH=${ctx.routerConfigHash}`, `DIVIO_ROUTER_PORT=${ctx.settings.port}`],
          StopGracePeriod: 10 * SECOND,
        },
        {
          EndpointSpec: {
            Mode: 'dnsrr',
            // Host mode: the ingress mesh is not available everywhere (and not needed for one port).
            Ports: [{ Protocol: 'tcp', TargetPort: 80, PublishedPort: ctx.settings.port, PublishMode: 'host' }],
          },
        },
      );
  }
}

export function platformSpecs(ctx: SpecContext): ComponentSpec[] {
  return componentsOf(ctx.settings).map((c) => componentSpec(ctx, c));
}
