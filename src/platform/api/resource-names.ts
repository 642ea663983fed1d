/**
 * Every name a tenant's app is known by on shared infrastructure, derived here and nowhere else:
 * its environments' databases and roles, buckets, Swarm services, release jobs, networks, route
 * files, host names, image repository and git repository, and the names a deleted app's data is
 * kept under. Deterministic and within each system's limits; a name that would be too long is
 * shortened with one hash (shortHash) of what it was made from. `appResources` lists everything
 * an app owns, which is what a delete must remove (or keep for the grace period).
 *
 * Names already in use must never change: the functions keep their outputs exactly.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { EnvironmentName } from '../../shared/api/schemas.js';
import { ENVIRONMENT_NAMES } from '../../shared/api/schemas.js';
import { InvalidInputError } from '../../core/errors.js';
import { SLUG_PATTERN } from '../../shared/project-config.js';

const PG_IDENTIFIER_MAX = 63;
/** Docker service and network names are DNS labels. */
const SERVICE_NAME_MAX = 63;
const BUCKET_NAME_MAX = 63;
const NAME_PART = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
const APP_ID_PATTERN = /^[1-9][0-9]{0,18}$/;

/** The one hash that keeps shortened names unique: 8 hex characters of SHA-256. */
export function shortHash(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 8);
}

// ---- PostgreSQL ---------------------------------------------------------------------------------

/**
 * Prefixes a name derived from a slug must not have: PostgreSQL refuses roles named `pg_…`, and
 * `divio_…` is the platform's own (its database, and the scratch and backup databases it sweeps
 * at start by prefix, so an app's database named like one would be dropped).
 */
const RESERVED_PREFIXES = ['pg_', 'divio_'] as const;

/** `shop_test` (the database and its role); a long slug is shortened and made unique with a hash of the whole slug. */
export function databaseName(slug: string, env: EnvironmentName): string {
  const base = slug.replace(/-/g, '_');
  const plain = `${base}_${env}`;
  if (plain.length <= PG_IDENTIFIER_MAX) return plain;
  const suffix = `_${shortHash(slug)}_${env}`;
  return `${base.slice(0, PG_IDENTIFIER_MAX - suffix.length)}${suffix}`;
}

/**
 * Why a database or role name derived from a slug cannot be used, or undefined when it can.
 * Shortened names can equal another slug's plain name (the hash is public), so uniqueness itself
 * is checked where names are stored; this covers the names nobody may have.
 */
export function reservedDatabaseName(name: string): string | undefined {
  const prefix = RESERVED_PREFIXES.find((p) => name.startsWith(p));
  if (!prefix) return undefined;
  return prefix === 'pg_' ? 'PostgreSQL reserves role names starting with "pg_"' : 'names starting with "divio_" are the platform\'s own';
}

/** `divio_del_APPID_ENV`: a deleted app's database and role in their grace period. App ids are never reused. */
export function retiredDatabaseName(appId: string, env: string): string {
  if (!APP_ID_PATTERN.test(appId) || !/^[a-z]+$/.test(env)) throw new Error(`no retired name for app ${appId} ${env}`);
  return `divio_del_${appId}_${env}`;
}

// ---- media --------------------------------------------------------------------------------------

const RESERVED_BUCKET_PREFIXES = ['xn--', 'sthree-', 'amzn-s3-demo-'];
const RESERVED_BUCKET_SUFFIXES = ['-s3alias', '--ol-s3', '--x-s3', '--table-s3'];

/** S3's rules for new buckets, without dots (they break TLS for virtual-host access). */
export function isValidBucketName(name: string): boolean {
  return (
    /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(name) &&
    !RESERVED_BUCKET_PREFIXES.some((prefix) => name.startsWith(prefix)) &&
    !RESERVED_BUCKET_SUFFIXES.some((suffix) => name.endsWith(suffix))
  );
}

export function assertValidBucketName(bucket: string): void {
  if (!isValidBucketName(bucket)) {
    throw new Error(`invalid bucket name ${JSON.stringify(bucket)}: use 3-63 lower-case letters, digits and hyphens, starting and ending with a letter or digit`);
  }
}

/** `shop-test`; a slug that would make an invalid or too long name is shortened and hashed instead. */
export function mediaBucketName(slug: string, env: EnvironmentName): string {
  const plain = `${slug}-${env}`;
  if (isValidBucketName(plain)) return plain;
  const suffix = `-${shortHash(slug)}-${env}`;
  const base = slug
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .slice(0, BUCKET_NAME_MAX - suffix.length - 1)
    .replace(/^-+|-+$/g, '');
  // 'b' keeps a reserved prefix (xn--, sthree-…) from surviving the shortening.
  const name = base ? `${base}${suffix}` : suffix.slice(1);
  return isValidBucketName(name) ? name : `b${name}`;
}

/**
 * NAME, or NAME-r2, NAME-r3… while a deleted app's kept bucket has the name. Environment buckets
 * end in -test or -live, so a -rN name is never another slug's plain bucket name.
 */
