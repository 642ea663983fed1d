/**
 * `divio platform stop`: scale every service of the platform to 0 — apps, the router and the API
 * first, the stateful parts (database, media, registry) last — and wait until their containers are gone. Services, network,
 * secrets and the data directory stay, so the next start brings everything back.
 */
import type Docker from 'dockerode';
import { requireDocker } from '../../core/docker.js';
import { DivioError, ExitCode } from '../../core/errors.js';
import type { IO } from '../../core/io.js';
import { chooseDataDir, readSettings } from './settings.js';
import { COMPONENTS, LABEL_COMPONENT, LABEL_REPLICAS_BEFORE_STOP, type Component } from './specs.js';
import { ensureSwarm, isTerminal, platformServices, replicasOf, scaleService, serviceContainers, serviceTasks } from './swarm.js';

export interface StopResult {
  name: string;
  dataDir: string;
  /** Services scaled to 0 by this stop. */
  stopped: string[];
  /** Nothing of the platform was running. */
  alreadyStopped: boolean;
}

/**
 * Stop order, in waves: each wave is gone before the next begins. Whatever uses the stateful parts
 * (apps, the API, the router in front of them) first; the parts that hold data last, when nothing
 * writes to them any more.
 */
const WAVES: (Component | 'apps')[][] = [
  ['apps', 'router', 'api'],
  // The apps' way to their data goes with the apps, before the data.
  ['gateway'],
  ['s3', 'registry', 'postgres'],
];

const DEFAULT_TIMEOUT_MS = 180_000;
/** Task states in which a container may exist. */
const ACTIVE_STATES = new Set(['preparing', 'starting', 'running']);

export async function stopPlatform(io: IO, options: { dataDir?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<StopResult> {
  const env = options.env ?? process.env;
  const dataDir = await chooseDataDir(options.dataDir, env);
  const settings = await readSettings(dataDir);
  if (!settings) {
    throw new DivioError(`there is no platform in ${dataDir}`, {
      exitCode: ExitCode.environment,
      hint: 'Give the data directory the platform was started with (`--data-dir`), or start one with `divio platform start`.',
    });
  }
  await requireDocker(env);
  const result: StopResult = { name: settings.name, dataDir, stopped: [], alreadyStopped: true };
  if ((await ensureSwarm({ init: false })) === 'none') return result;

  const services = await platformServices(settings.name);
  const known = new Set<string>(COMPONENTS);
  const waveOf = (service: Docker.Service): Component | 'apps' => {
    const component = service.Spec?.Labels?.[LABEL_COMPONENT] ?? '';
    return known.has(component) ? (component as Component) : 'apps';
  };

  await io.task(`Stopping the platform "${settings.name}"`, async (task) => {
    const deadline = Date.now() + (options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    for (const wave of WAVES) {
      const members = services.filter((s) => wave.includes(waveOf(s)));
      for (const service of members) {
        const replicas = replicasOf(service) ?? 0;
        if (replicas === 0) continue;
        const isApp = waveOf(service) === 'apps';
        // Apps get their replica count back at the next start.
        await scaleService(service, 0, isApp ? { [LABEL_REPLICAS_BEFORE_STOP]: String(replicas) } : undefined);
        result.stopped.push(service.Spec!.Name!);
        result.alreadyStopped = false;
      }
      for (const service of members) {
        const name = service.Spec!.Name!;
        task.update(`waiting for ${name} to stop`);
        await waitUntilGone(name, deadline);
      }
    }
  });
  return result;
}

async function waitUntilGone(service: string, deadline: number): Promise<void> {
  for (;;) {
    const containers = await serviceContainers(service, { stopping: true });
    const tasks = await serviceTasks(service);
    const active = tasks.filter((t) => !isTerminal(t.state) && (t.desiredState === 'running' || ACTIVE_STATES.has(t.state)));
    if (containers.length === 0 && active.length === 0) return;
    if (Date.now() >= deadline) {
      throw new DivioError(`${service} did not stop in time (${containers.length} container(s) still running)`, {
        exitCode: ExitCode.environment,
        hint: `\`docker service ps ${service}\` shows its tasks; run \`divio platform stop\` again to keep waiting.`,
      });
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
