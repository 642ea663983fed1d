/**
 * Docker Swarm plumbing for the platform, through dockerode: the swarm itself, the overlay
 * network, secrets, services and their tasks.
 */
import type Docker from 'dockerode';
import { demuxToText, docker } from '../../core/docker.js';
import { DivioError, ExitCode } from '../../core/errors.js';
import { LABEL_COMPONENT, LABEL_PLATFORM, LABEL_SECRET_KIND, LABEL_SPEC_HASH } from './specs.js';

export type SwarmState = 'initialised' | 'existing';

interface SwarmInfo {
  NodeID?: string;
  LocalNodeState?: string;
  ControlAvailable?: boolean;
  Error?: string;
  NodeAddr?: string;
}

export async function swarmInfo(): Promise<SwarmInfo> {
  const info = (await docker().info()) as { Swarm?: SwarmInfo };
  return info.Swarm ?? {};
}

/**
 * What the engine's swarm state means for the platform: usable as it is, to be initialised, or an
 * error saying what to do. Kept free of I/O so every state is testable.
 */
export function classifySwarm(swarm: SwarmInfo): 'inactive' | 'existing' | DivioError {
  const state = swarm.LocalNodeState ?? 'inactive';
  switch (state) {
    case 'inactive':
      return 'inactive';
    case 'active':
      if (!swarm.ControlAvailable) {
        return new DivioError('this Docker engine is a swarm worker: the platform is started from a manager', {
          exitCode: ExitCode.environment,
          hint: 'Run `divio platform start` on a manager node of this swarm (`docker node ls` there lists the nodes).',
        });
      }
      return 'existing';
    case 'locked':
      return new DivioError('the swarm on this engine is locked', {
        exitCode: ExitCode.environment,
        hint: 'Unlock it with `docker swarm unlock` (it asks for the unlock key), then run the command again.',
      });
    case 'pending':
      return new DivioError('this engine is still joining a swarm', {
        exitCode: ExitCode.environment,
        hint: 'Wait until `docker info` shows "Swarm: active" (or `docker swarm leave` to give up), then run the command again.',
      });
    default:
      return new DivioError(`the swarm on this engine is in the state "${state}"${swarm.Error ? `: ${swarm.Error}` : ''}`, {
        exitCode: ExitCode.environment,
        hint: 'Repair it (`docker info` shows the swarm state; `docker swarm leave --force` resets a single-node swarm), then run the command again.',
      });
  }
}

/** Whether this engine is a swarm manager the platform can use; throws otherwise (unless `init`). */
export async function ensureSwarm(options: { init: boolean }): Promise<SwarmState | 'none'> {
  const decision = classifySwarm(await swarmInfo());
  if (decision instanceof DivioError) throw decision;
  if (decision === 'existing') return 'existing';
  if (!options.init) return 'none';
  try {
    await docker().swarmInit({ ListenAddr: '127.0.0.1:2377', AdvertiseAddr: '127.0.0.1' });
  } catch (error) {
    throw new DivioError(`could not initialise a Docker Swarm on this engine: ${(error as Error).message}`, {
      exitCode: ExitCode.environment,
      hint: 'Try `docker swarm init --advertise-addr 127.0.0.1` yourself and read its error; then run `divio platform start` again.',
      cause: error,
    });
  }
  return 'initialised';
}

// ---- network ---------------------------------------------------------------------------------

export async function ensureNetwork(name: string, platform: string): Promise<'created' | 'existing'> {
  const existing = await docker().listNetworks({ filters: { name: [name] } });
  const match = existing.find((n) => n.Name === name);
  if (match) {
    if (match.Driver !== 'overlay' || match.Scope !== 'swarm') {
      throw new DivioError(`a Docker network named ${name} exists and is not a swarm overlay network`, {
        exitCode: ExitCode.environment,
        hint: `Remove it (\`docker network rm ${name}\`) or start the platform under another --name.`,
      });
    }
    return 'existing';
  }
  await docker().createNetwork({
    Name: name,
    Driver: 'overlay',
    Attachable: true,
    CheckDuplicate: true,
    Labels: { [LABEL_PLATFORM]: platform },
  });
  return 'created';
}

// ---- secrets ---------------------------------------------------------------------------------

