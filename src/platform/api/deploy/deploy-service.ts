/**
 * A deployment, start to finish: resolve the commit, build it once (or reuse the image), run the
 * release command as a one-off job, roll the environment's Swarm service over to the new image,
 * route ENV-SLUG.DOMAIN to it. Each step's output goes to the deployment's log as it happens; any
 * failure ends the deployment with its reason while the previous release keeps serving.
 */
import { demuxToBuffer } from '../../../core/docker.js';
import { writeFileAtomic } from '../../../core/fs-util.js';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, unlink } from 'node:fs/promises';
import { PassThrough, Readable } from 'node:stream';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { execa } from 'execa';
import { parseManifest } from '../../../shared/manifest-parse.js';
import type { Manifest } from '../../../shared/manifest.js';
import { RESERVED_VARIABLES, type EnvironmentName } from '../../../shared/api/schemas.js';
import type { RuntimeConfig } from '../../runtime-config.js';
import { environmentUrl } from '../apps-service.js';
import { ApiError, conflict } from '../errors.js';
import type { AppRow, EnvironmentRow, Store } from '../store.js';
import { recordDeploymentRef } from '../git/repositories.js';
import { appResources, environmentHostName, gitRepositoryName, routeFileName, type AppResourceKind } from '../resource-names.js';
import { BuildError, buildAppImage } from './builder.js';
import { DeploymentStore, type DeploymentRow } from './deployment-store.js';
import { engineAuth, type RegistryAccess } from './registry.js';
import { COMPONENT_NETWORK, NetworkMembership, NetworkStillInUse, ensureEnvironmentNetwork, removeEnvironmentNetwork } from './environment-networks.js';
import { LABEL_APP_ID } from './dockerfile-references.js';
import { LABEL_COMPONENT, LABEL_PLATFORM } from '../../../services/platform/specs.js';
import {
  COMPONENT_RELEASE,
  LABEL_APP,
  LABEL_ENV,
  deployEnvironment,
  environmentService,
  isFinishedTask,
  removeService,
  environmentServiceName,
  environmentServiceSpec,
  runReleaseJob,
  scaleEnvironment,
  type TaskResources,
} from './runtime.js';

const MIB = 1024 * 1024;
import { reloadRouter } from '../../../services/platform/swarm.js';

export interface DeployDeps {
  store: Store;
  deployments: DeploymentStore;
  docker: Docker;
  config: RuntimeConfig;
  gitRoot: string;
  log: (line: string) => void;
  /** Database backups around releases (absent on a platform without pg tools: none are taken). */
  backups?: ReleaseBackups;
}

/** What deployments need of the database transfers: a backup before a release, and putting one back. */
export interface ReleaseBackups {
  takeBackup(env: EnvironmentRow): Promise<{ backup: { id: string }; pruned: { id: string; why: string }[] }>;
  restore(env: EnvironmentRow, backupId: string): Promise<{ backup: { id: string } | null }>;
  hasBackup(env: EnvironmentRow, backupId: string): Promise<boolean>;
}

/** How long a release command may run; one left by an earlier API run is given as long again. */
const RELEASE_TIMEOUT_MS = 15 * 60_000;
const LEFTOVER_RELEASE_WAIT_MS = RELEASE_TIMEOUT_MS;

/** One environment's image with what it runs with: a release job and a rollout take the same. */
interface Rollout {
  app: AppRow;
  env: EnvironmentRow;
  image: string;
  manifest: Manifest;
  variables: Record<string, string>;
  /** The environment's network (ID). */
  network: string;
  log: LogWriter;
}

/** A failure with a one-line reason for the deployment record. */
class DeployFailure extends Error {}

export class DeployService {
  private readonly networks: NetworkMembership | undefined;

  constructor(private readonly deps: DeployDeps) {
    const shared = deps.config.runtime?.sharedServices;
    this.networks = shared ? new NetworkMembership(deps.docker, shared) : undefined;
  }

  /**
   * The network the environment's tasks and release jobs run on: its own, with the router and the
   * gateway on it. An older configuration (no shared services named) keeps the platform's network.
   */
  private async environmentNetwork(app: AppRow, env: EnvironmentRow, log: LogWriter): Promise<string> {
    if (!this.networks) return this.runtime().network;
    const ensure = () => ensureEnvironmentNetwork(this.deps.docker, this.deps.config.name, app.slug, env.name, app.id);
    const network = await ensure().catch(async (error: unknown) => {
      if (!(error instanceof NetworkStillInUse)) throw error;
      // A deleted app of this slug left its network (they go hourly): it goes now, then ours is made.
      log.line(`Removing the network a deleted app named ${app.slug} left`);
      await this.removeOrphanNetworks(await this.deps.store.appIds());
      return ensure().catch((again: unknown) => {
        throw again instanceof NetworkStillInUse ? new DeployFailure(again.message) : again;
      });
    });
    await this.networks.join(network, (line) => log.line(line));
    return network.id;
  }

