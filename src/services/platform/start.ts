/**
 * `divio platform start`: run the platform as Swarm services on this engine (initialising a
 * single-node swarm when the engine is in none), wait until every component answers, and log this
 * CLI in as the operator. Idempotent: a second start changes and restarts nothing.
 */
import { readFile } from 'node:fs/promises';
import { credentialsPath, normaliseEndpoint, saveCredentials } from '../../core/credentials.js';
import { describeDockerHost, requireDocker } from '../../core/docker.js';
import { DivioError, ExitCode } from '../../core/errors.js';
import { writeFileAtomic } from '../../core/fs-util.js';
import { probeHttp } from '../../core/http-probe.js';
import type { IO, Task } from '../../core/io.js';
import { isPortFree } from '../../core/ports.js';
import { generateToken, parseToken, secretMatches } from '../../shared/api/tokens.js';
import {
  OPERATOR_NAME,
  buildRuntimeConfig,
  configSecretName,
  networkName,
  platformEndpoint,
  serialiseRuntimeConfig,
  serviceName,
  shortHash,
} from './config.js';
import { ensurePlatformImage, localImageId, pruneOldPlatformImages } from './image.js';
import { applyBuildFirewall, ensureBuildNetwork } from './build-network.js';
import { renderRouterConfig, routerValues } from './router-config.js';
import {
  chooseDataDir,
  dataPaths,
  ensureDataDirs,
  REGISTRY_USER,
  registryHtpasswd,
  rememberDataDir,
  resolveSettings,
  writeSettings,
  type PlatformSettings,
} from './settings.js';
import {
  COMPONENTS,
  IMAGES,
  LABEL_COMPONENT,
  LABEL_REPLICAS_BEFORE_STOP,
  componentsOf,
  platformSpecs,
  type Component,
  type SpecContext,
} from './specs.js';
import { componentState, fetchApiHealth, type ApiHealth, type ComponentState } from './status.js';
import {
  applyService,
  containerLogTail,
  ensureNetwork,
  environmentNetworks,
  ensureSecret,
  findService,
  platformServices,
  removeSupersededSecrets,
  scaleService,
  serviceTasks,
  type ApplyAction,
  type ApplyResult,
  failedUpdate,
  type SwarmState,
  ensureSwarm,
  swarmInfo,
} from './swarm.js';

export interface StartOptions {
  dataDir?: string;
  port?: number;
  domain?: string;
  name?: string;
  /** Database copies kept per environment (stored with the other settings). */
  backupsKeep?: number;
  /** Backups younger than this many days are kept too, up to `backupsMax` (stored). */
  backupsKeepDays?: number;
  backupsMax?: number;
  /** Days a deleted app's databases and media are kept before they are purged (stored). */
  deletedAppsDays?: number;
  /** Daily backup of live at HH:MM[:SS] UTC, `off` for none (stored). */
  backupSchedule?: string;
  /** How long to wait for every component to answer. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

export interface StartedComponent {
  name: Component;
  service: string;
  state: ComponentState;
  replicas: string;
  /** What start did to the service. */
  action: ApplyAction;
}

export interface StartResult {
  name: string;
  endpoint: string;
  dataDir: string;
  domain: string;
  port: number;
  swarm: SwarmState;
  image: { tag: string; built: boolean };
  /** Whether this start stored a new operator token in the credentials file. */
  login: 'kept' | 'new';
  components: StartedComponent[];
}

const DEFAULT_TIMEOUT_MS = 300_000;
const CONFIG_SECRET_KIND = 'config';
const POSTGRES_SECRET_KIND = 'postgres-password';
const REGISTRY_SECRET_KIND = 'registry-htpasswd';

