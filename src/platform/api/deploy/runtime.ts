/**
 * The runtime: each app environment (test, live) is one Swarm service on the platform's overlay
 * network. Rolling start-first updates, health checks and rollback on failure are Swarm's; this
 * module writes the specs, starts rollouts and release jobs, and tells how they ended.
 *
 * Variables may hold passwords: their values go into specs and nowhere else (never into logs,
 * errors or outcomes).
 */
import { demuxFrames, type DockerFrame } from '../../../core/docker.js';
import type Docker from 'dockerode';
import { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { LABEL_COMPONENT, LABEL_PLATFORM } from '../../../services/platform/specs.js';
import type { EnvironmentName } from '../../../shared/api/schemas.js';
import { healthCheckCommand } from './health-command.js';
import { environmentServiceName, releaseJobServiceName } from '../resource-names.js';

export const LABEL_APP = 'divio.app';
export const LABEL_ENV = 'divio.env';
export const COMPONENT_APP = 'app';
export const COMPONENT_RELEASE = 'release';

const SECOND_NS = 1_000_000_000;
const MS_NS = 1_000_000;
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const POLL_MS = 500;

export type Log = (line: string) => void;

// ---- names -------------------------------------------------------------------------------------

// Derived in resource-names.ts with every other name an app has.
export { environmentNetworkName, environmentServiceName, releaseJobServiceName } from '../resource-names.js';

// ---- specs -------------------------------------------------------------------------------------

/** Health check and rollout timings; the defaults suit apps, tests shorten them. */
export interface RuntimeTiming {
  healthIntervalMs: number;
  healthTimeoutMs: number;
  healthRetries: number;
  /** Failed checks do not count until the first success or the end of this period (slow boots). */
  healthStartPeriodMs: number;
  /** How long Swarm watches each updated task (and the whole update at its end) for failures. */
  updateMonitorMs: number;
  restartDelayMs: number;
}

export const DEFAULT_TIMING: RuntimeTiming = {
  healthIntervalMs: 2_000,
  healthTimeoutMs: 2_000,
  healthRetries: 3,
  healthStartPeriodMs: 60_000,
  updateMonitorMs: 10_000,
  restartDelayMs: 5_000,
};

export interface EnvironmentInput {
  platform: string;
  slug: string;
  env: EnvironmentName;
  image: string;
  replicas: number;
  port: number;
  healthPath: string;
  /** Names and values the app sees; values are secrets as far as this module is concerned. */
  variables: Record<string, string>;
  /** The environment's overlay network (name or ID): its tasks reach nothing else. */
  network: string;
  /** The container's command (replaces the image's entrypoint and command); the image's when absent. */
  command?: string[];
  /** More labels for the service and its containers; the divio.* ones above take precedence. */
  labels?: Record<string, string>;
  timing?: Partial<RuntimeTiming>;
  resources?: TaskResources;
}

/** What one task may use: a tenant's runaway process slows its own tasks, not the machine. */
export interface TaskResources {
  cpus: number;
  memoryBytes: number;
}

function resourceLimits(resources: TaskResources | undefined): Pick<Docker.TaskSpec, 'Resources'> {
  if (!resources) return {};
  return { Resources: { Limits: { NanoCPUs: Math.round(resources.cpus * 1e9), MemoryBytes: Math.round(resources.memoryBytes) } } };
}

export function environmentLabels(platform: string, slug: string, env: EnvironmentName, component: string): Record<string, string> {
  return { [LABEL_PLATFORM]: platform, [LABEL_APP]: slug, [LABEL_ENV]: env, [LABEL_COMPONENT]: component };
}

/**
 * `NAME=value` lines, sorted by name: the same variables always make the same spec, so a deploy
 * that changes nothing restarts nothing.
 */
export function environmentVariables(variables: Record<string, string>): string[] {
  return Object.entries(variables)
    .map(([name, value]) => {
      if (!VARIABLE_NAME.test(name)) throw new Error(`invalid variable name ${JSON.stringify(name)}: letters, digits and _ only, not starting with a digit`);
      // The value stays out of the message: it may be a password.
      if (value.includes('\0')) throw new Error(`the value of the variable ${name} contains a NUL character`);
      return [name, value] as const;
    })
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`);
}

function checkedReplicas(replicas: number): number {
  if (!Number.isInteger(replicas) || replicas < 0) throw new Error(`replicas must be a whole number ≥ 0, not ${String(replicas)}`);
  return replicas;
}

function updatePolicy(monitorMs: number, failureAction: 'rollback' | 'pause'): Docker.UpdateConfig {
  return {
    Parallelism: 1,
    Delay: 0,
    // start-first: a replica is replaced only once its successor is healthy.
    Order: 'start-first',
    FailureAction: failureAction,
    Monitor: monitorMs * MS_NS,
    MaxFailureRatio: 0,
  };
}

export function environmentServiceSpec(input: EnvironmentInput): Docker.CreateServiceOptions {
  const timing = { ...DEFAULT_TIMING, ...input.timing };
  const labels = { ...input.labels, ...environmentLabels(input.platform, input.slug, input.env, COMPONENT_APP) };
  return {
    Name: environmentServiceName(input.platform, input.slug, input.env),
    Labels: { ...labels },
    TaskTemplate: {
      ContainerSpec: {
        Image: input.image,
        ...(input.command ? { Command: [...input.command] } : {}),
        Labels: { ...labels },
        Env: environmentVariables(input.variables),
        // Many app processes ignore SIGTERM as PID 1: without an init every stop waits the grace period.
        Init: true,
        HealthCheck: {
          Test: healthCheckCommand(input.port, input.healthPath),
          Interval: timing.healthIntervalMs * MS_NS,
          Timeout: timing.healthTimeoutMs * MS_NS,
          Retries: timing.healthRetries,
          StartPeriod: timing.healthStartPeriodMs * MS_NS,
        },
        StopGracePeriod: 10 * SECOND_NS,
      },
      RestartPolicy: { Condition: 'any', Delay: timing.restartDelayMs * MS_NS, MaxAttempts: 0 },
      Networks: [{ Target: input.network }],
      ...resourceLimits(input.resources),
    },
    Mode: { Replicated: { Replicas: checkedReplicas(input.replicas) } },
    UpdateConfig: updatePolicy(timing.updateMonitorMs, 'rollback'),
    // A failing rollback stops where it is (rollback_paused) rather than cycling.
    RollbackConfig: updatePolicy(timing.updateMonitorMs, 'pause'),
    // Service VIPs are not reachable on every swarm (see MACHINE-NOTES): names resolve to tasks.
    EndpointSpec: { Mode: 'dnsrr' },
  };
}

// ---- engine reads ------------------------------------------------------------------------------

interface Task {
  ID: string;
  CreatedAt?: string;
  UpdatedAt?: string;
  DesiredState?: string;
  Spec?: { ContainerSpec?: unknown };
  Status?: { State?: string; Err?: string; Message?: string; ContainerStatus?: { ContainerID?: string; ExitCode?: number } };
}

const FAILED_STATES = new Set(['failed', 'rejected']);
const FINISHED_STATES = new Set(['complete', 'failed', 'rejected', 'shutdown', 'orphaned', 'remove']);

/** A task in one of these states runs no more (its container, if any, has stopped). */
export function isFinishedTask(state: string | undefined): boolean {
  return FINISHED_STATES.has(state ?? '');
}

async function findService(docker: Docker, name: string): Promise<Docker.Service | undefined> {
  const list = await docker.listServices({ filters: { name: [name] } });
  return list.find((s) => s.Spec?.Name === name);
}

/**
 * The service of this name, only if it is this environment's. Long names are shortened with a
 * hash a determined tenant could match with another slug; a service labelled for another app is
 * never updated, scaled, read or removed on this one's behalf.
 */
async function findOwnService(docker: Docker, name: string, owner: Record<string, string>): Promise<Docker.Service | undefined> {
  const service = await findService(docker, name);
  if (!service) return undefined;
  const labels = service.Spec?.Labels ?? {};
  for (const key of [LABEL_PLATFORM, LABEL_APP, LABEL_ENV]) {
    if (labels[key] !== owner[key]) throw new Error(`a service named ${name} exists and is not this environment's (it belongs to another app)`);
  }
  return service;
}