  async start(app: AppRow, envName: EnvironmentName, commit: string | undefined): Promise<DeploymentRow> {
    const env = await this.environment(app, envName);
    const row = await this.deps.deployments.insert(env.id, 'deploy', commit ?? null);
    if (!row) throw inProgress(app.slug, envName);
    void this.run(row, app, env).catch((error) => this.deps.log(`deployment ${row.id} crashed: ${(error as Error).stack}`));
    return row;
  }

  /**
   * Serve an earlier successful deployment's image through the same health-checked rollout. The
   * release command is not run again: the database stays as the newer release left it.
   */
  async rollback(app: AppRow, envName: EnvironmentName, deploymentId: string | undefined, options: { withDatabase?: boolean } = {}): Promise<DeploymentRow> {
    const env = await this.environment(app, envName);
    const history = await this.deps.deployments.succeeded(env.id);
    const current = history[0];
    const target = deploymentId
      ? history.find((d) => d.id === deploymentId)
      : history.find((d) => current && d.image !== current.image);
    if (!target) {
      throw new ApiError(
        409,
        'nothing_to_roll_back_to',
        deploymentId
          ? `Deployment ${deploymentId} is not a successful deployment of ${app.slug} ${envName}`
          : `${app.slug} ${envName} has no earlier successful deployment with another image`,
        { hint: 'See `divio project deployments` for what can be served again.' },
      );
    }
    const databaseBackup = options.withDatabase ? await this.backupToUndo(app, env, history, target) : undefined;
    const row = await this.deps.deployments.insert(env.id, 'rollback', target.commit, target.image);
    if (!row) throw inProgress(app.slug, envName);
    void this.runRollback(row, app, env, target, databaseBackup).catch((error) => this.deps.log(`rollback ${row.id} crashed: ${(error as Error).stack}`));
    return row;
  }

  /**
   * The backup taken before the release of the oldest deployment a rollback to TARGET undoes: the
   * database as it was when TARGET last served. Refused (409) when there is none to put back.
   */
  private async backupToUndo(app: AppRow, env: EnvironmentRow, history: DeploymentRow[], target: DeploymentRow): Promise<{ id: string; undoes: string }> {
    // Rollbacks run no release; the oldest release newer than the target is the one that changed
    // the database away from how the target left it.
    const undone = history.slice(0, history.indexOf(target)).filter((d) => d.kind === 'deploy');
    const first = undone.at(-1);
    const refuse = (why: string) =>
      new ApiError(409, 'no_release_backup', `Cannot roll ${app.slug} ${env.name} back --with-database: ${why}`, {
        hint: `Roll back without --with-database, or restore a backup yourself (divio project backups list ${env.name}). Backups before releases: divio project configure ${env.name} --backup-before-release.`,
      });
    if (!first) throw refuse(`no deployment since ${target.id} ran a release`);
    if (!first.release_backup_id) throw refuse(`deployment ${first.id} took no backup before its release`);
    if (!this.deps.backups || !(await this.deps.backups.hasBackup(env, first.release_backup_id))) {
      throw refuse(`backup ${first.release_backup_id}, taken before deployment ${first.id}'s release, is no longer kept`);
    }
    return { id: first.release_backup_id, undoes: first.id };
  }

  private async runRollback(row: DeploymentRow, app: AppRow, env: EnvironmentRow, target: DeploymentRow, databaseBackup?: { id: string; undoes: string }): Promise<void> {
    const log = new LogWriter(this.deps.deployments, row.id);
    await this.steps(row, log, async () => {
      log.line(`Rolling ${app.slug} ${env.name} back to deployment ${target.id} (${target.commit?.slice(0, 12) ?? 'unknown commit'})`);
      const manifest = await this.manifestAt(app.slug, target.commit!);
      await this.keepCommit(app, row, target.commit!);
      const restored = await this.variablesToRestore(env, target, log);
      if (databaseBackup) {
        log.line(`Restoring the database from backup ${databaseBackup.id}, taken before deployment ${databaseBackup.undoes}'s release`);
        const replaced = await this.deps.backups!.restore(env, databaseBackup.id).catch((error: unknown) => {
          throw new DeployFailure(`the database backup ${databaseBackup.id} could not be restored (the database is as it was): ${(error as Error).message}`);
        });
        log.line(`Database restored${replaced.backup ? `; the one it replaced is kept as backup ${replaced.backup.id}` : ''}`);
      }
      await this.deps.deployments.setState(row.id, 'deploying');
      const variables = await this.variables(app, env, manifest, row, restored?.variables);
      const network = await this.environmentNetwork(app, env, log);
      await this.rollOut({ app, env, image: target.image!, manifest, variables, network, log });
      await this.route(app, env, manifest, log);
      // Stored only once they serve: a failed rollback leaves the environment's variables as they were.
      if (restored) {
        await this.deps.store.changeEnvVars(env.id, restored.set, restored.unset);
        log.line(restored.summary);
      }
      log.line(`Serving ${target.image} again`);
    });
  }