interface SecretSummary {
  id: string;
  name: string;
  kind: string | undefined;
}

export async function listPlatformSecrets(platform: string): Promise<SecretSummary[]> {
  const list = (await docker().listSecrets({ filters: { label: [`${LABEL_PLATFORM}=${platform}`] } })) as unknown as {
    ID: string;
    Spec?: { Name?: string; Labels?: Record<string, string> };
  }[];
  return list.map((s) => ({ id: s.ID, name: s.Spec?.Name ?? '', kind: s.Spec?.Labels?.[LABEL_SECRET_KIND] }));
}

/** A secret with this (content-addressed) name, created if missing. The content is never logged. */
export async function ensureSecret(platform: string, name: string, kind: string, content: string): Promise<{ id: string; name: string }> {
  const existing = (await listPlatformSecrets(platform)).find((s) => s.name === name);
  if (existing) return { id: existing.id, name };
  const created = (await docker().createSecret({
    Name: name,
    Labels: { [LABEL_PLATFORM]: platform, [LABEL_SECRET_KIND]: kind },
    Data: Buffer.from(content, 'utf8').toString('base64'),
  })) as { id?: string; ID?: string };
  const id = created.id ?? created.ID;
  if (!id) throw new Error(`the engine did not return an id for the secret ${name}`);
  return { id, name };
}

/** Removes this platform's secrets of one kind except `keep`; a secret still in use stays (best effort). */
export async function removeSupersededSecrets(platform: string, kind: string, keep: string): Promise<void> {
  for (const secret of await listPlatformSecrets(platform)) {
    if (secret.kind !== kind || secret.name === keep) continue;
    try {
      await docker().getSecret(secret.id).remove();
    } catch {
      // In use by a task that is still shutting down: the next start removes it.
    }
  }
}

// ---- services --------------------------------------------------------------------------------

export async function findService(name: string): Promise<Docker.Service | undefined> {
  const list = await docker().listServices({ filters: { name: [name] } });
  return list.find((s) => s.Spec?.Name === name);
}

/** The app environments' own networks (made by the API, see environment-networks.ts). */
export async function environmentNetworks(platform: string): Promise<Docker.NetworkInspectInfo[]> {
  const list = await docker().listNetworks({ filters: { label: [`${LABEL_PLATFORM}=${platform}`, `${LABEL_COMPONENT}=network`] } });
  return list.sort((a, b) => (a.Id < b.Id ? -1 : a.Id > b.Id ? 1 : 0));
}

export async function platformServices(platform: string): Promise<Docker.Service[]> {
  return docker().listServices({ filters: { label: [`${LABEL_PLATFORM}=${platform}`] } });
}

export function replicasOf(service: Docker.Service): number | undefined {
  return service.Spec?.Mode?.Replicated?.Replicas;
}

export type ApplyAction = 'created' | 'updated' | 'scaled' | 'unchanged';

export interface ApplyResult {
  action: ApplyAction;
  /** For 'updated': when the service's previous update started (or null), to tell a failure of this one. */
  previousUpdate?: string | null;
}

/** Create the service, or update it when its spec hash or replica count differs. */
export async function applyService(spec: Docker.ServiceSpec): Promise<ApplyResult> {
  const existing = await findService(spec.Name!);
  if (!existing) {
    await docker().createService(spec as Docker.CreateServiceOptions);
    return { action: 'created' };
  }
  const sameSpec = existing.Spec?.Labels?.[LABEL_SPEC_HASH] === spec.Labels?.[LABEL_SPEC_HASH];
  const sameReplicas = replicasOf(existing) === spec.Mode?.Replicated?.Replicas;
  if (sameSpec && sameReplicas) return { action: 'unchanged' };
  await updateService(existing, spec);
  return sameSpec ? { action: 'scaled' } : { action: 'updated', previousUpdate: existing.UpdateStatus?.StartedAt ?? null };
}

/** A rolling update that started after `previousUpdate` and was paused or rolled back: Swarm's message. */
export function failedUpdate(service: Docker.Service, previousUpdate: string | null): string | undefined {
  const status = service.UpdateStatus;
  if (!status?.State || (status.StartedAt ?? null) === previousUpdate) return undefined;
  if (status.State === 'completed' || status.State === 'updating' || status.State === 'rollback_started') return undefined;
  return `${status.State}${status.Message ? `: ${status.Message}` : ''}`;
}

