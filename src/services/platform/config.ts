/**
 * The runtime configuration the platform's services read (src/platform/runtime-config.ts), built
 * from the settings. It holds passwords: it only ever travels as a Swarm secret, never printed.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../core/assets.js';
import { runtimeConfigSchema, type RuntimeConfig } from '../../platform/runtime-config.js';
import { REGISTRY_USER, limitsSchema, withRegistrySecrets, type PlatformSettings } from './settings.js';

export const OPERATOR_NAME = 'operator';
export const PLATFORM_DATABASE = 'divio_platform';
/** Paths inside the platform's containers. */
export const CONTAINER_PATHS = {
  config: '/run/secrets/divio-platform.json',
  git: '/data/git',
  media: '/data/media',
  mediaKeys: '/data/media-keys',
  mediaKeysFile: '/data/media-keys/keys.json',
  routerApps: '/data/router-apps',
} as const;
export const API_PORT = 8080;
export const S3_PORT = 4568;
export const REGISTRY_PORT = 5000;
export const POSTGRES_PORT = 5432;

export function serviceName(name: string, component: string): string {
  return `${name}-${component}`;
}

/**
 * How app containers name the gateway on their environment network (specs.ts gives it these
 * aliases there): `NAME-database` for the cluster, `NAME-media` for the store.
 */
export function gatewayHost(name: string, part: 'database' | 'media'): string {
  return `${name}-${part}`;
}

/** The names a platform component answers to on environment networks (undefined: it is not on them). */
export function environmentAliases(name: string, component: string): string[] | undefined {
  if (component === 'router') return [];
  if (component === 'gateway') return [gatewayHost(name, 'database'), gatewayHost(name, 'media')];
  return undefined;
}

export function networkName(name: string): string {
  return `${name}-net`;
}

/** The bridge network builds run on: not the overlay, so a RUN step reaches no platform service. */
export function buildNetworkName(name: string): string {
  return `${name}-build`;
}

/** The build network's Linux bridge: named, so firewall rules can name it (15 characters at most). */
export function buildBridgeName(name: string): string {
  return `dvb-${createHash('sha256').update(name).digest('hex').slice(0, 11)}`;
}

/** Where the CLI and users reach the platform. */
export function platformEndpoint(settings: Pick<PlatformSettings, 'port'>): string {
  return `http://127.0.0.1:${settings.port}`;
}

let cachedVersion: string | undefined;
export function packageVersion(): string {
  cachedVersion ??= (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  return cachedVersion;
}

export function buildRuntimeConfig(settings: PlatformSettings, version = packageVersion()): RuntimeConfig {
  if (!settings.operator) throw new Error('the operator token must be chosen before the runtime configuration is built');
  const { name, domain, port, secrets, external } = settings;

  let database: RuntimeConfig['database'];
  if (external.database) {
    const url = new URL(external.database.url);
    database = {
      adminUrl: external.database.url,
      platformDatabase: PLATFORM_DATABASE,
      appHost: url.hostname,
      appPort: url.port ? Number(url.port) : POSTGRES_PORT,
    };
  } else {
    const host = serviceName(name, 'postgres');
    database = {
      adminUrl: `postgres://postgres:${encodeURIComponent(secrets.postgresPassword)}@${host}:${POSTGRES_PORT}/postgres`,
      platformDatabase: PLATFORM_DATABASE,
      appHost: gatewayHost(name, 'database'),
      appPort: POSTGRES_PORT,
    };
  }

  const media: RuntimeConfig['media'] = external.media
    ? { ...external.media }
    : {
        endpoint: `http://${serviceName(name, 's3')}:${S3_PORT}`,
        appEndpoint: `http://${gatewayHost(name, 'media')}:${S3_PORT}`,
        publicUrl: `http://s3.${domain}:${port}`,
        region: 'us-east-1',
        accessKeyId: secrets.mediaAccessKeyId,
        secretAccessKey: secrets.mediaSecretAccessKey,
        keysFile: CONTAINER_PATHS.mediaKeysFile,
      };

  return runtimeConfigSchema.parse({
    name,
    version,
    domain,
    publicUrl: platformEndpoint(settings),
    database,
    media,
    // The router forwards /v2/ to the registry: the engine pushes and pulls through the one public port.
    registry: external.registry
      ? {
          address: external.registry.address,
          url: `https://${external.registry.address}`,
          ...(external.registry.username ? { username: external.registry.username, password: external.registry.password ?? '' } : {}),
        }
      : {
          address: `127.0.0.1:${port}`,
          url: `http://${serviceName(name, 'registry')}:${REGISTRY_PORT}`,
          username: REGISTRY_USER,
          password: withRegistrySecrets(secrets).registryPassword!,
        },
    limits: limitsSchema.parse(settings.limits ?? {}),
    runtime: {
      network: networkName(name),
      routerService: serviceName(name, 'router'),
      routerAppsDir: CONTAINER_PATHS.routerApps,
      buildNetwork: buildNetworkName(name),
      sharedServices: (['gateway', 'router'] as const)
        .filter((c) => c === 'router' || !external.database || !external.media)
        .map((c) => ({ service: serviceName(name, c), aliases: environmentAliases(name, c) ?? [] })),
    },
    git: { root: CONTAINER_PATHS.git },
    backups: {
      ...(settings.backupsKeep !== undefined ? { keep: settings.backupsKeep } : {}),
      ...(settings.backupsKeepDays !== undefined ? { keepDays: settings.backupsKeepDays } : {}),
      ...(settings.backupsMax !== undefined ? { max: settings.backupsMax } : {}),
      ...(settings.backupSchedule !== undefined ? { schedule: settings.backupSchedule } : {}),
    },
    deletedApps: { ...(settings.deletedAppsDays !== undefined ? { retentionDays: settings.deletedAppsDays } : {}) },
    operator: { name: OPERATOR_NAME, tokenId: settings.operator.tokenId, tokenHash: settings.operator.tokenHash },
    ...(secrets.secretsKey ? { secretsKey: secrets.secretsKey } : {}),
  });
}

export function serialiseRuntimeConfig(config: RuntimeConfig): string {
  return JSON.stringify(config, null, 2) + '\n';
}

export function shortHash(content: string | Buffer): string {
  return createHash('sha256').update(content).digest('hex').slice(0, 12);
}

/** The Swarm secret holding this content: a new name whenever the content changes (secrets are immutable). */
export function configSecretName(name: string, content: string): string {
  return `${name}-config-${shortHash(content)}`;
}