  private async environment(app: AppRow, envName: EnvironmentName): Promise<EnvironmentRow> {
    if (!this.deps.config.runtime) {
      throw new ApiError(503, 'deploys_unavailable', 'This platform has no runtime configured, so it cannot deploy');
    }
    const [env] = (await this.deps.store.environments([app.id])).filter((e) => e.name === envName);
    if (!env) throw new ApiError(404, 'not_found', `Environment ${envName} not found`);
    return env;
  }

  /** Runs a deployment's steps; any failure ends it with its reason, the previous release serving. */
  private async steps(row: DeploymentRow, log: LogWriter, work: () => Promise<void>): Promise<void> {
    try {
      await work();
      await log.flush();
      await this.deps.deployments.setState(row.id, 'succeeded');
    } catch (error) {
      const known = error instanceof DeployFailure || error instanceof BuildError;
      const reason = known ? reasonOf(error) : `internal error: ${(error as Error).message}`;
      if (!known) this.deps.log(`deployment ${row.id}: ${(error as Error).stack}`);
      log.line(`Deployment failed: ${reason}`);
      log.line('The previous release (if any) keeps serving.');
      await log.flush();
      await this.deps.deployments.setState(row.id, 'failed', { reason });
    }
  }

  /**
   * Change an environment's variables. A running environment is redeployed at its current commit
   * (the image is reused; the release command runs, as on any deploy) so the change takes effect now.
   */
  async changeVariables(
    app: AppRow,
    envName: EnvironmentName,
    set: Record<string, string>,
    unset: string[],
  ): Promise<{ variables: Record<string, string>; deployment: DeploymentRow | null }> {
    const env = await this.environment(app, envName);
    if (await this.deps.deployments.inProgress(env.id)) throw inProgress(app.slug, envName);
    await this.deps.store.changeEnvVars(env.id, set, unset);
    const variables = await this.deps.store.envVars(env.id);
    const current = (await this.deps.deployments.succeeded(env.id))[0];
    const deployment = current?.commit ? await this.start(app, envName, current.commit) : null;
    return { variables, deployment };
  }

  /**
   * The environment's service output, every replica, as a text stream. Undefined when nothing was
   * ever deployed there.
   */
  async runtimeLogs(app: AppRow, envName: EnvironmentName, options: { follow: boolean; tail?: number; signal: AbortSignal }): Promise<ReadableStream<Uint8Array> | undefined> {
    const found = await environmentService(this.deps.docker, this.deps.config.name, app.slug, envName);
    if (!found) return undefined;
    const service = this.deps.docker.getService(found.ID);
    const raw = (await service.logs({
      stdout: true,
      stderr: true,
      follow: options.follow,
      tail: options.tail ?? 200,
      timestamps: false,
    } as never)) as unknown as (NodeJS.ReadableStream & { destroy?: () => void }) | Buffer;
    // Without follow the engine's answer arrives whole, as a buffer of frames.
    if (Buffer.isBuffer(raw)) return Readable.toWeb(Readable.from([demuxToBuffer(raw)])) as unknown as ReadableStream<Uint8Array>;
    const out = new PassThrough();
    // No TTY: the engine multiplexes stdout and stderr with 8-byte frame headers.
    this.deps.docker.modem.demuxStream(raw, out, out);
    raw.on('end', () => out.end());
    raw.on('error', () => out.end());
    options.signal.addEventListener('abort', () => {
      raw.destroy?.();
      out.end();
    });
    return Readable.toWeb(out) as unknown as ReadableStream<Uint8Array>;
  }

