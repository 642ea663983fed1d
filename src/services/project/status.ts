/**
 * `divio project status`: where each environment answers and in what state. The shape is SPEC's:
 * {"app", "endpoint", "environments": [{"name", "url", "state", ...}]}.
 */
import { probeHttp } from '../../core/http-probe.js';
import { composeContainers, dockerAnswers } from '../../core/docker.js';
import type { Project } from '../../core/project.js';
import { localDomain } from './compose-file.js';
import { webUrl } from './local-environment.js';

export type LocalState = 'running' | 'starting' | 'unhealthy' | 'stopped' | 'partial' | 'docker-unavailable';

export interface ServiceStatus {
  name: string;
  state: string;
  health: string | null;
  ports: { host: string; hostPort: number; containerPort: number }[];
}

export interface EnvironmentStatus {
  name: 'local' | 'test' | 'live';
  url: string | null;
  state: string;
  [extra: string]: unknown;
}

export interface ProjectStatus {
  app: string;
  endpoint: string | null;
  environments: EnvironmentStatus[];
}

export async function projectStatus(project: Project): Promise<ProjectStatus> {
  return {
    app: project.slug,
    endpoint: project.config.endpoint ?? null,
    environments: [await localStatus(project)],
  };
}

export async function localStatus(project: Project): Promise<EnvironmentStatus> {
  if (!(await dockerAnswers())) {
    return { name: 'local', url: null, state: 'docker-unavailable', services: [] };
  }
  const containers = await composeContainers(project.slug);
  const services: ServiceStatus[] = containers.map((c) => ({ name: c.service, state: c.state, health: c.health, ports: c.ports }));
  const web = containers.find((c) => c.service === 'web');
  const hostPort = web?.state === 'running' ? web.ports.find((p) => p.containerPort === project.manifest.web.port)?.hostPort : undefined;
  const url = hostPort ? webUrl(project, hostPort) : null;
  const db = containers.find((c) => c.service === 'db');
  const dbPort = db?.state === 'running' ? db.ports.find((p) => p.containerPort === 5432)?.hostPort : undefined;

  let state: LocalState;
  const running = containers.filter((c) => c.state === 'running').length;
  if (running === 0) state = 'stopped';
  else if (running < containers.length || !hostPort) state = 'partial';
  else state = (await healthy(project, hostPort)) ? 'running' : 'unhealthy';
  if (state === 'unhealthy' && containers.some((c) => c.health === 'starting')) state = 'starting';

  return {
    name: 'local',
    url,
    state,
    healthCheck: project.manifest.web.health_check,
    database: dbPort ? { host: '127.0.0.1', port: dbPort } : null,
    services,
  };
}

async function healthy(project: Project, hostPort: number): Promise<boolean> {
  try {
    const result = await probeHttp(hostPort, project.manifest.web.health_check, `${localDomain(project)}:${hostPort}`, 3000);
    return result.status >= 200 && result.status < 300;
  } catch {
    return false;
  }
}
