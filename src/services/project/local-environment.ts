/**
 * The local environment of one project: its compose project, the files it runs from, and the
 * running containers. Shared by up, down, status, logs, exec, shell and the database commands.
 */
import { join } from 'node:path';
import { stringify as stringifyYaml } from 'yaml';
import { ComposeProject, detectCompose, type ComposeTool } from '../../core/compose.js';
import { composeContainers, requireDocker, runningServiceContainer, type ServiceContainer } from '../../core/docker.js';
import { DivioError, ExitCode } from '../../core/errors.js';
import { writeFileAtomic } from '../../core/fs-util.js';
import { readLocalState, resolveProject, type Project, type ResolveOptions } from '../../core/project.js';
import { COMPOSE_FILE, localDomain } from './compose-file.js';

export const LIVE_CONFIG_OVERLAY = '.divio/compose.live-config.yml';

export interface LocalEnvironment {
  project: Project;
  /** Compose is detected on first use: the database commands never need it. */
  tool(): Promise<ComposeTool>;
  /** Compose project name: the app slug. */
  name: string;
  env: NodeJS.ProcessEnv;
  compose(options?: { liveConfig?: boolean; webPort?: number }): Promise<ComposeProject>;
  containers(): Promise<ServiceContainer[]>;
  /** The running container of a service, or a clear error saying how to start it. */
  requireRunning(service: string): Promise<ServiceContainer>;
}

export async function openLocalEnvironment(options: ResolveOptions = {}): Promise<LocalEnvironment> {
  const env = options.env ?? process.env;
  const project = await resolveProject(options);
  await requireDocker(env);
  const name = project.slug;
  const tool = () => detectCompose(env);
  return {
    project,
    tool,
    name,
    env,
    async compose({ liveConfig = false, webPort } = {}) {
      const files = [join(project.root, COMPOSE_FILE)];
      if (liveConfig) files.push(join(project.root, LIVE_CONFIG_OVERLAY));
      const variables: Record<string, string> = {};
      if (webPort !== undefined) variables.DIVIO_WEB_PORT = String(webPort);
      return new ComposeProject({ tool: await tool(), name, cwd: project.root, files, variables });
    },
    containers: () => composeContainers(name),
    async requireRunning(service) {
      const found = await runningServiceContainer(name, service);
      if (found) return found;
      const all = await composeContainers(name);
      const known = [...new Set(all.map((c) => c.service))];
      if (all.length > 0 && !known.includes(service)) {
        throw new DivioError(`the local environment of ${name} has no service "${service}"`, {
          exitCode: ExitCode.usage,
          hint: `Services: ${known.join(', ')}.`,
        });
      }
      throw new DivioError(`service "${service}" of ${name} is not running`, {
        exitCode: ExitCode.environment,
        hint: 'Start the local environment with `divio project up`.',
      });
    },
  };
}

/** The compose overlay that makes the local environment run as live does. */
export async function writeLiveConfigOverlay(project: Project): Promise<void> {
  const overlay = {
    services: {
      web: {
        command: ['sh', '-c', project.manifest.web.command.replaceAll('$', () => '$$')],
        environment: { DEBUG: 'false' },
      },
    },
  };
  await writeFileAtomic(
    join(project.root, LIVE_CONFIG_OVERLAY),
    `# Written by \`divio project up --live-config\`: the production command, DEBUG off.\n${stringifyYaml(overlay)}`,
  );
}

export function webUrl(project: Project, hostPort: number): string {
  return `http://${localDomain(project)}:${hostPort}`;
}

export function publishedWebPort(web: ServiceContainer | undefined, containerPort: number): number | undefined {
  return web?.ports.find((p) => p.containerPort === containerPort)?.hostPort;
}

export async function storedWebPort(project: Project): Promise<number | undefined> {
  return (await readLocalState(project.root)).webPort;
}