  /**
   * Replicas apply at once to a running environment (Swarm scales it); a branch applies at the next
   * deploy. The repository's protection follows a branch or force-push change (the caller secures it).
   */
  async changeEnvironment(
    app: AppRow,
    envName: EnvironmentName,
    change: { branch?: string; replicas?: number; allowForcePush?: boolean; backupBeforeRelease?: boolean },
  ): Promise<void> {
    const env = await this.environment(app, envName);
    await this.deps.store.changeEnvironment(env.id, change);
    if (change.replicas !== undefined && (await this.deps.deployments.succeeded(env.id)).length > 0) {
      await scaleEnvironment(this.deps.docker, this.deps.config.name, app.slug, envName, change.replicas);
    }
  }

  /** At API start: deployments a restart interrupted are marked failed, never left "running". */
  async recover(): Promise<void> {
    for (const row of await this.deps.deployments.failInterrupted()) {
      this.deps.log(`deployment ${row.id} (${row.app_slug} ${row.environment}) was interrupted by a restart: marked failed`);
    }
  }

  private async run(row: DeploymentRow, app: AppRow, env: EnvironmentRow): Promise<void> {
    const { deployments } = this.deps;
    const log = new LogWriter(deployments, row.id);
    await this.steps(row, log, async () => {
      log.line(`Deploying ${app.slug} to ${env.name}`);
      const commit = row.commit ?? (await this.branchHead(app.slug, env.branch));
      log.line(`Commit ${commit} (${row.commit ? 'as requested' : `head of ${env.branch}`})`);
      const manifest = await this.manifestAt(app.slug, commit);
      await this.keepCommit(app, row, commit);

      await deployments.setState(row.id, 'building', { commit });
      const image = await this.build(app, commit, log);
      await deployments.setState(row.id, 'releasing', { image });
      const variables = await this.variables(app, env, manifest, row);
      const network = await this.environmentNetwork(app, env, log);
      await this.awaitLeftoverReleaseJobs(app, env, log);
      if (manifest.release?.command) await this.backupBeforeRelease(row, env, log);
      await this.release({ app, env, image, manifest, variables, network, log });

      await deployments.setState(row.id, 'deploying');
      await this.rollOut({ app, env, image, manifest, variables, network, log });
      await this.route(app, env, manifest, log);
      log.line(`Deployed: ${environmentUrl(this.deps.config.publicUrl, this.deps.config.domain, env.name, app.slug)}`);
    });
  }

  private repository(slug: string): string {
    return join(this.deps.gitRoot, gitRepositoryName(slug));
  }

  /** A ref per deployment keeps its commit through force-pushes, deleted branches and gc (protection.ts). */
  private async keepCommit(app: AppRow, row: DeploymentRow, commit: string): Promise<void> {
    try {
      await recordDeploymentRef(this.repository(app.slug), row.id, commit);
    } catch (error) {
      throw new DeployFailure(`could not record the deployed commit ${commit.slice(0, 12)} in the repository: ${(error as Error).message}`);
    }
  }

  private async branchHead(slug: string, branch: string): Promise<string> {
    const result = await execa('git', ['rev-parse', '--verify', '--quiet', `refs/heads/${branch}^{commit}`], {
      cwd: this.repository(slug),
      reject: false,
    });
    const sha = `${result.stdout}`.trim();
    if (result.exitCode !== 0 || !/^[0-9a-f]{40}$/.test(sha)) {
      throw new DeployFailure(`nothing has been pushed to the branch "${branch}" yet`);
    }
    return sha;
  }

  private async manifestAt(slug: string, commit: string): Promise<Manifest> {
    const shown = await execa('git', ['show', `${commit}:divio.yaml`], { cwd: this.repository(slug), reject: false });
    if (shown.exitCode !== 0) throw new DeployFailure(`there is no divio.yaml at ${commit.slice(0, 12)}`);
    try {
      return parseManifest(`${shown.stdout}`, 'divio.yaml');
    } catch (error) {
      throw new DeployFailure(`divio.yaml at ${commit.slice(0, 12)} is not valid: ${(error as Error).message}`);
    }
  }

  private async build(app: AppRow, commit: string, log: LogWriter): Promise<string> {
    const { config, docker, deployments } = this.deps;
    const limits = config.limits?.build;
    const result = await buildAppImage({
      repositoryPath: this.repository(app.slug),
      commit,
      slug: app.slug,
      appId: app.id,
      registry: this.registry(),
      recorded: await deployments.recordedImage(app.id, commit),
      network: config.runtime?.buildNetwork,
      ...(limits ? { limits: { timeoutMs: limits.timeoutSeconds * 1000, memoryBytes: limits.memoryMb * MIB } } : {}),
      docker,
      log: (line) => log.line(line),
    });
    return result.image;
  }