export async function startPlatform(io: IO, options: StartOptions = {}): Promise<StartResult> {
  const env = options.env ?? process.env;
  await requireDocker(env);
  // Without --data-dir: the platform this user started last, else the default place.
  const dataDir = await chooseDataDir(options.dataDir, env);
  const resolved = await resolveSettings(dataDir, {
    name: options.name,
    domain: options.domain,
    port: options.port,
    backupsKeep: options.backupsKeep,
    backupsKeepDays: options.backupsKeepDays,
    backupsMax: options.backupsMax,
    deletedAppsDays: options.deletedAppsDays,
    backupSchedule: options.backupSchedule,
  });
  let settings = resolved.settings;
  const { name } = settings;

  const swarm = await ensureSwarm({ init: true });
  if (swarm === 'none') throw new Error('unreachable: the swarm was to be initialised');
  if (swarm === 'initialised') io.info('Initialised a single-node Docker Swarm on this engine (advertised on 127.0.0.1).');

  await checkRouterPort(settings, env);

  // The operator login: keep a stored token that matches, otherwise issue a new one.
  const endpoint = platformEndpoint(settings);
  const stored = await storedToken(endpoint, env);
  let login: StartResult['login'] = 'kept';
  let newToken: string | undefined;
  if (!stored || !settings.operator || !tokenMatches(stored, settings.operator)) {
    const generated = generateToken();
    newToken = generated.token;
    settings = { ...settings, operator: { tokenId: generated.id, tokenHash: generated.hash } };
    login = 'new';
  }
  await ensureDataDirs(dataDir);
  await writeSettings(dataDir, settings);
  await rememberDataDir(dataDir, env);
  // Saved now, not after the wait: the API accepts this token whenever it comes up with this config.
  // A kept token is saved again too: it makes this platform the current endpoint.
  await saveCredentials(endpoint, newToken ?? stored!, OPERATOR_NAME, env);

  const image = await ensurePlatformImage(io);
  const components = componentsOf(settings);
  const images: SpecContext['images'] = {
    platform: image.id,
    postgres: components.includes('postgres') ? await localImageId(IMAGES.postgres) : '',
    registry: components.includes('registry') ? await localImageId(IMAGES.registry) : '',
    router: await localImageId(IMAGES.router),
  };

  const applied = await io.task(`Starting the platform "${name}"`, async (task) => {
    task.update('network');
    await ensureNetwork(networkName(name), name);
    task.update('build network');
    await ensureBuildNetwork(name);
    await applyBuildFirewall(name, image.id);

    task.update('secrets');
    const config = serialiseRuntimeConfig(buildRuntimeConfig(settings));
    const configSecret = await ensureSecret(name, configSecretName(name, config), CONFIG_SECRET_KIND, config);
    const password = settings.secrets.postgresPassword;
    const postgresSecret = components.includes('postgres')
      ? await ensureSecret(name, `${name}-postgres-password-${shortHash(password)}`, POSTGRES_SECRET_KIND, password)
      : undefined;
    const htpasswd = registryHtpasswd(settings.secrets);
    const registrySecret = components.includes('registry')
      ? await ensureSecret(name, `${name}-registry-htpasswd-${shortHash(htpasswd)}`, REGISTRY_SECRET_KIND, htpasswd)
      : undefined;

    task.update('router configuration');
    const routerConfig = await renderRouterConfig(routerValues(settings));
    const routerConfigPath = dataPaths(dataDir).routerConfig;
    if ((await readFile(routerConfigPath, 'utf8').catch(() => undefined)) !== routerConfig) {
      await writeFileAtomic(routerConfigPath, routerConfig, 0o644);
    }

    const nodeId = (await swarmInfo()).NodeID || undefined;
    const networks = (await environmentNetworks(name)).map((n) => n.Id);
    const specs = platformSpecs({
      settings,
      dataDir,
      images,
      configSecret,
      postgresSecret,
      registrySecret,
      routerConfigHash: shortHash(routerConfig),
      nodeId,
      environmentNetworks: networks,
    });
    const actions = new Map<Component, ApplyResult>();
    for (const { component, spec } of specs) {
      task.update(serviceName(name, component));
      actions.set(component, await applyService(spec));
    }
    return { actions, configSecret, postgresSecret, registrySecret };
  });

  const ready = await io.task('Waiting for every component to answer', (task) =>
    waitUntilReady(settings, components, applied.actions, options.timeoutMs ?? DEFAULT_TIMEOUT_MS, task),
  );

  await restoreStoppedServices(name);
  await removeSupersededSecrets(name, CONFIG_SECRET_KIND, applied.configSecret.name);
  if (applied.postgresSecret) await removeSupersededSecrets(name, POSTGRES_SECRET_KIND, applied.postgresSecret.name);
  if (applied.registrySecret) await removeSupersededSecrets(name, REGISTRY_SECRET_KIND, applied.registrySecret.name);
  await pruneOldPlatformImages(image.tag);

  return {
    name,
    endpoint,
    dataDir,
    domain: settings.domain,
    port: settings.port,
    swarm,
    image: { tag: image.tag, built: image.built },
    login,
    components: components.map((component) => ({
      name: component,
      service: serviceName(name, component),
      state: 'running',
      replicas: ready.replicas.get(component) ?? '1/1',
      action: applied.actions.get(component)?.action ?? 'unchanged',
    })),
  };
}