export function freeBucketName(name: string, taken: ReadonlySet<string>): string {
  for (let n = 1; ; n++) {
    const suffix = n === 1 ? '' : `-r${n}`;
    const candidate = `${name.slice(0, BUCKET_NAME_MAX - suffix.length).replace(/[-.]+$/, '')}${suffix}`;
    if (taken.has(candidate)) continue;
    assertValidBucketName(candidate);
    return candidate;
  }
}

// ---- Swarm: services, release jobs, networks ------------------------------------------------------

function checkedNamePart(what: string, value: string): string {
  if (!NAME_PART.test(value)) throw new Error(`invalid ${what} ${JSON.stringify(value)}: lower-case letters, digits and "-" only`);
  return value;
}

/** `stem + suffix` when it fits; else the stem is cut and a hash of the whole name keeps it unique. */
function boundedName(stem: string, suffix: string): string {
  const plain = stem + suffix;
  if (plain.length <= SERVICE_NAME_MAX) return plain;
  const hash = `-${shortHash(plain)}`;
  const room = SERVICE_NAME_MAX - hash.length - suffix.length;
  return stem.slice(0, room).replace(/-+$/, '') + hash + suffix;
}

/** `PLATFORM-app-SLUG-ENV`, shortened with a hash of the full name when it would pass 63 characters. */
export function environmentServiceName(platform: string, slug: string, env: EnvironmentName): string {
  return boundedName(`${checkedNamePart('platform name', platform)}-app-${checkedNamePart('app slug', slug)}`, `-${env}`);
}

/** `PLATFORM-net-SLUG-ENV`: the environment's own overlay network (see environment-networks.ts). */
export function environmentNetworkName(platform: string, slug: string, env: EnvironmentName): string {
  return boundedName(`${checkedNamePart('platform name', platform)}-net-${checkedNamePart('app slug', slug)}`, `-${env}`);
}

/** A release job's service: unique per run, so a leftover of an interrupted run never collides. */
export function releaseJobServiceName(platform: string, slug: string, env: EnvironmentName): string {
  const run = randomBytes(3).toString('hex');
  return boundedName(`${checkedNamePart('platform name', platform)}-release-${checkedNamePart('app slug', slug)}`, `-${env}-${run}`);
}

// ---- router, registry, git ------------------------------------------------------------------------

/** `ENV-SLUG.conf`: one route file per environment in the router's apps directory. */
export function routeFileName(env: EnvironmentName, slug: string): string {
  return `${env}-${checkedNamePart('app slug', slug)}.conf`;
}

/** `test-shop.DOMAIN`: the host an environment answers at. */
export function environmentHostName(env: EnvironmentName, slug: string, domain: string): string {
  return `${env}-${slug}.${domain}`;
}

/** `SLUG.APPID`: one image repository per app instance, so a slug deleted and created again reuses nothing. */
export function imageRepository(slug: string, appId: string): string {
  if (!SLUG_PATTERN.test(slug)) throw new InvalidInputError(`"${slug}" is not a valid app slug`);
  if (!APP_ID_PATTERN.test(appId)) throw new InvalidInputError(`"${appId}" is not a valid app id`);
  return `${slug}.${appId}`;
}

/** `SLUG.git`: the app's bare repository under the git root. */
export function gitRepositoryName(slug: string): string {
  return `${checkedNamePart('app slug', slug)}.git`;
}

// ---- everything an app owns -----------------------------------------------------------------------

export type AppResourceKind =
  | 'database'
  | 'role'
  | 'bucket'
  | 'service'
  | 'swarm-label'
  | 'network'
  | 'route'
  | 'host'
  | 'image-repository'
  | 'git-repository';

export interface AppResource {
  kind: AppResourceKind;
  /** The name; for `swarm-label`, the label every service, release job and container of the app carries. */
  name: string;
  environment?: EnvironmentName;
}

/**
 * Everything an app owns, by name. Databases, roles and buckets come from the environments' stored
 * rows (a bucket may be NAME-rN, a shortened name may have been refused), the rest is derived.
 */
export function appResources(
  app: { slug: string; id: string },
  environments: ReadonlyArray<{ name: EnvironmentName; db_name: string; db_role: string; media_bucket: string }>,
  where: { platform: string; domain: string },
): AppResource[] {
  const out: AppResource[] = [];
  for (const name of ENVIRONMENT_NAMES) {
    const env = environments.find((e) => e.name === name);
    if (env) {
      out.push({ kind: 'database', name: env.db_name, environment: name });
      out.push({ kind: 'role', name: env.db_role, environment: name });
      out.push({ kind: 'bucket', name: env.media_bucket, environment: name });
    }
    out.push({ kind: 'service', name: environmentServiceName(where.platform, app.slug, name), environment: name });
    out.push({ kind: 'network', name: environmentNetworkName(where.platform, app.slug, name), environment: name });
    out.push({ kind: 'route', name: routeFileName(name, app.slug), environment: name });
    out.push({ kind: 'host', name: environmentHostName(name, app.slug, where.domain), environment: name });
  }
  // Release jobs have a name per run; they, the services and their containers carry these labels.
  out.push({ kind: 'swarm-label', name: `divio.platform=${where.platform},divio.app=${app.slug}` });
  out.push({ kind: 'image-repository', name: imageRepository(app.slug, app.id) });
  out.push({ kind: 'git-repository', name: gitRepositoryName(app.slug) });
  return out;
}