  private registry(): RegistryAccess {
    const { registry } = this.deps.config;
    if (!registry.url) throw new DeployFailure('the platform has no registry URL configured');
    return { address: registry.address, url: registry.url, username: registry.username, password: registry.password };
  }

  /** CPU and memory of one task of KIND, from the operator's limits; none when unset. */
  private resources(kind: 'app' | 'release'): TaskResources | undefined {
    const limits = this.deps.config.limits?.[kind];
    return limits ? { cpus: limits.cpus, memoryBytes: limits.memoryMb * MIB } : undefined;
  }

  /** What the app sees on the platform: the test/live column of SPEC's variables table. */
  /** The backup a bad release is undone with; no backup, no release (the deployment fails). */
  private async backupBeforeRelease(row: DeploymentRow, env: EnvironmentRow, log: LogWriter): Promise<void> {
    if (!env.backup_before_release) return;
    if (!this.deps.backups) {
      log.line('No backup before the release: this platform cannot copy databases');
      return;
    }
    log.line(`Backing up the ${env.name} database before the release command`);
    const taken = await this.deps.backups.takeBackup(env).catch((error: unknown) => {
      throw new DeployFailure(`the backup before the release failed, so the release did not run: ${(error as Error).message}`);
    });
    await this.deps.deployments.setReleaseBackup(row.id, taken.backup.id);
    log.line(`Backup ${taken.backup.id} taken; undo this release with: divio project rollback ${env.name} --with-database (or backups restore ${env.name} ${taken.backup.id})`);
    for (const pruned of taken.pruned) log.line(`Backup ${pruned.id} pruned: ${pruned.why}`);
  }

  /**
   * A release job of an earlier API run (a restart mid-deploy) may still be migrating: the next
   * release must not run beside it. Awaited until it ends, removed after LEFTOVER_RELEASE_WAIT_MS.
   */
  private async awaitLeftoverReleaseJobs(app: AppRow, env: EnvironmentRow, log: LogWriter): Promise<void> {
    const { docker, config } = this.deps;
    const jobs = await docker.listServices({
      filters: { label: [`${LABEL_PLATFORM}=${config.name}`, `${LABEL_APP}=${app.slug}`, `${LABEL_ENV}=${env.name}`, `${LABEL_COMPONENT}=${COMPONENT_RELEASE}`] },
    });
    for (const job of jobs) {
      const name = job.Spec?.Name ?? job.ID;
      const deadline = Date.now() + LEFTOVER_RELEASE_WAIT_MS;
      let announced = false;
      for (;;) {
        const tasks = (await docker.listTasks({ filters: { service: [job.ID] } })) as Array<{ Status?: { State?: string } }>;
        const running = tasks.some((t) => !isFinishedTask(t.Status?.State));
        if (!running) break;
        if (Date.now() >= deadline) {
          log.line(`The release job ${name} of an earlier deployment still runs after ${LEFTOVER_RELEASE_WAIT_MS / 60_000} minutes: removing it`);
          break;
        }
        if (!announced) log.line(`Waiting for the release job ${name} of an earlier deployment to finish`);
        announced = true;
        await new Promise((resolve) => setTimeout(resolve, 2_000));
      }
      await removeService(docker, job.ID);
      log.line(`Removed the earlier release job ${name}`);
    }
  }

  /**
   * The variables a rollback's target ran with, and the change that brings the stored ones back to
   * them (names in the summary, never values); undefined when nothing is to change.
   */
  private async variablesToRestore(
    env: EnvironmentRow,
    target: DeploymentRow,
    log: LogWriter,
  ): Promise<{ variables: Record<string, string>; set: Record<string, string>; unset: string[]; summary: string } | undefined> {
    const recorded = this.deps.deployments.variablesOf(target);
    if (!recorded) {
      log.line(`Deployment ${target.id} has no record of its variables; the current ones are kept`);
      return undefined;
    }
    const current = await this.deps.store.envVars(env.id);
    const set = Object.fromEntries(Object.entries(recorded).filter(([name, value]) => current[name] !== value));
    const unset = Object.keys(current).filter((name) => !Object.hasOwn(recorded, name));
    if (Object.keys(set).length === 0 && unset.length === 0) return undefined;
    const parts = [Object.keys(set).length ? `set ${Object.keys(set).sort().join(', ')}` : '', unset.length ? `removed ${unset.sort().join(', ')}` : ''].filter(Boolean);
    return { variables: recorded, set, unset, summary: `Variables as deployment ${target.id} ran with: ${parts.join('; ')}` };
  }

