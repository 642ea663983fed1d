/**
 * The platform API process (runs as the `NAME-api` Swarm service): reads the runtime config,
 * prepares the platform database, makes sure the operator exists, removes half-made apps, serves.
 */
import { serve } from '@hono/node-server';
import pg from 'pg';
import { readRuntimeConfig, type RuntimeConfig } from '../runtime-config.js';
import { PostgresCluster, ensurePlatformDatabase, platformDatabaseUrl } from './database-cluster.js';
import { BareRepositories } from './git/repositories.js';
import { S3MediaStorage } from './media-storage.js';
import { migrate } from './migrations.js';
import { buildServer } from './server.js';
import { Store, type EnvironmentRow } from './store.js';
import { SecretBox } from './secrets.js';
import { docker } from '../../core/docker.js';
import { DeploymentStore } from './deploy/deployment-store.js';
import { DeployService } from './deploy/deploy-service.js';
import { ClusterDatabases } from './data/cluster-databases.js';
import { DataStore } from './data/data-store.js';
import { DatabaseTransfers } from './data/database-transfers.js';
import { RetainedResources } from './retained-resources.js';
import { BackupScheduler, parseDailyTime } from './data/backup-schedule.js';

const log = (line: string) => console.log(`${new Date().toISOString()} ${line}`);

/** How often deleted apps' data past its grace period, and their networks, are looked for. */
const HOUSEKEEPING_INTERVAL_MS = 60 * 60_000;

async function main(): Promise<void> {
  const config = await readRuntimeConfig();
  if (!config.secretsKey) throw new Error('the platform configuration has no secretsKey; run `divio platform start` again, which adds one');
  const secrets = SecretBox.fromConfig(config.secretsKey);
  const pool = await connectPlatformDatabase(config, secrets);
  const store = new Store(pool, secrets);
  await store.ensureOperator(config.operator.name, { id: config.operator.tokenId, hash: config.operator.tokenHash });

  const cluster = new PostgresCluster(config.database.adminUrl, config.database.appHost, config.database.appPort, config.database.platformDatabase);
  const git = new BareRepositories(config.git.root);
  const media = new S3MediaStorage(config.media);
  const deployments = new DeploymentStore(pool, secrets);
  const dataStore = new DataStore(pool);
  const transfers = new DatabaseTransfers({
    adminUrl: config.database.adminUrl,
    store: dataStore,
    cluster: new ClusterDatabases(config.database.adminUrl),
    retention: config.backups,
    log,
  });
  const backups = {
    takeBackup: (env: EnvironmentRow) => transfers.takeBackup(env, 'release'),
    restore: (env: EnvironmentRow, id: string) => transfers.restore(env, id),
    hasBackup: async (env: EnvironmentRow, id: string) => Boolean(await dataStore.backup(env.id, id)),
  };
  const deploy = new DeployService({ store, deployments, docker: docker(), config, gitRoot: config.git.root, log, backups });
  const { app, apps } = buildServer({
    store,
    cluster,
    git,
    media,
    config,
    log,
    transfers,
    deploys: { service: deploy, store: deployments },
    backupSchedule: config.backups.schedule,
    retained: new RetainedResources(pool, config.deletedApps.retentionDays),
  });
  await apps.recover();
  await deploy.recover();
  await transfers.recover();
  const scheduler = startBackupSchedule(config, store, dataStore, transfers);
  const purger = setInterval(() => void apps.housekeeping(), HOUSEKEEPING_INTERVAL_MS);
  purger.unref();

  // No request timeout: a large push over a slow link may take longer than Node's default 300 s.
  const server = serve({ fetch: app.fetch, hostname: config.listen.host, port: config.listen.port, serverOptions: { requestTimeout: 0 } }, (info) =>
    log(`divio platform API ${config.version} listening on ${info.address}:${info.port}`),
  );
  const shutdown = () => {
    log('shutting down');
    scheduler?.stop();
    clearInterval(purger);
    server.close(() => void pool.end().finally(() => process.exit(0)));
    setTimeout(() => process.exit(0), 10_000).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

/** The daily backup of every live environment, when the operator set a time (`platform start --backup-schedule`). */
function startBackupSchedule(config: RuntimeConfig, store: Store, dataStore: DataStore, transfers: DatabaseTransfers): BackupScheduler<ScheduledEnvironment> | undefined {
  const time = config.backups.schedule ? parseDailyTime(config.backups.schedule) : undefined;
  if (!time) return undefined;
  const scheduler = new BackupScheduler<ScheduledEnvironment>({
    time,
    log,
    targets: async () => {
      const apps = await store.appsInState('ready');
      const slugs = new Map(apps.map((a) => [a.id, a.slug]));
      const live = (await store.environments(apps.map((a) => a.id))).filter((e) => e.name === 'live');
      return Promise.all(
        live.map(async (env) => ({
          env,
          name: `${slugs.get(env.app_id)}/live`,
          since: new Date(env.created_at),
          lastScheduled: await dataStore.newestBackupAt(env.id, 'scheduled'),
        })),
      );
    },
    take: async (target) => {
      const taken = await transfers.takeBackup(target.env, 'scheduled');
      log(`scheduled backup ${taken.backup.id} of ${target.name} taken (${taken.backup.size_bytes} bytes)`);
    },
  });
  log(`scheduled backups of live every day at ${config.backups.schedule} UTC`);
  // Not awaited: a missed run made up at start must not hold the API back from serving.
  void scheduler.start();
  return scheduler;
}

interface ScheduledEnvironment {
  env: EnvironmentRow;
  name: string;
  since: Date;
  lastScheduled: Date | null;
}

/** The cluster may still be starting when the API does: retry for a while before giving up. */
async function connectPlatformDatabase(config: RuntimeConfig, secrets: SecretBox): Promise<pg.Pool> {
  const deadline = Date.now() + 120_000;
  for (let attempt = 1; ; attempt++) {
    try {
      await ensurePlatformDatabase(config.database.adminUrl, config.database.platformDatabase);
      const pool = new pg.Pool({
        connectionString: platformDatabaseUrl(config.database.adminUrl, config.database.platformDatabase),
        max: 10,
      });
      pool.on('error', (error) => log(`platform database connection lost: ${error.message}`));
      const client = await pool.connect();
      try {
        const ran = await migrate(client, { secrets });
        if (ran.length) log(`applied migrations ${ran.join(', ')}`);
      } finally {
        client.release();
      }
      return pool;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      log(`waiting for the database cluster (attempt ${attempt}): ${(error as Error).message}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

main().catch((error) => {
  console.error(`platform API failed to start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