// ---- operator token ------------------------------------------------------------------------------

async function storedToken(endpoint: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  try {
    const file = JSON.parse(await readFile(credentialsPath(env), 'utf8')) as { endpoints?: Record<string, { token?: unknown }> };
    const token = file.endpoints?.[normaliseEndpoint(endpoint)]?.token;
    return typeof token === 'string' ? token : undefined;
  } catch {
    return undefined;
  }
}

function tokenMatches(token: string, operator: NonNullable<PlatformSettings['operator']>): boolean {
  const parsed = parseToken(token);
  return parsed !== undefined && parsed.id === operator.tokenId && secretMatches(parsed.secret, operator.tokenHash);
}

// ---- the public port -----------------------------------------------------------------------------

async function checkRouterPort(settings: PlatformSettings, env: NodeJS.ProcessEnv): Promise<void> {
  const host = describeDockerHost(env);
  // Only meaningful when the engine is this machine.
  if (!host.startsWith('unix://') && !host.startsWith('npipe://')) return;
  const router = await findService(serviceName(settings.name, 'router'));
  const published = router?.Spec?.EndpointSpec?.Ports?.some((p) => p.PublishedPort === settings.port);
  if (router && published) {
    const tasks = await serviceTasks(serviceName(settings.name, 'router'));
    if (tasks.some((t) => t.desiredState === 'running' && !['failed', 'rejected', 'shutdown', 'complete'].includes(t.state))) return;
  }
  if (!(await isPortFree(settings.port, '0.0.0.0'))) {
    throw new DivioError(`port ${settings.port} is in use on this host, so the platform's router cannot publish it`, {
      exitCode: ExitCode.environment,
      hint: `Stop what listens there, or start on another port: \`divio platform start --port N\` (the port is kept for later starts).`,
    });
  }
}

// ---- waiting -------------------------------------------------------------------------------------

interface Ready {
  replicas: Map<Component, string>;
}

interface Probe {
  component: Component;
  problem: string;
  containerId?: string;
}

/** Failed tasks of one component (counted once all before it run) that mean it will not come up. */
const FAILED_TASKS_LIMIT = 4;