  /** What the app sees: the platform's variables and the user's (the stored ones, or USER_VARIABLES). */
  private async variables(
    app: AppRow,
    env: EnvironmentRow,
    manifest: Manifest,
    row?: DeploymentRow,
    userVariables?: Record<string, string>,
  ): Promise<Record<string, string>> {
    const { config, deployments } = this.deps;
    const host = environmentHostName(env.name, app.slug, config.domain);
    const secretKey = await deployments.ensureSecretKey(env.id, randomBytes(32).toString('hex'));
    const user = userVariables ?? (await this.deps.store.envVars(env.id));
    if (row) await deployments.recordVariables(row.id, user);
    const db = `postgres://${encodeURIComponent(env.db_role)}:${encodeURIComponent(env.db_password)}@${config.database.appHost}:${config.database.appPort}/${encodeURIComponent(env.db_name)}`;
    return {
      STAGE: env.name,
      DEBUG: env.name === 'live' ? 'false' : 'true',
      PORT: String(manifest.web.port),
      DATABASE_URL: db,
      DEFAULT_STORAGE_DSN: storageDsn(config.media, env),
      SECRET_KEY: secretKey,
      DOMAIN: host,
      SITE_URL: environmentUrl(config.publicUrl, config.domain, env.name, app.slug),
      // The user's own variables win (DEBUG on live, say), except those the app's contract fixes.
      ...withoutReserved(user),
    };
  }

  private async release({ app, env, image, manifest, variables, network, log }: Rollout): Promise<void> {
    const command = manifest.release?.command;
    if (!command) {
      log.line('No release command in divio.yaml');
      return;
    }
    log.line(`Release command: ${command}`);
    const outcome = await runReleaseJob(
      this.deps.docker,
      {
        platform: this.deps.config.name,
        slug: app.slug,
        env: env.name,
        image,
        command,
        variables,
        network,
        resources: this.resources('release'),
      },
      { log: (line) => log.line(line), timeoutMs: RELEASE_TIMEOUT_MS, registryAuth: engineAuth(this.registry()) },
    );
    if (!outcome.ok) {
      throw new DeployFailure(`the release command failed${outcome.exitCode !== null ? ` (exit ${outcome.exitCode})` : ''}${outcome.reason ? `: ${outcome.reason}` : ''}`);
    }
  }

  private async rollOut({ app, env, image, manifest, variables, network, log }: Rollout): Promise<void> {
    const spec = environmentServiceSpec({
      platform: this.deps.config.name,
      slug: app.slug,
      env: env.name,
      image,
      replicas: env.replicas,
      port: manifest.web.port,
      healthPath: manifest.web.health_check,
      variables,
      network,
      resources: this.resources('app'),
      // test and live run divio.yaml's production command, as `project up --live-config` does locally.
      command: ['sh', '-c', manifest.web.command],
    });
    log.line(`Rolling out ${image} (${env.replicas} replica${env.replicas === 1 ? '' : 's'}, start-first, health check ${manifest.web.health_check})`);
    // Swarm pulls with the registry account given here (kept with the service for its later tasks).
    const outcome = await deployEnvironment(this.deps.docker, spec, {
      log: (line) => log.line(line),
      timeoutMs: 10 * 60_000,
      registryAuth: engineAuth(this.registry()),
    });
    if (!outcome.ok) throw new DeployFailure(`the new release did not become healthy: ${outcome.reason ?? 'no reason given'}`);
  }

  private async route(app: AppRow, env: EnvironmentRow, manifest: Manifest, log: LogWriter): Promise<void> {
    const runtime = this.runtime();
    const host = environmentHostName(env.name, app.slug, this.deps.config.domain);
    const upstream = `${environmentServiceName(this.deps.config.name, app.slug, env.name)}:${manifest.web.port}`;
    const file = join(runtime.routerAppsDir, routeFileName(env.name, app.slug));
    await mkdir(runtime.routerAppsDir, { recursive: true });
    const previous = await readFile(file).catch(() => undefined);
    await writeFileAtomic(file, routeConfig(host, upstream));
    try {
      await reloadRouter(runtime.routerService);
    } catch (error) {
      // nginx keeps serving its previous configuration; the files must say the same, or the next
      // deployment of any app would be refused for this one's route.
      if (previous === undefined) await unlink(file).catch(() => undefined);
      else await writeFileAtomic(file, previous);
      throw new DeployFailure(`the route for ${host} was not taken up, so it was taken back: ${(error as Error).message}`);
    }
    log.line(`Routing ${host} to ${upstream}`);
  }

