/**
 * Registering and removing apps. An app is visible only once every part of it exists (repository,
 * and per environment a database, role and media bucket); a failure part-way undoes what was made
 * and the slug is free again. Apps caught half-way by a crash are cleaned up at the next start.
 *
 * Deleting an app stops and removes what runs (services, release jobs, routes, images, networks)
 * and its repository at once; its databases and buckets are kept under names no new app takes,
 * closed to everyone, for a grace period (retained-resources.ts), then purged.
 */
import { randomBytes } from 'node:crypto';
import { ENVIRONMENT_NAMES, type App, type DeletedApp, type Environment, type EnvironmentName } from '../../shared/api/schemas.js';
import { gitUrl } from '../../shared/api/routes.js';
import type { RuntimeConfig } from '../runtime-config.js';
import { ApiError, conflict } from './errors.js';
import { branchProtections } from './git/protection.js';
import type { DatabaseCluster, GitHosting, MediaStorage } from './parts.js';
import {
  databaseName,
  environmentHostName,
  environmentNetworkName,
  environmentServiceName,
  freeBucketName,
  mediaBucketName,
  reservedDatabaseName,
  retiredDatabaseName,
} from './resource-names.js';
import type { RetainedResources } from './retained-resources.js';
import type { AppRow, EnvironmentRow, Store, UserRow } from './store.js';

export { freeBucketName } from './resource-names.js';

export interface AppsDeps {
  store: Store;
  cluster: DatabaseCluster;
  media: MediaStorage;
  git: GitHosting;
  config: Pick<RuntimeConfig, 'name' | 'publicUrl' | 'domain' | 'media'>;
  log: (line: string) => void;
  /** Drops the scratch and backup databases of an environment's imports (absent without pg tools: there are none). */
  transfers?: { dropEnvironmentDatabases(env: EnvironmentRow): Promise<void> };
  /** What runs for an app (absent on a platform without a runtime: nothing does). */
  workloads?: {
    assertIdle(app: AppRow): Promise<void>;
    removeApp(app: AppRow): Promise<void>;
    removeOrphanNetworks(liveAppIds: ReadonlySet<string>): Promise<void>;
  };
  /** A deleted app's data kept for a grace period; absent (tests of the API alone): dropped at once. */
  retained?: RetainedResources;
}

export class AppsService {
  constructor(private readonly deps: AppsDeps) {}

  async create(owner: UserRow, slug: string, boilerplate: string | null): Promise<App> {
    const { store } = this.deps;
    const keptBuckets = (await this.deps.retained?.bucketNames()) ?? new Set<string>();
    const environments = ENVIRONMENT_NAMES.map((name) => ({
      name,
      branch: 'main',
      db_name: databaseName(slug, name),
      db_role: databaseName(slug, name),
      db_password: randomBytes(24).toString('base64url'),
      media_bucket: freeBucketName(mediaBucketName(slug, name), keptBuckets),
      media_prefix: '',
      media_access_key: null,
      media_secret_key: null,
    }));
    const clash = await this.swarmNameClash(slug);
    if (clash) throw conflict(`"${slug}" would name its ${clash}, which another app already has; choose another slug`, 'body.slug');
    for (const env of environments) {
      const why = reservedDatabaseName(env.db_name);
      if (why) throw conflict(`"${slug}" would name its database and role "${env.db_name}", and ${why}; choose another slug`, 'body.slug');
    }
    const app = await store.insertApp(owner.id, slug, boilerplate, environments).catch((error: unknown) => {
      throw nameTaken(error, slug) ?? error;
    });
    if (!app) throw conflict(`An app called "${slug}" already exists`, 'body.slug');
    try {
      await this.provision(app);
      await store.setAppState(app.id, 'ready');
    } catch (error) {
      this.deps.log(`provisioning ${slug} failed: ${describe(error)}; undoing`);
      await this.teardown(app).catch((undoError) =>
        this.deps.log(`undoing ${slug} failed too: ${describe(undoError)}; the next API start retries`),
      );
      // A name the cluster has that is not the platform's: the user can do something about that.
      if (error instanceof ApiError && error.status === 409) throw error;
      throw new ApiError(503, 'provisioning_failed', `The platform could not create "${slug}"; nothing was kept`, {
        hint: 'Try again; if it keeps failing, the operator should check `divio platform status`.',
      });
    }
    return this.render({ ...app, state: 'ready' });
  }