async function waitUntilReady(
  settings: PlatformSettings,
  components: Component[],
  applied: Map<Component, ApplyResult>,
  timeoutMs: number,
  task: Task,
): Promise<Ready> {
  const deadline = Date.now() + timeoutMs;
  /** When everything before a component was first seen running: its failures count from then on. */
  const countFrom = new Map<Component, number>();
  const started = Date.now();
  let last: Probe | undefined;
  let lastHealth: ApiHealth | null = null;
  for (;;) {
    const replicas = new Map<Component, string>();
    last = undefined;
    let allRunning = true;
    for (const component of components) {
      const service = serviceName(settings.name, component);
      const existing = await findService(service);
      const tasks = existing ? await serviceTasks(service) : [];
      const state = componentState(existing, tasks, { currentOnly: true });
      replicas.set(component, state.replicas);
      if (!countFrom.has(component) && allRunning) countFrom.set(component, Math.max(started, Date.now() - 1000));
      const update = applied.get(component);
      const failure = existing && update?.action === 'updated' ? failedUpdate(existing, update.previousUpdate ?? null) : undefined;
      if (failure) {
        throw await notReady(settings, { component, problem: failure, containerId: tasks.find((t) => t.containerId)?.containerId }, 'its update failed');
      }
      if (state.state === 'running') continue;
      if (allRunning) {
        allRunning = false;
        const newest = tasks.find((t) => t.containerId);
        last = { component, problem: state.detail ?? state.state, containerId: newest?.containerId };
        const since = countFrom.get(component) ?? started;
        const failures = tasks.filter((t) => (t.state === 'failed' || t.state === 'rejected') && Date.parse(t.updatedAt) >= since).length;
        if (failures >= FAILED_TASKS_LIMIT) throw await notReady(settings, last, `it failed ${failures} times`);
      }
    }
    if (allRunning) {
      const problem = await endpointProblem(settings, components);
      lastHealth = problem?.health ?? null;
      if (!problem) return { replicas };
      last = problem.probe;
    }
    if (last) task.update(`${last.component}: ${last.problem}`);
    if (Date.now() >= deadline) {
      throw await notReady(settings, last!, `it did not come up within ${Math.round(timeoutMs / 1000)}s`, lastHealth);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** What does not answer through the router yet, or undefined when everything does. */
async function endpointProblem(settings: PlatformSettings, components: Component[]): Promise<{ probe: Probe; health?: ApiHealth | null } | undefined> {
  const { port, domain } = settings;
  let status: number;
  try {
    status = (await probeHttp(port, '/v1/health', `127.0.0.1:${port}`, 5000)).status;
  } catch (error) {
    return { probe: { component: 'router', problem: `127.0.0.1:${port} does not answer (${(error as Error).message})` } };
  }
  if (status !== 200) {
    const health = await fetchApiHealth(port);
    const down = health?.components.filter((c) => c.state !== 'ok').map((c) => `${c.name}${c.detail ? ` (${c.detail})` : ''}`);
    return {
      probe: { component: 'api', problem: down?.length ? `/v1/health reports down: ${down.join(', ')}` : `GET /v1/health answered ${status}` },
      health,
    };
  }
  if (components.includes('registry')) {
    // With the platform's account: a 401 here means the registry's htpasswd and platform.json disagree.
    const authorization = `Basic ${Buffer.from(`${REGISTRY_USER}:${settings.secrets.registryPassword ?? ''}`).toString('base64')}`;
    const registry = await fetch(`http://127.0.0.1:${port}/v2/`, { headers: { authorization }, signal: AbortSignal.timeout(5000) }).then(
      (response) => ({ status: response.status, body: '' }),
      (e: Error) => ({ status: 0, body: e.message }),
    );
    if (registry.status !== 200) return { probe: { component: 'registry', problem: `GET /v2/ answered ${registry.status || registry.body}` } };
  }
  if (components.includes('s3')) {
    const s3 = await probeHttp(port, '/', `s3.${domain}:${port}`, 5000).catch((e: Error) => ({ status: 0, body: e.message }));
    // Any answer from the store itself (an anonymous listing is refused): only the router's 5xx means it is not there.
    if (s3.status === 0 || s3.status >= 500) return { probe: { component: 's3', problem: `s3.${domain} answered ${s3.status || s3.body}` } };
  }
  return undefined;
}

async function notReady(settings: PlatformSettings, probe: Probe, why: string, health?: ApiHealth | null): Promise<DivioError> {
  const service = serviceName(settings.name, probe.component);
  let logs = probe.containerId ? await containerLogTail(probe.containerId, 15) : undefined;
  if (!logs && probe.component !== 'router') {
    const tasks = await serviceTasks(service).catch(() => []);
    const withContainer = tasks.find((t) => t.containerId);
    if (withContainer?.containerId) logs = await containerLogTail(withContainer.containerId, 15);
  }
  const healthLine = health ? `\nThe API's health: ${health.components.map((c) => `${c.name} ${c.state}${c.detail ? ` (${c.detail})` : ''}`).join(', ')}` : '';
  const logLines = logs ? `\nIts last log lines:\n${logs.split('\n').map((l) => `  ${l}`).join('\n')}` : '';
  return new DivioError(`the platform's ${probe.component} (${service}) is not ready: ${why}; last state: ${probe.problem}`, {
    exitCode: ExitCode.environment,
    hint: `\`docker service ps ${service} --no-trunc\` and \`docker service logs ${service}\` show more; fix it and run \`divio platform start\` again.${healthLine}${logLines}`,
  });
}

// ---- services stopped by `stop` that are not components (apps) -----------------------------------

async function restoreStoppedServices(name: string): Promise<void> {
  const known = new Set<string>(COMPONENTS);
  for (const service of await platformServices(name)) {
    const labels = service.Spec?.Labels ?? {};
    if (known.has(labels[LABEL_COMPONENT] ?? '')) continue;
    const before = labels[LABEL_REPLICAS_BEFORE_STOP];
    if (before === undefined) continue;
    const replicas = Number.parseInt(before, 10);
    await scaleService(service, Number.isFinite(replicas) && replicas >= 0 ? replicas : 1, { [LABEL_REPLICAS_BEFORE_STOP]: undefined });
  }
}