  /** Refused while a deployment of the app runs: it would make again what a delete removes. */
  async assertIdle(app: AppRow): Promise<void> {
    for (const env of await this.deps.store.environments([app.id])) {
      if (await this.deps.deployments.inProgress(env.id)) {
        throw conflict(`A deployment of ${app.slug} to ${env.name} is running; delete the app once it has finished`);
      }
    }
  }

  /**
   * Everything that runs for an app goes: its services and release jobs, its routes (the host then
   * gets the router's "nothing deployed" page), its environments' networks and its images in the
   * engine. Idempotent: an interrupted delete finishes at the next start.
   */
  async removeApp(app: AppRow): Promise<void> {
    const { docker, config, log } = this.deps;
    // What runs for the app, by the one list of what it owns (its data is the apps service's).
    const owned = appResources(app, await this.deps.store.environments([app.id]), { platform: config.name, domain: config.domain });
    const named = (kind: AppResourceKind) => owned.filter((r) => r.kind === kind).map((r) => r.name);
    const services = await docker.listServices({ filters: { label: [`${LABEL_PLATFORM}=${config.name}`, `${LABEL_APP}=${app.slug}`] } });
    // All at once, then each one's containers waited for (removeService): images cannot go before.
    await Promise.all(
      services.map(async (service) => {
        await removeService(docker, service.ID, 60_000);
        log(`removed the service ${service.Spec?.Name ?? service.ID} of deleted app ${app.slug}`);
      }),
    );
    const runtime = config.runtime;
    if (runtime) {
      let routed = false;
      for (const file of named('route')) {
        routed = (await unlink(join(runtime.routerAppsDir, file)).then(() => true, () => false)) || routed;
      }
      // The router keeps the old routes until it reloads; proxying to removed services, they fail anyway.
      if (routed) await reloadRouter(runtime.routerService).catch((error) => log(`the router did not reload after deleting ${app.slug}: ${(error as Error).message}`));
    }
    // Only references in this app instance's repository (an engine may hold other platforms'
    // images with the same labels), and by reference, not by ID with force: an image ID another
    // reference shares stays for that one.
    const repository = `${config.registry.address.replace(/\/+$/, '')}/${named('image-repository')[0]!}`;
    const ours = (reference: string) => reference.startsWith(`${repository}:`) || reference.startsWith(`${repository}@`);
    const images = await docker.listImages({ filters: { label: [`${LABEL_APP_ID}=${app.id}`, `${LABEL_APP}=${app.slug}`] } });
    for (const image of images) {
      const references = [...(image.RepoTags ?? []), ...(image.RepoDigests ?? [])].filter(ours);
      if (references.length === 0) continue;
      for (const reference of references) await docker.getImage(reference).remove().catch(ignoreStatus(404, 409));
      await docker.getImage(image.Id).remove().catch(ignoreStatus(404, 409));
    }
  }

  /**
   * Take the router and the gateway off the networks of apps that no longer exist and remove
   * those networks. Not part of a delete: leaving a network restarts the router (a few seconds
   * in which the platform refuses connections), so it is batched: at start, hourly, and when a
   * new app of a deleted one's slug deploys.
   */
  async removeOrphanNetworks(liveAppIds: ReadonlySet<string>): Promise<void> {
    const { docker, config, log } = this.deps;
    const networks = await docker.listNetworks({ filters: { label: [`${LABEL_PLATFORM}=${config.name}`, `${LABEL_COMPONENT}=${COMPONENT_NETWORK}`] } });
    const orphans = networks
      .filter((found) => found.Labels?.[LABEL_APP_ID] && !liveAppIds.has(found.Labels[LABEL_APP_ID]))
      .map((found) => ({ id: found.Id, name: found.Name }));
    if (orphans.length === 0) return;
    try {
      // All at once: one restart of the router and the gateway, however many networks go.
      await this.networks?.leave(orphans);
    } catch (error) {
      log(`could not take the platform off the networks of deleted apps yet: ${(error as Error).message}`);
      return;
    }
    for (const network of orphans) {
      try {
        await removeEnvironmentNetwork(docker, network);
        log(`removed the network ${network.name} of a deleted app`);
      } catch (error) {
        log(`could not remove the network ${network.name} of a deleted app yet: ${(error as Error).message}`);
      }
    }
  }

  private runtime(): NonNullable<RuntimeConfig['runtime']> {
    const runtime = this.deps.config.runtime;
    if (!runtime) throw new DeployFailure('the platform has no runtime configured');
    return runtime;
  }
}

