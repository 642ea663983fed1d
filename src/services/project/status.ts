/**
 * `divio project status`: where each environment answers and in what state. The shape is SPEC's:
 * {"app", "endpoint", "environments": [{"name", "url", "state", ...}]}.
 */
import { probeHttp } from '../../core/http-probe.js';
import { composeContainers, dockerAnswers } from '../../core/docker.js';
import type { Project } from '../../core/project.js';
import { localDomain } from './compose-file.js';
import { webUrl } from './local-environment.js';
import { currentCredentials, normaliseEndpoint } from '../../core/credentials.js';
import { DivioError, ExitCode, errorMessage } from '../../core/errors.js';

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

export async function projectStatus(project: Project, env: NodeJS.ProcessEnv = process.env): Promise<ProjectStatus> {
  const endpoint = project.config.endpoint ?? null;
  const [local, platform] = await Promise.all([localStatus(project), endpoint ? platformStatus(project.slug, endpoint, env) : []]);
  return { app: project.slug, endpoint, environments: [local, ...platform] };
}

/** test and live as the platform reports them: URL, what serves there, the latest deployment. */
export async function platformStatus(slug: string, endpoint: string, env: NodeJS.ProcessEnv): Promise<EnvironmentStatus[]> {
  // Loaded only for projects on a platform: the API's schemas are not needed for the local view.
  const [{ ApiClient, ApiRequestError }, routes, { ENVIRONMENT_NAMES }] = await Promise.all([
    import('../../core/api-client.js'),
    import('../../shared/api/routes.js'),
    import('../../shared/api/schemas.js'),
  ]);
  const unknown = (error: string): EnvironmentStatus[] =>
    ENVIRONMENT_NAMES.map((name) => ({ name, url: null, state: 'unknown', error }));
  const credentials = await currentCredentials(env).catch(() => undefined);
  if (!credentials) return unknown('not logged in: divio login');
  if (credentials.endpoint !== normaliseEndpoint(endpoint)) return unknown(`logged in to ${credentials.endpoint}, not to ${endpoint}`);
  const client = new ApiClient(credentials.endpoint, credentials.token);
  try {
    const [app, { deployments }] = await Promise.all([
      client.call(routes.getApp, { params: { slug } }),
      client.call(routes.listDeployments, { params: { slug } }),
    ]);
    return app.environments.map((environment) => {
      const mine = deployments.filter((d) => d.environment === environment.name);
      const current = mine.find((d) => d.state === 'succeeded');
      const latest = mine[0];
      const inProgress = latest && latest.state !== 'succeeded' && latest.state !== 'failed';
      return {
        name: environment.name,
        url: current ? environment.url : null,
        state: inProgress ? 'deploying' : current ? 'running' : latest ? 'failed' : 'not-deployed',
        commit: current?.commit ?? null,
        image: current?.image ?? null,
        deployment: current?.id ?? null,
        lastDeployment: latest ? { id: latest.id, state: latest.state, reason: latest.reason, createdAt: latest.createdAt } : null,
      };
    });
  } catch (error) {
    // An app this token cannot see is the caller's mistake, not a state of the environments.
    if (error instanceof ApiRequestError && error.status === 404) {
      throw new DivioError(`${error.message} on ${credentials.endpoint}`, { hint: error.hint, exitCode: ExitCode.failure, cause: error });
    }
    return unknown(errorMessage(error));
  }
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