  /**
   * Swarm service and network names carry the platform's name, so long slugs are shortened with a
   * hash a tenant could match on purpose: a slug whose names another app's equal is refused (the
   * runtime refuses to touch a service labelled for another app as well).
   */
  private async swarmNameClash(slug: string): Promise<string | undefined> {
    const platform = this.deps.config.name;
    const names = (s: string): Array<[name: string, what: string]> =>
      ENVIRONMENT_NAMES.flatMap((env): Array<[string, string]> => {
        const service = environmentServiceName(platform, s, env);
        const network = environmentNetworkName(platform, s, env);
        return [
          [service, `${env} service "${service}"`],
          [network, `${env} network "${network}"`],
        ];
      });
    const wanted = new Map(names(slug));
    for (const other of await this.deps.store.appSlugs()) {
      if (other === slug) continue;
      const clash = names(other).find(([name]) => wanted.has(name));
      if (clash) return wanted.get(clash[0]);
    }
    return undefined;
  }

  async delete(app: AppRow): Promise<DeletedApp> {
    await this.deps.workloads?.assertIdle(app);
    await this.deps.store.setAppState(app.id, 'deleting');
    await this.remove(app);
    void this.purgeRetained();
    const days = this.deps.retained?.retentionDays;
    return { slug: app.slug, dataKeptUntil: days === undefined ? null : new Date(Date.now() + days * 86_400_000).toISOString() };
  }

  /** Finish what a crash interrupted: half-made apps are removed, half-deleted ones deleted. */
  async recover(): Promise<void> {
    for (const state of ['provisioning', 'deleting'] as const) {
      for (const app of await this.deps.store.appsInState(state)) {
        this.deps.log(`removing app ${app.slug}, left ${state} by an earlier run`);
        const finish = state === 'provisioning' ? this.teardown(app) : this.remove(app);
        await finish.catch((error) => this.deps.log(`could not remove ${app.slug}: ${describe(error)}`));
      }
    }
    await this.purgeRetained();
    await this.removeOrphanNetworks();
  }

  /** Deleted apps' kept data past its period, and their networks (hourly; see removeOrphanNetworks). */
  async housekeeping(): Promise<void> {
    await this.purgeRetained();
    await this.removeOrphanNetworks();
  }

  /** Not at each delete: the router restarts when it leaves a network (deploy-service.ts). */
  private async removeOrphanNetworks(): Promise<void> {
    const { workloads, store, log } = this.deps;
    if (!workloads) return;
    try {
      await workloads.removeOrphanNetworks(await store.appIds());
    } catch (error) {
      log(`removing deleted apps' networks failed: ${describe(error)}`);
    }
  }

  /** Drop deleted apps' data whose grace period is over (at start, hourly and after each delete). */
  async purgeRetained(): Promise<void> {
    const { retained, cluster, media, log } = this.deps;
    await retained?.purge({ cluster, media }, log).catch((error) => log(`purging deleted apps' data failed: ${describe(error)}`));
  }

  async renderMany(apps: AppRow[]): Promise<App[]> {
    const envs = await this.deps.store.environments(apps.map((a) => a.id));
    return apps.map((app) => this.toApp(app, envs.filter((e) => e.app_id === app.id)));
  }

  async render(app: AppRow): Promise<App> {
    const [rendered] = await this.renderMany([app]);
    return rendered!;
  }

  private async provision(app: AppRow): Promise<void> {
    const { store, cluster, media, git } = this.deps;
    await git.create(app.slug);
    const environments = await store.environments([app.id]);
    await git.secure(app.slug, branchProtections(environments));
    for (const env of environments) {
      await cluster.provision({ database: env.db_name, role: env.db_role, password: env.db_password });
      const grant = await media.provision({ bucket: env.media_bucket });
      await store.setMediaCredentials(env.id, grant.accessKeyId, grant.secretAccessKey, grant.prefix);
    }
  }

  /**
   * Bring the app's repository in line with its environments' branches and force-push settings
   * (deployment refs hidden, the protecting hook and its list). Run before git serves the
   * repository and after a change of either setting.
   */
  async secureRepository(app: AppRow): Promise<void> {
    const environments = await this.deps.store.environments([app.id]);
    await this.deps.git.secure(app.slug, branchProtections(environments));
  }