export { routeFileName } from '../resource-names.js';

function ignoreStatus(...statuses: number[]): (error: unknown) => void {
  return (error) => {
    if (!statuses.includes((error as { statusCode?: number }).statusCode ?? 0)) throw error;
  };
}


/** `s3://KEY:SECRET@BUCKET.HOST:PORT/PREFIX/?url=PUBLIC&region=R&scheme=http`: the boilerplates' storage DSN. */
export function storageDsn(media: RuntimeConfig['media'], env: EnvironmentRow): string {
  const endpoint = new URL(media.appEndpoint ?? media.endpoint);
  const key = encodeURIComponent(env.media_access_key ?? media.accessKeyId);
  const secret = encodeURIComponent(env.media_secret_key ?? media.secretAccessKey);
  const prefix = env.media_prefix ? `${env.media_prefix.replace(/^\/+|\/+$/g, '')}/` : '';
  const publicBase = `${media.publicUrl.replace(/\/+$/, '')}/${env.media_bucket}/${prefix}`;
  const query = new URLSearchParams({ url: publicBase, region: media.region, scheme: endpoint.protocol.replace(':', '') });
  return `s3://${key}:${secret}@${env.media_bucket}.${endpoint.host}/${prefix}?${query.toString()}`;
}

/**
 * One nginx server block; every value in it comes from validated names (slug, env, domain, service).
 *
 * In a rolling update the old task leaves Docker's DNS about 2 s before it is stopped, but nginx may
 * still hold it from a lookup made up to 3 s earlier (`valid=2s`, counted in whole seconds): the
 * connection is refused, or times out once the container is gone. nginx's own 502/504 (never the
 * app's: no proxy_intercept_errors) then get one more try through `tasks.SERVICE`, a name with a
 * cache entry of its own that is looked up afresh, so it holds the tasks that run now. A request
 * the failed attempt had already sent is not sent again (it may have had effects): those, and any
 * second failure, get a short 503 page that says the environment is not answering.
 */
export function routeConfig(host: string, upstream: string): string {
  return `# ${host}: written by the divio platform API on each deployment.
server {
    listen 80;
    server_name ${host};
    client_max_body_size 100m;
    proxy_http_version 1.1;
    proxy_set_header Host $http_host;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header Connection "";
    # A task that is going away refuses connections: try the next address instead of failing.
    proxy_next_upstream error timeout http_502;
    proxy_connect_timeout 2s;
    recursive_error_pages on;
    location / {
        set $app ${upstream};
        proxy_pass http://$app;
        error_page 502 504 = @retry;
    }
    # Every address nginx knew failed: ask DNS again, once, for requests no task has received.
    location @retry {
        error_page 502 503 504 = @unavailable;
        if ($upstream_bytes_sent !~ "^[0 ,:]*$") {
            return 503;
        }
        set $app_tasks tasks.${upstream};
        proxy_pass http://$app_tasks;
    }
    location @unavailable {
        default_type text/html;
        charset utf-8;
        add_header Cache-Control "no-store" always;
        add_header Retry-After "5" always;
        return 503 "<!doctype html>\\n<html lang=\\"en\\"><head><meta charset=\\"utf-8\\"><title>Not answering</title></head>\\n<body>\\n<h1>${host} is not answering right now</h1>\\n<p>None of its tasks took the request. Try again in a moment; <code>divio project logs ${host.split('-')[0]}</code> shows what the app says.</p>\\n</body></html>\\n";
    }
}
`;
}


function withoutReserved(variables: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(variables).filter(([name]) => !(RESERVED_VARIABLES as readonly string[]).includes(name)));
}

function inProgress(slug: string, env: EnvironmentName): ApiError {
  return new ApiError(409, 'deployment_in_progress', `Another deployment of ${slug} ${env} is in progress`, {
    hint: 'Wait for it to finish (`divio project deployments`), then try again.',
  });
}

function reasonOf(error: Error): string {
  return error instanceof BuildError ? error.reason : error.message;
}

/** Buffers log lines and writes them in batches, so a chatty build is not a query per line. */
class LogWriter {
  private pending: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: DeploymentStore,
    private readonly id: string,
  ) {}

  line(text: string): void {
    for (const part of text.split('\n')) this.pending.push(part.replace(/\r/g, ''));
    this.timer ??= setTimeout(() => void this.flush(), 200);
  }

  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    this.pending = [];
    this.writing = this.writing.then(() => this.store.appendLog(this.id, batch)).catch(() => undefined);
    await this.writing;
  }
}