/** The environment's service, when it has one (never another app's of the same name). */
export async function environmentService(docker: Docker, platform: string, slug: string, env: EnvironmentName): Promise<Docker.Service | undefined> {
  return findOwnService(docker, environmentServiceName(platform, slug, env), environmentLabels(platform, slug, env, COMPONENT_APP));
}

async function inspectService(docker: Docker, id: string): Promise<Docker.Service | undefined> {
  try {
    return (await docker.getService(id).inspect()) as Docker.Service;
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

async function tasksOf(docker: Docker, serviceId: string): Promise<Task[]> {
  const tasks = (await docker.listTasks({ filters: { service: [serviceId] } })) as Task[];
  // Newest first: the most recent failure is the telling one.
  return tasks.sort((a, b) => ((a.CreatedAt ?? '') < (b.CreatedAt ?? '') ? 1 : -1));
}

function containerSpecOf(spec: Docker.ServiceSpec | undefined): string {
  return JSON.stringify((spec?.TaskTemplate as Docker.ContainerTaskSpec | undefined)?.ContainerSpec ?? null);
}

function imageOf(spec: Docker.ServiceSpec | undefined): string | undefined {
  return (spec?.TaskTemplate as Docker.ContainerTaskSpec | undefined)?.ContainerSpec?.Image;
}

function runsSpec(task: Task, containerSpec: string): boolean {
  return JSON.stringify(task.Spec?.ContainerSpec ?? null) === containerSpec;
}

function isRunning(task: Task): boolean {
  return task.Status?.State === 'running' && task.DesiredState === 'running';
}

/** "task: non-zero exit (1)", "unhealthy container", "No such image: …": Swarm's words for a task's end. */
function taskFailure(task: Task): string {
  return task.Status?.Err || task.Status?.Message || task.Status?.State || 'failed';
}

function isNotFound(error: unknown): boolean {
  return (error as { statusCode?: number }).statusCode === 404;
}

function isOutOfSequence(error: unknown): boolean {
  return /out of sequence/i.test((error as Error).message ?? '');
}

/**
 * Update from the current version. Swarm bumps a service's version on its own (update status
 * changes), so the version read may be stale by the time the update arrives: read and try once more.
 */
async function updateService(
  docker: Docker,
  id: string,
  makeSpec: (current: Docker.Service) => Docker.ServiceSpec,
  query: Record<string, string> = {},
  registryAuth?: RegistryAuth,
): Promise<void> {
  const handle = docker.getService(id);
  for (let attempt = 1; ; attempt++) {
    const current = (await handle.inspect()) as Docker.Service;
    try {
      // `_query`/`_body`: dockerode sends the version in the query string and the spec as the body.
      const options = { _query: { version: current.Version?.Index, ...query }, _body: makeSpec(current) } as unknown as Record<string, unknown>;
      // Without credentials the engine keeps those the service has (registryAuthFrom=spec).
      // dockerode takes credentials as a first argument its types do not declare.
      if (registryAuth) await (handle.update as unknown as (auth: RegistryAuth, opts: unknown) => Promise<unknown>).call(handle, registryAuth, options);
      else await handle.update(options);
      return;
    } catch (error) {
      if (attempt >= 2 || !isOutOfSequence(error)) throw error;
    }
  }
}

/** Log a progress line only when it says something new. */
function progressLogger(log: Log): Log {
  let last: string | undefined;
  return (line) => {
    if (line === last) return;
    last = line;
    log(line);
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- deploy ------------------------------------------------------------------------------------

export interface DeployOutcome {
  ok: boolean;
  /** Why the rollout failed, in Swarm's words (the failed tasks' errors). */
  reason?: string;
  /** The image the environment serves now: the new one, the previous one after a rollback, null when none serves. */
  image: string | null;
}

export interface RunOptions {
  log: Log;
  timeoutMs: number;
  /** Credentials Swarm pulls the image with (X-Registry-Auth); stored with the service by the engine. */
  registryAuth?: RegistryAuth;
}

export interface RegistryAuth {
  username?: string;
  password?: string;
  serveraddress: string;
}

/**
 * Create or update an environment's service and wait until the rollout settles. A failed update
 * is rolled back by Swarm: the previous image keeps serving and the outcome says why.
 */
export async function deployEnvironment(docker: Docker, spec: Docker.CreateServiceOptions, options: RunOptions): Promise<DeployOutcome> {
  const name = spec.Name;
  if (!name) throw new Error('the service spec has no name');
  const deadline = Date.now() + options.timeoutMs;
  const existing = await findOwnService(docker, name, spec.Labels ?? {});
  if (!existing) {
    const created = options.registryAuth ? await docker.createService(options.registryAuth, spec) : await docker.createService(spec);
    options.log(`created the service ${name}`);
    return waitForFirstRollout(docker, created.id as string, deadline, options);
  }
  // Task history keeps failures of earlier deployments (maybe of this very spec): only newer ones count.
  const earlierTasks = new Set((await tasksOf(docker, existing.ID)).map((t) => t.ID));
  await updateService(docker, existing.ID, () => spec, {}, options.registryAuth);
  const updated = await inspectService(docker, existing.ID);
  if (!updated) return { ok: false, reason: `the service ${name} was removed during the deployment`, image: null };
  return waitForUpdate(docker, { updated, before: existing, earlierTasks, deadline }, options);
}

/** A new service: every replica running (Swarm reports a task running once its health check passes). */
async function waitForFirstRollout(docker: Docker, serviceId: string, deadline: number, options: RunOptions): Promise<DeployOutcome> {
  const progress = progressLogger(options.log);
  for (;;) {
    const service = await inspectService(docker, serviceId);
    if (!service) return { ok: false, reason: 'the service was removed during the deployment', image: null };
    const wanted = service.Spec?.Mode?.Replicated?.Replicas ?? 0;
    const tasks = await tasksOf(docker, serviceId);
    // Nothing older to roll back to: the first failed task fails the deployment, as in an update.
    const failed = tasks.find((t) => FAILED_STATES.has(t.Status?.State ?? ''));
    if (failed) {
      const reason = taskFailure(failed);
      progress(`a task failed: ${reason}`);
      await logTaskOutput(docker, failed, options.log);
      return { ok: false, reason, image: null };
    }
    const running = tasks.filter(isRunning).length;
    progress(`${running}/${wanted} tasks running the new image`);
    if (running >= wanted) return { ok: true, image: imageOf(service.Spec) ?? null };
    if (Date.now() >= deadline) {
      return { ok: false, reason: `timed out with ${running}/${wanted} tasks running and healthy`, image: null };
    }
    await sleep(POLL_MS);
  }
}

const ROLLED_BACK = new Set(['rollback_completed', 'rollback_paused', 'paused']);

interface UpdateRollout {
  /** The service as inspected right after the update: its spec as the engine stored it. */
  updated: Docker.Service;
  before: Docker.Service;
  earlierTasks: Set<string>;
  deadline: number;
}

/**
 * An updated service: Swarm's update status tells the end (completed, or rolled back/paused). An
 * update that changes no task (same image and settings, or replicas only) gets no update status:
 * then the tasks tell, once all replicas run the current spec.
 */
async function waitForUpdate(docker: Docker, rollout: UpdateRollout, options: RunOptions): Promise<DeployOutcome> {
  const { updated, before, earlierTasks, deadline } = rollout;
  const progress = progressLogger(options.log);
  const newSpec = containerSpecOf(updated.Spec);
  const previousUpdate = before.UpdateStatus?.StartedAt ?? null;
  const wanted = updated.Spec?.Mode?.Replicated?.Replicas ?? 0;
  for (;;) {
    const service = await inspectService(docker, updated.ID);
    if (!service) return { ok: false, reason: 'the service was removed during the deployment', image: null };
    const tasks = await tasksOf(docker, updated.ID);
    const newTasks = tasks.filter((t) => runsSpec(t, newSpec));
    const failedNew = newTasks.find((t) => !earlierTasks.has(t.ID) && FAILED_STATES.has(t.Status?.State ?? ''));
    const status = service.UpdateStatus;
    const ours = status?.State !== undefined && (status.StartedAt ?? null) !== previousUpdate;
    const running = newTasks.filter(isRunning).length;

    if (ours && ROLLED_BACK.has(status.State!)) {
      const reason = failedNew ? taskFailure(failedNew) : status.Message || status.State!;
      if (failedNew) await logTaskOutput(docker, failedNew, options.log);
      progress(`rolled back: the previous image serves (${status.State})`);
      return { ok: false, reason, image: imageOf(service.Spec) ?? null };
    }
    if (ours && status.State === 'rollback_started') {
      progress(`rolling back: ${failedNew ? taskFailure(failedNew) : status.Message ?? 'the update failed'}`);
    } else if (!ours && failedNew) {
      // No Swarm update runs (a replicas-only change, or a service scaled to 0 before): no rollback either.
      await logTaskOutput(docker, failedNew, options.log);
      return { ok: false, reason: taskFailure(failedNew), image: null };
    } else {
      progress(`${running}/${wanted} tasks running the new image`);
      const settled = ours ? status.State === 'completed' : true;
      if (settled && running >= wanted && tasks.filter(isRunning).length === running) {
        return { ok: true, image: imageOf(service.Spec) ?? null };
      }
    }
    if (Date.now() >= deadline) return abandonUpdate(docker, service, running, wanted, options.log);
    await sleep(POLL_MS);
  }
}

/**
 * Out of time: ask Swarm to roll back, so the update cannot finish later behind a deployment
 * already reported as failed.
 */
async function abandonUpdate(docker: Docker, service: Docker.Service, running: number, wanted: number, log: Log): Promise<DeployOutcome> {
  const reason = `timed out with ${running}/${wanted} tasks running the new image`;
  const previous = imageOf(service.PreviousSpec);
  try {
    await rollbackService(docker, service.ID);
    log(`rolling back: ${reason}`);
    return { ok: false, reason, image: previous ?? null };
  } catch (error) {
    log(`could not roll back: ${(error as Error).message}`);
    return { ok: false, reason, image: imageOf(service.Spec) ?? null };
  }
}

/** What `docker service rollback` does: Swarm puts PreviousSpec back, through the rollback policy. */
async function rollbackService(docker: Docker, id: string): Promise<void> {
  await updateService(docker, id, (current) => current.Spec ?? {}, { rollback: 'previous' });
}

/** The last lines a failed task printed: why it crashed is usually there. */
async function logTaskOutput(docker: Docker, task: Task, log: Log, lines = 20): Promise<void> {
  try {
    // dockerode implements task logs but its types do not declare them.
    const handle = docker.getTask(task.ID) as unknown as { logs(options: Record<string, unknown>): Promise<unknown> };
    const output = demuxLogs(await handle.logs({ stdout: true, stderr: true, tail: lines, follow: false }));
    const text = Buffer.concat(output.map((frame) => frame.data)).toString('utf8').trimEnd();
    if (!text) return;
    log(`last output of the failed task ${task.ID.slice(0, 12)}:`);
    for (const line of text.split('\n')) log(`  ${line}`);
  } catch {
    // Logs are a courtesy here: the reason is already known.
  }
}

/** Docker's multiplexed log format as frames (see demuxFrames); anything else is stdout. */
function demuxLogs(output: unknown): DockerFrame[] {
  const buffer = Buffer.isBuffer(output) ? output : Buffer.from(typeof output === 'string' ? output : '', 'utf8');
  return demuxFrames(buffer);
}

// ---- scale and remove --------------------------------------------------------------------------

/** Set an environment's replica count, leaving the rest of its spec (and its image) as it is. */
export async function scaleEnvironment(docker: Docker, platform: string, slug: string, env: EnvironmentName, replicas: number): Promise<void> {
  const service = await environmentService(docker, platform, slug, env);
  if (!service) throw new Error(`the ${env} environment of ${slug} has no service (${environmentServiceName(platform, slug, env)}): deploy it first`);
  const count = checkedReplicas(replicas);
  await updateService(docker, service.ID, (current) => ({ ...structuredClone(current.Spec ?? {}), Mode: { Replicated: { Replicas: count } } }));
}

/** Remove an environment's service and wait (bounded) for its containers to go; absent is fine. */
export async function removeEnvironment(docker: Docker, platform: string, slug: string, env: EnvironmentName): Promise<'removed' | 'absent'> {
  const service = await environmentService(docker, platform, slug, env);
  if (!service) return 'absent';
  await removeService(docker, service.ID);
  return 'removed';
}

/**
 * Remove a service, then its containers on this engine: Swarm stops the running ones (with their
 * grace period) but leaves exited ones (finished jobs, failed tasks) behind for minutes, and whoever
 * removes the network next needs them all gone. Bounded: containers on other nodes are Swarm's.
 */
/** Remove a service, then (bounded) its exited containers, which Swarm leaves behind for minutes. */
export async function removeService(docker: Docker, id: string, waitMs = 30_000): Promise<void> {
  try {
    await docker.getService(id).remove();
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline) {
    const left = await docker.listContainers({ all: true, filters: { label: [`com.docker.swarm.service.id=${id}`] } });
    if (left.length === 0) return;
    for (const container of left.filter((c) => c.State !== 'running')) {
      await docker
        .getContainer(container.Id)
        .remove({ force: true })
        .catch(() => {});
    }
    await sleep(POLL_MS);
  }
}

// ---- release job -------------------------------------------------------------------------------

export interface ReleaseInput {
  platform: string;
  slug: string;
  env: EnvironmentName;
  /** The new image, before any task of the environment runs it. */
  image: string;
  /** The app's release command (divio.yaml), run by `sh -c` in its own container. */
  command: string;
  variables: Record<string, string>;
  network: string;
  /** More labels for the job's service and container; the divio.* ones take precedence. */
  labels?: Record<string, string>;
  resources?: TaskResources;
}

export interface ReleaseOutcome {
  ok: boolean;
  exitCode: number | null;
  reason?: string;
}

export function releaseJobSpec(input: ReleaseInput): Docker.CreateServiceOptions {
  const labels = { ...input.labels, ...environmentLabels(input.platform, input.slug, input.env, COMPONENT_RELEASE) };
  return {
    Name: releaseJobServiceName(input.platform, input.slug, input.env),
    Labels: { ...labels },
    TaskTemplate: {
      ContainerSpec: {
        Image: input.image,
        Labels: { ...labels },
        Command: ['sh', '-c', input.command],
        Env: environmentVariables(input.variables),
        Init: true,
        StopGracePeriod: 10 * SECOND_NS,
      },
      // Once: a failed migration is reported, not retried behind the user's back.
      RestartPolicy: { Condition: 'none' },
      Networks: [{ Target: input.network }],
      ...resourceLimits(input.resources),
    },
    Mode: { ReplicatedJob: { MaxConcurrent: 1, TotalCompletions: 1 } },
    EndpointSpec: { Mode: 'dnsrr' },
  };
}

/** Run the release command once with the new image, stream its output to `log`, and remove the job. */
export async function runReleaseJob(docker: Docker, input: ReleaseInput, options: RunOptions): Promise<ReleaseOutcome> {
  const spec = releaseJobSpec(input);
  const deadline = Date.now() + options.timeoutMs;
  const created = options.registryAuth ? await docker.createService(options.registryAuth, spec) : await docker.createService(spec);
  const id = created.id as string;
  const output = await followServiceOutput(docker, id, options.log);
  try {
    const task = await waitForJobTask(docker, id, deadline);
    if (!task) return { ok: false, exitCode: null, reason: `the release command did not finish within ${Math.round(options.timeoutMs / 1000)} s` };
    return jobOutcome(task);
  } finally {
    await output.finish();
    await removeService(docker, id);
  }
}

async function waitForJobTask(docker: Docker, serviceId: string, deadline: number): Promise<Task | undefined> {
  for (;;) {
    const task = (await tasksOf(docker, serviceId))[0];
    if (task && FINISHED_STATES.has(task.Status?.State ?? '')) return task;
    if (Date.now() >= deadline) return undefined;
    await sleep(POLL_MS);
  }
}

function jobOutcome(task: Task): ReleaseOutcome {
  const state = task.Status?.State;
  const container = task.Status?.ContainerStatus;
  // The engine leaves a zero exit code out; no container at all means the command never ran.
  const exitCode = container?.ExitCode ?? (container?.ContainerID ? 0 : null);
  if (state === 'complete' && exitCode === 0) return { ok: true, exitCode: 0 };
  if (exitCode === null) return { ok: false, exitCode, reason: `the release command did not run: ${taskFailure(task)}` };
  return { ok: false, exitCode, reason: `the release command exited with ${exitCode}` };
}

interface FollowedOutput {
  /** Stop following and log whatever the stream had not delivered yet. */
  finish(): Promise<void>;
}

/**
 * The job's output, line by line, as it is written. The follow stream does not end when the job
 * does, and Swarm may deliver the last lines late: once the task is over, one complete read of the
 * logs supplies the lines the stream had not delivered.
 */
async function followServiceOutput(docker: Docker, serviceId: string, log: Log): Promise<FollowedOutput> {
  const sinks = { stdout: new LineSink(log), stderr: new LineSink(log) };
  const service = docker.getService(serviceId);
  let stream: (NodeJS.ReadableStream & { destroy?: () => void }) | undefined;
  try {
    stream = await service.logs({ follow: true, stdout: true, stderr: true });
    stream.on('error', () => {});
    docker.modem.demuxStream(stream, sinks.stdout, sinks.stderr);
  } catch {
    // The complete read at the end still has every line.
  }
  return {
    async finish() {
      stream?.destroy?.();
      try {
        // Without `follow`, dockerode resolves with the whole multiplexed body.
        const frames = demuxLogs(await (service.logs as (options: object) => Promise<unknown>)({ stdout: true, stderr: true, follow: false }));
        for (const name of ['stdout', 'stderr'] as const) {
          sinks[name].catchUp(Buffer.concat(frames.filter((f) => f.stream === name).map((f) => f.data)).toString('utf8'));
        }
      } catch {
        sinks.stdout.flushPartialLine();
        sinks.stderr.flushPartialLine();
      }
    },
  };
}

/** Calls `log` for every complete line written to it, and counts them. */
class LineSink extends Writable {
  private partial = '';
  private logged = 0;
  // A character may be split between two frames.
  private readonly decoder = new StringDecoder('utf8');

  constructor(private readonly log: Log) {
    super();
  }

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    const lines = (this.partial + (typeof chunk === 'string' ? chunk : this.decoder.write(chunk))).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) this.logLine(line);
    done();
  }

  /** Given the stream's whole text, log the lines not logged yet (the last one even without a newline). */
  catchUp(text: string): void {
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    for (const line of lines.slice(this.logged)) this.logLine(line);
    this.partial = '';
  }

  flushPartialLine(): void {
    if (this.partial) this.logLine(this.partial);
    this.partial = '';
  }

  private logLine(line: string): void {
    this.logged += 1;
    this.log(line.replace(/\r$/, ''));
  }
}
