/**
 * `divio platform status`: each component's Swarm service and tasks, and — when the router answers —
 * the API's own view of its parts (`GET /v1/health`). A report: never fails because the platform is
 * down.
 */
import type Docker from 'dockerode';
import { requireDocker } from '../../core/docker.js';
import { probeHttp } from '../../core/http-probe.js';
import { platformEndpoint, serviceName } from './config.js';
import { chooseDataDir, readSettings, type PlatformSettings } from './settings.js';
import { componentsOf, type Component } from './specs.js';
import {
  currentContainerSpec,
  ensureSwarm,
  findService,
  isTerminal,
  replicasOf,
  runningTasks,
  serviceTasks,
  taskProblem,
  type TaskSummary,
} from './swarm.js';

export type ComponentState = 'running' | 'starting' | 'stopped' | 'failed' | 'missing';
export type PlatformState = 'running' | 'stopped' | 'partial' | 'absent';

export interface ComponentStatus {
  name: Component;
  service: string;
  state: ComponentState;
  /** running/desired tasks, e.g. "1/1". */
  replicas: string;
  detail?: string;
}

export interface ApiHealth {
  status: string;
  components: { name: string; state: string; detail?: string }[];
}

export interface PlatformStatus {
  name: string;
  endpoint: string | null;
  dataDir: string;
  state: PlatformState;
  components: ComponentStatus[];
  /** The API's `/v1/health` when the router answered, else null. */
  health: ApiHealth | null;
}

const FAILED_WINDOW_MS = 120_000;

/**
 * A component's state from its service and tasks. With `currentOnly`, a running task counts only
 * when it runs the service's current container spec (start waits for updates to roll out).
 */
export function componentState(
  service: Docker.Service | undefined,
  tasks: TaskSummary[],
  options: { now?: number; currentOnly?: boolean } = {},
): { state: ComponentState; replicas: string; detail?: string } {
  if (!service) return { state: 'missing', replicas: '0/0' };
  const now = options.now ?? Date.now();
  const desired = replicasOf(service) ?? 0;
  const current = currentContainerSpec(service);
  const running = runningTasks(tasks).filter((t) => !options.currentOnly || t.containerSpec === current).length;
  const replicas = `${running}/${desired}`;
  if (desired === 0) return { state: 'stopped', replicas };
  if (running >= desired) return { state: 'running', replicas };
  const wanted = tasks.filter((t) => t.desiredState === 'running');
  const newest = wanted[0] ?? tasks[0];
  const recentFailures = tasks.filter(
    (t) => (t.state === 'failed' || t.state === 'rejected') && now - Date.parse(t.updatedAt) < FAILED_WINDOW_MS,
  ).length;
  const failed = (newest !== undefined && isTerminal(newest.state) && newest.state !== 'complete') || recentFailures >= 2;
  return { state: failed ? 'failed' : 'starting', replicas, detail: taskProblem(tasks) };
}

export async function componentStatuses(settings: PlatformSettings): Promise<ComponentStatus[]> {
  const out: ComponentStatus[] = [];
  for (const component of componentsOf(settings)) {
    const service = serviceName(settings.name, component);
    const existing = await findService(service);
    const tasks = existing ? await serviceTasks(service) : [];
    out.push({ name: component, service, ...componentState(existing, tasks) });
  }
  return out;
}

export function overallState(components: ComponentStatus[], health: ApiHealth | null): PlatformState {
  if (components.length === 0 || components.every((c) => c.state === 'missing')) return 'absent';
  if (components.every((c) => c.state === 'stopped' || c.state === 'missing')) return 'stopped';
  // Running means every service has its tasks and the API says its parts answer.
  if (components.every((c) => c.state === 'running') && health?.status === 'ok') return 'running';
  return 'partial';
}

/** `/v1/health` through the router, or null when nothing (useful) answers. */
export async function fetchApiHealth(port: number, timeoutMs = 5000): Promise<ApiHealth | null> {
  try {
    const result = await probeHttp(port, '/v1/health', `127.0.0.1:${port}`, timeoutMs);
    if (result.status !== 200 && result.status !== 503) return null;
    const body = JSON.parse(result.body) as Partial<ApiHealth>;
    if (typeof body.status !== 'string' || !Array.isArray(body.components)) return null;
    return {
      status: body.status,
      components: body.components.map((c) => ({ name: String(c.name), state: String(c.state), ...(c.detail ? { detail: String(c.detail) } : {}) })),
    };
  } catch {
    return null;
  }
}

export async function platformStatus(options: { dataDir?: string; env?: NodeJS.ProcessEnv } = {}): Promise<PlatformStatus> {
  const env = options.env ?? process.env;
  const dataDir = await chooseDataDir(options.dataDir, env);
  const settings = await readSettings(dataDir);
  if (!settings) return { name: 'divio', endpoint: null, dataDir, state: 'absent', components: [], health: null };
  await requireDocker(env);
  const endpoint = platformEndpoint(settings);
  const swarm = await ensureSwarm({ init: false });
  if (swarm === 'none') {
    const components = componentsOf(settings).map((name) => ({
      name,
      service: serviceName(settings.name, name),
      state: 'missing' as const,
      replicas: '0/0',
      detail: 'this engine is in no swarm',
    }));
    return { name: settings.name, endpoint, dataDir, state: 'absent', components, health: null };
  }
  const components = await componentStatuses(settings);
  const router = components.find((c) => c.name === 'router');
  const health = router && router.state !== 'missing' && router.state !== 'stopped' ? await fetchApiHealth(settings.port) : null;
  return { name: settings.name, endpoint, dataDir, state: overallState(components, health), components, health };
}