export async function updateService(existing: Docker.Service, spec: Docker.ServiceSpec): Promise<void> {
  await updateWithFreshVersion(existing.ID, () => spec);
}

/**
 * Update a service from its current version. Swarm bumps a service's version on its own (update
 * status changes), so a version read a moment ago may be stale: read again and retry when it is.
 */
async function updateWithFreshVersion(id: string, makeSpec: (current: Docker.Service) => Docker.ServiceSpec): Promise<void> {
  const handle = docker().getService(id);
  for (let attempt = 1; ; attempt++) {
    const current = (await handle.inspect()) as Docker.Service;
    try {
      // `_query`/`_body`: the version goes into the query string, the spec into the body.
      await handle.update({ _query: { version: current.Version?.Index }, _body: makeSpec(current) } as unknown as Record<string, unknown>);
      return;
    } catch (error) {
      if (attempt >= 5 || !/out of sequence/i.test((error as Error).message)) throw error;
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}

/** Set a service's replica count (and labels), leaving the rest of its spec as it is. */
export async function scaleService(existing: Docker.Service, replicas: number, labels?: Record<string, string | undefined>): Promise<void> {
  await updateWithFreshVersion(existing.ID, (current) => {
    const spec = structuredClone(current.Spec ?? {}) as Docker.ServiceSpec;
    spec.Mode = { Replicated: { Replicas: replicas } };
    if (labels) {
      const next = { ...(spec.Labels ?? {}) };
      for (const [key, value] of Object.entries(labels)) {
        if (value === undefined) delete next[key];
        else next[key] = value;
      }
      spec.Labels = next;
    }
    return spec;
  });
}

// ---- tasks -----------------------------------------------------------------------------------

export interface TaskSummary {
  id: string;
  state: string;
  desiredState: string;
  error?: string;
  message?: string;
  containerId?: string;
  updatedAt: string;
  /** The task's ContainerSpec as JSON: equal to the service's when the task runs the current spec. */
  containerSpec: string;
}

const TERMINAL_STATES = new Set(['complete', 'shutdown', 'failed', 'rejected', 'orphaned', 'remove']);

export function isTerminal(state: string): boolean {
  return TERMINAL_STATES.has(state);
}

export async function serviceTasks(service: string): Promise<TaskSummary[]> {
  const list = (await docker().listTasks({ filters: { service: [service] } })) as {
    ID: string;
    DesiredState?: string;
    UpdatedAt?: string;
    CreatedAt?: string;
    Status?: { State?: string; Err?: string; Message?: string; ContainerStatus?: { ContainerID?: string } };
    Spec?: { ContainerSpec?: unknown };
  }[];
  return list
    .map((t) => ({
      id: t.ID,
      state: t.Status?.State ?? 'unknown',
      desiredState: t.DesiredState ?? 'unknown',
      error: t.Status?.Err || undefined,
      message: t.Status?.Message || undefined,
      containerId: t.Status?.ContainerStatus?.ContainerID || undefined,
      updatedAt: t.UpdatedAt ?? t.CreatedAt ?? '',
      containerSpec: JSON.stringify(t.Spec?.ContainerSpec ?? null),
    }))
    .sort((a, b) => (a.updatedAt < b.updatedAt ? 1 : a.updatedAt > b.updatedAt ? -1 : 0));
}

export function runningTasks(tasks: TaskSummary[]): TaskSummary[] {
  return tasks.filter((t) => t.state === 'running' && t.desiredState === 'running');
}

/** The service's ContainerSpec as JSON, to compare with its tasks' (see TaskSummary.containerSpec). */
export function currentContainerSpec(service: Docker.Service): string {
  const template = service.Spec?.TaskTemplate as { ContainerSpec?: unknown } | undefined;
  return JSON.stringify(template?.ContainerSpec ?? null);
}

/** The most telling problem among a service's tasks: the newest error, else the newest task's state. */
export function taskProblem(tasks: TaskSummary[]): string | undefined {
  const failed = tasks.find((t) => t.error);
  if (failed) return `${failed.state}: ${failed.error}`;
  const newest = tasks[0];
  if (!newest) return 'no task has been scheduled';
  return `${newest.state}${newest.message && newest.message !== newest.state ? ` (${newest.message})` : ''}`;
}

/**
 * Running containers of a service on this engine, found through Swarm's task list. Not by the
 * `com.docker.swarm.service.name` label: any image can carry that label, and a container of an app
 * claiming to be the router would then receive the router's commands.
 */
export async function serviceContainers(service: string, options: { stopping?: boolean } = {}): Promise<Docker.ContainerInfo[]> {
  const found = await findService(service);
  if (!found) return [];
  // With `stopping`, also the containers of tasks Swarm is shutting down.
  const filters = options.stopping ? { service: [found.ID] } : { service: [found.ID], 'desired-state': ['running'] };
  const tasks = (await docker().listTasks({ filters })) as {
    ServiceID?: string;
    Status?: { State?: string; ContainerStatus?: { ContainerID?: string } };
  }[];
  const ids = new Set(
    tasks
      .filter((t) => t.ServiceID === found.ID && (options.stopping || t.Status?.State === 'running'))
      .map((t) => t.Status?.ContainerStatus?.ContainerID)
      .filter((id): id is string => Boolean(id)),
  );
  if (ids.size === 0) return [];
  const running = await docker().listContainers({ filters: { id: [...ids] } });
  return running.filter((c) => ids.has(c.Id));
}

/** The last lines a task's container wrote, for error messages. */
export async function containerLogTail(containerId: string, lines = 20): Promise<string | undefined> {
  try {
    const buffer = (await docker().getContainer(containerId).logs({ stdout: true, stderr: true, tail: lines })) as unknown as Buffer;
    const text = demuxToText(buffer).trim();
    return text || undefined;
  } catch {
    return undefined;
  }
}


/**
 * Run in the router's container: check the configuration, have nginx reload it, and return only
 * once the workers of the old configuration have stopped taking connections. `nginx -s reload`
 * itself returns as soon as the signal is sent, and the master waits at least 100 ms (longer on a
 * busy host) before it retires the old workers, so a deployment that said "Deployed" at once could
 * still be answered by the old configuration. Exit 2: the configuration is refused (nothing was
 * reloaded); exit 3: the old workers still took connections after 10 s.
 */
const RELOAD_ROUTER_SCRIPT = [
  'workers() { for p in /proc/[0-9]*; do [ "$(tr "\\0" " " 2>/dev/null < "$p/cmdline")" = "nginx: worker process " ] && echo "${p#/proc/}"; done; }',
  'nginx -t -q || exit 2',
  'old=$(workers)',
  'nginx -s reload || exit $?',
  'i=0',
  'while [ $i -lt 500 ]; do',
  '  left=',
  '  for pid in $old; do [ "$(tr "\\0" " " 2>/dev/null < "/proc/$pid/cmdline")" = "nginx: worker process " ] && left=1; done',
  '  [ -z "$left" ] && exit 0',
  '  sleep 0.02',
  '  i=$((i + 1))',
  'done',
  'echo "the old nginx workers still take connections 10 s after the reload" >&2',
  'exit 3',
].join('\n');

/**
 * Make the router read DATA/router/apps/*.conf again (`nginx -s reload` in each running task on
 * this engine). For app routes written there; the main configuration changes restart the router.
 */
export async function reloadRouter(service: string): Promise<number> {
  const containers = await serviceContainers(service);
  for (const info of containers) {
    const exec = await docker().getContainer(info.Id).exec({ Cmd: ['sh', '-c', RELOAD_ROUTER_SCRIPT], AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({});
    await new Promise<void>((resolve) => {
      stream.on('end', resolve);
      stream.on('close', resolve);
      stream.on('error', () => resolve());
      stream.resume();
    });
    const result = await exec.inspect();
    if (result.ExitCode !== 0) {
      throw new DivioError(
        result.ExitCode === 2
          ? 'the router refused its new configuration (nginx -t failed) and keeps serving the previous one'
          : `the router did not take up its new configuration (reload exited ${result.ExitCode})`,
        { hint: `Check the files under the data directory's router/apps/ (\`docker exec ${info.Id.slice(0, 12)} nginx -t\` shows the error).` },
      );
    }
  }
  return containers.length;
}

export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
  intervalMs = 500,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() >= deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