  /**
   * Delete an app: what runs goes now, the data is kept for the grace period. Idempotent, so an
   * interrupted delete is finished at the next start. Without a record of kept data, as teardown.
   */
  private async remove(app: AppRow): Promise<void> {
    const { store, cluster, media, git, retained, workloads } = this.deps;
    if (!retained) return this.teardown(app);
    await workloads?.removeApp(app);
    for (const env of await store.environments([app.id])) {
      // Backups and scratch databases are copies of what is kept; they go now.
      await this.deps.transfers?.dropEnvironmentDatabases(env);
      const retiredName = retiredDatabaseName(app.id, env.name);
      // Recorded first: a crash between the two leaves a record of a rename still to happen, never
      // a renamed database no record knows of.
      await retained.record({ kind: 'database', name: retiredName, role: retiredName, appSlug: app.slug, appId: app.id, environment: env.name });
      await cluster.retire({ database: env.db_name, role: env.db_role, retiredName });
      await retained.record({ kind: 'bucket', name: env.media_bucket, appSlug: app.slug, appId: app.id, environment: env.name });
      await media.retire({ bucket: env.media_bucket });
    }
    await git.remove(app.slug);
    await store.deleteApp(app.id);
    this.deps.log(`deleted app ${app.slug}; its databases and buckets are kept for ${retained.retentionDays} days`);
  }

  /** Remove every part now (an app that never became ready). Idempotent: each part tolerates being absent already. */
  private async teardown(app: AppRow): Promise<void> {
    await this.deps.workloads?.removeApp(app);
    const { store, cluster, media, git } = this.deps;
    for (const env of await store.environments([app.id])) {
      // Before the role goes: its backups and scratch databases are the admin's, so not found by the role.
      await this.deps.transfers?.dropEnvironmentDatabases(env);
      await cluster.deprovision({ database: env.db_name, role: env.db_role });
      await media.deprovision({ bucket: env.media_bucket });
    }
    await git.remove(app.slug);
    await store.deleteApp(app.id);
  }

  private toApp(app: AppRow, envs: EnvironmentRow[]): App {
    return {
      slug: app.slug,
      owner: app.owner_name,
      boilerplate: app.boilerplate,
      gitUrl: gitUrl(this.deps.config.publicUrl, app.slug),
      createdAt: app.created_at.toISOString(),
      environments: envs.map((env) => this.toEnvironment(app, env)),
    };
  }

  toEnvironment(app: AppRow, env: EnvironmentRow): Environment {
    const { cluster, config } = this.deps;
    return {
      name: env.name,
      url: environmentUrl(config.publicUrl, config.domain, env.name, app.slug),
      branch: env.branch,
      database: { name: env.db_name, role: env.db_role, host: cluster.appHost, port: cluster.appPort },
      media: {
        bucket: env.media_bucket,
        prefix: env.media_prefix,
        endpoint: config.media.endpoint,
        publicUrl: `${config.media.publicUrl.replace(/\/+$/, '')}/${env.media_bucket}/`,
      },
      replicas: env.replicas,
      allowForcePush: env.allow_force_push,
      backupBeforeRelease: env.backup_before_release,
      createdAt: env.created_at.toISOString(),
    };
  }
}

/** `http://test-shop.localhost:8600`: the router's scheme and port, the environment's own host name. */
export function environmentUrl(publicUrl: string, domain: string, env: EnvironmentName, slug: string): string {
  const base = new URL(publicUrl);
  return `${base.protocol}//${environmentHostName(env, slug, domain)}${base.port ? `:${base.port}` : ''}`;
}

/** Names derived from two slugs can be equal (a shortened name carries a hash anyone can compute): refused, not a 500. */
const NAME_COLUMNS: Record<string, string> = {
  environments_db_name_key: 'database',
  environments_db_role_key: 'database role',
  environments_media_bucket_key: 'media bucket',
};

function nameTaken(error: unknown, slug: string): ApiError | undefined {
  const { code, constraint, detail } = error as { code?: string; constraint?: string; detail?: string };
  const what = code === '23505' && constraint ? NAME_COLUMNS[constraint] : undefined;
  if (!what) return undefined;
  const name = /=\((.*)\) already exists/.exec(detail ?? '')?.[1];
  return conflict(`"${slug}" would name its ${what}${name ? ` "${name}"` : ''}, which another app already has; choose another slug`, 'body.slug');
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
